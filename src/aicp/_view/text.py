"""Text that fits a terminal: display widths, safe characters, colour, marks and durations.

A row that is one cell wider than the terminal wraps, and a wrapped row breaks
every later redraw (the cursor moves up too few lines and leaves stale copies).
So every live row is measured in terminal cells (wide CJK and emoji count two,
combining marks none), cut to fit, and stripped of control characters a step
may print (escape sequences, carriage returns) before it reaches the screen.
"""

from __future__ import annotations

import os
import unicodedata
from typing import Any

_CONTROL = {c: "?" for c in [*range(0x00, 0x20), *range(0x7F, 0xA0)]}


def clean(text: str) -> str:
    """The text with every control character (ESC, CR, TAB...) shown as ``?``: it cannot move the cursor."""
    return text.translate(_CONTROL)


def _cells(char: str) -> int:
    if char < "\u0300":  # ASCII and Latin: the common case
        return 1
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def width(text: str) -> int:
    return sum(map(_cells, text))


def fit(text: str, cells: int) -> str:
    """``text`` cut to at most ``cells`` terminal cells, ending in ``…`` when cut."""
    if cells <= 0:
        return ""
    if len(text) <= cells and text.isascii():
        return text
    if width(text) <= cells:
        return text
    out, used = [], 0
    for char in text:
        w = _cells(char)
        if used + w > cells - 1:
            break
        out.append(char)
        used += w
    return "".join(out) + "…"


def pad(text: str, cells: int) -> str:
    return text + " " * max(0, cells - width(text))


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def money(value: float) -> str:
    return f"${value:.3f}"


def use_colour(stream: Any) -> bool:
    """Colour on a terminal, unless ``NO_COLOR`` is set (no-color.org) or the terminal is dumb."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


_SGR = {"done": "32", "reused": "32", "failed": "31", "retrying": "33", "running": "36", "skipped": "2",
        "bold": "1", "dim": "2", "red": "31", "green": "32"}


def paint(text: str, style: str, colour: bool) -> str:
    return f"\x1b[{_SGR[style]}m{text}\x1b[0m" if colour and text else text


class Marks:
    """One-cell marks per state; ASCII ones when the stream cannot encode the others."""

    UNICODE = {"done": "✓", "failed": "✗", "retrying": "↻", "skipped": "-", "reused": "=", "spin": "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"}
    ASCII = {"done": "+", "failed": "x", "retrying": "~", "skipped": "-", "reused": "=", "spin": "|/-\\"}

    def __init__(self, stream: Any) -> None:
        encoding = getattr(stream, "encoding", None) or "ascii"
        try:
            "".join(v for v in self.UNICODE.values()).encode(encoding)
            self.table = self.UNICODE
        except (UnicodeEncodeError, LookupError):
            self.table = self.ASCII

    def of(self, state: str, now: float) -> str:
        if state == "running":
            spin = self.table["spin"]
            return spin[int(now * 8) % len(spin)]
        return self.table.get(state, "?")
