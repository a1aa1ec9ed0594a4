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
:mod:`~aicp._chain.yamlload`, :mod:`~aicp._chain.plainyaml`, :mod:`~aicp._chain.limits`), the interpreter
(version, prefix) and, for a text PyYAML parsed, that PyYAML (its file, size and modification
time: the PyYAML this process would import must be that one); a text
:mod:`~aicp._chain.plainyaml` read depends on no PyYAML.
A document that is not a mapping, or holds a date, a timestamp or an integer
too long to read (which marshal does not carry) is parsed every time, as is
every document that does not parse (its error needs the parser's position).
The positions of the values are kept with them (computed once, when the text
is parsed), so that a warning or an error about a kept document needs no
parser either. At most :data:`MAX_ENTRIES`
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

    Marks = dict[tuple[Any, ...], tuple[int, int]]

MAX_ENTRIES = 256
MAX_TEXT = 256 * 1024
_FOLDER = "chains"
# the modules whose code decides what a text parses to (limits: the bounds the composer applies)
_PARSING = ("parse.py", "yamlload.py", "plainyaml.py", "limits.py")


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


def load(text: str) -> tuple[dict[str, Any], Marks] | None:
    """The data ``text`` parsed to when it was last parsed here, and the positions of its values
    (:func:`aicp._chain.yamlload.marks`), if an entry says so; else None."""
    if len(text) > MAX_TEXT:
        return None
    entry = read_entry(_entry(text))
    if not isinstance(entry, dict) or entry.get("text") != text or entry.get("reader") != _reader():
        return None
    try:
        parser = entry["yaml"]  # None: read by plainyaml, which is part of the reader
        if parser is not None and _state(_pyyaml_file() or "") != parser:  # another PyYAML, or upgraded, removed
            return None
    except (OSError, ValueError, KeyError):
        return None
    data, marks = entry.get("data"), entry.get("marks")
    return (data, marks) if isinstance(data, dict) and isinstance(marks, dict) else None


def save(text: str, data: Any, marks: Marks, pyyaml: bool = True) -> None:
    """Keep ``data``, what the YAML ``text`` parsed to, and the positions of its values, if marshal
    carries them. ``pyyaml``: the PyYAML imported parsed it (else :mod:`aicp._chain.plainyaml`)."""
    reader = _reader()
    if len(text) > MAX_TEXT or not isinstance(data, dict) or reader is None:
        return
    try:
        yaml = _state(_pyyaml_file() or "") if pyyaml else None
    except (OSError, ValueError):
        return
    if write_entry(_entry(text), {"reader": reader, "yaml": yaml, "text": text, "data": data, "marks": marks}):
        _prune()


def _prune() -> None:
    """Beyond :data:`MAX_ENTRIES` entries, remove the oldest down to three quarters of it, so that the
    entries' ages are read once in many misses (a miss pays it, never a hit)."""
    folder = cache_path(_FOLDER)
    try:
        with os.scandir(folder) as found:
            names = [e for e in found if e.name.endswith(".bin")]
        if len(names) <= MAX_ENTRIES:
            return
        entries = [(e.stat().st_mtime_ns, e.path) for e in names]
    except OSError:
        return
    for _, path in sorted(entries)[:len(entries) - MAX_ENTRIES * 3 // 4]:
        try:
            os.unlink(path)
        except OSError:
            pass
