"""Before a run: can aicp write where it must?

A run writes its outputs and its record under ``output_dir``, and its events
to the ``--log-file``. Finding out that one of them cannot be written (a path
that is a file, ``/proc/1``, a missing parent, no permission, a read-only or
full file system) after the first step has run, and been paid for, is too
late; so both are tried, for real, before anything runs, and a failure is an
:class:`~aicp._errors.OutputError` (exit 3) that names the place and the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

from aicp._errors import OutputError

_PROBE = b"aicp write probe\n"


def reason(exc: OSError) -> str:
    """The system's words for why a write failed (``No space left on device``)."""
    return exc.strerror or str(exc)


def check_output_dir(path: Path) -> None:
    """Create ``path`` if needed, and write (then remove) a small file in it."""
    probe = path / f".aicp-probe-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, _PROBE)
        finally:
            os.close(fd)
            os.unlink(probe)
    except FileExistsError:
        raise OutputError(f"output_dir {path}: it exists and is not a folder") from None
    except OSError as exc:
        raise OutputError(f"output_dir {path}: cannot write there: {reason(exc)}") from None


def check_log_file(path: str) -> None:
    """Open ``path`` for appending (creating it) as the run will; nothing is written yet."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise OutputError(f"--log-file {path}: cannot append to it: {reason(exc)}") from None
    os.close(fd)
