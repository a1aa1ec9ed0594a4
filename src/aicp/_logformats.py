"""Other ecosystems' shapes of the same events: Elastic Common Schema and OpenTelemetry log records.

``--log-format ecs|otel`` (or ``AICP_LOG_FORMAT``) reshapes what goes to stderr
and to ``--log-file``; the stdout result and the run record stay the v1 stream.
Each shape is a structlog processor that takes the finished v1 event dict
(envelope added, secrets masked) and returns a new dict for the JSON renderer,
so both shapes always say exactly what the v1 event says.

* ``ecs`` follows the ecs-logging libraries' conventions (elastic/ecs-logging
  spec/spec.json): ``@timestamp``, ``log.level`` and ``message`` first, then
  ``ecs.version``; everything else nested. The event name is ``event.action``,
  failures are ``event.outcome: failure`` with ``error.*``; the fields ECS does
  not define live under the custom ``aicp.*`` namespace (ECS reserves no such name).
* ``otel`` writes one log record per line in the OpenTelemetry logs data model
  (specification/logs/data-model.md): ``Timestamp`` (ns), ``SeverityText``,
  ``SeverityNumber``, ``Body``, ``Attributes``, ``Resource``, ``TraceId``/``SpanId``;
  flat, not an OTLP envelope. Errors use the exception semantic conventions.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from aicp._messages import message_of
from aicp._traceids import TraceIds
from aicp._version import __version__

FORMATS = ("json", "ecs", "otel")
ECS_VERSION = "8.11.0"
SERVICE = "aicp"

# v1 fields that the shapes map to fields of their own (everything else is carried as is)
_MAPPED = frozenset({"event", "timestamp", "time", "level", "message", "source", "error", "traceback"})
_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning)): ")
_OUTCOMES = {"step_complete": "success", "step_error": "failure"}


def _message(d: dict[str, Any]) -> str:
    message = d.get("message")
    return message if isinstance(message, str) else message_of(d["event"], d)


def _outcome(d: dict[str, Any]) -> str | None:
    if d["event"] in ("run_end", "pipeline_complete"):
        return "success" if d.get("success") else "failure"
    return _OUTCOMES.get(d["event"])


def _error_type(d: dict[str, Any]) -> str | None:
    """The exception class of an ``exception`` failure (``ValueError: ...``), else the failure's reason."""
    match = _EXCEPTION.match(str(d.get("error") or ""))
    return match.group(1) if match else (d.get("reason") if isinstance(d.get("reason"), str) else None)


def _duration_ns(d: dict[str, Any]) -> int | None:
    seconds = d.get("duration_seconds", d.get("total_time"))
    return int(round(seconds * 1e9)) if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) else None


def _rest(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in _MAPPED}


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


class EcsFormatter:
    """A structlog processor: the v1 event dict as an ECS document."""

    def __init__(self, ids: TraceIds) -> None:
        self.ids = ids

    def __call__(self, _logger: Any, _method: str, d: dict[str, Any]) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "@timestamp": d["time"], "log.level": d["level"], "message": _message(d),
            "ecs.version": ECS_VERSION,
            "event": _drop_none({"action": d["event"], "kind": "event", "dataset": f"{SERVICE}.log",
                                 "module": SERVICE, "outcome": _outcome(d), "duration": _duration_ns(d),
                                 "reason": d.get("reason") if isinstance(d.get("reason"), str) else None}),
            "log": {"logger": d["source"]},
            "service": {"name": SERVICE, "version": __version__},
            "trace": {"id": self.ids.trace_id},
            "span": {"id": self.ids.span_of(d)},
        }
        process = _drop_none({"pid": d.get("pid"), "exit_code": d.get("exit_code")})
        if process:
            doc["process"] = process
        if d.get("error"):
            doc["error"] = _drop_none({"message": str(d["error"]), "type": _error_type(d),
                                       "stack_trace": d.get("traceback")})
        doc[SERVICE] = _rest(d)
        return doc


# OTel logs data model, "Mapping of SeverityNumber": the smallest value of each range
# (TRACE 1-4, DEBUG 5-8, INFO 9-12, WARN 13-16, ERROR 17-20, FATAL 21-24).
SEVERITY_NUMBERS = {"debug": 5, "info": 9, "warning": 13, "error": 17, "critical": 21}


class OtelFormatter:
    """A structlog processor: the v1 event dict as one OpenTelemetry log record."""

    def __init__(self, ids: TraceIds) -> None:
        self.ids = ids
        self.resource = {"service.name": SERVICE, "service.version": __version__}
        self.scope = {"Name": SERVICE, "Version": __version__}

    def __call__(self, _logger: Any, _method: str, d: dict[str, Any]) -> dict[str, Any]:
        stamp = int(d["timestamp"] * 1_000_000) * 1000  # ns, as precise as the float is (µs)
        attributes = {f"{SERVICE}.{k}": v for k, v in _rest(d).items() if v is not None}
        attributes[f"{SERVICE}.source"] = d["source"]
        if d.get("error"):
            attributes.update(_drop_none({"exception.type": _error_type(d), "exception.message": str(d["error"]),
                                          "exception.stacktrace": d.get("traceback")}))
        return {
            "Timestamp": stamp, "ObservedTimestamp": stamp,
            "TraceId": self.ids.trace_id, "SpanId": self.ids.span_of(d), "TraceFlags": 1,
            "SeverityText": d["level"], "SeverityNumber": SEVERITY_NUMBERS.get(d["level"], 9),
            "Body": _message(d), "EventName": f"{SERVICE}.{d['event']}",
            "Attributes": attributes, "Resource": self.resource, "InstrumentationScope": self.scope,
        }


def formatter(name: str, run_id: str) -> Callable[[Any, str, dict[str, Any]], dict[str, Any]] | None:
    """The processor of a ``--log-format`` (None for ``json``, the v1 stream itself)."""
    if name == "json":
        return None
    ids = TraceIds(run_id)
    return EcsFormatter(ids) if name == "ecs" else OtelFormatter(ids)
