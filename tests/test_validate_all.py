"""``aicp validate`` means "this will run": every mistake in one pass, positioned and sorted, and
the checks of this machine (files the chain names, credentials, executors), through the real CLI.
"""

from __future__ import annotations

import re
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
from _aicp import child_env

ERROR = re.compile(r"^error: (?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<path>[^:]+): (?P<message>.*)$")

TEN_MISTAKES = """\
name: ten
promt: typo
timeout: -1
input_type: txt
steps:
  - type: command
    timout: 3
    params: {run: echo hi}
  - type: text_to_imag
  - type: command
    enabled: "yes"
    params: {run: echo hi}
  - type: command
    retry_count: -1
    params: {run: echo hi}
  - type: text_to_image
    model: title_crd
  - type: command
    max_memory_mb: 0
    params: {run: echo hi}
  - type: command
    name: a
    input_from: nowhere
    params: {run: echo hi}
  - type: parallel_group
    params:
      merge_strategy: first_sucess
      parallel_steps:
        - {type: command, params: {run: echo hi}}
"""

EXPECTED_TEN = [
    (2, 1, "promt", "did you mean 'prompt'"),
    (3, 1, "timeout", "must be a positive number, got -1"),
    (4, 1, "input_type", "did you mean 'text'"),
    (7, 5, "steps[0].timout", "did you mean 'timeout'"),
    (9, 5, "steps[1].type", "unknown step type 'text_to_imag'"),
    (11, 5, "steps[2].enabled", "must be true or false"),
    (14, 5, "steps[3].retry_count", "must be a whole number >= 0, got -1"),
    (17, 5, "steps[4].model", "unknown model 'title_crd'"),
    (19, 5, "steps[5].max_memory_mb", "must be a positive number, got 0"),
    (23, 5, "steps[6].input_from", "'nowhere' names no step"),
    (27, 7, "steps[7].params.merge_strategy", "did you mean 'first_success'"),
]


def test_a_chain_with_ten_mistakes_gives_every_error_in_one_run(aicp, tmp_path):
    (tmp_path / "ten.yaml").write_text(TEN_MISTAKES)
    run = aicp("validate", "--config", "ten.yaml")
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == len(EXPECTED_TEN), lines
    for line, (row, col, path, fragment) in zip(lines, EXPECTED_TEN):
        m = ERROR.match(line)
        assert m, line
        assert (m["file"], int(m["line"]), int(m["col"]), m["path"]) == ("ten.yaml", row, col, path), line
        assert fragment in m["message"], line
    # run-chain refuses with the same errors, before anything runs
    refused = aicp("run-chain", "--config", "ten.yaml", "--stream")
    assert refused.returncode == 2
    told = [e for e in refused.events if e["event"] == "error"]  # with --stream, stderr is JSON lines only
    assert len(told) == 1 and told[0]["message"].splitlines() == [line[len("error: "):] for line in lines]
    assert refused.result["error"].splitlines() == [line[len("error: "):] for line in lines]


def test_validate_json_lists_every_problem_with_its_position(aicp, tmp_path):
    (tmp_path / "ten.yaml").write_text(TEN_MISTAKES)
    run = aicp("validate", "--config", "ten.yaml", "--json")
    assert run.returncode == 2
    envelope = run.result
    assert envelope["command"] == "validate" and envelope["error"]["exit_code"] == 2
    problems = envelope["data"]["problems"]
    assert envelope["data"]["valid"] is False
    assert [set(p) for p in problems] == [{"file", "line", "column", "path", "message", "severity"}] * len(problems)
    assert [(p["line"], p["column"], p["path"]) for p in problems] == [e[:3] for e in EXPECTED_TEN]
    assert {p["severity"] for p in problems} == {"error"}
    assert all(p["file"] == "ten.yaml" for p in problems)


def test_errors_are_sorted_by_position_and_warnings_kept_apart(aicp, write_chain):
    write_chain("""
        steps:
          - {type: command, params: {run: echo hi}, timeout: -2}
        author: me
        timeout: 0
    """)
    run = aicp("validate", "--config", "chain.yaml", "--json")
    problems = run.result["data"]["problems"]
    assert [(p["line"], p["path"], p["severity"]) for p in problems] == [
        (2, "steps[0].timeout", "error"), (3, "author", "warning"), (4, "timeout", "error")]
    human = aicp("validate", "--config", "chain.yaml")
    assert human.stderr.splitlines() == [
        "error: chain.yaml:2:45: steps[0].timeout: must be a positive number, got -2",
        "error: chain.yaml:4:1: timeout: must be a positive number, got 0"]


@pytest.mark.parametrize("count", [51, 60, 120])
def test_errors_are_capped_at_fifty_with_a_count_of_the_rest(aicp, tmp_path, count):
    steps = "".join(f"  - {{type: command, params: {{run: echo {i}}}, timeout: -{i + 1}}}\n" for i in range(count))
    (tmp_path / "many.yaml").write_text(f"name: many\nsteps:\n{steps}")
    run = aicp("validate", "--config", "many.yaml")
    assert run.returncode == 2
    lines = run.stderr.splitlines()
    assert len(lines) == 51
    assert all(ERROR.match(line) for line in lines[:50])
    assert ERROR.match(lines[0])["path"] == "steps[0].timeout"
    assert ERROR.match(lines[49])["path"] == "steps[49].timeout"
    assert lines[50] == f"error: ... and {count - 50} more error{'s' if count > 51 else ''} ({count} in all)"
    # --json lists them all
    listed = aicp("validate", "--config", "many.yaml", "--json")
    assert len(listed.result["data"]["problems"]) == count


