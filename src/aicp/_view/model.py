"""What a person wants to know about a run, kept up to date from its events.

The live view, the plain lines and ``aicp view`` all read this one model, so
they tell the same story. Times are the events' own ``timestamp``s (not the
clock of whoever renders them), so a recorded run replays with its real
durations and a live one ticks from the moment each step started.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aicp._messages import first_line

Key = tuple[int, "int | None"]  # (step, member)


@dataclass
class Row:
    """One step, or one member of a parallel group."""

    key: Key
    label: str  # "2 render", "3.1"
    kind: str  # "python", "text_to_image/flux_dev"
    state: str = "running"  # running, retrying, done, failed, skipped, reused
    started: float = 0.0
    ended: float | None = None
    attempt: int = 1
    max_attempts: int | None = None
    retries: int = 0
    fraction: float | None = None
    cost: float = 0.0
    note: str = ""
    retry_at: float | None = None

    def elapsed(self, now: float) -> float:
        return max(0.0, (self.ended if self.ended is not None else now) - self.started)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "skipped", "reused")


@dataclass
class Failure:
    """A step that failed: what the failure section shows."""

    label: str
    kind: str
    attempt: int | None
    reason: str
    error: str
    traceback: str | None


@dataclass
class RunModel:
    name: str = ""
    run_id: str = ""
    total_steps: int = 0
    started: float | None = None
    last_time: float = 0.0
    rows: dict[Key, Row] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    end: dict[str, Any] | None = None  # run_end (or, without it, pipeline_complete)

    # ---------------------------------------------------------------- reading events

    def apply(self, event: dict[str, Any]) -> Row | None:
        """Take one event into the model; return the row it changed, if any."""
        stamp = event.get("timestamp")
        if isinstance(stamp, (int, float)):
            self.last_time = max(self.last_time, float(stamp))
        handler = _HANDLERS.get(str(event.get("event")))
        return handler(self, event) if handler is not None else None

    def _pipeline_start(self, e: dict[str, Any]) -> None:
        self.name, self.run_id = str(e.get("name") or ""), str(e.get("run_id") or "")
        self.total_steps = int(e.get("total_steps") or 0)
        self.started = e.get("timestamp")

    def _step_start(self, e: dict[str, Any]) -> Row:
        key = key_of(e)
        row = self.rows.get(key)
        if row is None or row.finished:
            row = self.rows[key] = Row(key, label_of(e), kind_of(e), started=self._time(e))
        row.state, row.note, row.retry_at, row.fraction = "running", "", None, None
        row.attempt = int(e.get("attempt") or 1)
        row.max_attempts = e.get("max_attempts") if isinstance(e.get("max_attempts"), int) else None
        if e.get("members") is not None:
            row.note = f"{e['members']} members, {e.get('merge_strategy')}"
        return row

    def _step_log(self, e: dict[str, Any]) -> Row | None:
        row = self.rows.get(key_of(e))
        if row is not None and row.state == "running":
            row.note = first_line(e.get("line"), 200)
        return row

    def _step_progress(self, e: dict[str, Any]) -> Row | None:
        row = self.rows.get(key_of(e))
        if row is not None:
            fraction = e.get("fraction")
            row.fraction = float(fraction) if isinstance(fraction, (int, float)) else None
            if e.get("message"):
                row.note = first_line(e["message"], 200)
        return row

    def _step_retry(self, e: dict[str, Any]) -> Row | None:
        row = self.rows.get(key_of(e))
        if row is not None:
            row.state, row.retries = "retrying", row.retries + 1
            delay = e.get("delay_seconds")
            row.retry_at = self._time(e) + float(delay) if isinstance(delay, (int, float)) else None
            row.note = first_line(e.get("error"), 200)
        return row

    def _step_complete(self, e: dict[str, Any]) -> Row | None:
        row = self.rows.get(key_of(e))
        if row is not None:
            row.state, row.ended, row.fraction = "done", self._time(e), None
            row.cost = float(e.get("cost") or 0.0)
            row.note = ""
        return row

    def _step_error(self, e: dict[str, Any]) -> Row | None:
        row = self.rows.get(key_of(e))
        if row is not None:
            row.state, row.ended, row.note = "failed", self._time(e), first_line(e.get("error"), 200)
            row.cost = float(e.get("cost") or 0.0)
        self.failures.append(Failure(label=label_of(e), kind=kind_of(e), attempt=e.get("attempt"),
                                     reason=str(e.get("reason") or "error"), error=str(e.get("error") or ""),
                                     traceback=e.get("traceback") if isinstance(e.get("traceback"), str) else None))
        return row

    def _step_skipped(self, e: dict[str, Any]) -> Row | None:
        if e.get("step") is None:  # a disabled step: it has no place among the enabled ones
            return None
        reused = e.get("reason") == "reused"
        row = self.rows[key_of(e)] = Row(key_of(e), label_of(e), kind_of(e), state="reused" if reused else "skipped",
                                         started=self._time(e), ended=self._time(e))
        row.note = "reused from an earlier run" if reused else str(e.get("reason") or "")
        return row

    def _warning(self, e: dict[str, Any]) -> None:
        self.warnings.append(str(e.get("message")))

    def _end(self, e: dict[str, Any]) -> None:
        if self.end is None or self.end.get("event") != "run_end":
            self.end = e
        if not self.run_id:
            self.run_id = str(e.get("run_id") or "")

    def _time(self, e: dict[str, Any]) -> float:
        stamp = e.get("timestamp")
        return float(stamp) if isinstance(stamp, (int, float)) else self.last_time

    # ---------------------------------------------------------------- what the views ask

    def ordered(self) -> list[Row]:
        """Rows in step order, a group's members right under it, whatever order they started in."""
        return [self.rows[k] for k in sorted(self.rows, key=lambda k: (k[0], -1 if k[1] is None else k[1]))]

    def steps_done(self) -> int:
        return sum(1 for r in self.rows.values() if r.key[1] is None and r.state in ("done", "reused"))

    def cost(self) -> float:
        if self.end is not None and isinstance(self.end.get("total_cost"), (int, float)):
            return float(self.end["total_cost"])
        return sum(r.cost for r in self.rows.values() if r.key[1] is None)  # a group's row has its members' cost

    def elapsed(self, now: float) -> float:
        if self.end is not None and isinstance(self.end.get("total_time"), (int, float)):
            return float(self.end["total_time"])
        return max(0.0, now - self.started) if self.started is not None else 0.0

    def causes(self) -> list[Failure]:
        """The failures worth showing: the real ones, not members cancelled because of them."""
        real = [f for f in self.failures if f.reason != "cancelled"]
        return real or self.failures[-1:]


_HANDLERS: dict[str, Any] = {
    "pipeline_start": RunModel._pipeline_start, "step_start": RunModel._step_start,
    "step_log": RunModel._step_log, "step_progress": RunModel._step_progress,
    "step_retry": RunModel._step_retry, "step_complete": RunModel._step_complete,
    "step_error": RunModel._step_error, "step_skipped": RunModel._step_skipped,
    "warning": RunModel._warning, "run_end": RunModel._end, "pipeline_complete": RunModel._end,
}


def key_of(event: dict[str, Any]) -> Key:
    step, member = event.get("step"), event.get("member")
    return (step if isinstance(step, int) else -1, member if isinstance(member, int) else None)


def label_of(event: dict[str, Any]) -> str:
    step, member = key_of(event)
    where = f"{step + 1}" if member is None else f"{step + 1}.{member + 1}"
    return f"{where} {event['name']}" if event.get("name") else where


def kind_of(event: dict[str, Any]) -> str:
    kind = str(event.get("type") or "")
    return f"{kind}/{event['model']}" if event.get("model") else kind
