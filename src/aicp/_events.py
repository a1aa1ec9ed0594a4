"""The event stream: every lifecycle transition as one structlog event, rendered as a JSON line.

The pipeline is structlog's: processors, plain callables composed in a list,
called as a structlog bound logger calls them (:meth:`EventLog.render` drives
the list itself: a bound logger's per-call machinery cost more than our
processors). Ours add the envelope (``schema_version``, ``timestamp``,
``elapsed_seconds``, ``level``, ``run_id``), mask secrets, let the human view
observe the event, and render it with orjson straight to bytes. The line is
queued on each of the event's outputs (:mod:`aicp._sink`: a writer thread per
output, so a reader that stalls never blocks the supervisor; lines are written
whole).

Relayed step output is the bulk of a stream (a chatty step prints millions of
lines), so :meth:`EventLog.step_output` renders a batch of ``step_log`` lines with
one pass of the pipeline: the event is rendered with a sentinel as its line,
and each line's JSON string is put where the sentinel's is. The bytes are the
pipeline's, whatever processors it has, as long as it copies the line
verbatim, which is checked (else each line goes through the pipeline); lines
are masked with the redactor's own rule first. Lines relayed together share
the timestamp of the moment they were read.

Lifecycle events go to stderr (with ``--stream``) and to the ``--log-file``,
ending with ``run_end`` (for shippers that only see stderr); the terminal
``pipeline_complete`` goes to stdout and the log file, never to stderr.
``--log-format ecs|otel`` reshapes stderr and the log files (the last processor
renders both shapes; each line goes to its own outputs). Streams are resolved
at write time, so the stream works under pytest's capsys and after
``contextlib.redirect_stderr``. A reader that goes away
(``| head``) silences that one stream; the run goes on.

We never call ``structlog.configure``: a library must not change its host's logging.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import orjson
import structlog
from structlog.processors import add_log_level

from aicp._logformats import formatter
from aicp._messages import message_of
from aicp._redact import Redactor
from aicp._sink import Sink, same_file, stdio_sink
from aicp._version import SCHEMA_VERSION, __version__

Observer = Callable[[dict[str, Any]], None]


class StreamWriter:
    """Writes whole lines to ``sys.<name>``, resolved at every write.

    The interpreter's own stream is written through its process-wide
    :class:`~aicp._sink.Sink` (a writer thread: a stalled reader never blocks
    us); a replaced stream (capsys, ``redirect_stderr``) is written directly.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._stream: Any = None  # the stream the sink below was resolved for
        self._sink: Sink | None = None
        self.broken = False

    def sink(self) -> Sink | None:
        stream = getattr(sys, self.name)
        if stream is not self._stream:
            self._stream, self._sink = stream, stdio_sink(self.name)
        return self._sink

    def write(self, data: bytes, relay: bool = False) -> None:
        sink = self._sink if getattr(sys, self.name) is self._stream else self.sink()
        if sink is not None:
            sink.put(data, relay)
            return
        stream = getattr(sys, self.name)
        if self.broken or stream is None:
            return
        with self._lock:
            try:
                stream.write(data.decode("utf-8"))
                stream.flush()
            except (OSError, ValueError):
                self.broken = True


