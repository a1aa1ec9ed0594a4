"""The event stream: every lifecycle transition as one structlog event, rendered as a JSON line.

The pipeline is structlog's: a bound logger whose processors are plain
callables composed in a list. Ours add the envelope (``schema_version``,
``timestamp``, ``elapsed_seconds``, ``level``, ``run_id``), mask secrets, let
the human view observe the event, and render it with orjson straight to bytes.
The "logger" at the end writes each line with one ``write(2)`` call, so a line
is never split between two writes and readers never see half an event.

Lifecycle events go to stderr (with ``--stream``) and to the ``--log-file``;
the terminal ``pipeline_complete`` goes to stdout and the log file, never to
stderr. Streams are resolved at write time, so the stream works under pytest's
capsys and after ``contextlib.redirect_stderr``. A reader that goes away
(``| head``) silences that one stream; the run goes on.

We configure our own bound loggers with ``structlog.wrap_logger`` and never
call ``structlog.configure``: a library must not change its host's logging.
"""

from __future__ import annotations

import errno
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
from aicp._version import SCHEMA_VERSION

Observer = Callable[[dict[str, Any]], None]


class StreamWriter:
    """Writes whole lines to ``sys.<name>``, resolved at every write."""

    def __init__(self, name: str) -> None:
        self._name = name
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
    written = os.write(fd, data)  # the whole line, almost always
    if written < len(data):
        view = memoryview(data)[written:]
        while view:
            view = view[os.write(fd, view):]


class _Tee:
    """The structlog "logger" at the end of the chain: hands the rendered line to each writer."""

    def __init__(self, writers: Iterable[Any]) -> None:
        self.writers = list(writers)

    def msg(self, line: bytes) -> None:
        for writer in self.writers:
            writer.write(line)

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


class EventLog:
    """One run's event stream.

    ``stream``: lifecycle events to stderr and the result to stdout (``--stream``).
    ``log_file``: every event, the result included, appended to that file (or files).
    ``observer``: called with each event dict (the human view).
    ``secrets``: values to mask, in addition to secret-looking environment variables.
    ``context``: fields every event carries after ``run_id`` (a batch job's ``batch_id``, ``job_id``).
    ``sinks``: more writers of every line (``write(bytes)``, ``close()``), as a log file is (a fleet's
    Redis stream).
    """

    def __init__(self, *, stream: bool = False, log_file: str | Iterable[str] | None = None,
                 observer: Observer | None = None, secrets: Iterable[str] = (),
                 run_id: str | None = None, context: dict[str, Any] | None = None,
                 sinks: Iterable[Any] = ()) -> None:
        self.run_id = run_id or uuid.uuid4().hex[:16]
        self.started = time.monotonic()
        self.context = dict(context or {})
        paths = [log_file] if isinstance(log_file, str) else list(log_file or ())
        self._files: list[Any] = [FileWriter(str(p)) for p in paths] + list(sinks)
        self.redactor = Redactor.from_environment(extra=secrets)
        stderr = [StreamWriter("stderr")] if stream else []  # one writer (one lock) for all stderr lines
        self._relayed = _Tee(stderr + self._files)
        self._lifecycle = self._logger(stderr, self._files, observer)
        self._terminal = self._logger([StreamWriter("stdout")] if stream else [], self._files, observer)

    def _logger(self, streams: list[Any], files: list[Any], observer: Observer | None) -> Any:
        processors: list[Any] = [add_log_level, _Envelope(self.run_id, self.started, self.context)]
        if observer is not None:
            processors += [self.redactor, _observe(observer), _render if streams or files else _drop]
        elif streams or files:  # nobody looks at the dict: mask and render in one pass
            processors.append(_redact_render(self.redactor))
        else:
            processors.append(_drop)
        # .bind() once: wrap_logger returns a lazy proxy that would build a new bound logger on every call
        return structlog.wrap_logger(_Tee(streams + files), processors=processors,
                                     wrapper_class=structlog.BoundLogger, context_class=dict).bind()

    def emit(self, event: str, **fields: Any) -> None:
        """Emit a lifecycle event (to stderr / the log file / the observer)."""
        getattr(self._lifecycle, _LEVELS.get(event, "info"))(event, **fields)

    def result(self, event: str = "pipeline_complete", **fields: Any) -> None:
        """Emit the terminal event (``pipeline_complete``; a batch's ``batch_complete``) to stdout /
        the log file / the observer."""
        level = "info" if fields.get("success") else "error"
        getattr(self._terminal, level)(event, **fields)

    def relay(self, line: bytes) -> None:
        """Pass on a line that is already an event of this stream's kind (a batch job's own events)
        to stderr and the log files, unchanged: its producer rendered and masked it."""
        self._relayed.msg(line)

    def close(self) -> None:
        for writer in self._files:
            writer.close()
        self._files.clear()
