"""Writing to stdout and stderr: the JSON envelope of ``--json`` and plain text, safe against closed pipes."""

from __future__ import annotations

import errno
import sys

from aicp._sink import stdio_sink
from aicp._version import SCHEMA_VERSION  # not from _events: that would load structlog (~30 ms)

TYPE_CHECKING = False  # typing costs ~5 ms at start-up: for the type checker only
if TYPE_CHECKING:
    from typing import Any


def write_to(name: str, text: str) -> None:
    """Write to ``sys.stdout`` or ``sys.stderr``; a stream that is closed (``>&-``) or whose
    reader went away (``| head``) is not an error: the exit code still tells. stdout that
    cannot be written for another reason (a full disk) is said on stderr, once. The real streams
    are written through their sink (:mod:`aicp._sink`), in order with the events, so a reader
    that stalls never blocks the caller."""
    stream = getattr(sys, name)
    if stream is None:
        return
    sink = stdio_sink(name)
    if sink is not None:
        if name == "stdout" and sink.on_error is None:
            sink.on_error = _stdout_failed
        sink.put(text.encode(stream.encoding or "utf-8", "backslashreplace"))
        return
    try:
        stream.write(text)
        stream.flush()
    except ValueError:
        pass
    except OSError as exc:
        if name == "stdout" and exc.errno not in (errno.EPIPE, errno.EBADF) and not _unwritable:
            _unwritable.append(exc)
            write_to("stderr", f"error: cannot write to stdout: {exc.strerror or exc}\n")


_unwritable: list[OSError] = []  # stdout's write error, once it was reported


def _stdout_failed(_sink: Any, exc: OSError) -> None:
    if not _unwritable:
        _unwritable.append(exc)
        write_to("stderr", f"error: cannot write to stdout: {exc.strerror or exc}\n")


def write_stdout(text: str) -> None:
    write_to("stdout", text)


def print_envelope(command: str, data: Any, error: dict[str, Any] | None = None) -> None:
    """The ``--json`` output of every command: one object on one line.

    A command that failed has ``data: null`` and ``error: {message, exit_code}``.
    """
    import json  # only --json needs it

    envelope: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "command": command, "data": data}
    if error is not None:
        envelope["error"] = error
    write_stdout(json.dumps(envelope, default=str) + "\n")


def step_number(index: str) -> str:
    """A plan's 0-based step index (``"1.0"``: member 0 of step 1) as people number steps
    (``"2.1"``), the same number as output keys, file names and the live view."""
    return ".".join(str(int(part) + 1) for part in index.split("."))
