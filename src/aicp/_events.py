"""The event stream: every lifecycle transition as one structlog event, rendered as a JSON line.

The pipeline is structlog's: a bound logger whose processors are plain
callables composed in a list. Ours add the envelope (``schema_version``,
``timestamp``, ``elapsed_seconds``, ``level``, ``run_id``), mask secrets, let
the human view observe the event, and render it with orjson straight to bytes.
The "logger" at the end writes each line with one ``write(2)`` call, so a line
is never split between two writes and readers never see half an event.

Lifecycle events go to stderr (with ``--stream``) and to the ``--log-file``,
ending with ``run_end`` (for shippers that only see stderr); the terminal
``pipeline_complete`` goes to stdout and the log file, never to stderr. Streams are resolved at write time, so the stream works under pytest's
capsys and after ``contextlib.redirect_stderr``. A reader that goes away
(``| head``) silences that one stream; the run goes on.

We configure our own bound loggers with ``structlog.wrap_logger`` and never
call ``structlog.configure``: a library must not change its host's logging.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import threading
import time
import uuid
from typing import Any, Callable, Iterable

import orjson
import structlog
from structlog.processors import add_log_level

from aicp._logformats import formatter
from aicp._messages import message_of
from aicp._redact import Redactor
from aicp._version import SCHEMA_VERSION, __version__

Observer = Callable[[dict[str, Any]], None]


class StreamWriter:
    """Writes whole lines to ``sys.<name>``, resolved at every write."""

    def __init__(self, name: str) -> None:
        self._name = self.name = name
        self._stream: Any = None
        self._fd: int | None = None
        self._lock = threading.Lock()
        self.broken = False

    def write(self, data: bytes) -> None:
        if self.broken:
            return
        stream = getattr(sys, self._name)
        if stream is None:
            return
        with self._lock:
            try:
                if stream is not self._stream:
                    self._stream, self._fd = stream, _raw_fd(stream, self._name)
                if self._fd is not None:
                    write_all(self._fd, data)
                else:
                    stream.write(data.decode("utf-8"))
                    stream.flush()
            except (BrokenPipeError, ValueError):
                self.broken = True
            except OSError as exc:
                if exc.errno not in (errno.EPIPE, errno.EBADF):
                    raise
                self.broken = True


class FileWriter:
    """Appends lines to a file (for shippers that tail files), one write each."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._lock = threading.Lock()
        self.name = path
        self.broken = False

    def write(self, data: bytes) -> None:
        with self._lock:
            write_all(self._fd, data)

    def close(self) -> None:
        os.close(self._fd)


