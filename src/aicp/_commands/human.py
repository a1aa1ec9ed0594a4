"""The view for people: what the event stream says, as text on stderr.

On a terminal it is a live block, one line per step (state, elapsed time, a
progress bar for steps that report progress, cost), redrawn in place; on a
pipe or file it is one plain line per transition. It is an observer of the
same events the JSON stream carries, so both always tell the same story.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

from aicp._commands.output import write_to

_BAR = 20
_REDRAW_INTERVAL = 0.1


@dataclass
class _Row:
    label: str
    state: str = "running"
    started: float = 0.0
    ended: float | None = None
    fraction: float | None = None
    cost: float = 0.0
    note: str = ""

    def render(self, now: float) -> str:
        elapsed = (self.ended or now) - self.started
        bar = ""
        if self.fraction is not None and self.state == "running":
            filled = int(self.fraction * _BAR)
            bar = f" [{'#' * filled}{'.' * (_BAR - filled)}] {self.fraction * 100:3.0f}%"
        cost = f" ${self.cost:.3f}" if self.cost else ""
        note = f"  {self.note}" if self.note else ""
        return f"{self.state:>9}  {self.label:<40} {elapsed:6.1f}s{bar}{cost}{note}"[:200]


def _label(event: dict[str, Any]) -> str:
    step: int = event["step"]
    member = event.get("member")
    where = f"{step + 1}" if member is None else f"{step + 1}.{member + 1}"
    model = f" ({event['model']})" if event.get("model") else ""
    name = f" {event['name']}" if event.get("name") else ""
    return f"step {where}{name}: {event.get('type', '')}{model}"


def _key(event: dict[str, Any]) -> tuple[Any, Any]:
    return event.get("step"), event.get("member")


class HumanView:
    """Observer of events (see :class:`aicp._events.EventLog`); writes to stderr."""

    def __init__(self, live: bool | None = None) -> None:
        self.live = sys.stderr is not None and sys.stderr.isatty() if live is None else live
        self.rows: dict[tuple[Any, Any], _Row] = {}
        self._drawn = 0
        self._last_draw = 0.0

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        now = time.monotonic()
        key = _key(event)
        if kind == "step_start":
            self.rows[key] = _Row(_label(event), started=now)
            self._say(event, f"started (attempt {event.get('attempt', 1)})" if event.get("attempt", 1) > 1 else "started")
        elif kind in ("step_complete", "step_error") and key in self.rows:
            row = self.rows[key]
            row.state, row.ended = ("done", now) if kind == "step_complete" else ("failed", now)
            row.cost = event.get("cost") or 0.0
            row.note = "" if kind == "step_complete" else str(event.get("error", "")).splitlines()[0][:100]
            self._say(event, "done" if kind == "step_complete" else f"failed: {row.note}")
        elif kind == "step_progress" and key in self.rows:
            self.rows[key].fraction = event.get("fraction")
            self.rows[key].note = event.get("message") or ""
        elif kind == "step_log" and key in self.rows:
            self.rows[key].note = str(event.get("line", ""))[:80]
            if not self.live:
                write_to("stderr", f"  {self.rows[key].label} | {event.get('line', '')}\n")
        elif kind == "step_retry" and key in self.rows:
            self.rows[key].state = "retrying"
            self._say(event, f"retrying in {event.get('delay_seconds')}s: {event.get('error')}")
        elif kind == "step_skipped":  # reused by a resumed run, disabled, or its group had finished
            reason = event.get("reason")
            text = "reused" if reason == "reused" else f"skipped ({reason})"
            if event.get("step") is None:
                write_to("stderr", f"{event.get('location') or 'step'}: {event.get('type', '')} {text}\n")
            else:
                self.rows[key] = _Row(_label(event), state="reused" if reason == "reused" else "skipped",
                                      started=now, ended=now)
                self._say(event, text)
        elif kind == "warning":
            write_to("stderr", f"warning: {event.get('message')}\n")
        elif kind == "pipeline_start":
            write_to("stderr", f"running '{event.get('name')}': {event.get('total_steps')} steps\n")
        if self.live and (kind != "step_progress" or now - self._last_draw >= _REDRAW_INTERVAL):
            self._redraw(now)

    def _say(self, event: dict[str, Any], text: str) -> None:
        if not self.live:
            write_to("stderr", f"[{event['elapsed_seconds']:7.1f}s] {_label(event)} {text}\n")

    def _redraw(self, now: float) -> None:
        # in step order, a group's members under it, whatever order they started in
        order = sorted(self.rows, key=lambda k: (k[0] if k[0] is not None else -1, -1 if k[1] is None else k[1]))
        lines = [self.rows[key].render(now) for key in order]
        up = f"\x1b[{self._drawn}F" if self._drawn else ""
        write_to("stderr", up + "".join(f"\x1b[2K{line}\n" for line in lines))
        self._drawn = len(lines)
        self._last_draw = now

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
