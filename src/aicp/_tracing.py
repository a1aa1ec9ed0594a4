"""A run as one OpenTelemetry trace, exported over OTLP/HTTP (the optional extra ``aicp[otel]``).

Enabled by the standard variables: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_ENDPOINT`` (plus ``OTEL_EXPORTER_OTLP_HEADERS``,
``..._TIMEOUT``, ``..._COMPRESSION``, ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, which the SDK reads itself); ``OTEL_SDK_DISABLED=true``
or ``OTEL_TRACES_EXPORTER=none`` turn it off. Without them the SDK is never
imported: ``aicp --version`` and ordinary runs pay nothing.

The trace is built from the events, like every other view of a run: a span for
the run, one per step attempt and per parallel-group member (under its group's
span), with retries as span events on the failed attempt, errors as the span's
status and an ``exception`` event, costs and resources as attributes. Span and
trace ids are those of :mod:`aicp._traceids`, so ``--log-format ecs|otel``
lines point at the spans of this trace.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, Callable

from aicp._traceids import SpanKey, TraceIds
from aicp._version import __version__

if TYPE_CHECKING:
    from aicp._chain.model import Chain

_LOG_EVENTS_PER_SPAN = 100
_FLUSH_SECONDS = 10.0


def requested(environ: Any = None) -> bool:
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def tracer_for(run_id: str) -> tuple["RunTracer | None", str | None]:
    """The observer that exports this run's trace, or why there is none (a warning), or neither."""
    if not requested():
        return None, None
    try:
        return RunTracer(run_id), None
    except ImportError:
        return None, ("OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed: "
                      "no trace is exported (pip install 'aicp[otel]')")


Observer = Callable[[dict[str, Any]], None]


def with_tracing(chain: Chain, run_id: str,
                 observer: Observer | None) -> tuple[Chain, Observer | None, Callable[[], None]]:
    """For a run about to start: the chain (with a warning added if tracing was asked for but
    cannot be done), the observer to give its event log (``observer`` plus the tracer), and
    what to call when the run is over, however it ended."""
    tracer, warning = tracer_for(run_id)
    if warning is not None:
        from aicp._record import replace

        chain = replace(chain, warnings=(*chain.warnings, warning))
    if tracer is None:
        return chain, observer, lambda: None
    if observer is None:
        return chain, tracer, tracer.close

    def both(event: dict[str, Any]) -> None:
        observer(event)
        tracer(event)

    return chain, both, tracer.close


def _ns(event: dict[str, Any]) -> int | None:
    stamp = event.get("timestamp")
    return int(stamp * 1_000_000) * 1000 if isinstance(stamp, (int, float)) else None


def _attributes(event: dict[str, Any], *names: str) -> dict[str, Any]:
    return {f"aicp.{n}": event[n] for n in names
            if isinstance(event.get(n), (str, bool, int, float)) and event.get(n) is not None}


