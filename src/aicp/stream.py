"""The event stream as a small Python API, compatible with the AI Content Pipeline tool's.

``StreamEmitter(enabled=True)`` writes the same JSON lines as ``aicp
run-chain --stream`` (lifecycle events to stderr, the result to stdout),
through the same structlog pipeline; disabled, it is silent. ``NullEmitter``
is the do-nothing stand-in. Code written against the old tool's emitter works
unchanged; the events gain our envelope fields (``level``, ``run_id``).
"""

from __future__ import annotations

from typing import Any

from aicp._events import EventLog
from aicp._version import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "NullEmitter", "StreamEmitter"]


class StreamEmitter:
    """Emits the v1 events. Streams are looked up at each write (works under capsys)."""

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled
        self._log = EventLog(stream=True, run_end=False) if enabled else None

    def _emit(self, event: str, **fields: Any) -> None:
        if self._log is not None:
            self._log.emit(event, **fields)

    def pipeline_start(self, name: str, total_steps: int, config: str | None = None) -> None:
        self._emit("pipeline_start", name=name, total_steps=total_steps, config=config)

    def step_start(self, step_index: int, step_type: str, model: str | None = None) -> None:
        self._emit("step_start", step=step_index, type=step_type, model=model)

    def step_complete(self, step_index: int, cost: float = 0.0, output_path: str | None = None,
                      duration: float = 0.0) -> None:
        self._emit("step_complete", step=step_index, cost=cost, output=output_path,
                   duration_seconds=round(duration, 3))

    def step_error(self, step_index: int, error: str, step_type: str | None = None) -> None:
        self._emit("step_error", step=step_index, type=step_type, error=error)

    def pipeline_complete(self, result: dict[str, Any]) -> None:
        """The terminal result: to stdout, the only event that goes there."""
        if self._log is not None:
            self._log.result(**result)


class NullEmitter:
    """Accepts every emitter call and does nothing."""

    def pipeline_start(self, *args: Any, **kwargs: Any) -> None:
        pass

    def step_start(self, *args: Any, **kwargs: Any) -> None:
        pass

    def step_complete(self, *args: Any, **kwargs: Any) -> None:
        pass

    def step_error(self, *args: Any, **kwargs: Any) -> None:
        pass

    def pipeline_complete(self, *args: Any, **kwargs: Any) -> None:
        pass