def test_group_members_and_nested_mistakes_are_all_reported(aicp, write_chain):
    write_chain("""
        name: g
        steps:
          - type: parallel_group
            params:
              max_workers: 0
              parallel_steps:
                - {type: command, params: {run: echo a}, timeout: -1}
                - {type: text_to_image, model: nope}
                - {type: command}
    """)
    run = aicp("validate", "--config", "chain.yaml", "--json")
    paths = [p["path"] for p in run.result["data"]["problems"]]
    assert paths == ["steps[0].params.max_workers", "steps[0].params.parallel_steps[0].timeout",
                     "steps[0].params.parallel_steps[1].model", "steps[0].params.parallel_steps[2].params"]


# ----------------------------------------------------------------------------- will it run here


FAL_CHAIN = """
    name: remote
    prompt: a lighthouse
    steps:
      - type: text_to_image
        model: flux_dev
"""


def test_missing_credentials_are_reported_with_run_chains_message(aicp, write_chain):
    write_chain(FAL_CHAIN)
    env = child_env()
    env.pop("FAL_KEY", None)
    run = aicp("validate", "--config", "chain.yaml", env=env)
    assert run.returncode == 2
    m = ERROR.match(run.stderr.splitlines()[0])
    assert m and m["path"] == "steps[0].model" and (int(m["line"]), int(m["col"])) == (5, 5)
    refused = aicp("run-chain", "--config", "chain.yaml", env=env)
    assert refused.returncode == 3
    assert m["message"] in refused.stderr  # the same words
    offline = aicp("validate", "--config", "chain.yaml", "--offline", env=env)
    assert offline.returncode == 0, offline.stderr
    keyed = aicp("validate", "--config", "chain.yaml", env={**env, "FAL_KEY": "k"})
    assert keyed.returncode == 0, keyed.stderr


@pytest.mark.parametrize("key", ["input_image", "input_video"])
def test_a_missing_input_file_named_by_the_chain_is_reported(aicp, write_chain, tmp_path, key):
    first = {"input_image": "split_image", "input_video": "concat_videos"}[key]
    write_chain(f"""
        name: files
        {key}: media/missing.bin
        steps:
          - type: {first}
    """)
    run = aicp("validate", "--config", "chain.yaml", "--offline")
    assert run.returncode == 2
    assert run.stderr.splitlines() == [f"error: chain.yaml:2:1: {key}: {key} not found: media/missing.bin"]
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "missing.bin").write_bytes(b"x")
    ok = aicp("validate", "--config", "chain.yaml", "--offline")
    assert ok.returncode == 0, ok.stderr


def test_an_executor_that_cannot_run_here_is_reported(aicp, write_chain, tmp_path):
    write_chain("""
        name: speech
        prompt: hello there
        steps:
          - {type: text_to_speech, model: espeak}
    """)
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "python").symlink_to(sys.executable)
    run = aicp("validate", "--config", "chain.yaml", env={**child_env(), "PATH": str(bare)})
    assert run.returncode == 2
    m = ERROR.match(run.stderr.splitlines()[0])
    assert m and m["path"] == "steps[0].model" and "espeak-ng" in m["message"]
    if shutil.which("espeak-ng") or shutil.which("espeak"):
        assert aicp("validate", "--config", "chain.yaml").returncode == 0


def test_validate_help_mentions_offline(aicp):
    run = aicp("validate", "--help")
    assert "--offline" in run.stdout and textwrap.dedent("credentials") in run.stdout


CARD = "{type: text_to_image, model: title_card}"
CLIP = "{type: image_to_video, model: ken_burns, params: {duration: 1}}"


@pytest.mark.parametrize("steps, path", [
    ([CARD, CLIP, "{type: add_audio, params: {audio: sounds/missing.wav}}"], "steps[2].params.audio"),
    ([CARD, CLIP, "{type: generate_subtitles, params: {fit_to: sounds/missing.wav}}"], "steps[2].params.fit_to"),
    ([CARD, "{type: avatar, model: omnihuman_v1_5, params: {audio_url: sounds/missing.wav}}"],
     "steps[1].params.audio_url"),
])
def test_a_missing_file_named_by_a_param_is_reported_before_anything_runs(aicp, tmp_path, steps, path):
    (tmp_path / "chain.yaml").write_text("name: files\nprompt: hi\nsteps:\n" + "".join(f"  - {s}\n" for s in steps))
    run = aicp("validate", "--config", "chain.yaml", "--offline")
    assert run.returncode == 2
    m = ERROR.match(run.stderr.splitlines()[0])
    assert m and m["path"] == path and m["message"].endswith("not found: sounds/missing.wav"), run.stderr
    env = child_env(FAL_KEY="test-key", AICP_FAL_QUEUE_URL="http://127.0.0.1:9")
    refused = aicp("run-chain", "--config", "chain.yaml", "--stream", env=env)
    assert refused.returncode == 3  # a file you named is missing: nothing ran
    assert [e["event"] for e in refused.events] == ["error"]
    assert path in refused.result["error"]
    (tmp_path / "sounds").mkdir()
    shutil.copy(sys.executable, tmp_path / "sounds" / "missing.wav")  # any readable file will do for validate
    assert aicp("validate", "--config", "chain.yaml", "--offline").returncode == 0


def test_a_url_param_is_not_a_file(aicp, write_chain):
    write_chain("""
        name: url
        prompt: hi
        steps:
          - {type: text_to_image, model: title_card}
          - {type: avatar, model: omnihuman_v1_5, params: {audio_url: "https://example.org/speech.mp3"}}
    """)
    run = aicp("validate", "--config", "chain.yaml", "--offline")
    assert run.returncode == 0, run.stderr
