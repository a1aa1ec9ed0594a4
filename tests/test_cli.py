"""The ``aicp`` command line: flags, envelopes, inputs, exit codes, and the Python API."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _aicp import aicp_argv, child_env

import aicp as aicp_pkg
from aicp import cli




EXIT_CODES = ("0", "1", "2", "3", "4", "5", "130", "143")
ECHO_CHAIN = """
    name: echo
    prompt: chain prompt
    steps:
      - type: command
        params: {argv: [echo, "got: {input}"]}
"""


def single_error_line(run) -> str:
    assert "Traceback" not in run.stderr, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def envelope(run, command: str):
    assert run.returncode == 0, run.stderr
    env = run.result
    assert set(env) == {"schema_version", "command", "data"}
    assert env["schema_version"] == "1"
    assert env["command"] == command
    return env["data"]


# ----------------------------------------------------------------------------- --version, --help


def test_version(aicp):
    run = aicp("--version")
    assert run.returncode == 0
    assert run.stdout == f"aicp {aicp_pkg.__version__}\n"
    assert re.fullmatch(r"aicp \d+\.\d+\.\d+\S*\n", run.stdout)


@pytest.mark.parametrize("args", [["--version"], ["list-steps"], ["validate", "--config", "chain.yaml"]])
@pytest.mark.parametrize("how", ["closed", "reader-gone"])
def test_info_commands_survive_a_closed_stdout(write_chain, tmp_path, args, how):
    """``aicp --version >&-`` or ``| head -c 0``: no traceback, exit code unchanged."""
    write_chain(ECHO_CHAIN)
    if how == "closed":
        proc = subprocess.run(aicp_argv(*args), cwd=tmp_path, env=child_env(), stderr=subprocess.PIPE,
                              text=True, timeout=60, preexec_fn=lambda: os.close(1))
    else:
        r, w = os.pipe()
        os.close(r)
        try:
            proc = subprocess.run(aicp_argv(*args), cwd=tmp_path, env=child_env(), stdout=w,
                                  stderr=subprocess.PIPE, text=True, timeout=60)
        finally:
            os.close(w)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_version_with_other_flags_goes_through_argparse(aicp):
    run = aicp("--quiet", "--version")
    assert run.returncode == 0
    assert run.stdout.strip() == f"aicp {aicp_pkg.__version__}"


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "aicp"
    assert exe.exists()
    proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout.strip() == f"aicp {aicp_pkg.__version__}"


@pytest.mark.parametrize("args", [["--help"], ["run-chain", "--help"], ["validate", "--help"]])
def test_help_lists_every_exit_code(aicp, args):
    run = aicp(*args)
    assert run.returncode == 0
    assert "exit codes" in run.stdout
    for code in EXIT_CODES:
        assert re.search(rf"^\s+{code}\s+\S", run.stdout, re.M), f"exit code {code} not documented"


def test_help_shows_global_flags_and_commands(aicp):
    out = aicp("--help").stdout
    for word in ("run-chain", "validate", "list-steps", "schema", "--json", "--quiet", "--debug", "--version"):
        assert word in out
    run_help = aicp("run-chain", "--help").stdout
    for word in ("--config", "--stream", "--no-confirm", "--yes", "--input-text", "--prompt-file", "--input",
                 "--log-file", "--json", "--quiet", "--debug"):
        assert word in run_help


def test_no_command_is_a_usage_error(aicp):
    run = aicp()
    assert run.returncode == 2
    assert run.stdout == ""


# ----------------------------------------------------------------------------- usage errors: one line, exit 2


@pytest.mark.parametrize("args", [
    ["run-chain"],                                              # --config missing
    ["run-chain", "--config", "c.yaml", "--bogus"],             # unknown flag
    ["run-chain", "--config", "c.yaml", "--max-cost", "cheap"],  # not a number
    ["run-chain", "--config", "c.yaml", "--max-cost", "-1"],     # below zero
    ["schema", "nonsense"],
    ["frobnicate"],
])
def test_invalid_arguments_give_one_error_line_and_exit_2(aicp, args):
    run = aicp(*args)
    assert run.returncode == 2
    single_error_line(run)
    assert run.stdout == ""


def test_invalid_arguments_in_stream_mode_still_give_the_result_line(aicp):
    run = aicp("run-chain", "--stream", "--config", "c.yaml", "--input-text", "a", "--bogus", "b")
    assert run.returncode == 2
    assert "unrecognized arguments: --bogus" in run.stream_failure  # an event: stderr is JSON lines only
    result = run.result
    assert result["event"] == "pipeline_complete"
    assert (result["success"], result["steps_completed"], result["exit_code"]) == (False, 0, 2)


# ----------------------------------------------------------------------------- --json envelopes


def test_validate_envelope(aicp, write_chain, tmp_path):
    write_chain(ECHO_CHAIN)
    plan = envelope(aicp("validate", "--config", "chain.yaml", "--json"), "validate")
    assert plan["name"] == "echo"
    assert plan["total_steps"] == 1 and plan["disabled_steps"] == 0
    assert plan["output_dir"] == str(tmp_path / "output")
    assert plan["steps"][0]["type"] == "command"
    assert plan["steps"][0]["executor"] == "aicp.steps.command_step:run"


def test_validate_human_and_quiet(aicp, write_chain):
    write_chain(ECHO_CHAIN)
    human = aicp("validate", "--config", "chain.yaml")
    assert human.returncode == 0
    assert human.stdout.startswith("valid: 'echo'")
    assert "command" in human.stdout
    quiet = aicp("validate", "--config", "chain.yaml", "--quiet")
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""


def test_list_steps_envelope_and_text(aicp):
    rows = envelope(aicp("list-steps", "--json"), "list-steps")
    by_type = {r["type"]: r for r in rows}
    assert by_type["python"]["available"] and by_type["command"]["available"]
    assert by_type["python"]["model_required"] is False
    unavailable = [r["type"] for r in rows if not r["executors"] and r["type"] != "parallel_group"]
    for name in unavailable:
        assert by_type[name]["available"] is False
    assert by_type["text_to_image"]["executors"][0]["model"] == "title_card"
    for r in rows:
        assert {"type", "consumes", "produces", "summary", "model_required", "available", "executors"} <= set(r)
    text = aicp("list-steps")
    assert text.returncode == 0
    for name in by_type:
        assert name in text.stdout
    assert ("not available in this version" in text.stdout) == bool(unavailable)


def test_schema_events_plain_and_envelope(aicp):
    from importlib.resources import files

    import jsonschema

    packaged = json.loads(files("aicp").joinpath("events.schema.json").read_text())
    plain = aicp("schema", "events")
    assert plain.returncode == 0
    assert json.loads(plain.stdout) == packaged
    jsonschema.Draft202012Validator.check_schema(packaged)
    assert envelope(aicp("--json", "schema", "events"), "schema") == packaged


def test_run_chain_envelope(aicp, write_chain):
    write_chain(ECHO_CHAIN)
    run = aicp("run-chain", "--config", "chain.yaml", "--json")
    data = envelope(run, "run-chain")
    assert run.stderr == ""  # --json: no human progress
    assert data["success"] is True
    assert (data["steps_completed"], data["total_steps"]) == (1, 1)
    assert data["outputs"]["step_1_command"]["text"] == "got: chain prompt"
    assert {"total_cost", "total_time", "error"} <= set(data)


# ----------------------------------------------------------------------------- global flags anywhere


@pytest.mark.parametrize("args", [
    ["--json", "validate", "--config", "chain.yaml"],
    ["validate", "--json", "--config", "chain.yaml"],
    ["validate", "--config", "chain.yaml", "--json"],
    ["--quiet", "validate", "--config", "chain.yaml", "--json"],
    ["validate", "--config", "chain.yaml", "--json", "--debug"],
])
def test_global_json_before_or_after_the_subcommand(aicp, write_chain, args):
    write_chain(ECHO_CHAIN)
    assert envelope(aicp(*args), "validate")["name"] == "echo"


@pytest.mark.parametrize("args", [["--quiet", "run-chain", "--config", "chain.yaml"],
                                  ["run-chain", "--config", "chain.yaml", "--quiet"],
                                  ["run-chain", "-q", "--config", "chain.yaml"]])
def test_quiet_before_or_after(aicp, write_chain, args):
    write_chain(ECHO_CHAIN)
    run = aicp(*args)
    assert run.returncode == 0
    assert run.stderr == ""
    assert run.stdout.startswith("succeeded: 1/1 steps")


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback_of_a_user_error(aicp, where):
    args = ["validate", "--config", "missing.yaml"]
    run = aicp(*(["--debug", *args] if where == "before" else [*args, "--debug"]))
    assert run.returncode == 3
    assert "Traceback" in run.stderr
    assert run.stderr.rstrip().splitlines()[-1] == "error: chain file not found: missing.yaml"
    plain = aicp(*args)
    assert single_error_line(plain) == "error: chain file not found: missing.yaml"


def test_internal_error_is_exit_1_with_one_line(monkeypatch, capsys):
    from aicp._commands import catalogue as _info_commands

    def broken(args):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(_info_commands, "list_steps", broken)
    with pytest.raises(SystemExit) as exc:
        cli.main(["list-steps"])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.splitlines() == ["error: internal error: RuntimeError: kaboom (run with --debug for the traceback)"]
    with pytest.raises(SystemExit) as exc:
        cli.main(["list-steps", "--debug"])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "kaboom" in err


def test_no_confirm_and_yes_are_accepted(aicp, write_chain):
    write_chain(ECHO_CHAIN)
    for flag in ("--no-confirm", "--yes", "-y"):
        run = aicp("run-chain", "--config", "chain.yaml", flag, "--stream")
        assert run.returncode == 0, run.stderr
        assert run.result["success"]


# ----------------------------------------------------------------------------- where the input comes from


def output_text(run) -> str:
    return run.result["outputs"]["step_1_command"]["text"]


def test_chain_prompt_is_the_default_input(aicp, write_chain):
    write_chain(ECHO_CHAIN)
    assert output_text(aicp("run-chain", "--config", "chain.yaml", "--stream")) == "got: chain prompt"


def test_input_text_overrides_the_prompt(aicp, write_chain):
    write_chain(ECHO_CHAIN)
    run = aicp("run-chain", "--config", "chain.yaml", "--stream", "--input-text", "from the flag")
    assert output_text(run) == "got: from the flag"


def test_prompt_file_overrides_the_prompt(aicp, write_chain, tmp_path):
    write_chain(ECHO_CHAIN)
    (tmp_path / "prompt.txt").write_text("  from a file \n")
    run = aicp("run-chain", "--config", "chain.yaml", "--stream", "--prompt-file", "prompt.txt")
    assert output_text(run) == "got: from a file"


def test_input_text_file_is_read(aicp, write_chain, tmp_path):
    write_chain(ECHO_CHAIN)
    (tmp_path / "in.txt").write_text("text file input\n")
    run = aicp("run-chain", "--config", "chain.yaml", "--stream", "--input", "in.txt")
    assert output_text(run) == "got: text file input"


def test_input_dash_reads_stdin(aicp, write_chain):
    write_chain(ECHO_CHAIN)
    run = aicp("run-chain", "--config", "chain.yaml", "--stream", "--input", "-", input="piped text\n")
    assert output_text(run) == "got: piped text"


def test_input_media_file_is_passed_as_absolute_path(aicp, write_chain, tmp_path):
    write_chain("""
        name: img
        steps:
          - type: command
            params: {argv: [echo, "{input}"]}
    """)
    (tmp_path / "pic.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    run = aicp("run-chain", "--config", "chain.yaml", "--stream", "--input", "pic.png")
    assert run.returncode == 0, run.stderr
    assert run.result["outputs"]["step_1_command"]["path"] == str(tmp_path / "pic.png")


def test_chain_input_image_resolves_against_the_chain_folder(aicp, write_chain, tmp_path):
    (tmp_path / "chains").mkdir()
    (tmp_path / "chains" / "pic.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    write_chain("""
        name: img
        input_type: image
        input_image: pic.png
        steps:
          - type: command
            params: {argv: [echo, "{input}"]}
    """, name="chains/chain.yaml")
    (tmp_path / "elsewhere").mkdir()
    run = aicp("run-chain", "--config", "../chains/chain.yaml", "--stream", cwd=tmp_path / "elsewhere")
    assert run.returncode == 0, run.stderr
    assert run.result["outputs"]["step_1_command"]["path"] == str(tmp_path / "chains" / "pic.png")


def test_config_dash_reads_the_chain_from_stdin(aicp):
    yaml_run = aicp("run-chain", "--config", "-", "--stream",
                    input="name: s\nprompt: yaml stdin\nsteps:\n  - type: command\n"
                          "    params: {argv: [echo, '{input}']}\n")
    assert yaml_run.returncode == 0, yaml_run.stderr
    assert output_text(yaml_run) == "yaml stdin"
    chain = {"name": "s", "prompt": "json stdin", "steps": [{"type": "command", "params": {"argv": ["echo", "{input}"]}}]}
    json_run = aicp("run-chain", "--config", "-", "--stream", "--input-text", "flag wins", input=json.dumps(chain))
    assert json_run.returncode == 0, json_run.stderr
    assert output_text(json_run) == "flag wins"


def test_config_and_input_cannot_both_read_stdin(aicp):
    chain = "name: s\nprompt: p\nsteps:\n  - type: command\n    params: {argv: [echo, '{input}']}\n"
    run = aicp("run-chain", "--config", "-", "--input", "-", "--stream", input=chain)
    assert run.returncode == 2
    assert "stdin" in run.stream_failure
    assert run.result["exit_code"] == 2


def test_no_input_anywhere_is_a_usage_error(aicp, write_chain):
    write_chain("""
        name: nothing
        steps:
          - type: command
            params: {run: echo}
    """)
    run = aicp("run-chain", "--config", "chain.yaml")
    assert run.returncode == 2
    assert "prompt" in single_error_line(run)


def test_output_dir_is_relative_to_the_cwd_and_can_be_overridden(aicp, write_chain, write_module, tmp_path):
    write_module("writer", """
        def write(ctx):
            path = ctx.output_path("txt")
            path.write_text("x")
            return str(path)
    """)
    write_chain("""
        name: out
        prompt: p
        steps:
          - type: python
            params: {function: "writer:write"}
    """)
    work = tmp_path / "work"
    work.mkdir()
    run = aicp("run-chain", "--config", "../chain.yaml", "--stream", cwd=work)
    assert run.returncode == 0, run.stderr
    assert Path(run.result["outputs"]["step_1_python"]["text"]) == work / "output" / "step_1_python.txt"
    assert (work / "output" / "step_1_python.txt").exists()
    other = aicp("run-chain", "--config", "chain.yaml", "--stream", "--output-dir", "elsewhere")
    assert Path(other.result["outputs"]["step_1_python"]["text"]).parent == tmp_path / "elsewhere"


# ----------------------------------------------------------------------------- missing files: exit 3


@pytest.mark.parametrize("args", [
    ["validate", "--config", "missing.yaml"],
    ["run-chain", "--config", "missing.yaml"],
    ["run-chain", "--config", "chain.yaml", "--prompt-file", "missing.txt"],
    ["run-chain", "--config", "chain.yaml", "--input", "missing.txt"],
    ["run-chain", "--config", "chain.yaml", "--input", "missing.png"],
    ["run-chain", "--config", "."],
])
def test_missing_files_exit_3_with_one_line(aicp, write_chain, args):
    write_chain(ECHO_CHAIN)
    run = aicp(*args)
    assert run.returncode == 3, run.stderr
    line = single_error_line(run)
    assert "missing" in line or "directory" in line
    assert run.stdout == ""


def test_missing_chain_input_image_exits_3(aicp, write_chain):
    write_chain("""
        name: img
        input_type: image
        input_image: nowhere.png
        steps:
          - type: command
            params: {run: echo}
    """)
    run = aicp("run-chain", "--config", "chain.yaml", "--stream")
    assert run.returncode == 3
    assert "nowhere.png" in run.stream_failure
    assert run.result["exit_code"] == 3 and run.result["success"] is False


def test_undecodable_chain_exits_3(aicp, tmp_path):
    (tmp_path / "chain.yaml").write_bytes(b"name: \xff\xfe\n")
    run = aicp("validate", "--config", "chain.yaml")
    assert run.returncode == 3
    assert "cannot read chain file" in single_error_line(run)


def test_unreadable_chain_exits_3(aicp, write_chain):
    if os.geteuid() == 0:
        pytest.skip("root can read a file with mode 000")
    path = Path(write_chain(ECHO_CHAIN))
    path.chmod(0)
    try:
        run = aicp("validate", "--config", "chain.yaml")
    finally:
        path.chmod(0o644)
    assert run.returncode == 3
    single_error_line(run)


# ----------------------------------------------------------------------------- failures and signals


def test_failed_step_exits_5(aicp, write_chain):
    write_chain("""
        name: fails
        prompt: p
        steps:
          - type: command
            params: {run: "exit 3"}
    """)
    human = aicp("run-chain", "--config", "chain.yaml")
    assert human.returncode == 5
    assert human.stdout.startswith("failed: 0/1 steps")
    assert human.stderr.splitlines()[-1].startswith("error: Step 1 failed")
    assert "Traceback" not in human.stderr
    stream = aicp("run-chain", "--config", "chain.yaml", "--stream")
    assert stream.returncode == 5
    assert stream.result["success"] is False and stream.result["exit_code"] == 5


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_stop_the_run_with_their_exit_code(write_chain, tmp_path, sig, code):
    write_chain("""
        name: slow
        prompt: p
        kill_grace: 1
        steps:
          - type: command
            params: {run: "sleep 30"}
    """)
    proc = subprocess.Popen(aicp_argv("run-chain", "--config", "chain.yaml", "--stream"), cwd=tmp_path,
                            env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    lines = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        if '"step_start"' in line:
            break
    else:
        proc.kill()
        pytest.fail(f"no step_start: {lines}")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == code, err
    result = json.loads(out)
    assert result["success"] is False and result["exit_code"] == code
    assert "Traceback" not in err


# ----------------------------------------------------------------------------- the Python API


def test_api_load_and_run(write_chain, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_chain(ECHO_CHAIN)
    for source in (path, Path(path), Path(path).read_text()):
        chain = aicp_pkg.load_chain(source)
        assert chain.name == "echo" and len(chain.steps) == 1
    result = aicp_pkg.run_chain(aicp_pkg.load_chain(path))
    assert result.success is True
    assert (result.steps_completed, result.total_steps) == (1, 1)
    assert result.total_cost == 0.0 and result.total_time > 0
    assert result.outputs["step_1_command"]["text"] == "got: chain prompt"
    assert result.error is None
    other = aicp_pkg.run_chain(path, input="api input")
    assert other.outputs["step_1_command"]["text"] == "got: api input"


def test_api_keeps_unknown_top_level_keys_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    chain = aicp_pkg.load_chain("name: x\nauthor: me\nsteps:\n  - type: command\n    params: {run: echo}\n")
    assert chain.extra == {"author": "me"}
    assert any("'author'" in w for w in chain.warnings)


def test_api_failure_is_in_the_result(write_chain, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    chain = aicp_pkg.load_chain(write_chain("""
        name: fails
        prompt: p
        steps:
          - type: command
            params: {run: "exit 7"}
    """))
    result = aicp_pkg.run_chain(chain)
    assert result.success is False
    assert result.steps_completed == 0
    assert "status 7" in result.error
    assert result.exit_code == 5


def test_api_invalid_chain_raises_chain_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(aicp_pkg.ChainError) as exc:
        aicp_pkg.load_chain("name: x\nsteps:\n  - type: command\n    timeout: -3\n    params: {run: echo}\n")
    assert exc.value.message == "<chain>:4:5: steps[0].timeout: must be a positive number, got -3"
    assert exc.value.exit_code == 2


def test_json_mode_failure_is_still_one_envelope_with_the_error(aicp):
    run = aicp("--json", "validate", "--config", "missing.yaml")
    assert run.returncode == 3
    env = run.result
    assert env["command"] == "validate" and env["data"] is None
    assert env["error"] == {"message": "chain file not found: missing.yaml", "exit_code": 3}
    assert run.stderr == "error: chain file not found: missing.yaml\n"
