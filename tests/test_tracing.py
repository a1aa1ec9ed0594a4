"""A run exported as one OpenTelemetry trace over OTLP/HTTP, received by a local collector stand-in
that decodes the protobuf (opentelemetry-proto) exactly as a collector's OTLP/HTTP receiver does."""

from __future__ import annotations

import gzip
import http.server
import json
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from _aicp import child_env
from _shipchain import CHAIN, MODULE

pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed (pip install -e '.[test]')")

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


class Receiver(http.server.ThreadingHTTPServer):
    """POST /v1/traces: the OTLP/HTTP protobuf request, decoded and kept."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        self.content_types: list[str] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def spans(self) -> list[dict[str, Any]]:
        spans = []
        for request in self.requests:
            for resource in request.resource_spans:
                res = {a.key: _value(a.value) for a in resource.resource.attributes}
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        spans.append({
                            "name": span.name, "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(), "start": span.start_time_unix_nano,
                            "end": span.end_time_unix_nano, "status": span.status.code,
                            "status_message": span.status.message,
                            "attributes": {a.key: _value(a.value) for a in span.attributes},
                            "events": [(e.name, {a.key: _value(a.value) for a in e.attributes}) for e in span.events],
                            "resource": res, "scope": scope.scope.name,
                        })
        return spans


def _value(value: Any) -> Any:
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.server.requests.append(request)
        self.server.paths.append(self.path)
        self.server.content_types.append(self.headers.get("Content-Type", ""))
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def folder(tmp_path, write_module, write_chain) -> Path:
    write_module("shipmod", MODULE)
    write_chain(CHAIN)
    return tmp_path


def test_a_run_is_one_trace_with_a_span_per_attempt_and_member(aicp, folder, receiver):
    env = child_env(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_SERVICE_NAME="render-farm")
    run = aicp("run-chain", "--config", "chain.yaml", "--stream", "--log-format", "ecs", env=env)
    assert run.returncode == 5, run.stderr
    assert set(receiver.paths) == {"/v1/traces"} and set(receiver.content_types) == {"application/x-protobuf"}
    spans = receiver.spans()
    docs = [json.loads(line) for line in run.stderr.splitlines()]
    run_id = docs[0]["aicp"]["run_id"]

    assert len({s["trace_id"] for s in spans}) == 1  # one trace
    assert spans[0]["trace_id"] == docs[0]["trace"]["id"]  # the log lines point into it
    (root,) = [s for s in spans if not s["parent"]]
    assert root["name"] == "aicp run shipping" and root["attributes"]["aicp.run_id"] == run_id
    assert root["resource"]["service.name"] == "render-farm" and root["scope"] == "aicp"
    assert root["attributes"]["aicp.success"] is False and root["attributes"]["aicp.exit_code"] == 5
    assert root["attributes"]["aicp.total_cost"] == 0.0
    assert root["status"] == 2  # STATUS_CODE_ERROR
    by_name = {s["name"]: s for s in spans}
    # a span per step attempt: the retried step has two, the first failed with a retry event
    first, second = by_name["step 2 python"], by_name["step 2 python attempt 2"]
    assert first["parent"] == second["parent"] == root["span_id"]
    assert first["status"] == 2 and [e[0] for e in first["events"]] == ["retry"]
    assert first["events"][0][1]["aicp.reason"] == "exception"
    assert second["status"] == 1 and second["attributes"]["aicp.cost"] == 0.0
    # a group's members under the group's span
    group = by_name["step 3 parallel_group"]
    members = [s for s in spans if s["parent"] == group["span_id"]]
    assert sorted(m["attributes"]["aicp.member"] for m in members) == [0, 1]
    # the failure: status, exception event with the step's traceback
    failed = by_name["step 4 python"]
    assert failed["status"] == 2 and "ValueError: it went wrong" in failed["status_message"]
    ((name, exception),) = [e for e in failed["events"] if e[0] == "exception"]
    assert exception["exception.type"] == "ValueError" and "Traceback" in exception["exception.stacktrace"]
    # the step's own warnings are span events
    talk = by_name["step 1 python"]
    assert ("log", {"log.severity": "warning", "log.message": "a warning line"}) in talk["events"]
    # every span lies within the run, and the ECS lines carry the span ids of their attempts
    assert all(root["start"] <= s["start"] <= s["end"] <= root["end"] for s in spans)
    starts = {(d["aicp"]["step"], d["aicp"].get("member"), d["aicp"].get("attempt")): d["span"]["id"]
              for d in docs if d["event"]["action"] == "step_start"}
    assert starts[(1, None, 2)] == second["span_id"] and starts[(0, None, 1)] == talk["span_id"]
    assert len(spans) == 8  # run, 1, 2 (x2), group, 2 members, 4


def test_without_the_environment_nothing_is_exported_or_imported(aicp, folder, tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import atexit, sys\n"
                     "atexit.register(lambda: print('otel loaded' if 'opentelemetry' in sys.modules else 'no otel',"
                     " file=sys.__stdout__))\n"
                     "from aicp.cli import main\nmain(sys.argv[1:])\n")
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(probe), "run-chain", "--config", "chain.yaml", "--quiet"],
                          cwd=folder, env=child_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 5 and proc.stdout.strip().endswith("no otel")


def test_disabled_by_the_standard_switches(aicp, folder, receiver):
    for switch in ({"OTEL_SDK_DISABLED": "true"}, {"OTEL_TRACES_EXPORTER": "none"}):
        env = child_env(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, **switch)
        assert aicp("run-chain", "--config", "chain.yaml", "--quiet", env=env).returncode == 5
    assert receiver.requests == []


def test_asked_for_but_not_installed_is_a_warning_event(folder, receiver, tmp_path):
    import subprocess
    import sys

    probe = tmp_path / "no_otel.py"
    probe.write_text("import sys\nsys.modules['opentelemetry'] = None  # as if the extra were not installed\n"
                     "from aicp.cli import main\nmain(sys.argv[1:])\n")
    env = child_env(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint)
    proc = subprocess.run([sys.executable, str(probe), "run-chain", "--config", "chain.yaml", "--stream"],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 5
    events = [json.loads(line) for line in proc.stderr.splitlines()]
    assert events[0]["event"] == "pipeline_start"
    (warning,) = [e for e in events if e["event"] == "warning"]
    assert "pip install 'aicp[otel]'" in warning["message"] and warning["level"] == "warning"
    assert receiver.requests == []
