"""The supervisor <-> worker wire (aicp._worker.protocol) and the closed set of failure reasons.

Both sides read and write through the one module, so a message written by
the worker's Channel must read back on the supervisor's side as the same
message, and every reason a step can fail with must be one the event
schema allows.
"""

from __future__ import annotations

import ast
import json
import os
from importlib.resources import files
from pathlib import Path

import pytest

from aicp import StepFailed
from aicp._worker import protocol
from aicp._worker.protocol import FAILURE_REASONS, Channel, read_message


def _schema() -> dict:
    return json.loads(files("aicp").joinpath("events.schema.json").read_text())


def test_failure_reasons_are_the_schemas_enum_for_every_event_that_carries_one() -> None:
    defs = _schema()["$defs"]
    carrying = {name: d["properties"]["reason"] for name, d in defs.items()
                if name.startswith("step_") and "enum" in d.get("properties", {}).get("reason", {})}
    assert set(carrying) == {"step_error", "step_retry"}  # (step_skipped's reason is free text)
    for name, reason in carrying.items():
        assert tuple(reason["enum"]) == FAILURE_REASONS, name


def test_the_type_checkers_literal_is_the_same_closed_set() -> None:
    # FailureReason exists only for the type checker (the worker does not import typing);
    # read it from the source so the Literal and the runtime tuple cannot drift apart.
    tree = ast.parse(Path(protocol.__file__).read_text())
    literal = next(node.value for node in ast.walk(tree)
                   if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "FailureReason")
    assert isinstance(literal, ast.Subscript) and getattr(literal.value, "id", "") == "Literal"
    assert tuple(ast.literal_eval(literal.slice)) == FAILURE_REASONS


@pytest.mark.parametrize("reason", FAILURE_REASONS)
def test_step_failed_takes_every_reason_of_the_set(reason: str) -> None:
    assert StepFailed("x", reason=reason).reason == reason  # type: ignore[arg-type]


@pytest.mark.parametrize("reason", ["provider", "Exception", "", "timed_out"])
def test_step_failed_refuses_a_reason_outside_the_set(reason: str) -> None:
    with pytest.raises(ValueError, match="not one of exception, exit"):
        StepFailed("x", reason=reason)  # type: ignore[arg-type]


def _written(send) -> list[str]:
    r, w = os.pipe()
    try:
        send(Channel(w))
        os.close(w)
        data = b""
        while chunk := os.read(r, 65536):
            data += chunk
    finally:
        os.close(r)
    return data.decode().splitlines()


def test_what_the_worker_writes_the_supervisor_reads_back() -> None:
    lines = _written(lambda ch: (ch.progress(0.5, "half"), ch.log("info", {"event": "hi", "n": 1}),
                                 ch.error("exit", "it stopped", exit_code=3), ch.result('{"output": "done"}')))
    messages = [read_message(line) for line in lines]
    assert messages == [
        {"k": "progress", "fraction": 0.5, "message": "half"},
        {"k": "log", "level": "info", "fields": {"event": "hi", "n": 1}},
        {"k": "error", "reason": "exit", "error": "it stopped", "exit_code": 3},
        {"k": "result", "value": {"output": "done"}},
    ]


@pytest.mark.parametrize("line", ['{"k": "surprise"}', '[1, 2]', '"result"', '{"value": 1}', "{not json"])
def test_a_line_that_is_not_a_known_message_is_refused(line: str) -> None:
    with pytest.raises(ValueError):
        read_message(line)


def test_the_spec_and_the_template_framing_round_trip() -> None:
    spec = {"target": "m:f", "input": "in", "params": {"a": [1, 2]}, "output_dir": "/o", "step": 2,
            "member": None, "name": None, "type": "python", "model": None, "latest": {}, "chain_dir": "/c",
            "path": ["/p"]}
    line = protocol.encode_spec(spec)  # type: ignore[arg-type]
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert protocol.decode_spec(line) == spec
    env = {"A": "1", "AICP_WORKER_TOKEN": "t"}
    assert protocol.read_template_request(protocol.template_request(env)) == env
    assert protocol.read_template_reply(protocol.pid_reply(4242)) == (4242, None)
    assert protocol.read_template_reply(protocol.pid_reply(-22)) == (-22, None)
    assert protocol.read_template_reply(protocol.exit_reply(4242, -9, 1.5, 2048)) == (4242, (-9, 1.5, 2048))
