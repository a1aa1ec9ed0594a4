"""Parsed YAML chain documents kept between runs, so that reading an unchanged chain needs no YAML parser.

Importing PyYAML costs more wall time than the rest of ``aicp validate``
together (~13 ms: its package loads every module and compiles its scanner's
patterns). A chain is validated, estimated and run many times unchanged, so a
YAML document that ``validate`` or ``estimate-cost`` parsed is kept in
``$XDG_CACHE_HOME/aicp/chains/`` (:mod:`aicp._cache`: marshal's format, which
gives back exactly the types and the shared values of aliases), and the next
read of the same text, by any command, takes its data from there without
importing ``yaml``. Runs and the Python API read entries, never write them: a
run's I/O is its record's, and a program loading chains fills no cache it did
not ask for.

An entry is found by the text's CRC-32 and length and holds the whole text,
which must equal the one being read: a hit is the same text, never a
look-alike. It also holds what read it, and is used only when all of it is
still the same: aicp's version, the size and modification time of the
modules that define what a text parses to (:mod:`~aicp._chain.parse`,
:mod:`~aicp._chain.yamlload`, :mod:`~aicp._chain.limits`), the interpreter
(version, prefix) and the PyYAML that parsed it (its file, size and modification time: the
PyYAML this process would import must be that one).
A document that is not a mapping, or holds a date, a timestamp or an integer
too long to read (which marshal does not carry) is parsed every time, as is
every document that does not parse (its error needs the parser's position).
Positions are not kept: a warning or an error that needs one composes the
text then (:class:`~aicp._chain.parse.Positions`). At most :data:`MAX_ENTRIES`
entries of at most :data:`MAX_TEXT` characters are kept, the oldest removed.
"""

from __future__ import annotations

import os
import sys
import zlib

from aicp._cache import cache_path, entry_path, read_entry, write_entry
from aicp._version import __version__

TYPE_CHECKING = False  # typing costs ~5 ms at start-up: for the type checker only
if TYPE_CHECKING:
    from typing import Any

MAX_ENTRIES = 256
MAX_TEXT = 256 * 1024
_FOLDER = "chains"
# the modules whose code decides what a text parses to (limits: the bounds the composer applies)
_PARSING = ("parse.py", "yamlload.py", "limits.py")


def _entry(text: str) -> str:
    return entry_path(_FOLDER, f"{zlib.crc32(text.encode('utf-8', 'surrogatepass')):08x}-{len(text)}")


def _reader() -> list[Any] | None:
    """What reads a text in this process, as an entry records it; None when it cannot be told."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        files = [_state(os.path.join(here, name)) for name in _PARSING]
    except OSError:
        return None
    return [__version__, sys.version, sys.prefix, files]


def _state(path: str) -> list[Any]:
    st = os.stat(path)
    return [path, st.st_size, st.st_mtime_ns]


def _pyyaml_file() -> str | None:
    """The file of the PyYAML package this process has imported, or would import (found, not imported)."""
    module = sys.modules.get("yaml")
    if module is not None:
        return getattr(module, "__file__", None)
    from importlib.machinery import PathFinder

    spec = PathFinder.find_spec("yaml")
    return spec.origin if spec is not None else None


def load(text: str) -> dict[str, Any] | None:
    """The data ``text`` parsed to when it was last parsed here, if an entry says so; else None."""
    if len(text) > MAX_TEXT:
        return None
    entry = read_entry(_entry(text))
    if not isinstance(entry, dict) or entry.get("text") != text or entry.get("reader") != _reader():
        return None
    try:
        if _state(_pyyaml_file() or "") != entry["yaml"]:  # another PyYAML, or upgraded, reinstalled, removed
            return None
    except (OSError, ValueError, KeyError):
        return None
    data = entry.get("data")
    return data if isinstance(data, dict) else None


def save(text: str, data: Any) -> None:
    """Keep ``data``, what the YAML ``text`` parsed to (with the PyYAML imported), if marshal carries it."""
    reader = _reader()
    if len(text) > MAX_TEXT or not isinstance(data, dict) or reader is None:
        return
    try:
        yaml = _state(_pyyaml_file() or "")
    except (OSError, ValueError):
        return
    if write_entry(_entry(text), {"reader": reader, "yaml": yaml, "text": text, "data": data}):
        _prune()


def _prune() -> None:
    """Remove the oldest entries beyond :data:`MAX_ENTRIES` (a miss pays it, never a hit)."""
    folder = cache_path(_FOLDER)
    try:
        with os.scandir(folder) as found:
            entries = [(e.stat().st_mtime_ns, e.path) for e in found if e.name.endswith(".bin")]
    except OSError:
        return
    for _, path in sorted(entries)[:max(0, len(entries) - MAX_ENTRIES)]:
        try:
            os.unlink(path)
        except OSError:
            pass
