"""The AI Content Pipeline tool's chain format, flags and output, through the real CLI.

Its users' files, scripts and flags must work unchanged, with the old meaning:
``name`` optional, ``temp_dir``/``cleanup_temp``/``save_intermediates``/``input_type``
known, ``input_from`` honoured, the directory flags, ``--save-json``, the old
input precedence, the old estimate's fields, ``outputs.final``, one numbering of
steps for people, and a budget (``max_cost`` / ``--max-cost``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _aicp import child_env

ECHO = "params: {run: 'echo got {input}'}"


@pytest.fixture
def run_stream(aicp, validate_events):
    """``run-chain ARGS --stream``, its events checked against the schema."""
    def run(*args, env=None, cwd=None):
        result = aicp("run-chain", *args, "--stream", env=env, cwd=cwd)
        assert "Traceback" not in result.stderr, result.stderr
        validate_events(result)
        return result

    return run


# ----------------------------------------------------------------------------- keys


def test_name_is_optional_with_the_old_default(aicp, run_stream, write_chain):
    write_chain(f"""
        prompt: hi
        steps:
          - type: command
            {ECHO}
    """)
    run = run_stream("--config", "chain.yaml")
    assert run.returncode == 0
    assert run.of("pipeline_start")[0]["name"] == "unnamed_chain"
    plan = aicp("validate", "--config", "chain.yaml", "--json").result["data"]
    assert plan["name"] == "unnamed_chain"


@pytest.mark.parametrize("keys", [
    "temp_dir: temp\ncleanup_temp: true\nsave_intermediates: true\ninput_type: text",
    "temp_dir: scratch\ncleanup_temp: false\nsave_intermediates: false",
    "input_type: auto\ncleanup_temp: true",
])
def test_the_old_keys_are_known_no_warning(aicp, run_stream, write_chain, tmp_path, keys):
    text = f"name: old\nprompt: hi\n{keys}\nsteps:\n  - type: command\n    {ECHO}\n"
    (tmp_path / "chain.yaml").write_text(text)
    plan = aicp("validate", "--config", "chain.yaml", "--json")
    assert plan.returncode == 0, plan.stderr
    assert plan.result["data"]["warnings"] == [] and plan.result["data"]["problems"] == []
    run = run_stream("--config", "chain.yaml")
    assert run.returncode == 0
    assert run.of("warning") == []
    assert not (tmp_path / "temp").exists() and not (tmp_path / "scratch").exists()  # no temp files


@pytest.mark.parametrize("key, value, expected", [
    ("temp_dir", "[a]", "must be a string"), ("cleanup_temp", "maybe", "true or false"),
    ("save_intermediates", "1", "true or false"), ("max_cost", "-1", "a number >= 0"),
])
def test_the_old_keys_are_checked(aicp, write_chain, tmp_path, key, value, expected):
    (tmp_path / "chain.yaml").write_text(f"name: old\n{key}: {value}\nsteps:\n  - type: command\n    {ECHO}\n")
    run = aicp("validate", "--config", "chain.yaml")
    assert run.returncode == 2
    assert run.stderr.startswith(f"error: chain.yaml:2:1: {key}: must be") and expected in run.stderr


def test_save_intermediates_writes_the_old_reports(aicp, run_stream, write_chain, tmp_path):
    write_chain(f"""
        name: my chain/with slash
        prompt: hi
        save_intermediates: true
        steps:
          - type: command
            {ECHO}
          - type: command
            {ECHO}
    """)
    run = run_stream("--config", "chain.yaml")
    assert run.returncode == 0
    reports = sorted((tmp_path / "output" / "reports").iterdir())
    assert [p.name.split("_intermediate_")[0] for p in reports] == ["my_chain_with_slash_step1",
                                                                      "my_chain_with_slash_step2"]
    last = json.loads(reports[-1].read_text())
    assert last["report_type"] == "intermediate"
    assert last["execution_summary"]["completed_steps"] == 2
    assert last["intermediate_outputs"]["step_2_command"]["text"] == "got got hi"
    write_chain(f"name: quiet\nprompt: hi\nsteps:\n  - type: command\n    {ECHO}\n", name="off.yaml")
    run_stream("--config", "off.yaml", "--output-dir", "off")
    assert not (tmp_path / "off" / "reports").exists()


# ----------------------------------------------------------------------------- input_from


def test_input_from_takes_the_named_steps_output(aicp, run_stream, write_chain):
    write_chain(f"""
        name: from
        prompt: seed
        steps:
          - type: command
            name: first
            params: {{run: 'echo one {{input}}'}}
          - type: command
            params: {{run: 'echo two {{input}}'}}
          - type: command
            input_from: first
            {ECHO}
          - type: parallel_group
            params:
              parallel_steps:
                - {{type: command, name: a, input_from: first, params: {{run: 'echo a {{input}}'}}}}
                - {{type: command, name: b, params: {{run: 'echo b {{input}}'}}}}
          - type: command
            input_from: b
            {ECHO}
    """)
    run = run_stream("--config", "chain.yaml")
    assert run.returncode == 0, run.stderr
    outputs = run.result["outputs"]
    assert outputs["step_2_command"]["text"] == "two one seed"
    assert outputs["step_3_command"]["text"] == "got one seed"             # not "two one seed"
    assert outputs["step_4_parallel_group"]["paths"] == ["a one seed", "b got one seed"]
    assert outputs["step_5_command"]["text"] == "got b got one seed"      # a member, by name


@pytest.mark.parametrize("steps, path, message", [
    ("  - {type: command, input_from: nobody, params: {run: echo}}", "steps[0].input_from",
     "'nobody' names no step"),
    ("  - {type: command, input_from: later, params: {run: echo}}\n"
     "  - {type: command, name: later, params: {run: echo}}", "steps[0].input_from",
     "'later' names a step that does not run before this one"),
    ("  - type: parallel_group\n    params:\n      parallel_steps:\n"
     "        - {type: command, name: x, params: {run: echo}}\n"
     "        - {type: command, input_from: x, params: {run: echo}}", "steps[0].params.parallel_steps[1].input_from",
     "'x' names a step that does not run before this one"),
    ("  - {type: command, name: frist, params: {run: echo}}\n"
     "  - {type: command, input_from: first, params: {run: echo}}", "steps[1].input_from", "did you mean 'frist'"),
    ("  - {type: text_to_image, model: title_card, name: t}\n  - {type: split_image}\n"
     "  - {type: concat_videos, input_from: t}", "steps[2].type",
     "concat_videos expects videos input, but the step 't' gives image"),
])
def test_input_from_errors(aicp, tmp_path, steps, path, message):
    (tmp_path / "chain.yaml").write_text(f"name: bad\nprompt: hi\nsteps:\n{steps}\n")
    run = aicp("validate", "--config", "chain.yaml", "--json")
    assert run.returncode == 2
    problems = run.result["data"]["problems"]
    assert [p["path"] for p in problems] == [path], problems
    assert message in problems[0]["message"]


# ----------------------------------------------------------------------------- flags


def test_base_dir_resolves_relative_output_folders(aicp, run_stream, write_chain, tmp_path):
    write_chain(f"name: b\nprompt: hi\noutput_dir: out\nsteps:\n  - type: python\n    params: {{function: 'mod:write'}}\n")
    (tmp_path / "mod.py").write_text("def write(ctx):\n    p = ctx.output_path('dat')\n    p.write_text('x')\n"
                                     "    return {'output': 'ok', 'outputs': [str(p)]}\n")
    (tmp_path / "base").mkdir()
    run = run_stream("--base-dir", "base", "--config", "chain.yaml")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "base" / "out" / "step_1_python.dat").exists()
    after = run_stream("--config", "chain.yaml", "--base-dir", "base", "--output-dir", "other")
    assert (tmp_path / "base" / "other" / "step_1_python.dat").exists() and after.returncode == 0
    listed = aicp("runs", "list", "--config", "chain.yaml", "--base-dir", "base", "--json")
    assert len(listed.result["data"]) == 1
    missing = aicp("run-chain", "--config", "chain.yaml", "--base-dir", "nowhere", "--stream")
    assert missing.returncode == 3 and "--base-dir nowhere" in missing.result["error"]


def test_config_cache_state_dirs_become_the_xdg_variables(aicp, run_stream, write_chain, tmp_path):
    write_chain("""
        name: xdg
        prompt: hi
        steps:
          - type: command
            params: {run: 'echo "$XDG_CONFIG_HOME|$XDG_CACHE_HOME|$XDG_STATE_HOME"'}
    """)
    run = run_stream("--config-dir", "c", "--cache-dir", "k", "--config", "chain.yaml", "--state-dir", "s")
    assert run.returncode == 0, run.stderr
    assert run.result["outputs"]["step_1_command"]["text"] == f"{tmp_path / 'c'}|{tmp_path / 'k'}|{tmp_path / 's'}"
    assert aicp("--config-dir", ".", "list-steps").returncode == 0  # the old tool's invalid choice: '.'


def test_save_json_writes_the_result_where_the_old_tool_did(aicp, run_stream, write_chain, tmp_path):
    write_chain(f"name: s\nprompt: hi\nsteps:\n  - type: command\n    {ECHO}\n")
    run = run_stream("--config", "chain.yaml", "--save-json", "result.json")
    assert run.returncode == 0
    saved = json.loads((tmp_path / "output" / "result.json").read_text())
    assert set(saved) == {"success", "steps_completed", "total_steps", "total_cost", "total_time", "outputs", "error"}
    assert saved["outputs"]["step_1_command"]["text"] == "got hi"
    assert "--save-json is deprecated" in run.of("warning")[0]["message"]
    (tmp_path / "b").mkdir()
    human = aicp("run-chain", "--config", "chain.yaml", "--save-json", "again.json", "--base-dir", "b")
    assert human.returncode == 0
    assert "warning: --save-json is deprecated" in human.stderr
    assert json.loads((tmp_path / "b" / "output" / "again.json").read_text())["success"] is True
    assert "--save-json" not in aicp("run-chain", "--help").stdout  # deprecated: hidden


@pytest.mark.parametrize("flags, expected", [
    (["--input-text", "typed", "--prompt-file", "p.txt"], "typed"),
    (["--prompt-file", "p.txt", "--input-text", "typed"], "typed"),
    (["--input-text", "typed", "--input", "i.txt"], "from input file"),
    (["--input", "i.txt", "--prompt-file", "p.txt"], "from input file"),
    (["--input-text", "typed", "--input", "i.txt", "--prompt-file", "p.txt"], "from input file"),
    (["--prompt-file", "p.txt"], "from prompt file"),
])
def test_input_flags_combine_as_in_the_old_tool(aicp, run_stream, write_chain, tmp_path, flags, expected):
    write_chain(f"name: i\nprompt: chain prompt\nsteps:\n  - type: command\n    {ECHO}\n")
    (tmp_path / "p.txt").write_text("from prompt file\n")
    (tmp_path / "i.txt").write_text("from input file\n")
    run = run_stream("--config", "chain.yaml", *flags)
    assert run.returncode == 0, run.stderr
    assert run.result["outputs"]["step_1_command"]["text"] == f"got {expected}"


def test_estimate_cost_json_has_the_old_fields(aicp, write_chain):
    write_chain("""
        name: priced
        prompt: a fox
        steps:
          - {type: text_to_image, model: flux_dev}
          - {type: image_to_video, model: hailuo}
    """)
    data = aicp("estimate-cost", "--config", "chain.yaml", "--json").result["data"]
    assert data["currency"] == "USD"
    assert data["total_cost"] == pytest.approx(0.083) == data["estimated_cost"]
    assert data["step_costs"] == [{"step": "text_to_image", "model": "flux_dev", "cost": 0.003},
                                  {"step": "image_to_video", "model": "hailuo", "cost": 0.08}]


# ----------------------------------------------------------------------------- output


def test_outputs_final_is_the_last_steps_entry_and_numbers_agree(aicp, run_stream, write_chain, tmp_path):
    write_chain("""
        name: numbers
        prompt: A lighthouse at dawn
        steps:
          - {type: text_to_image, model: title_card, params: {resolution: 360}}
          - {type: split_image, params: {rows: 1, cols: 2}}
          - type: parallel_group
            params:
              parallel_steps:
                - {type: upscale_image, model: lanczos, params: {factor: 1.5}}
                - {type: upscale_image, model: lanczos, params: {factor: 1.5}}
    """)
    run = run_stream("--config", "chain.yaml")
    assert run.returncode == 0, run.stderr
    outputs = run.result["outputs"]
    assert list(outputs) == ["step_1_text_to_image", "step_2_split_image", "step_3_parallel_group", "final"]
    assert outputs["final"] == outputs["step_3_parallel_group"]
    assert Path(outputs["step_1_text_to_image"]["path"]).name == "step_1_text_to_image.png"
    assert [Path(p).name for p in outputs["step_2_split_image"]["paths"]] == ["step_2_split_image_1.png",
                                                                             "step_2_split_image_2.png"]
    assert [Path(p).name for p in outputs["final"]["paths"]] == ["step_3_1_upscale_image.png",
                                                                 "step_3_2_upscale_image.png"]
    # events keep the 0-based index: step k+1's files come from the events with "step": k
    for event in run.of("step_complete"):
        for f in event["outputs"]:
            assert Path(f).name.startswith(f"step_{event['step'] + 1}_")
    human = aicp("run-chain", "--config", "chain.yaml")
    assert "step 3.2: upscale_image" in human.stderr
    assert not any(line.strip().startswith("final:") for line in human.stdout.splitlines())


def test_a_failed_run_has_no_final(aicp, run_stream, write_chain):
    write_chain(f"name: f\nprompt: hi\nsteps:\n  - type: command\n    {ECHO}\n  - {{type: command, params: {{run: 'exit 3'}}}}\n")
    run = run_stream("--config", "chain.yaml")
    assert run.returncode == 5
    assert list(run.result["outputs"]) == ["step_1_command"]


# ----------------------------------------------------------------------------- budget


BUDGET_MODULE = """
def pay(ctx):
    return {"output": "paid " + str(ctx.params.get("cost")), "cost": ctx.params.get("cost", 0)}
