"""The run manifest's bytes and digest, made from pieces kept between writes.

The manifest is rewritten after every step, whole (docs/supervisor.md, "How
durable the run record is"), and sealed with a digest: the SHA-256 of its
canonical JSON (keys sorted, no spaces). Serialising the whole document twice
per step (canonical for the digest, indented for the file) made each step's
update grow with the run, quadratic in its steps: 0.25 ms at step 200, 0.6 ms
at step 600. A step's entry never changes once recorded, so its two renderings
are made once and kept; a write joins them with the few top-level fields.
The bytes are exactly orjson's for the whole document (``tests/test_runrecord.py``
holds them to it), so records written before and after read the same.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import operator
from typing import Any

import orjson

_CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
_INDENTED = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
STEPS = "steps"


def canonical(value: Any) -> bytes:
    """The digest's form of a value: keys sorted, no spaces."""
    return orjson.dumps(value, default=str, option=_CANONICAL)


def indented(value: Any, depth: int = 0) -> bytes:
    """The file's form of a value nested ``depth`` levels deep (two spaces a level). JSON strings
    hold no raw newline, so every newline orjson writes is one of its own line breaks."""
    text = orjson.dumps(value, default=str, option=_INDENTED)
    return text.replace(b"\n", b"\n" + b"  " * depth) if depth else text


class ManifestBytes:
    """Renders a manifest whose ``steps`` gain entries at the end (any other change, an entry
    replaced or removed, renders them all again): :meth:`render` gives the file's bytes, digest
    included. The steps are joined once for the digest and once for the file (what two orjson
    calls over the whole document cost in copies, without serialising every entry again)."""

    def __init__(self) -> None:
        self._entries: dict[str, Any] = {}  # key -> the entry object rendered, in the steps' order
        self._keys: list[str] = []  # in canonical (sorted) order, with
        self._canonical: list[bytes] = []  # '"key":' + its canonical form, in the same order
        self._indented: list[bytes] = []  # ',\n    "key": ' + its indented form (the first without ',\n')

    def render(self, body: dict[str, Any]) -> bytes:
        """``body`` (with a ``steps`` object of entries) as the file holds it: indented, in its own
        key order, with ``digest`` (over the canonical form of the rest) last."""
        steps: dict[str, Any] = body[STEPS]
        self._refresh(steps)
        fields = [orjson.dumps(key) + b":" + canonical(body[key]) for key in sorted(body) if key != STEPS]
        at = sum(1 for key in body if key < STEPS)  # (the canonical form sorts the keys)
        digest = hashlib.sha256(b"{" + b"".join(field + b"," for field in fields[:at]) + b'"steps":{')
        digest.update(b",".join(self._canonical))
        digest.update(b"}" + b"".join(b"," + field for field in fields[at:]) + b"}")
        parts = [b"{\n"]
        for key, value in (*body.items(), ("digest", digest.hexdigest())):
            if len(parts) > 1:
                parts.append(b",\n")
            parts.append(b"  " + orjson.dumps(key) + b": ")
            if key != STEPS:
                parts.append(indented(value, 1))
            elif steps:
                parts += [b"{\n", *self._indented, b"\n  }"]
            else:
                parts.append(b"{}")
        parts.append(b"\n}")
        return b"".join(parts)

    def _refresh(self, steps: dict[str, Any]) -> None:
        done = len(self._entries)
        if list(steps)[:done] != list(self._entries) or \
                not all(map(operator.is_, itertools.islice(steps.values(), done), self._entries.values())):
            self.__init__()  # type: ignore[misc]  # (start over)
            done = 0
        for key, entry in itertools.islice(steps.items(), done, None):
            name = orjson.dumps(key)
            self._entries[key] = entry
            at = bisect.bisect(self._keys, key)
            self._keys.insert(at, key)
            self._canonical.insert(at, name + b":" + canonical(entry))
            self._indented.append((b",\n    " if self._indented else b"    ") + name + b": " + indented(entry, 2))
