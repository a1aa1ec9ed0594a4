"""The view as plain lines, for a pipe, a file or a CI log: one line per transition, no escapes."""

from __future__ import annotations

from typing import Any, Callable

from aicp._view.model import label_of
from aicp._view.text import duration, money


def _title(e: dict[str, Any]) -> str:
    """``step 1 talk: python``: the step's place, name and type."""
    model = f" ({e['model']})" if e.get("model") else ""
    return f"step {label_of(e)}: {e.get('type') or ''}{model}"


def _stamped(e: dict[str, Any], text: str) -> list[str]:
    elapsed = e.get("elapsed_seconds")
    stamp = f"[{elapsed:7.1f}s] " if isinstance(elapsed, (int, float)) else ""
    return [f"{stamp}{_title(e)} {text}"]


def _start(e: dict[str, Any]) -> list[str]:
    attempt, most = e.get("attempt") or 1, e.get("max_attempts")
    if e.get("members") is not None:
        return _stamped(e, f"started ({e['members']} members, {e.get('merge_strategy')})")
    return _stamped(e, f"started (attempt {attempt}/{most})" if attempt > 1 and most else
                    f"started (attempt {attempt})" if attempt > 1 else "started")


def _retry(e: dict[str, Any]) -> list[str]:
    return _stamped(e, f"retrying in {e.get('delay_seconds')}s (attempt {e.get('attempt')} next): {e.get('error')}")


def _complete(e: dict[str, Any]) -> list[str]:
    return _stamped(e, f"done in {duration(float(e.get('duration_seconds') or 0))}, {money(float(e.get('cost') or 0))}")


def _error(e: dict[str, Any]) -> list[str]:
    lines = str(e.get("error") or "").splitlines()
    return _stamped(e, f"failed: {lines[0][:200] if lines else e.get('reason')}")


def _skipped(e: dict[str, Any]) -> list[str]:
    reason = e.get("reason")
    text = "reused" if reason == "reused" else f"skipped ({reason})"
    if e.get("step") is None:
        return [f"{e.get('location') or 'step'}: {e.get('type', '')} {text}"]
    return _stamped(e, text)


_LINES: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "pipeline_start": lambda e: [f"running '{e.get('name')}': {e.get('total_steps')} steps"],
    "step_start": _start,
    "step_retry": _retry,
    "step_complete": _complete,
    "step_error": _error,
    "step_skipped": _skipped,
    "warning": lambda e: [f"warning: {e.get('message')}"],
}


class PlainLines:
    """The lines each event adds. A relayed line is labelled like its step's ``step_start``."""

    def __init__(self) -> None:
        self.titles: dict[tuple[Any, Any], str] = {}

    def __call__(self, event: dict[str, Any]) -> list[str]:
        key = (event.get("step"), event.get("member"))
        if event.get("event") == "step_log":
            return [f"  {self.titles.get(key) or _title(event)} | {event.get('line', '')}"]
        if event.get("event") == "step_start":
            self.titles[key] = _title(event)
        lines = _LINES.get(str(event.get("event")))
        return lines(event) if lines is not None else []
