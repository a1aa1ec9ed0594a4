"""The v1 stream, ready for shippers: RFC 3339 time, message, source, the step's own level,
aicp's version, and ``run_end`` on stderr (additive fields of schema_version "1")."""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex

import pytest
from _aicp import Run
from _shipchain import CHAIN, MODULE

from aicp._version import __version__

RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


@pytest.fixture
def shipped(aicp, write_chain, write_module) -> Run:
    write_module("shipmod", MODULE)
    write_chain(CHAIN)
    run = aicp("run-chain", "--config", "chain.yaml", "--stream", "--input-text", "a b")
    assert run.returncode == 5, run.stderr
    return run


def test_every_event_has_time_source_and_message_and_validates(shipped, validate_events):
    events = shipped.events + [shipped.result]
    validate_events(events)
    for event in events:
        assert RFC3339_MS.match(event["time"]), event
        parsed = dt.datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
        # the same instant as the float timestamp, truncated to the millisecond
        assert 0 <= event["timestamp"] - parsed.timestamp() < 0.001 + 1e-6, event
        assert event["source"] in {"aicp", "step.stdout", "step.stderr", "step.log", "step.progress"}
        if event["event"] != "step_progress":  # its message is the step's own, null when it gave none
            assert isinstance(event["message"], str) and event["message"].strip(), event
            assert "\n" not in event["message"], event


def test_messages_say_what_happened(shipped):
    by_event: dict[str, list[str]] = {}
    for event in shipped.events:
        by_event.setdefault(event["event"], []).append(event["message"])
    assert by_event["pipeline_start"] == ["run 'shipping' started: 4 steps"]
    assert "step 1 'talk' (python) started" in by_event["step_start"]
    assert "step 2 (python) started, attempt 2" in by_event["step_start"]
    assert any(m.startswith("step 2 attempt 1 failed (exception), retrying in") for m in by_event["step_retry"])
    assert any(m.startswith("step 1 'talk' (python) completed in ") for m in by_event["step_complete"])
    assert "step 4 (python) failed (exception): ValueError: it went wrong" in by_event["step_error"]
    assert "plain stdout a b" in by_event["step_log"]


def test_relayed_lines_keep_the_steps_level_and_say_where_they_came_from(shipped):
    logs = {e["line"]: e for e in shipped.of("step_log")}
    expected = {"a debug line": "debug", "an info line": "info", "a warning line": "warning",
                "a warn line": "warning", "an error line": "error", "a critical line": "critical"}
    for line, level in expected.items():
        assert logs[line]["level"] == level, logs[line]
        assert logs[line]["source"] == "step.log"
    assert logs["plain stdout a b"]["source"] == "step.stdout" and logs["plain stdout a b"]["level"] == "info"
    assert logs["plain stderr"]["source"] == "step.stderr" and logs["plain stderr"]["level"] == "info"
    assert {e["source"] for e in shipped.of("step_progress")} == {"step.progress"}
    assert {e["source"] for e in shipped.events if e["event"] not in ("step_log", "step_progress")} == {"aicp"}


def test_pipeline_start_names_the_version_and_step_start_the_attempts(shipped):
    (start,) = shipped.of("pipeline_start")
    assert start["aicp_version"] == __version__
    second = [e for e in shipped.of("step_start") if e["step"] == 1]
    assert [(e["attempt"], e["max_attempts"]) for e in second] == [(1, 2), (2, 2)]


def test_run_end_is_the_last_event_on_stderr_and_stdout_keeps_one_line(shipped, tmp_path):
    events = shipped.events
    assert events[-1]["event"] == "run_end"
    assert [e["event"] for e in events].count("run_end") == 1
    assert "pipeline_complete" not in [e["event"] for e in events]
    end, result = events[-1], shipped.result  # .result asserts exactly one stdout line
    for field in ("success", "exit_code", "total_cost", "error", "steps_completed", "total_steps", "total_time"):
        assert end[field] == result[field], field
    assert end["success"] is False and end["exit_code"] == 5 and end["level"] == "error"
    assert "outputs" not in end
    assert end["message"].startswith("run failed (exit 5): Step 4 failed")
    argv = shlex.split(end["resume_command"])
    assert argv == ["aicp", "run-chain", "--config", "chain.yaml", "--input-text", "a b", "--resume", end["run_id"]]


def test_run_end_of_a_successful_run(aicp, write_chain, tmp_path, validate_events):
    write_chain("""
        name: ok
        prompt: p
        steps:
          - {type: command, params: {argv: [echo, hi]}}
    """)
    run = aicp("run-chain", "--config", "chain.yaml", "--stream", "--log-file", "log.jsonl")
    assert run.returncode == 0
    end = run.events[-1]
    assert end["event"] == "run_end" and end["success"] is True and end["exit_code"] == 0
    assert end["level"] == "info" and "resume_command" not in end
    assert end["message"].startswith("run succeeded: 1/1 steps, $0.000")
    logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [e["event"] for e in logged][-2:] == ["run_end", "pipeline_complete"]
    validate_events(logged)

