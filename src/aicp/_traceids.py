"""W3C trace and span ids for a run, derived from its run id, so every view of a run agrees.

The ECS and OTel log lines carry ``trace.id`` / ``TraceId`` and the span of the
step attempt they belong to; the OpenTelemetry trace exporter (``aicp[otel]``)
gives its spans the very same ids. Deriving them (a hash of the run id, the step,
the member and the attempt) needs no shared state between those consumers: only
which attempt of a step is running, which each follows from ``step_start``.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

SpanKey = tuple[int, "int | None", int]  # (step, member, attempt); a group's own span is attempt 1


def _hex(text: str, digits: int) -> str:
    value = hashlib.sha256(text.encode()).hexdigest()[:digits]
    return value if value.strip("0") else "1".rjust(digits, "0")  # all-zero ids are invalid (W3C)


class TraceIds:
    """The ids of one run: ``trace_id`` (32 hex), ``run_span`` and one span per step attempt (16 hex)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.trace_id = _hex(f"aicp-trace:{run_id}", 32)
        self.run_span = _hex(f"aicp-run:{run_id}", 16)
        self._attempts: dict[tuple[int, int | None], int] = {}
        self._lock = threading.Lock()

    def span(self, key: SpanKey) -> str:
        step, member, attempt = key
        return _hex(f"aicp-span:{self.run_id}:{step}:{member}:{attempt}", 16)

    def key_of(self, event: dict[str, Any]) -> SpanKey | None:
        """The step attempt an event belongs to (None: the run itself). Follows ``step_start``."""
        step = event.get("step")
        if not isinstance(step, int):
            return None
        member = event.get("member")
        where = (step, member if isinstance(member, int) else None)
        attempt = event.get("attempt")
        name = event.get("event")
        with self._lock:
            if name == "step_start":
                self._attempts[where] = attempt if isinstance(attempt, int) else 1
            if name == "step_retry" and isinstance(attempt, int):
                return (*where, attempt - 1)  # announced by the attempt that failed
            if not isinstance(attempt, int):
                attempt = self._attempts.get(where, 1)
        return (*where, attempt)

    def span_of(self, event: dict[str, Any]) -> str:
        key = self.key_of(event)
        return self.run_span if key is None else self.span(key)
