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

Lifecycle events go to stderr (with ``--stream``) and to the ``--log-file``;
the terminal ``pipeline_complete`` goes to stdout and the log file, never to
stderr. Streams are resolved at write time, so the stream works under pytest's
capsys and after ``contextlib.redirect_stderr``. A reader that goes away
(``| head``) silences that one stream; the run goes on.

We never call ``structlog.configure``: a library must not change its host's logging.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from typing import Any, Callable, Iterable

import orjson
import structlog
from structlog.processors import add_log_level

from aicp._redact import Redactor
from aicp._sink import Sink, same_file, stdio_sink
from aicp._version import SCHEMA_VERSION

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
        sink = self.sink()
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

    def sink(self) -> None:
        return None

    def write(self, data: bytes, relay: bool = False) -> None:
        for line in data.splitlines(keepends=True) if relay else (data,):
            self._writer.write(line)

    def close(self) -> None:
        self._writer.close()


def _render(_logger: Any, _method: str, event_dict: dict[str, Any]) -> bytes:
    return orjson.dumps(event_dict, default=str,
                        option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS)


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


class _Envelope:
    """Puts the fields every event carries first, in a stable order."""

    def __init__(self, run_id: str, started: float, context: dict[str, Any]) -> None:
        self.run_id = run_id
        self.started = started
        self.context = context

    def __call__(self, _logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        event = event_dict.pop("event")
        level = event_dict.pop("level")
        return {
            "schema_version": SCHEMA_VERSION,
            "event": event,
            "timestamp": time.time(),
            "elapsed_seconds": round(time.monotonic() - self.started, 3),
            "level": level,
            "run_id": self.run_id,
            **self.context,
            **event_dict,
        }


def _observe(observer: Observer) -> Callable[[Any, str, dict[str, Any]], dict[str, Any]]:
    def processor(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        observer(event_dict)
        return event_dict

    return processor


def _drop(_logger: Any, _method: str, _event_dict: dict[str, Any]) -> Any:
    raise structlog.DropEvent


_LEVELS = {"step_error": "error", "step_retry": "warning", "warning": "warning"}

# The relay's fast path renders a step_log event once per batch with this text as its line,
# and puts each line's JSON string where the sentinel's is. _PROBE (long, with characters JSON
# escapes and spaces a processor might strip) checks once per event shape that the pipeline
# copies the line verbatim; if it does not, every line goes through the pipeline.
_SENTINEL = "\ue000aicp-line\ue001"
_SENTINEL_JSON = orjson.dumps(_SENTINEL)
_PROBE = " \ue002 \"quoted\" \\ tab\t cr\r " + "é" * 4200 + " \x00 "
_PROBE_JSON = orjson.dumps(_PROBE)


class EventLog:
    """One run's event stream.

    ``stream``: lifecycle events to stderr and the result to stdout (``--stream``).
    ``log_file``: every event, the result included, appended to that file (or files).
    ``observer``: called with each event dict (the human view).
    ``secrets``: values to mask, in addition to secret-looking environment variables.
    ``context``: fields every event carries after ``run_id`` (a batch job's ``batch_id``, ``job_id``).
    ``sinks``: more writers of every line (``write(bytes)``, ``close()``), as a log file is (a fleet's
    Redis stream); each gets one line per call.

    Writing never blocks the caller (:mod:`aicp._sink`): :meth:`congested` tells the
    relay to stop reading steps' output while an output's reader is behind.
    """

    def __init__(self, *, stream: bool = False, log_file: str | Iterable[str] | None = None,
                 observer: Observer | None = None, secrets: Iterable[str] = (),
                 run_id: str | None = None, context: dict[str, Any] | None = None,
                 sinks: Iterable[Any] = ()) -> None:
        self.run_id = run_id or uuid.uuid4().hex[:16]
        self.started = time.monotonic()
        self.context = dict(context or {})
        paths = [log_file] if isinstance(log_file, str) else list(log_file or ())
        self._files: list[Any] = [FileWriter(str(p)) for p in paths] + [_External(s) for s in sinks]
        self._stderr = [StreamWriter("stderr")] if stream else []
        self._stdout = [StreamWriter("stdout")] if stream else []
        self._lifecycle_out: list[Any] = self._stderr + self._files
        self._terminal_out: list[Any] = self._stdout + self._files
        self._observed = observer is not None
        self.redactor = Redactor.from_environment(extra=secrets)
        self._processors = self._pipeline(bool(self._lifecycle_out or self._terminal_out), observer)
        self._verbatim: dict[tuple[Any, ...], bool] = {}
        for writer in self._lifecycle_out:
            sink = writer.sink()
            if sink is not None:
                sink.on_recover = self._output_recovered
                if writer in self._files:
                    sink.on_error = self._output_failed

    def _pipeline(self, writes: bool, observer: Observer | None) -> list[Any]:
        processors: list[Any] = [add_log_level, _Envelope(self.run_id, self.started, self.context)]
        if observer is not None:
            processors += [self.redactor, _observe(observer), _render if writes else _drop]
        elif writes:  # nobody looks at the dict: mask and render in one pass
            processors.append(_redact_render(self.redactor))
        else:
            processors.append(_drop)
        return processors

    def render(self, event: str, fields: dict[str, Any], method: str | None = None) -> bytes | None:
        """The event as its JSON line (None when nothing writes it), observed on the way.

        The processors are called as a structlog bound logger calls them (``method`` is the
        level method's name: ``info``, ``warning``...; the event dict is the fields, then
        ``event``), without a bound logger's per-call machinery, which cost more than the
        processors themselves. The last processor renders the bytes.
        """
        event_dict: Any = {**fields, "event": event}
        method = method or _LEVELS.get(event, "info")
        try:
            for processor in self._processors:
                event_dict = processor(None, method, event_dict)
        except structlog.DropEvent:
            return None
        line: bytes = event_dict
        return line

    def emit(self, event: str, **fields: Any) -> None:
        """Emit a lifecycle event (to stderr / the log file / the observer)."""
        line = self.render(event, fields)
        if line is not None:
            for writer in self._lifecycle_out:
                writer.write(line)

    def step_output(self, base: dict[str, Any], stream: str, lines: list[str], truncated: bool = False) -> None:
        """``step_log`` events for lines a step wrote on ``stream``, in order: the bytes
        :meth:`emit` would write for each, made without running the pipeline per line."""
        if not self._lifecycle_out and not self._observed:
            return
        extra = {"truncated": True} if truncated else {}
        parts = None if self._observed else self._template(base, stream, extra)
        if parts is None:  # one event at a time (an observer sees each)
            rendered = (self.render("step_log", {**base, "stream": stream, "line": line, **extra})
                        for line in lines)
            data = b"".join(line for line in rendered if line is not None)
        else:
            data = self._fill(parts, lines)
        if data:
            for writer in self._lifecycle_out:
                writer.write(data, relay=True)

    def _fill(self, parts: list[bytes], lines: list[str]) -> bytes:
        """The batch's lines, masked (by the redactor's rule, as the pipeline would), in the template.

        The lines are JSON-encoded in one call, as a list: ``["a","b"]``. A quote inside an
        encoded string is escaped (``\\"``), so ``","`` occurs only between two items, or
        where a line ends in a quote and a comma (``\\","``, which a separator after a
        line ending in a backslash also gives): then the batch is encoded line by line.
        Otherwise replacing each ``","`` with the template's text between two lines' strings
        gives every event at C speed.
        """
        encoded = orjson.dumps(lines)
        if self.redactor.appears_in(encoded):
            lines = [self.redactor.text(line) for line in lines]
            encoded = orjson.dumps(lines)
        inner = encoded[2:-2]  # between [" and "]
        if b'\\","' in inner:
            items = [orjson.dumps(line)[1:-1] for line in lines]
        elif len(parts) == 2:
            head, tail = parts
            return head + b'"' + inner.replace(b'","', b'"' + tail + head + b'"') + b'"' + tail
        else:
            items = inner.split(b'","')
        return b"".join([(b'"' + item + b'"').join(parts) for item in items])

    def _template(self, base: dict[str, Any], stream: str, extra: dict[str, Any]) -> list[bytes] | None:
        """This batch's step_log line cut where the line goes, or None if the pipeline does not
        copy lines verbatim for events of this shape (checked once per shape with _PROBE)."""
        fields = {**base, "stream": stream, "line": _SENTINEL, **extra}
        line = self.render("step_log", fields)
        if line is None:
            return None
        parts = line.split(_SENTINEL_JSON)
        shape = (stream, *base, *extra)
        verbatim = self._verbatim.get(shape)
        if verbatim is None:
            probe = self.render("step_log", {**fields, "line": _PROBE}) or b""
            verbatim = self._verbatim[shape] = len(parts) > 1 and probe.count(_PROBE_JSON) == len(parts) - 1
        return parts if verbatim else None

    def result(self, event: str = "pipeline_complete", **fields: Any) -> None:
        """Emit the terminal event (``pipeline_complete``; a batch's ``batch_complete``) to stdout /
        the log file / the observer."""
        self._stderr_before_stdout()
        line = self.render(event, fields, "info" if fields.get("success") else "error")
        if line is not None:
            for writer in self._terminal_out:
                writer.write(line)

    def relay(self, line: bytes) -> None:
        """Pass on a line that is already an event of this stream's kind (a batch job's own events)
        to stderr and the log files, unchanged: its producer rendered and masked it."""
        for writer in self._lifecycle_out:
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
        for writer in self._lifecycle_out:
            sink = writer.sink()
            if sink is not None and sink.congested():
                return True
        return False

    def _output_failed(self, sink: Sink, exc: OSError) -> None:
        self.emit("warning", message=f"cannot write events to {sink.name}: {exc.strerror or exc}; "
                                     "the run goes on without it")

    def _output_recovered(self, sink: Sink, lines: int) -> None:
        line = self.render("warning", {"message": f"{lines} lines of step output were not written to "
                                                  f"{sink.name}: its reader did not keep up",
                                       "dropped_lines": lines})
        if line is not None:
            sink.put(line)

    def close(self) -> None:
        """Write what is queued (a stalled output is given up after a while) and close the files."""
        for writer in self._lifecycle_out + self._stdout:
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