class FileWriter:
    """Appends lines to a file (for shippers that tail files) through a sink of its own."""

    def __init__(self, path: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._sink = Sink(fd, path, owned=True)

    def sink(self) -> Sink:
        return self._sink

    def write(self, data: bytes, relay: bool = False) -> None:
        self._sink.put(data, relay)

    def close(self) -> None:
        self._sink.close()


class _External:
    """A writer from outside (a fleet's Redis stream): called in the caller's thread, one line per call."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer
        self.name = getattr(writer, "name", type(writer).__name__)
        self.broken = False
        self.on_error: Callable[[Any, OSError], None] | None = None

    def sink(self) -> None:
        return None

    def write(self, data: bytes, relay: bool = False) -> None:
        """One line per call; a writer that fails is given up (and reported), the run goes on."""
        if self.broken:
            return
        try:
            for line in data.splitlines(keepends=True) if relay else (data,):
                self._writer.write(line)
        except OSError as exc:
            self.broken = True
            if self.on_error is not None:
                self.on_error(self, exc)

    def close(self) -> None:
        self._writer.close()


_NEWLINE = orjson.OPT_APPEND_NEWLINE
_ANY_KEYS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS


def _render(_logger: Any, _method: str, event_dict: dict[str, Any]) -> bytes:
    """The JSON line. A key that is not exactly a ``str`` (``1``, an enum) is rendered as text
    (``OPT_NON_STR_KEYS``); that option slows every event, and without it orjson refuses such a
    key, so it is only used on a second try (the same bytes: it changes how keys are read, not
    how anything is written)."""
    try:
        return orjson.dumps(event_dict, default=str, option=_NEWLINE)
    except TypeError:  # orjson.JSONEncodeError: a key that is not a str (or a value it cannot render)
        return orjson.dumps(event_dict, default=str, option=_ANY_KEYS)


def _redact_render(redactor: Redactor) -> Callable[[Any, str, dict[str, Any]], bytes]:
    """The redactor and the renderer in one processor: render, and only if the line could hold
    a secret (:meth:`Redactor.clean`), mask the dict and render again. Same bytes, most events
    rendered once and never walked."""

    def processor(logger: Any, method: str, event_dict: dict[str, Any]) -> bytes:
        try:
            line = _render(logger, method, event_dict)
        except TypeError:  # orjson.JSONEncodeError: as before, after masking
            return _render(logger, method, redactor.scrub(event_dict))
        return line if redactor.clean(line, event_dict) else _render(logger, method, redactor.scrub(event_dict))

    return processor


class _Stamps:
    """The last second's ``YYYY-MM-DDTHH:MM:SS`` and the last millisecond's whole text, each one
    tuple (set in one store, so another thread never sees a text with the wrong number): events
    come in bursts that share them."""

    second: tuple[int, str] = (-1, "")
    milli: tuple[int, str] = (-1, "")


_MILLIS = tuple(f".{millis:03d}Z" for millis in range(1000))  # the tail of every `time`, made once


def rfc3339(timestamp: float) -> str:
    """``2026-12-02T06:03:23.123Z``: UTC, milliseconds, the same instant as ``timestamp`` (truncated)."""
    millis = int(timestamp * 1000)
    last, text = _Stamps.milli
    if last == millis:
        return text
    seconds = millis // 1000
    second, head = _Stamps.second
    if second != seconds:
        head = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _Stamps.second = (seconds, head)
    text = head + _MILLIS[millis - seconds * 1000]
    _Stamps.milli = (millis, text)
    return text


# Where an event came from: aicp itself, or a step (relayed from its output, its ctx.log, its ctx.progress).
_STEP_SOURCES = {"stdout": "step.stdout", "stderr": "step.stderr", "log": "step.log"}


def source_of(event: str, fields: dict[str, Any]) -> str:
    if event == "step_log":
        stream = fields.get("stream")
        return _STEP_SOURCES.get(stream if type(stream) is str else str(stream), "step.stdout")
    return "step.progress" if event == "step_progress" else "aicp"


def round_millis(seconds: float) -> float:
    """``round(seconds, 3)``: the same float, without round()'s trip through a decimal string.

    ``n = seconds * 1000`` is off from the exact product by at most half a unit in its last
    place (under 2**-23 below 10**6 s), so unless its fraction is within 10**-4 of one half the
    nearest integer to the exact product is that of ``n``; ``k / 1000`` (two integers exact as
    floats) is then the float nearest to the decimal ``k / 1000``, which is what round() returns.
    Near a half, below zero (``-0.0`` too), NaN or above 10**6 s: round() itself.
    """
    if 0.0 < seconds < 1e6:
        scaled = seconds * 1000.0
        whole = int(scaled)
        rest = scaled - whole  # exact
        if rest < 0.4999:
            return whole / 1000
        if rest > 0.5001:
            return (whole + 1) / 1000
    return round(seconds, 3)


class _Envelope:
    """Puts the fields every event carries first, in a stable order.

    The six fields of the original envelope come first (their order is part of
    the contract), then ``time``, ``source`` and ``message``, then the event's own.
    """

    def __init__(self, run_id: str, started: float, context: dict[str, Any]) -> None:
        self.started = started
        # Every line's head in its order, made once with the run's constants (run_id, context)
        self._head: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "event": None, "timestamp": None,
                                      "elapsed_seconds": None, "level": None, "run_id": run_id, **context,
                                      "time": None, "source": None, "message": None}

    def __call__(self, _logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        event = event_dict.pop("event")
        level = event_dict.pop("level")
        now = _wall()
        if event == "step_log":  # most of a busy stream: its message without a lookup table
            line = event_dict.get("line", "")
            message = line if type(line) is str else str(line)
        else:  # warning and step_progress carry a message of their own (step_progress: maybe null)
            message = event_dict.pop("message") if "message" in event_dict else message_of(event, event_dict)
        out = self._head.copy()
        out["event"] = event
        out["timestamp"] = now
        out["elapsed_seconds"] = round_millis(_monotonic() - self.started)
        out["level"] = level
        out["time"] = rfc3339(now)
        out["source"] = source_of(event, event_dict)
        out["message"] = message
        out.update(event_dict)
        return out


_wall, _monotonic = time.time, time.monotonic


def _observe(observer: Observer) -> Callable[[Any, str, dict[str, Any]], dict[str, Any]]:
    def processor(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        observer(event_dict)
        return event_dict

    return processor


def _drop(_logger: Any, _method: str, _event_dict: dict[str, Any]) -> Any:
    raise structlog.DropEvent


_LEVELS = {"step_error": "error", "error": "error", "step_retry": "warning", "warning": "warning"}
# A step's own ctx.log level (structlog's method names) as one of ours; stdout/stderr lines carry
# no level of their own and are "info" (a program's stderr is as often progress as trouble).
_RELAYED_LEVELS = {"debug": "debug", "info": "info", "msg": "info", "warning": "warning", "warn": "warning",
                   "error": "error", "err": "error", "exception": "error", "critical": "critical",
                   "fatal": "critical"}


def level_of(event: str, fields: dict[str, Any]) -> str:
    """The ``level`` of a lifecycle event; a relayed ``ctx.log`` line keeps the step's own level."""
    if event != "step_log":
        return _LEVELS.get(event, "info")
    relayed = fields.get("log_level")
    return "info" if relayed is None else _RELAYED_LEVELS.get(str(relayed).lower(), "info")


# run_end: how the run ended, on stderr, for shippers that never see stdout
_RUN_END_FIELDS = ("success", "exit_code", "error", "steps_completed", "total_steps", "total_cost", "total_time")


class _Shaped:
    """The last processor when a ``--log-format`` applies: renders the v1 dict for the v1 sinks
    and the reshaped dict (:mod:`aicp._logformats`) for the others; hands both to :class:`_Routes`."""

    def __init__(self, shape: Callable[[Any, str, dict[str, Any]], dict[str, Any]],
                 v1: list[Any], shaped: list[Any]) -> None:
        self.shape, self.v1, self.shaped = shape, v1, shaped

    def __call__(self, logger: Any, method: str,
                 event_dict: dict[str, Any]) -> tuple[tuple[list[tuple[list[Any], bytes]]], dict[str, Any]]:
        routes = [(self.shaped, _render(logger, method, self.shape(logger, method, event_dict)))]
        if self.v1:
            routes.append((self.v1, _render(logger, method, event_dict)))
        return (routes,), {}  # structlog calls the logger's method with these arguments


# The relay's fast path renders a step_log event once per batch with this text as its line,
# and puts each line's JSON string where the sentinel's is. _PROBE (long, with characters JSON
# escapes and spaces a processor might strip) checks once per event shape that the pipeline
# copies the line verbatim; if it does not, every line goes through the pipeline.
_SENTINEL = "\ue000aicp-line\ue001"
_SENTINEL_JSON = orjson.dumps(_SENTINEL)
_PROBE = " \ue002 \"quoted\" \\ tab\t cr\r " + "é" * 4200 + " \x00 "
_PROBE_JSON = orjson.dumps(_PROBE)
# Markers between the appearances of a line in one event, and between two events (see _fill).
_MARKS = tuple(f"\ue000aicp-mark-{i}-{uuid.uuid4().hex}" for i in range(3))
_BETWEEN = f"\ue000aicp-next-{uuid.uuid4().hex}"


Route = tuple[list[Any], bytes]  # the writers of a line, the line


@dataclass
class _Chain:
    """One structlog processor chain and every writer of what it renders."""

    processors: list[Any]
    writers: list[Any]


class EventLog:
    """One run's event stream.

    ``stream``: lifecycle events to stderr and the result to stdout (``--stream``).
    ``log_file``: every event, the result included, appended to that file (or files), in
    ``log_format`` (``json``: the v1 stream; ``ecs`` or ``otel``: see :mod:`aicp._logformats`),
    which also shapes what goes to stderr.
    ``record_file``: every event, always as the v1 stream (the run record), like stdout.
    ``observer``: called with each event dict (the human view).
    ``secrets``: values to mask, in addition to secret-looking environment variables
    (or ``redactor``: the one to use, shared with the run record).
    ``run_end``: announce the end of a started run on the lifecycle stream too (the
    AI Content Pipeline tool's emitter API, :mod:`aicp.stream`, keeps its exact stream).
    ``context``: fields every event carries after ``run_id`` (a batch job's ``batch_id``, ``job_id``).
    ``sinks``: more writers of every v1 line (``write(bytes)``, ``close()``), as the run record is (a
    fleet's Redis stream); each gets one line per call.

    Writing never blocks the caller (:mod:`aicp._sink`): :meth:`congested` tells the
    relay to stop reading steps' output while an output's reader is behind.
    """

    def __init__(self, *, stream: bool = False, log_file: str | Iterable[str] | None = None,
                 observer: Observer | None = None, secrets: Iterable[str] = (),
                 run_id: str | None = None, run_end: bool = True, record_file: str | None = None,
                 log_format: str = "json", context: dict[str, Any] | None = None,
                 sinks: Iterable[Any] = (), redactor: Redactor | None = None) -> None:
        self.run_id = run_id or uuid.uuid4().hex[:16]
        self.started = time.monotonic()
        self.context = dict(context or {})
        paths = [log_file] if isinstance(log_file, str) else list(log_file or ())
        logs: list[Any] = [FileWriter(str(p)) for p in paths]
        record: list[Any] = ([FileWriter(record_file)] if record_file else []) + [_External(s) for s in sinks]
        self.redactor = redactor or Redactor.from_environment(extra=secrets)
        self._shape = formatter(log_format, self.run_id)
        self._stderr = [StreamWriter("stderr")] if stream else []
        self._stdout = [StreamWriter("stdout")] if stream else []
        self._observed = observer is not None
        self._lifecycle = self._chain(record, self._stderr + logs, observer)
        self._terminal = self._chain(self._stdout + record, logs, observer)
        self._files = [*logs, *record]
        self._verbatim: dict[tuple[Any, ...], bool] = {}
        self._started_run = False
        self._result_written = False
        self._announce_end = run_end
        for writer in self._files:
            if isinstance(writer, _External):
                writer.on_error = self._output_failed
        for writer in self._stderr + self._files:
            sink = writer.sink()
            if sink is not None:
                sink.on_recover = self._output_recovered
                if writer in self._files:
                    sink.on_error = self._output_failed
        for writer in self._stdout:  # the result cannot be written: say so on stderr
            sink = writer.sink()
            if sink is not None:
                sink.on_error = self._output_failed

    def _chain(self, v1: list[Any], shaped: list[Any], observer: Observer | None) -> _Chain:
        processors: list[Any] = [add_log_level, _Envelope(self.run_id, self.started, self.context)]
        writers = v1 + shaped
        if self._shape is not None and shaped:
            processors += [self.redactor, *([_observe(observer)] if observer else []),
                           _Shaped(self._shape, v1, shaped)]
        elif observer is not None:
            processors += [self.redactor, _observe(observer), _render if writers else _drop]
        elif writers:  # nobody looks at the dict: mask and render in one pass
            processors.append(_redact_render(self.redactor))
        else:
            processors.append(_drop)
        return _Chain(processors, writers)

    @staticmethod
    def _render(chain: _Chain, event: str, fields: dict[str, Any], method: str) -> list[Route]:
        """The event's lines and their writers (none when nothing writes it), observed on the way.

        The processors are called as a structlog bound logger calls them (``method`` is the
        level method's name: ``info``, ``warning``...; the event dict is the fields, then
        ``event``), without a bound logger's per-call machinery, which cost more than the
        processors themselves. The last processor renders bytes for every writer, or
        (:class:`_Shaped`) a line per group of writers, as the arguments of a logger call.
        """
        return EventLog._routes(chain, EventLog._process(chain, {**fields, "event": event}, method))

    @staticmethod
    def _process(chain: _Chain, event_dict: Any, method: str) -> Any:
        """The last processor's result for an event dict of our own (``event`` last, as
        :meth:`_render` makes it): a line, or :class:`_Shaped`'s routes; None if dropped."""
        try:
            for processor in chain.processors:
                event_dict = processor(None, method, event_dict)
        except structlog.DropEvent:
            return None
        return event_dict

    @staticmethod
    def _routes(chain: _Chain, result: Any) -> list[Route]:
        if result is None:
            return []
        if isinstance(result, bytes):
            return [(chain.writers, result)]
        routes: list[Route] = result[0][0]
        return routes

    @staticmethod
    def _write(routes: list[Route], relay: bool = False) -> None:
        for writers, line in routes:
            for writer in writers:
                writer.write(line, relay)

    def emit(self, event: str, **fields: Any) -> None:
        """Emit a lifecycle event (to stderr / the log file / the observer)."""
        if event == "pipeline_start":
            self._started_run = self._announce_end
            fields.setdefault("aicp_version", __version__)
        method = level_of(event, fields)
        fields["event"] = event  # our own dict (the keyword arguments): no copy
        chain = self._lifecycle
        result = self._process(chain, fields, method)
        if type(result) is bytes:  # the usual case: one line for every writer
            for writer in chain.writers:
                writer.write(result)
        else:
            self._write(self._routes(chain, result))

    def step_output(self, base: dict[str, Any], stream: str, lines: list[str], truncated: bool = False) -> None:
        """``step_log`` events for lines a step wrote on ``stream``, in order: the bytes
        :meth:`emit` would write for each, made without running the pipeline per line."""
        if not self._lifecycle.writers and not self._observed:
            return
        extra = {"truncated": True} if truncated else {}
        templates = None if self._observed else self._templates(base, stream, extra)
        if templates is None:  # one event at a time (an observer sees each)
            for line in lines:
                fields = {**base, "stream": stream, "line": line, **extra}
                self._write(self._render(self._lifecycle, "step_log", fields, level_of("step_log", fields)), True)
            return
        lines, inner, items = self._encode(lines)
        self._write([(writers, _fill(parts, lines, inner, items)) for writers, parts in templates], True)

    def _encode(self, lines: list[str]) -> tuple[list[str], bytes, list[bytes] | None]:
        """The lines masked (by the redactor's rule, as the pipeline would) and JSON-encoded in
        one call, as a list: ``["a","b"]`` -> ``a","b``. A quote inside an encoded string is
        escaped, so ``","`` occurs only between two items, or where a line ends in a quote and
        a comma (``\\","``, which a separator after a line ending in a backslash also gives):
        then the lines are also encoded one by one (``items``)."""
        encoded = orjson.dumps(lines)
        if self.redactor.appears_in(encoded):
            lines = [self.redactor.text(line) for line in lines]
            encoded = orjson.dumps(lines)
        inner = encoded[2:-2]  # between [" and "]
        items = [orjson.dumps(line)[1:-1] for line in lines] if b'\\","' in inner else None
        return lines, inner, items

    def _templates(self, base: dict[str, Any], stream: str,
                   extra: dict[str, Any]) -> list[tuple[list[Any], list[bytes]]] | None:
        """This batch's step_log lines cut where the line goes (one per group of writers), or
        None if the pipeline does not copy lines verbatim for events of this shape (checked once
        per shape with _PROBE)."""
        fields = {**base, "stream": stream, "line": _SENTINEL, **extra}
        method = level_of("step_log", fields)
        routes = self._render(self._lifecycle, "step_log", fields, method)
        shape = (stream, *base, *extra)
        verbatim = self._verbatim.get(shape)
        if verbatim is None:
            probes = self._render(self._lifecycle, "step_log", {**fields, "line": _PROBE}, method)
            verbatim = self._verbatim[shape] = bool(routes) and len(probes) == len(routes) and all(
                line.count(_SENTINEL_JSON) > 0 and probe.count(_PROBE_JSON) == line.count(_SENTINEL_JSON)
                for (_, line), (_, probe) in zip(routes, probes))
        return [(writers, line.split(_SENTINEL_JSON)) for writers, line in routes] if verbatim else None

    def result(self, event: str = "pipeline_complete", *, resume_command: str | None = None,
               **fields: Any) -> None:
        """End the run: ``run_end`` on the lifecycle stream (when a run had started), then the
        terminal event (``pipeline_complete``; a batch's ``batch_complete``) to stdout / the log
        file / the observer."""
        level = "info" if fields.get("success") else "error"
        if self._started_run:
            end = {k: fields.get(k) for k in _RUN_END_FIELDS}
            if resume_command and not fields.get("success"):
                end["resume_command"] = resume_command
            self._write(self._render(self._lifecycle, "run_end", end, level))
        self._stderr_before_stdout()
        self._result_written = True
        self._write(self._render(self._terminal, event, fields, level))

    def relay(self, line: bytes) -> None:
        """Pass on a line that is already an event of this stream's kind (a batch job's own events)
        to stderr and the log files, unchanged: its producer rendered and masked it."""
        for writer in self._lifecycle.writers:
            writer.write(line)

    def _stderr_before_stdout(self) -> None:
        """With ``2>&1`` the result must come after every event: let stderr's queue go first
        (waiting at most while it makes progress; a stalled reader gets the result anyway)."""
        if self._stderr and self._stdout:
            err, out = self._stderr[0].sink(), self._stdout[0].sink()
            if err is not None and out is not None and same_file(err.fd, out.fd):
                err.flush()

    def congested(self) -> bool:
        """Whether an output's reader is behind: relays should stop reading steps' output."""
        for writer in self._lifecycle.writers:
            sink = writer.sink()
            if sink is not None and sink.congested():
                return True
        return False

    def _output_failed(self, sink: Any, exc: OSError) -> None:
        """Say on the outputs still working which one failed (the run goes on); after the result,
        on stderr only: nothing follows the result in a file."""
        fields = {"message": f"cannot write events to {sink.name}: {exc.strerror or exc}; "
                             "the run goes on without it"}
        routes = self._render(self._lifecycle, "warning", fields, "warning")
        if self._result_written:
            routes = [([w for w in writers if w in self._stderr], line) for writers, line in routes]
        self._write(routes)

    def _output_recovered(self, sink: Sink, lines: int) -> None:
        """Tell an output that caught up how many step output lines it did not get."""
        fields = {"message": f"{lines} lines of step output were not written to {sink.name}: "
                             "its reader did not keep up", "dropped_lines": lines}
        for writers, line in self._render(self._lifecycle, "warning", fields, "warning"):
            if any(writer.sink() is sink for writer in writers):
                sink.put(line)

    def close(self) -> None:
        """Write what is queued (a stalled output is given up after a while) and close the files."""
        for writer in self._stderr + self._stdout + self._files:
            sink = writer.sink()
            if sink is not None and sink.dropped:
                self._output_recovered(sink, sink.dropped)
                sink.dropped = 0
        for writer in self._stderr + self._stdout:
            sink = writer.sink()
            if sink is not None:
                sink.flush()
        for writer in self._files:
            writer.close()
        self._files.clear()


def _fill(parts: list[bytes], lines: list[str], inner: bytes, items: list[bytes] | None) -> bytes:
    """Each encoded line in the template (``parts``: the rendered event cut where its line goes).

    ``inner`` is the batch encoded as a list, without its brackets and outer quotes; when it is
    safe to cut at ``","`` (``items`` is None), one replace turns the separators into the text
    between two events. A line that appears more than once in an event (its ``message`` too) is
    encoded once per appearance, with a marker between appearances, and each kind of separator
    replaced by its text; a step printing a marker itself shows in the counts, and then (as when
    ``inner`` is not safe) every line is filled in one by one.
    """
    if items is None and len(parts) == 2:
        head, tail = parts
        return head + b'"' + inner.replace(b'","', b'"' + tail + head + b'"') + b'"' + tail
    if items is None and len(parts) - 2 <= len(_MARKS):
        marks = _MARKS[:len(parts) - 2]
        seq = [x for line in lines for mark in (*marks, _BETWEEN) for x in (line, mark)]
        seq.pop()  # no separator after the last event
        body = orjson.dumps(seq)[2:-2]
        cuts = [(b'","' + orjson.dumps(mark)[1:-1] + b'","', b'"' + part + b'"', len(lines))
                for mark, part in zip(marks, parts[1:-1])]
        cuts.append((b'","' + orjson.dumps(_BETWEEN)[1:-1] + b'","', b'"' + parts[-1] + parts[0] + b'"', len(lines) - 1))
        if all(body.count(cut) == count for cut, _, count in cuts):
            for cut, text, _ in cuts:
                body = body.replace(cut, text)
            return parts[0] + b'"' + body + b'"' + parts[-1]
    return b"".join([(b'"' + item + b'"').join(parts) for item in (items or inner.split(b'","'))])