"""


def test_max_cost_refuses_a_step_whose_estimate_would_pass_it(aicp, run_stream, write_chain, tmp_path):
    write_chain("""
        name: budget
        prompt: a fox
        max_cost: 0.05
        steps:
          - {type: text_to_image, model: title_card}
          - {type: image_to_video, model: hailuo}
    """)
    env = child_env(FAL_KEY="test-key", AICP_FAL_QUEUE_URL="http://127.0.0.1:9")  # never reached
    run = run_stream("--config", "chain.yaml", env=env)
    assert run.returncode == 5
    error = run.of("step_error")[0]
    assert (error["step"], error["reason"], error["type"]) == (1, "budget", "image_to_video")
    assert "$0.080" in error["error"] and "max_cost $0.050" in error["error"]
    assert [e["step"] for e in run.of("step_start")] == [0]  # the refused step never started
    assert run.result["steps_completed"] == 1 and "not started" in run.result["error"]
    # --max-cost overrides the chain's: high enough, the same step would start (and fail to connect)
    assert aicp("estimate-cost", "--config", "chain.yaml", "--json").result["data"]["max_cost"] == 0.05
    low = run_stream("--config", "chain.yaml", "--max-cost", "0", env=env)
    assert low.returncode == 5 and low.of("step_error")[0]["step"] == 1  # a free step still runs at 0


def test_max_cost_is_checked_again_against_real_spend(aicp, run_stream, write_chain, tmp_path):
    (tmp_path / "budgetmod.py").write_text(BUDGET_MODULE)
    write_chain("""
        name: real spend
        prompt: hi
        steps:
          - {type: python, params: {function: "budgetmod:pay", cost: 0.5}}
          - {type: python, params: {function: "budgetmod:pay", cost: 0.5}}
          - {type: python, params: {function: "budgetmod:pay", cost: 0}}
    """)
    run = run_stream("--config", "chain.yaml", "--max-cost", "0.75")
    assert run.returncode == 5
    assert [e["step"] for e in run.of("step_complete")] == [0, 1]  # estimates were 0: both started
    assert "past max_cost" in run.of("warning")[0]["message"]
    refused = run.of("step_error")[0]
    assert (refused["step"], refused["reason"]) == (2, "budget")
    assert run.result["total_cost"] == pytest.approx(1.0)
    ok = run_stream("--config", "chain.yaml", "--max-cost", "1")
    assert ok.returncode == 0
