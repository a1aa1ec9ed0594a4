"""The view for people: what the event stream says, as text on stderr (``aicp view``: stdout).

On a terminal it is a live block (:mod:`aicp._view.live`): a row per running
step with its ticking clock, attempts, retries and cost, an N/M status line,
finished steps printed for good above it, and at the end the failures with
the step's traceback and the command that resumes the run. On a pipe or a
file it is one plain line per transition (:mod:`aicp._view.plain`). Both read
one model built from the same events the JSON stream carries
(:mod:`aicp._view.model`), so all three always tell the same story.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable

from aicp._commands.output import write_to
from aicp._view.model import RunModel
from aicp._view.plain import PlainLines
from aicp._view.report import end_lines
from aicp._view.text import Marks, use_colour

_ENDS = ("run_end", "pipeline_complete")
_PROGRESS_INTERVAL = 0.1


class HumanView:
    """Observer of events (see :class:`aicp._events.EventLog`); writes to ``sys.<stream>``.

    ``live``: the live block (default: when the stream is a terminal). ``clock``: what
    "now" is for running steps (the wall clock; a replay passes the events' own time).
    """

    def __init__(self, live: bool | None = None, stream: str = "stderr",
                 clock: Callable[[], float] = time.time, tick: bool = True) -> None:
        out = getattr(sys, stream)
        self.stream = stream
        self.live = (out is not None and out.isatty()) if live is None else live
        self.model = RunModel()
        self.colour = use_colour(out)
        self.marks = Marks(out)
        self.finished = False
        self.plain = PlainLines()
        self._last_progress = 0.0
        self.screen: Any = None
        if self.live:
            from aicp._view.live import LiveScreen, terminal_size

            self.screen = LiveScreen(self.model, self._write, lambda: terminal_size(getattr(sys, stream)),
                                     self.colour, self.marks, clock=clock, tick=tick)
        self.lock = self.screen.lock if self.screen is not None else threading.RLock()

    def _write(self, text: str) -> None:
        write_to(self.stream, text)

    def __call__(self, event: dict[str, Any]) -> None:
        with self.lock:
            if self.finished:
                return
            self.model.apply(event)
            if event.get("event") in _ENDS:
                self.close()
            elif self.screen is None:
                lines = self.plain(event)
                if lines:
                    self._write("".join(f"{line}\n" for line in lines))
            else:
                self._live(event)

    def _live(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "warning":
            self.screen.above([f"warning: {event.get('message')}"])
        elif kind == "pipeline_start":
            self.screen.above(self.plain(event))
        elif kind != "step_progress" or self._progress_due():
            self.screen.changed()

    def _progress_due(self) -> bool:
        now = time.monotonic()
        due = now - self._last_progress >= _PROGRESS_INTERVAL
        self._last_progress = now if due else self._last_progress
        return due

    def text(self, line: str) -> None:
        """A line that is not an event (``aicp view`` of a mixed stream): shown as it is."""
        with self.lock:
            if self.screen is not None and not self.finished:
                self.screen.above([line])
            else:
                self._write(f"{line}\n")

    def close(self) -> None:
        """The run ended (or the input did): the final rows, failures and resume command, once."""
        with self.lock:
            if self.finished:
                return
            self.finished = True
            if self.screen is not None:
                self.screen.finish()
            elif self.model.started is not None or self.model.end is not None:
                self._write("".join(f"{line}\n" for line in end_lines(self.model, False)))


def summary(result: dict[str, Any]) -> str:
    """The plain-text result printed on stdout when neither --stream nor --json is given."""
    state = "succeeded" if result["success"] else "failed"
    lines = [f"{state}: {result['steps_completed']}/{result['total_steps']} steps, "
             f"${result['total_cost']:.3f}, {result['total_time']:.1f}s"]
    for name, entry in result["outputs"].items():
        if name == "final":  # the same entry as the last step's, listed just above it
            continue
        value = entry.get("paths") or entry.get("path") or entry.get("text")
        if isinstance(value, list):
            value = ", ".join(map(str, value))
        lines.append(f"  {name}: {str(value)[:200]}")
    return "\n".join(lines) + "\n"
