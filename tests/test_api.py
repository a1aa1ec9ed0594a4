"""The Python API: aicp.load_chain, aicp.run_chain, with an observer and a Cancel."""

from __future__ import annotations

import threading
import textwrap
from pathlib import Path

import aicp


def _chain(tmp_path: Path) -> Path:
    (tmp_path / "apisteps.py").write_text(textwrap.dedent("""
        import time

        def slow(ctx):
            print("ready", flush=True)
            time.sleep(30)
            return "too late"
    """))
    path = tmp_path / "chain.yaml"
    path.write_text(textwrap.dedent(f"""
        name: api
        prompt: hello
        output_dir: {tmp_path / "out"}
        kill_grace: 1
        steps:
          - {{type: command, params: {{argv: [echo, "{{input}} world"]}}}}
          - {{type: python, params: {{function: "apisteps:slow"}}}}
    """))
    return path


def test_cancel_stops_a_running_chain_and_the_observer_sees_every_event(tmp_path):
    chain = aicp.load_chain(str(_chain(tmp_path)))
    cancel = aicp.Cancel()
    seen: list[dict] = []

    def observer(event: dict) -> None:
        seen.append(event)
        if event["event"] == "step_log" and event["line"] == "ready":
            threading.Thread(target=cancel.set, args=("cancelled by the host application",)).start()

    result = aicp.run_chain(chain, observer=observer, cancel=cancel)
    assert not result.success and result.steps_completed == 1
    assert result.exit_code == aicp.ExitCode.INTERRUPTED
    assert "cancelled by the host application" in result.error
    assert result.outputs["step_1_command"]["text"] == "hello world"
    errors = [e for e in seen if e["event"] == "step_error"]
    assert [(e["step"], e["reason"]) for e in errors] == [(1, "cancelled")]
    assert seen[-1]["event"] == "pipeline_complete" and seen[-1]["success"] is False
    assert len({e["run_id"] for e in seen}) == 1 and seen[0]["run_id"] == result.run_id


def test_run_chain_takes_a_path_and_an_input(tmp_path):
    path = tmp_path / "echo.yaml"
    path.write_text(f"name: echo\noutput_dir: {tmp_path / 'out'}\n"
                    "steps:\n  - {type: command, params: {argv: [echo, '{input} world']}}\n")
    result = aicp.run_chain(str(path), input="goodbye")
    assert result.success and result.total_steps == 1
    assert result.outputs["step_1_command"]["text"] == "goodbye world"


def test_a_chain_that_cannot_start_raises_and_ends_the_stream_and_log_as_the_cli_does(tmp_path, capsys):
    # The API and the CLI build a run in the same place: a failure before the first step is
    # raised (as the error class with the CLI's exit code) and still ends the stream's stdout
    # and the log file with one failed pipeline_complete.
    import json

    import pytest

    path = tmp_path / "echo.yaml"
    path.write_text(f"name: echo\noutput_dir: {tmp_path / 'out'}\n"
                    "steps:\n  - {type: command, params: {argv: [echo, '{input}']}}\n")
    log = tmp_path / "events.jsonl"
    cases = [("no prompt", {}, aicp.UsageError), ("missing file", {"input": tmp_path / "nope.txt"},
                                                  aicp.MissingInputError)]
    for label, kwargs, error in cases:
        log.unlink(missing_ok=True)
        with pytest.raises(error) as raised:
            aicp.run_chain(str(path), stream=True, log_file=str(log), **kwargs)
        out = capsys.readouterr().out.strip().splitlines()
        assert len(out) == 1, label
        line = json.loads(out[0])
        assert line["event"] == "pipeline_complete" and line["success"] is False, label
        assert line["exit_code"] == raised.value.exit_code and line["error"] == raised.value.message, label
        logged = [json.loads(x) for x in log.read_text().splitlines()]
        assert [e["event"] for e in logged] == ["pipeline_complete"], label
    assert not (tmp_path / "out" / "runs").exists()  # nothing was recorded for runs that never started
