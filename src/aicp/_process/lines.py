"""Cut a byte stream into lines with a bounded buffer, a chunk at a time.

A step may print gigabytes, or one line without a newline forever: the
supervisor must keep its memory bounded whatever the step does, so a line
longer than the limit is cut (reported once, marked truncated) and the rest
of it, up to the next newline, is dropped.

Lines are handed on in batches (every whole line of a chunk read from the
pipe), decoded at once: the relay's cost is then per chunk, not per line. A
trailing CR (CR LF line ends) is removed; bytes that are not UTF-8 become
U+FFFD. Decoding the batch joined by newlines gives exactly the lines decoded
one by one, since a newline never belongs to a UTF-8 sequence.
"""

from __future__ import annotations

from typing import Callable

Emit = Callable[[list[str], bool], None]  # lines, cut (every line of a call is cut, or none)


class LineSplitter:
    def __init__(self, max_line: int, emit: Emit) -> None:
        self._max = max_line
        self._emit = emit
        self._buf = bytearray()
        self._skipping = False  # inside the dropped tail of a cut line

    def feed(self, chunk: bytes) -> None:
        lines = chunk.split(b"\n")
        tail = lines.pop()  # after the last newline: the start of a line still to come
        if lines:
            if self._skipping:  # the end of a cut line: dropped
                self._skipping = False
                del lines[0]
            elif self._buf:
                self._buf += lines[0]
                lines[0] = bytes(self._buf)
                self._buf.clear()
            if lines:
                self._lines(lines, len(chunk) + len(lines[0]) > self._max)
        self._hold(tail)

    def close(self) -> None:
        """Flush a last line that had no newline."""
        if self._buf:
            data = bytes(self._buf)
            self._buf.clear()
            self._lines([data], False)
        self._skipping = False

    def _hold(self, tail: bytes) -> None:
        if self._skipping or not tail:
            return
        self._buf += tail
        if len(self._buf) > self._max:
            cut = bytes(self._buf[: self._max])
            self._buf.clear()
            self._skipping = True
            self._send([cut], True)

    def _lines(self, lines: list[bytes], maybe_long: bool) -> None:
        """Hand on whole lines in order; those over the limit are cut, each in a call of its own."""
        if maybe_long and max(map(len, lines)) > self._max:
            start = 0
            for i, line in enumerate(lines):
                if len(line) > self._max:
                    if i > start:
                        self._send(lines[start:i], False)
                    self._send([line[: self._max]], True)
                    start = i + 1
            lines = lines[start:]
            if not lines:
                return
        self._send(lines, False)

    def _send(self, lines: list[bytes], cut: bool) -> None:
        joined = b"\n".join(lines)
        if b"\r" in joined:
            joined = b"\n".join(line[:-1] if line.endswith(b"\r") else line for line in lines)
        self._emit(joined.decode("utf-8", "replace").split("\n"), cut)
