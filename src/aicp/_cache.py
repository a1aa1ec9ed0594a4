"""What aicp keeps between runs to start faster: where (``$XDG_CACHE_HOME/aicp``), and written whole.

Only what can be recomputed goes here (the ffmpeg binary's filter list, parsed
chain documents): deleting the folder costs the next run a few milliseconds,
never a result. Entries are written under a temporary name and renamed, so
concurrent runs (a batch validating the same chain in eight processes) read a
whole entry or none; a cache that cannot be written is skipped, silently.
"""

import _thread
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def cache_path(*parts: str) -> str:
    """``$XDG_CACHE_HOME/aicp/<parts>`` (``~/.cache`` when the variable is not set; ``--cache-dir`` sets it)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "aicp", *parts)


def read_json(path: str) -> "Any":
    """The JSON at ``path``; None when there is none or it cannot be read."""
    import json

    try:
        with open(path, "rb") as file:
            return json.loads(file.read())
    except (OSError, ValueError):
        return None


def write_json(path: str, value: "Any") -> bool:
    """Write ``value`` as JSON to ``path``, atomically; False when it could not be written."""
    import json

    temporary = f"{path}.{os.getpid()}.{_thread.get_ident()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(temporary, "w", encoding="ascii") as file:
            file.write(json.dumps(value, allow_nan=False))
        os.replace(temporary, path)
        return True
    except (OSError, ValueError):
        try:
            os.unlink(temporary)
        except OSError:
            pass
        return False
