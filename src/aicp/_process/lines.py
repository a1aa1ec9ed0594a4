"""Cut a byte stream into lines with a bounded buffer.

A step may print gigabytes, or one line without a newline forever: the
supervisor must keep its memory bounded whatever the step does, so a line
longer than the limit is cut (reported once, marked truncated) and the rest
of it, up to the next newline, is dropped.
"""

from __future__ import annotations

from typing import Callable


class LineSplitter:
    def __init__(self, max_line: int, emit: Callable[[str, bool], None]) -> None:
        self._max = max_line
        self._emit = emit
        self._buf = bytearray()
        self._skipping = False  # inside the dropped tail of a cut line

    def feed(self, chunk: bytes) -> None:
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                self._hold(chunk[start:])
                return
            piece = chunk[start:nl]
            if self._skipping:
                self._skipping = False
            else:
                self._buf += piece
                self._emit_buf(len(self._buf) > self._max)
            start = nl + 1

    def close(self) -> None:
        """Flush a last line that had no newline."""
        if self._buf:
            self._emit_buf(False)
        self._skipping = False

    def _hold(self, tail: bytes) -> None:
        if self._skipping or not tail:
            return
        self._buf += tail
        if len(self._buf) > self._max:
            self._emit_buf(True)
            self._skipping = True

    def _emit_buf(self, cut: bool) -> None:
        data = bytes(self._buf[: self._max]) if cut else bytes(self._buf)
        self._buf.clear()
        if data.endswith(b"\r"):
            data = data[:-1]
        self._emit(data.decode("utf-8", "replace"), cut)
