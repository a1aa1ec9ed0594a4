"""The directory flags: ``--base-dir`` and the AI Content Pipeline tool's ``--config-dir``,
``--cache-dir`` and ``--state-dir``.

The old tool turned the last three into the XDG variables before anything ran;
aicp does the same, so steps (``command``, ``python``) that read them see the
same folders. ``--base-dir`` is read by the commands (relative output folders
resolve against it); here it is only checked.
"""

from __future__ import annotations

import os

from aicp._errors import MissingInputError

TYPE_CHECKING = False  # typing costs ~5 ms at start-up: for the type checker only
if TYPE_CHECKING:
    from typing import Any

XDG_FLAGS = {"config": "XDG_CONFIG_HOME", "cache": "XDG_CACHE_HOME", "state": "XDG_STATE_HOME"}


def apply_directories(args: Any) -> None:
    """Set the XDG variables the flags name (absolute, for every step); --base-dir must be a folder."""
    for name, variable in XDG_FLAGS.items():
        value = getattr(args, f"{name}_dir", None)
        if value:
            os.environ[variable] = os.path.abspath(value)
    base = getattr(args, "base_dir", None)
    if base is not None and not os.path.isdir(base):
        raise MissingInputError(f"--base-dir {base}: no such folder")
