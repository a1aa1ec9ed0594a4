"""Writing results to stdout: the JSON envelope of ``--json`` and plain text, safe against closed pipes."""

from __future__ import annotations

import json
import sys
from typing import Any

from aicp._version import SCHEMA_VERSION  # not from _events: that would load structlog (~30 ms)


def write_stdout(text: str) -> None:
    """Write to stdout; a reader that went away (``| head``) is not an error."""
    if sys.stdout is None:
        return
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        pass


def print_envelope(command: str, data: Any, error: dict[str, Any] | None = None) -> None:
    """The ``--json`` output of every command: one object on one line.

    A command that failed has ``data: null`` and ``error: {message, exit_code}``.
    """
    envelope: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "command": command, "data": data}
    if error is not None:
        envelope["error"] = error
    write_stdout(json.dumps(envelope, default=str) + "\n")
