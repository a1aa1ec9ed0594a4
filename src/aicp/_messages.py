"""The short human ``message`` every event carries, and the names people see for steps.

Log shippers (syslog-ng, rsyslog, Elastic, Loki, lnav) show one text field per
line; without it a person sees a bare event name. The message is derived from
the event's own fields, so it never says more or less than the event does, and
it is written once here for the stream, the log formats and the human view.
It is short: one line, never a whole traceback.
"""

from __future__ import annotations

from typing import Any, Callable

_MAX = 300


def step_label(event: dict[str, Any]) -> str:
    """``step 2``, ``step 3.1`` (a group's member), with the step's name when it has one."""
    step = event.get("step")
    if step is None:
        return str(event.get("location") or "step")
    member = event.get("member")
    where = f"step {step + 1}" if member is None else f"step {step + 1}.{member + 1}"
    name = event.get("name")
    return f"{where} '{name}'" if name else where


def step_title(event: dict[str, Any]) -> str:
    """The label with the step's type and model: ``step 1 'render' (python)``."""
    kind = event.get("type") or "step"
    model = event.get("model")
    return f"{step_label(event)} ({kind}/{model})" if model else f"{step_label(event)} ({kind})"


def first_line(text: Any, limit: int = 160) -> str:
    """The first non-blank line of ``text``, cut to ``limit`` characters."""
    lines = str(text or "").strip().splitlines()
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _money(value: Any) -> str:
    return f"${float(value or 0.0):.3f}"


def _start(e: dict[str, Any]) -> str:
    if e.get("members") is not None:
        return f"{step_title(e)} started: {e['members']} members, {e.get('merge_strategy')}"
    attempt = e.get("attempt") or 1
    return f"{step_title(e)} started" + (f", attempt {attempt}" if attempt > 1 else "")


def _complete(e: dict[str, Any]) -> str:
    return f"{step_title(e)} completed in {float(e.get('duration_seconds') or 0):.2f}s, {_money(e.get('cost'))}"


def _error(e: dict[str, Any]) -> str:
    return f"{step_title(e)} failed ({e.get('reason') or 'error'}): {first_line(e.get('error'))}"


def _retry(e: dict[str, Any]) -> str:
    return (f"{step_label(e)} attempt {int(e.get('attempt') or 2) - 1} failed ({e.get('reason')}), "
            f"retrying in {e.get('delay_seconds')}s: {first_line(e.get('error'))}")


def _skipped(e: dict[str, Any]) -> str:
    reason = e.get("reason")
    return f"{step_label(e)} ({e.get('type')}) " + ("reused from an earlier run" if reason == "reused"
                                                   else f"skipped: {reason}")


def _progress(e: dict[str, Any]) -> str:
    return str(e.get("message") or f"{step_label(e)}: {float(e.get('fraction') or 0) * 100:.0f}%")


def _end(e: dict[str, Any]) -> str:
    head = (f"run succeeded: {e.get('steps_completed')}/{e.get('total_steps')} steps, "
            f"{_money(e.get('total_cost'))}, {float(e.get('total_time') or 0):.1f}s")
    if e.get("success"):
        return head
    return f"run failed (exit {e.get('exit_code')}): {first_line(e.get('error'))}"


def _pipeline_start(e: dict[str, Any]) -> str:
    return f"run '{e.get('name')}' started: {e.get('total_steps')} steps"


def _job_complete(e: dict[str, Any]) -> str:
    head = f"job {e.get('job_id')} {e.get('status')}"
    return head if e.get("success") else f"{head} (exit {e.get('exit_code')}): {first_line(e.get('error'))}"


def _batch_complete(e: dict[str, Any]) -> str:
    outcome = "succeeded" if e.get("success") else f"failed (exit {e.get('exit_code')})"
    return (f"batch {outcome}: {e.get('succeeded')}/{e.get('total_jobs')} jobs succeeded, {e.get('failed')} failed, "
            f"{_money(e.get('total_cost'))}")


_MESSAGES: dict[str, Callable[[dict[str, Any]], str]] = {
    "pipeline_start": _pipeline_start,
    "step_start": _start,
    "step_complete": _complete,
    "step_error": _error,
    "step_retry": _retry,
    "step_skipped": _skipped,
    "step_progress": _progress,
    "warning": lambda e: str(e.get("message")),
    "run_end": _end,
    "pipeline_complete": _end,
    "batch_start": lambda e: f"batch '{e.get('name')}' started: {e.get('total_jobs')} jobs ({e.get('engine')})",
    "job_queued": lambda e: f"job {e.get('job_id')} queued",
    "job_start": lambda e: f"job {e.get('job_id')} started, attempt {e.get('attempt')}",
    "job_retry": lambda e: (f"job {e.get('job_id')} attempt {e.get('attempt')} failed ({e.get('reason')}), "
                            f"retrying: {first_line(e.get('error'))}"),
    "job_complete": _job_complete,
    "batch_complete": _batch_complete,
}


def message_of(event: str, fields: dict[str, Any]) -> str:
    """The ``message`` of an event: for ``step_log`` the line itself, else a one-line summary."""
    if event == "step_log":
        return str(fields.get("line", ""))
    describe = _MESSAGES.get(event)
    text = describe(fields) if describe is not None else event.replace("_", " ")
    return text if len(text) <= _MAX else text[:_MAX - 1] + "…"