class RunTracer:
    """An observer of one run's events that turns them into spans (see the module's docstring)."""

    def __init__(self, run_id: str) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.id_generator import IdGenerator
        from opentelemetry.trace import Status, StatusCode, set_span_in_context

        class _Ids(IdGenerator):  # the spans get the ids the log lines already carry
            def __init__(self, ids: TraceIds) -> None:
                self.trace_id, self.next_span = int(ids.trace_id, 16), 0

            def generate_trace_id(self) -> int:
                return self.trace_id

            def generate_span_id(self) -> int:
                return self.next_span

        self._Status, self._StatusCode, self._in_context = Status, StatusCode, set_span_in_context
        self.ids = TraceIds(run_id)
        self._generator = _Ids(self.ids)
        resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or "aicp",
                                    "service.version": __version__})
        self.provider = TracerProvider(resource=resource, id_generator=self._generator)
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self.tracer = self.provider.get_tracer("aicp", __version__)
        self.run: Any = None
        self.spans: dict[SpanKey, Any] = {}
        self.log_events: dict[SpanKey, int] = {}
        self.lock = threading.Lock()
        self.closed = False

    def __call__(self, event: dict[str, Any]) -> None:
        with self.lock:
            if self.closed:
                return
            handler = getattr(self, f"_on_{event.get('event')}", None)
            if handler is not None:
                handler(event, self.ids.key_of(event))

    # ---------------------------------------------------------------- spans

    def _start(self, name: str, span_id: str, parent: Any, event: dict[str, Any], attributes: dict[str, Any]) -> Any:
        self._generator.next_span = int(span_id, 16)
        context = self._in_context(parent) if parent is not None else None
        return self.tracer.start_span(name, context=context, start_time=_ns(event), attributes=attributes)

    def _parent(self, key: SpanKey) -> Any:
        step, member, _ = key
        return self.spans.get((step, None, 1)) if member is not None else self.run

    def _on_pipeline_start(self, e: dict[str, Any], _key: Any) -> None:
        self.run = self._start(f"aicp run {e.get('name')}", self.ids.run_span, None, e,
                               {"aicp.run_id": self.ids.run_id,
                                **_attributes(e, "name", "config", "total_steps", "estimated_cost")})

    def _on_step_start(self, e: dict[str, Any], key: SpanKey | None) -> None:
        if key is None or self.run is None:
            return
        label = f"{key[0] + 1}" if key[1] is None else f"{key[0] + 1}.{key[1] + 1}"
        name = f"step {label} {e.get('type')}" + (f" attempt {key[2]}" if key[2] > 1 else "")
        attributes = _attributes(e, "step", "member", "type", "model", "name", "attempt", "max_attempts",
                                 "members", "max_workers", "merge_strategy")
        if isinstance(e.get("pid"), int):
            attributes["process.pid"] = e["pid"]
        self.spans[key] = self._start(name, self.ids.span(key), self._parent(key), e, attributes)

    def _on_step_log(self, e: dict[str, Any], key: SpanKey | None) -> None:
        span = self.spans.get(key) if key is not None else None
        if span is None or e.get("level") not in ("warning", "error", "critical") or key is None:
            return
        count = self.log_events.get(key, 0)
        if count < _LOG_EVENTS_PER_SPAN:
            self.log_events[key] = count + 1
            span.add_event("log", {"log.severity": str(e.get("level")), "log.message": str(e.get("line", ""))},
                           timestamp=_ns(e))

    def _on_step_retry(self, e: dict[str, Any], key: SpanKey | None) -> None:
        span = self.spans.pop(key, None) if key is not None else None
        if span is None:
            return
        span.add_event("retry", _attributes(e, "attempt", "delay_seconds", "reason", "error"), timestamp=_ns(e))
        span.set_status(self._Status(self._StatusCode.ERROR, str(e.get("error") or e.get("reason"))))
        span.end(end_time=_ns(e))

    def _on_step_complete(self, e: dict[str, Any], key: SpanKey | None) -> None:
        span = self.spans.pop(key, None) if key is not None else None
        if span is None:
            return
        span.set_attributes(_attributes(e, "cost", "duration_seconds", "peak_rss_bytes", "cpu_seconds",
                                        "members_completed"))
        span.set_status(self._Status(self._StatusCode.OK))
        span.end(end_time=_ns(e))

    def _on_step_error(self, e: dict[str, Any], key: SpanKey | None) -> None:
        span = self.spans.pop(key, None) if key is not None else None
        if span is None:
            return
        span.set_attributes(_attributes(e, "cost", "reason", "exit_code", "signal", "duration_seconds",
                                        "peak_rss_bytes", "cpu_seconds"))
        error = str(e.get("error") or e.get("reason") or "failed")
        exception = {"exception.message": error, "exception.type": error.split(":", 1)[0]
                     if e.get("reason") == "exception" else str(e.get("reason"))}
        if isinstance(e.get("traceback"), str):
            exception["exception.stacktrace"] = e["traceback"]
        span.add_event("exception", exception, timestamp=_ns(e))
        span.set_status(self._Status(self._StatusCode.ERROR, error))
        span.end(end_time=_ns(e))

    def _on_step_skipped(self, e: dict[str, Any], key: SpanKey | None) -> None:
        if key is None or self.run is None or key in self.spans:
            return
        span = self._start(f"step {key[0] + 1} {e.get('type')} ({e.get('reason')})", self.ids.span(key),
                           self._parent(key), e, {"aicp.skipped": str(e.get("reason")),
                                                   **_attributes(e, "step", "member", "type", "name")})
        span.end(end_time=_ns(e))

    def _on_run_end(self, e: dict[str, Any], _key: Any) -> None:
        for span in list(self.spans.values()):  # nothing should be open; never leave a span unended
            span.end(end_time=_ns(e))
        self.spans.clear()
        if self.run is not None:
            self.run.set_attributes(_attributes(e, "success", "exit_code", "total_cost", "steps_completed",
                                                "total_steps", "total_time"))
            ok = bool(e.get("success"))
            self.run.set_status(self._Status(self._StatusCode.OK) if ok else
                                self._Status(self._StatusCode.ERROR, str(e.get("error"))))
            self.run.end(end_time=_ns(e))
        self.close()

    def close(self) -> None:
        """Export what is left and stop (at most ``_FLUSH_SECONDS``; an unreachable collector
        costs the run that long at its very end, never more)."""
        if self.closed:
            return
        self.closed = True
        self.provider.force_flush(int(_FLUSH_SECONDS * 1000))
        self.provider.shutdown()
