"""What aicp keeps between runs to start faster: where (``$XDG_CACHE_HOME/aicp``), and written whole.

Only what can be recomputed goes here (the ffmpeg binary's filter list, parsed
chain documents): deleting the folder costs the next run a few milliseconds,
never a result. Entries are written under a temporary name and renamed, so
concurrent runs (a batch validating the same chain in eight processes) read a
whole entry or none; a cache that cannot be written is skipped, silently.

An entry is the value in :mod:`marshal`'s format followed by its CRC-32: the
interpreter reads it with no module to import (``json`` alone would be a
tenth of ``aicp validate``'s start-up) and gives back exactly the types and
shared references it was given. The format is the interpreter's own, so the
file name carries its tag (``cpython-311``), as ``__pycache__`` does; the CRC
refuses a damaged file before it is read. The folder is the user's own, as
``__pycache__`` folders are: whoever can write there can change what aicp reads.
"""

import _thread
import marshal
import os
import sys
import zlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def cache_path(*parts: str) -> str:
    """``$XDG_CACHE_HOME/aicp/<parts>`` (``~/.cache`` when the variable is not set; ``--cache-dir`` sets it)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "aicp", *parts)


def entry_path(*parts: str) -> str:
    """The file of the entry named ``parts``, for this interpreter's format."""
    return f"{cache_path(*parts)}.{sys.implementation.cache_tag}.bin"


def read_entry(path: str) -> "Any":
    """The value of the entry at ``path``; None when there is none, or it is damaged."""
    try:
        with open(path, "rb") as file:
            blob = file.read()
    except OSError:
        return None
    body, check = blob[:-4], blob[-4:]
    if len(blob) < 4 or zlib.crc32(body).to_bytes(4, "big") != check:
        return None
    try:
        return marshal.loads(body)
    except (EOFError, ValueError, TypeError):
        return None


def write_entry(path: str, value: "Any") -> bool:
    """Write ``value`` to the entry at ``path``, atomically; False when it could not be written
    (a folder that cannot be made, a full disk, or a value marshal cannot carry: a date)."""
    try:
        body = marshal.dumps(value)
    except ValueError:
        return False
    temporary = f"{path}.{os.getpid()}.{_thread.get_ident()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(temporary, "wb") as file:
            file.write(body + zlib.crc32(body).to_bytes(4, "big"))
        os.replace(temporary, path)
        return True
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        return False
