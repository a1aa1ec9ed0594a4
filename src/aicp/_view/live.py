"""The live block on a terminal: one row per running step, a status line, redrawn in place.

How it stays uncorrupted:

* every row is cut to the terminal's width minus one cell (measured in cells,
  control characters removed), so no row ever wraps; the width and height are
  read again at every redraw, so after a resize the next frame fits the new size;
* the block is never taller than the screen minus one row (rows that do not fit
  are counted in a "... and N more" row): the cursor can always move back to
  the block's first row, which it could not once that row scrolled away;
* a step that has finished (and every step before it) is printed once above
  the block, as a permanent line, and leaves the block: the part that is
  redrawn stays small, and the scrollback keeps the whole run;
* a frame is one ``write``: cursor up to the block's first row, erase to the
  end of the screen, the rows.

A ticker thread redraws every quarter second, so running steps' clocks move
between events.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from typing import Any, Callable, Sequence

from aicp._view.model import Row, RunModel
from aicp._view.report import end_lines
from aicp._view.text import Marks, clean, duration, fit, money, pad, paint, width

TICK = 0.25
_LINE = "\x1b[2K"  # erase the row before writing it (belt and braces: the block was erased already)
_BAR = 10


def terminal_size(stream: Any) -> tuple[int, int]:
    """Columns and rows of the terminal ``stream`` is on; a terminal that reports no size (0x0,
    as a bare pty does) counts as ``COLUMNS``/``LINES`` or 80x24."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, ValueError, OSError):
        size = os.terminal_size((0, 0))
    if not size.columns or not size.lines:
        size = shutil.get_terminal_size()
    return max(size.columns, 10), max(size.lines, 3)


class LiveScreen:
    """Draws a :class:`RunModel` on a terminal. Call :meth:`changed` after each event, :meth:`finish` at the end."""

    def __init__(self, model: RunModel, write: Callable[[str], None], size: Callable[[], tuple[int, int]],
                 colour: bool, marks: Marks, clock: Callable[[], float] = time.time, tick: bool = True) -> None:
        self.model, self.write, self.size, self.colour, self.marks = model, write, size, colour, marks
        self.clock = clock
        self.lock = threading.RLock()
        self._drawn = 0  # rows of the block now on screen
        self._committed = 0  # rows of model.ordered() printed for good
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="aicp-view", daemon=True) if tick else None
        if self._ticker is not None:
            self._ticker.start()

    # ---------------------------------------------------------------- drawing

    def changed(self) -> None:
        with self.lock:
            self._draw()

    def above(self, lines: list[str]) -> None:
        """Print lines for good above the block (a warning, text that is not an event)."""
        with self.lock:
            self._draw(extra=lines)

    def finish(self) -> None:
        """Stop ticking; print every row, the outcome, the failures and the resume command for good."""
        self._stop.set()
        if self._ticker is not None and self._ticker is not threading.current_thread():
            self._ticker.join(2)
        with self.lock:
            self._draw(final=True)

    def _tick(self) -> None:
        while not self._stop.wait(TICK):
            with self.lock:
                if not self._stop.is_set():
                    self._draw()

    def _draw(self, extra: Sequence[str] = (), final: bool = False) -> None:
        cols, lines = self.size()
        cells = cols - 1  # never the last column: writing there may wrap
        now = self._now()
        rows = self.model.ordered()
        done = self._committed
        while done < len(rows) and (rows[done].finished or final):
            done += 1
        out = [f"\r\x1b[{self._drawn}A\x1b[J" if self._drawn else "\r\x1b[J"]
        out += [_LINE + fit(clean(line), cells) + "\n" for line in extra]
        out += [_LINE + self._row(row, now, cells) + "\n" for row in rows[self._committed:done]]
        self._committed = done
        if final:
            out += [line + "\n" for line in end_lines(self.model, self.colour, self.marks.of("failed", now))]
            self._drawn = 0
        else:
            block = self._block(rows[done:], now, cells, lines - 1)
            out += [_LINE + line + "\n" for line in block]
            self._drawn = len(block)
        self.write("".join(out))

    def _now(self) -> float:
        now = self.clock()
        return now if self.model.end is None else self.model.last_time

    def _block(self, rows: list[Row], now: float, cells: int, room: int) -> list[str]:
        status = self._status(now, cells)
        if room <= 1:
            return [status][:max(room, 0)]
        shown = rows if len(rows) <= room - 1 else rows[:room - 2]
        block = [self._row(row, now, cells) for row in shown]
        if len(shown) < len(rows):
            block.append(fit(f"  ... and {len(rows) - len(shown)} more", cells))
        return [*block, status]

    def _status(self, now: float, cells: int) -> str:
        m = self.model
        running = sum(1 for r in m.rows.values() if r.state in ("running", "retrying"))
        text = (f"{m.name or 'run'}: {m.steps_done()}/{m.total_steps} steps done, {money(m.cost())}, "
                f"{duration(m.elapsed(now))}" + (f", {running} running" if running else ""))
        return paint(fit(text, cells), "bold", self.colour)

    def _row(self, row: Row, now: float, cells: int) -> str:
        """``✓ 2 render  python  try 2/3  note...  4.1s $0.040``, cut to ``cells``."""
        mark = self.marks.of(row.state, now)
        right = duration(row.elapsed(now)) + (f" {money(row.cost)}" if row.cost else "")
        left = f"{mark} {fit(clean(row.label), max(8, cells // 3))}"
        middle = clean(" ".join(filter(None, [row.kind, _attempts(row), _detail(row, now)])))
        room = cells - width(left) - width(right) - 2
        if room < 4:  # a narrow terminal: the mark, the label, the clock
            plain = fit(f"{left} {right}", cells)
            return paint(plain[:1], row.state, self.colour) + plain[1:]
        body = f"{left} {pad(fit(middle, room), room)} {right}"
        return paint(mark, row.state, self.colour) + body[len(mark):]


def _attempts(row: Row) -> str:
    if row.max_attempts and row.max_attempts > 1:
        return f"try {row.attempt}/{row.max_attempts}"
    return f"try {row.attempt}" if row.attempt > 1 else ""


def _detail(row: Row, now: float) -> str:
    if row.state == "retrying":
        wait = f" in {max(0.0, row.retry_at - now):.1f}s" if row.retry_at is not None else ""
        return f"retrying{wait}: {row.note}"
    if row.fraction is not None and row.state == "running":
        filled = int(row.fraction * _BAR)
        return f"[{'#' * filled}{'.' * (_BAR - filled)}] {row.fraction * 100:3.0f}% {row.note}".rstrip()
    if row.state == "failed":
        return f"failed: {row.note}"
    return f"{row.retries} {'retry' if row.retries == 1 else 'retries'}, {row.note}".rstrip(", ") \
        if row.retries else row.note