def _raw_fd(stream: Any, name: str) -> int | None:
    """The stream's file descriptor if it is the interpreter's own stream, else None.

    Writing the bytes straight to the descriptor is one system call; a replaced
    stream (capsys, redirect_stderr) gets a text write instead.
    """
    if stream is not getattr(sys, f"__{name}__"):
        return None
    try:
        stream.flush()
        return stream.fileno()
    except (OSError, ValueError, AttributeError):
        return None


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data``; if that fails half way (a disk that filled), a regular file is cut
    back to where the line began, so that it never ends in half an event."""
    written = os.write(fd, data)  # the whole line, almost always
    if written < len(data):
        view = memoryview(data)[written:]
        try:
            while view:
                view = view[os.write(fd, view):]
        except OSError:
            try:
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    os.ftruncate(fd, os.lseek(fd, 0, os.SEEK_CUR) - (len(data) - len(view)))
            except OSError:
                pass
            raise


def write_each(writers: Iterable[Any], line: bytes, failed: list[tuple[Any, OSError]]) -> None:
    """Hand ``line`` to each writer. One whose write fails (a full disk, an I/O error) is given
    up and put on ``failed``, to be reported; the others, and the run, go on."""
    for writer in writers:
        if getattr(writer, "broken", False):
            continue
        try:
            writer.write(line)
        except OSError as exc:
            writer.broken = True
            failed.append((writer, exc))


class _Tee:
    """The structlog "logger" at the end of the chain: hands the rendered line to each writer."""

    def __init__(self, writers: Iterable[Any], failed: list[tuple[Any, OSError]]) -> None:
        self.writers = list(writers)
        self.failed = failed

    def msg(self, line: bytes) -> None:
        write_each(self.writers, line, self.failed)

    info = warning = error = debug = critical = msg


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


class _Seconds:
    """The ``YYYY-MM-DDTHH:MM:SS`` of the last second seen: most events share it with the one before."""

    second = -1
    text = ""


def rfc3339(timestamp: float) -> str:
    """``2026-12-02T06:03:23.123Z``: UTC, milliseconds, the same instant as ``timestamp`` (truncated)."""
    seconds, millis = divmod(int(timestamp * 1000), 1000)
    if _Seconds.second != seconds:
        _Seconds.text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _Seconds.second = seconds
    return f"{_Seconds.text}.{millis:03d}Z"


# Where an event came from: aicp itself, or a step (relayed from its output, its ctx.log, its ctx.progress).
_STEP_SOURCES = {"stdout": "step.stdout", "stderr": "step.stderr", "log": "step.log"}


def source_of(event: str, fields: dict[str, Any]) -> str:
    if event == "step_log":
        return _STEP_SOURCES.get(str(fields.get("stream")), "step.stdout")
    return "step.progress" if event == "step_progress" else "aicp"


class _Envelope:
    """Puts the fields every event carries first, in a stable order.

    The six fields of the original envelope come first (their order is part of
    the contract), then ``time``, ``source`` and ``message``, then the event's own.
    """

    def __init__(self, run_id: str, started: float, context: dict[str, Any]) -> None:
        self.run_id = run_id
        self.started = started
        self.context = context

    def __call__(self, _logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        event = event_dict.pop("event")
        level = event_dict.pop("level")
        now = _wall()
        if event == "step_log":  # most of a busy stream: its source and message without a lookup table
            source = _STEP_SOURCES.get(event_dict.get("stream"), "step.stdout")  # type: ignore[arg-type]
            line = event_dict.get("line", "")
            message = line if type(line) is str else str(line)
        else:
            source = source_of(event, event_dict)
            # warning and step_progress carry a message of their own (step_progress: maybe null)
            message = event_dict.pop("message") if "message" in event_dict else message_of(event, event_dict)
        return {
            "schema_version": SCHEMA_VERSION,
            "event": event,
            "timestamp": now,
            "elapsed_seconds": round(_monotonic() - self.started, 3),
            "level": level,
            "run_id": self.run_id,
            **self.context,
            "time": rfc3339(now),
            "source": source,
            "message": message,
            **event_dict,
        }


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


class _Routes:
    """The structlog "logger" after :class:`_Shaped`: each rendering to its own writers."""

    def __init__(self, failed: list[tuple[Any, OSError]]) -> None:
        self.failed = failed

    def msg(self, routes: list[tuple[list[Any], bytes]]) -> None:
        for writers, line in routes:
            write_each(writers, line, self.failed)

    info = warning = error = debug = critical = msg


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
    fleet's Redis stream).
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
        self._files: list[Any] = [FileWriter(str(p)) for p in paths]
        record: list[Any] = ([FileWriter(record_file)] if record_file else []) + list(sinks)
        self.redactor = redactor or Redactor.from_environment(extra=secrets)
        self._failed: list[tuple[Any, OSError]] = []  # outputs given up, to report as a warning
        self._shape = formatter(log_format, self.run_id)
        stderr = [StreamWriter("stderr")] if stream else []  # one writer (one lock) for all stderr lines
        stdout = [StreamWriter("stdout")] if stream else []
        self._lifecycle = self._logger(record, stderr + self._files, observer)
        self._terminal = self._logger(stdout + record, self._files, observer)
        self._after_result = self._logger([], stderr, None)  # nothing follows the result in a file
        self._files = [*self._files, *record]  # a new list: the loggers keep theirs
        self._relayed = _Tee(stderr + self._files, self._failed)
        self._started_run = False
        self._announce_end = run_end

    def _logger(self, v1: list[Any], shaped: list[Any], observer: Observer | None) -> Any:
        processors: list[Any] = [add_log_level, _Envelope(self.run_id, self.started, self.context)]
        sink: Any
        if self._shape is not None and shaped:
            processors += [self.redactor, *([_observe(observer)] if observer else []),
                           _Shaped(self._shape, v1, shaped)]
            sink = _Routes(self._failed)
        else:
            sink = _Tee(v1 + shaped, self._failed)
            if observer is not None:
                processors += [self.redactor, _observe(observer), _render if sink.writers else _drop]
            elif sink.writers:  # nobody looks at the dict: mask and render in one pass
                processors.append(_redact_render(self.redactor))
            else:
                processors.append(_drop)
        # .bind() once: wrap_logger returns a lazy proxy that would build a new bound logger on every call
        return structlog.wrap_logger(sink, processors=processors,
                                     wrapper_class=structlog.BoundLogger, context_class=dict).bind()

    def emit(self, event: str, **fields: Any) -> None:
        """Emit a lifecycle event (to stderr / the log file / the observer)."""
        if event == "pipeline_start":
            self._started_run = self._announce_end
            fields.setdefault("aicp_version", __version__)
        getattr(self._lifecycle, level_of(event, fields))(event, **fields)
        if self._failed:
            self._report_failed(self._lifecycle)

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
            getattr(self._lifecycle, level)("run_end", **end)
        getattr(self._terminal, level)(event, **fields)
        if self._failed:
            self._report_failed(self._after_result)

    def _report_failed(self, logger: Any) -> None:
        """Say on the outputs still working which one failed (each once; the run goes on)."""
        while self._failed:
            try:
                writer, exc = self._failed.pop(0)
            except IndexError:  # another thread reported it
                return
            name = getattr(writer, "name", type(writer).__name__)
            logger.warning("warning", message=f"cannot write events to {name}: "
                                              f"{exc.strerror or exc}; the run goes on without it")

    def relay(self, line: bytes) -> None:
        """Pass on a line that is already an event of this stream's kind (a batch job's own events)
        to stderr and the log files, unchanged: its producer rendered and masked it."""
        self._relayed.msg(line)

    def close(self) -> None:
        for writer in self._files:
            writer.close()
        self._files.clear()
