"""What is printed once a run has ended: its failures, with the step's own traceback, and the
exact command that resumes it. The same text ends the live view, the plain lines and ``aicp view``.

The traceback shown is the step's (its worker sent it in ``step_error``), not
aicp's, so it is shown without ``--debug``: it is what the author of the step needs.
"""

from __future__ import annotations

from typing import Any

from aicp._view.model import RunModel
from aicp._view.text import clean, duration, money, paint

_TRACEBACK_LINES = 40


def failure_lines(model: RunModel, colour: bool, mark: str) -> list[str]:
    causes = model.causes()
    if not causes:
        return []
    lines = ["", paint("failures", "bold", colour)]
    for failure in causes:
        attempt = f", attempt {failure.attempt}" if failure.attempt else ""
        lines.append(paint(f"{mark} step {failure.label} ({failure.kind}{attempt}): {failure.reason}", "red", colour))
        lines += [f"  {clean(line)}" for line in failure.error.splitlines() or [""]]
        if failure.traceback:
            tb = failure.traceback.rstrip("\n").splitlines()
            if len(tb) > _TRACEBACK_LINES:
                tb = [tb[0], f"  ... {len(tb) - _TRACEBACK_LINES} lines ...", *tb[-(_TRACEBACK_LINES - 1):]]
            lines += [f"  {clean(line)}" for line in tb]
    return lines


def _outcome(end: dict[str, Any] | None) -> str:
    if end is None:  # the stream stopped before the run said how it ended (killed, or still running)
        return "did not finish"
    return "succeeded" if end.get("success") else f"failed (exit {end.get('exit_code')})"


def end_lines(model: RunModel, colour: bool, mark: str = "x") -> list[str]:
    """The failures, the outcome, and on failure the command that resumes the run."""
    end = model.end or {}
    ok = bool(end.get("success"))
    lines = [] if ok else failure_lines(model, colour, mark)
    total = model.total_steps or end.get("total_steps") or 0
    done = end.get("steps_completed", model.steps_done())
    lines.append(paint(f"{model.name or 'run'} {_outcome(model.end)}: {done}/{total} steps, {money(model.cost())}, "
                       f"{duration(model.elapsed(model.last_time))}", "green" if ok else "red", colour))
    if not ok and end.get("resume_command"):
        lines.append(f"resume with: {end['resume_command']}")
    return lines
