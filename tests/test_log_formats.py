"""``--log-format ecs|otel``: each line checked against the rules its publisher states.

ECS: the ecs-logging specification (github.com/elastic/ecs-logging, spec/spec.json) and the
ECS field reference (elastic.co/guide/en/ecs/8.11, field types and allowed values) for the
fields we write. OTel: the logs data model (opentelemetry-specification,
specification/logs/data-model.md), and each record must convert into the published
protobuf message (opentelemetry-proto, ``opentelemetry.proto.logs.v1.LogRecord``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest
from _aicp import Run
from _shipchain import CHAIN, MODULE

# ---------------------------------------------------------------------------------------- ECS

# ecs-logging spec/spec.json: required fields, their order ("index") and nesting rules
ECS_REQUIRED_ORDER = ["@timestamp", "log.level", "message"]
ECS_REQUIRED = {"@timestamp", "log.level", "message", "ecs.version"}
# The ECS 8.11 field reference, for every ECS field we write: its type (keyword and
# match_only_text / wildcard are strings, long an integer) and, where ECS lists them, the
# allowed values (event.kind, event.outcome).
ECS_FIELDS: dict[str, Any] = {
    "event.action": str, "event.dataset": str, "event.module": str, "event.reason": str,
    "event.kind": {"alert", "asset", "enrichment", "event", "metric", "state", "pipeline_error", "signal"},
    "event.outcome": {"failure", "success", "unknown"},
    "event.duration": int,
    "log.logger": str,
    "service.name": str, "service.version": str,
    "trace.id": str, "span.id": str,
    "process.pid": int, "process.exit_code": int,
    "error.message": str, "error.type": str, "error.stack_trace": str,
}
# top-level ECS field sets (fields we use); "aicp" is our custom namespace and must not be one
ECS_FIELD_SETS = {"event", "log", "service", "trace", "span", "process", "error", "ecs"}
ECS_ALL_FIELD_SETS = ECS_FIELD_SETS | {"agent", "client", "cloud", "container", "destination", "dns", "email",
                                       "file", "group", "host", "http", "network", "observer", "orchestrator",
                                       "organization", "package", "registry", "related", "rule", "server",
                                       "source", "threat", "tls", "transaction", "url", "user", "user_agent",
                                       "vulnerability", "labels", "tags", "message", "@timestamp", "data_stream",
                                       "device", "faas", "gen_ai"}


def _flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name != "aicp":
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def check_ecs(doc: dict[str, Any]) -> None:
    assert list(doc)[:3] == ECS_REQUIRED_ORDER, list(doc)
    assert ECS_REQUIRED <= set(doc), doc
    dt.datetime.strptime(doc["@timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")  # datetime
    assert isinstance(doc["log.level"], str) and isinstance(doc["message"], str) and doc["message"]
    assert isinstance(doc["ecs.version"], str) and re.match(r"^\d+\.\d+\.\d+$", doc["ecs.version"])
    assert "level" not in doc.get("log", {}), "log.level: nesting_allowed is false"
    dotted = [k for k in doc if "." in k]
    assert set(dotted) <= {"log.level", "ecs.version"}, dotted  # everything else nested
    for key in doc:
        assert key in ECS_FIELD_SETS | {"@timestamp", "log.level", "message", "ecs.version", "aicp"}, key
    assert "aicp" not in ECS_ALL_FIELD_SETS
    for name, value in _flatten({k: v for k, v in doc.items() if "." not in k and k != "@timestamp"}).items():
        if name in ("message", "aicp"):
            continue
        assert name in ECS_FIELDS, f"{name} is not an ECS field we know the type of"
        rule = ECS_FIELDS[name]
        if isinstance(rule, set):
            assert value in rule, (name, value)
        else:
            assert isinstance(value, rule) and not isinstance(value, bool), (name, value)
    # the ecs-logging library itself: its formatter leaves a complete document as it is, and
    # its serialiser puts the same three fields first
    import ecs_logging
    from ecs_logging._utils import json_dumps, normalize_dict

    again = ecs_logging.StructlogFormatter().format_to_ecs(json.loads(json.dumps(doc)))
    assert again == doc
    assert list(json.loads(json_dumps(normalize_dict(json.loads(json.dumps(doc))))))[:3] == ECS_REQUIRED_ORDER


# --------------------------------------------------------------------------------------- OTel

# data-model.md, "Log and Event Record Definition": the named top-level fields
OTEL_FIELDS = {"Timestamp", "ObservedTimestamp", "TraceId", "SpanId", "TraceFlags", "SeverityText",
               "SeverityNumber", "Body", "Resource", "InstrumentationScope", "Attributes", "EventName"}
# "Field: SeverityNumber": the ranges; our levels map to their names
SEVERITY_RANGES = {"debug": range(5, 9), "info": range(9, 13), "warning": range(13, 17),
                   "error": range(17, 21), "critical": range(21, 25)}


def _any_value(value: Any) -> Any:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[_any_value(v) for v in value]))
    if isinstance(value, dict):
        return AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=_any_value(v))
                                                          for k, v in value.items()]))
    assert value is None, f"not an OTel AnyValue: {value!r}"
    return AnyValue()  # the empty value


def check_otel(record: dict[str, Any]) -> Any:
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

    assert set(record) <= OTEL_FIELDS, set(record) - OTEL_FIELDS
    for field in ("Timestamp", "ObservedTimestamp"):  # uint64 nanoseconds since the Unix epoch
        assert isinstance(record[field], int) and 0 < record[field] < 2 ** 64
    assert abs(record["Timestamp"] / 1e9 - dt.datetime.now(dt.timezone.utc).timestamp()) < 3600
    assert re.fullmatch(r"[0-9a-f]{32}", record["TraceId"]) and record["TraceId"].strip("0")  # W3C trace-id
    assert re.fullmatch(r"[0-9a-f]{16}", record["SpanId"]) and record["SpanId"].strip("0")  # W3C parent-id
    assert isinstance(record["TraceFlags"], int) and 0 <= record["TraceFlags"] <= 255  # a byte
    assert record["SeverityNumber"] in SEVERITY_RANGES[record["SeverityText"]]
    assert isinstance(record["Attributes"], dict) and all(isinstance(k, str) for k in record["Attributes"])
    assert record["Resource"]["service.name"] == "aicp"  # resource semantic conventions
    assert isinstance(record["EventName"], str) and record["EventName"]
    # the published protobuf message takes every field with its type
    return LogRecord(
        time_unix_nano=record["Timestamp"], observed_time_unix_nano=record["ObservedTimestamp"],
        severity_number=record["SeverityNumber"], severity_text=record["SeverityText"],
        body=_any_value(record["Body"]), event_name=record["EventName"], flags=record["TraceFlags"],
        trace_id=bytes.fromhex(record["TraceId"]), span_id=bytes.fromhex(record["SpanId"]),
        attributes=[KeyValue(key=k, value=_any_value(v)) for k, v in record["Attributes"].items()],
    )


# -------------------------------------------------------------------------------------- tests


@pytest.fixture
def folder(tmp_path, write_module, write_chain) -> Path:
    write_module("shipmod", MODULE)
    write_chain(CHAIN)
    return tmp_path


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _record(folder: Path, run_id: str) -> list[dict[str, Any]]:
    return _lines((folder / "output" / "runs" / run_id / "events.jsonl").read_text())


def _shaped_run(aicp: Any, folder: Path, shape: str, *flags: str) -> Run:
    run = aicp("run-chain", "--config", "chain.yaml", "--stream", "--log-file", "shaped.jsonl", *flags)
    assert run.returncode == 5, run.stderr
    return run


@pytest.mark.parametrize("shape", ["ecs", "otel"])
def test_log_format_shapes_stderr_and_the_log_file_but_not_stdout_or_the_record(aicp, folder, shape,
                                                                                 validate_events):
    run = _shaped_run(aicp, folder, shape, "--log-format", shape)
    shaped = _lines(run.stderr)
    result = json.loads(run.stdout)  # exactly one v1 result line
    validate_events([result])
    assert result["event"] == "pipeline_complete"
    record = _record(folder, result["run_id"])
    validate_events(record)
    assert len(shaped) == len(record) - 1  # every lifecycle event, reshaped (the record also has the result)
    logged = _lines((folder / "shaped.jsonl").read_text())
    assert logged[:-1] == shaped  # the log file: the same lines, then the result in the same shape
    for v1, line in zip(record, logged):
        if shape == "ecs":
            check_ecs(line)
            assert line["event"]["action"] == v1["event"]
            assert line["@timestamp"] == v1["time"] and line["log.level"] == v1["level"]
            assert line["aicp"]["run_id"] == v1["run_id"]
        else:
            check_otel(line)
            assert line["EventName"] == f"aicp.{v1['event']}"
            assert line["Timestamp"] // 1000 == int(v1["timestamp"] * 1_000_000)
            assert line["SeverityText"] == v1["level"]
            assert line["Attributes"]["aicp.run_id"] == v1["run_id"]
    assert len({_trace_id(line, shape) for line in logged}) == 1  # one trace per run


def _trace_id(line: dict[str, Any], shape: str) -> str:
    return line["trace"]["id"] if shape == "ecs" else line["TraceId"]


def test_ecs_maps_failures_levels_and_steps(aicp, folder):
    run = _shaped_run(aicp, folder, "ecs", "--log-format", "ecs")
    docs = _lines(run.stderr)
    (error,) = [d for d in docs if d["event"]["action"] == "step_error"]
    assert error["event"]["outcome"] == "failure" and error["log.level"] == "error"
    assert error["error"]["type"] == "ValueError" and error["error"]["message"] == "ValueError: it went wrong"
    assert "Traceback" in error["error"]["stack_trace"]
    assert error["process"]["exit_code"] == 1 and isinstance(error["process"]["pid"], int)
    assert error["aicp"]["step"] == 3
    done = [d for d in docs if d["event"]["action"] == "step_complete"]
    assert all(d["event"]["outcome"] == "success" and d["event"]["duration"] > 0 for d in done)
    levels = {d["message"]: d["log.level"] for d in docs if d["event"]["action"] == "step_log"}
    assert levels["a warning line"] == "warning" and levels["a critical line"] == "critical"
    end = docs[-1]
    assert end["event"]["action"] == "run_end" and end["event"]["outcome"] == "failure"
    # a step attempt's lines share its span; the retried step's two attempts have two spans
    spans = {(d["aicp"].get("step"), d["aicp"].get("attempt")): d["span"]["id"]
             for d in docs if d["event"]["action"] == "step_start"}
    assert spans[(1, 1)] != spans[(1, 2)]
    logs = [d for d in docs if d["event"]["action"] == "step_log" and d["aicp"]["step"] == 0]
    assert {d["span"]["id"] for d in logs} == {spans[(0, 1)]}


def test_otel_severity_and_exception_attributes(aicp, folder):
    run = _shaped_run(aicp, folder, "otel", "--log-format", "otel")
    records = _lines(run.stderr)
    by_body = {r["Body"]: r for r in records}
    assert by_body["a debug line"]["SeverityNumber"] == 5
    assert by_body["an info line"]["SeverityNumber"] == 9
    assert by_body["a warning line"]["SeverityNumber"] == 13
    assert by_body["an error line"]["SeverityNumber"] == 17
    assert by_body["a critical line"]["SeverityNumber"] == 21
    (error,) = [r for r in records if r["EventName"] == "aicp.step_error"]
    attrs = error["Attributes"]
    assert attrs["exception.type"] == "ValueError" and "Traceback" in attrs["exception.stacktrace"]
    assert error["SeverityNumber"] >= 17  # "Error Semantics"
    assert all(v is not None for r in records for v in r["Attributes"].values())


def test_aicp_log_format_from_the_environment_and_bad_values(aicp, folder):
    from _aicp import child_env

    run = aicp("run-chain", "--config", "chain.yaml", "--stream", env=child_env(AICP_LOG_FORMAT="ecs"))
    assert run.returncode == 5
    assert all("@timestamp" in line for line in _lines(run.stderr))
    bad = aicp("run-chain", "--config", "chain.yaml", "--stream", env=child_env(AICP_LOG_FORMAT="xml"))
    assert bad.returncode == 2
    # --stream: stderr is JSON lines only, the refusal an error event (issue 11)
    assert json.loads(bad.stderr.splitlines()[-1])["message"] == "AICP_LOG_FORMAT must be one of json, ecs, otel, got 'xml'"
    assert json.loads(bad.stdout)["exit_code"] == 2
    flag = aicp("run-chain", "--config", "chain.yaml", "--log-format", "xml")
    assert flag.returncode == 2 and flag.stderr.startswith("error: ") and "Traceback" not in flag.stderr


@pytest.mark.parametrize("shape", ["ecs", "otel"])
def test_a_run_that_never_started_is_one_shaped_line_and_one_v1_result(aicp, tmp_path, shape, validate_events):
    (tmp_path / "chain.yaml").write_text("name: x\nsteps: []\n")
    run = aicp("run-chain", "--config", "chain.yaml", "--stream", "--log-format", shape, "--log-file", "shaped.jsonl")
    assert run.returncode == 2
    result = json.loads(run.stdout)
    validate_events([result])
    assert result["exit_code"] == 2 and result["success"] is False
    (line,) = _lines((tmp_path / "shaped.jsonl").read_text())
    if shape == "ecs":
        check_ecs(line)
        assert line["event"]["action"] == "pipeline_complete" and line["event"]["outcome"] == "failure"
        assert line["log.level"] == "error" and line["error"]["message"] == result["error"]
    else:
        check_otel(line)
        assert line["EventName"] == "aicp.pipeline_complete" and line["SeverityNumber"] == 17
        assert line["Attributes"]["exception.message"] == result["error"]


def test_the_python_api_takes_a_log_format(tmp_path, write_module, write_chain, monkeypatch):
    import aicp

    monkeypatch.chdir(tmp_path)  # the chain's output_dir is relative to the current directory
    write_module("shipmod", MODULE)
    chain = write_chain(CHAIN)
    result = aicp.run_chain(chain, log_file=str(tmp_path / "api.jsonl"), log_format="otel")
    assert result.exit_code == 5
    records = _lines((tmp_path / "api.jsonl").read_text())
    for record in records:
        check_otel(record)
    assert records[-1]["EventName"] == "aicp.pipeline_complete" and records[-2]["EventName"] == "aicp.run_end"
