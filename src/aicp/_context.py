"""What a step's code sees: the ``ctx`` passed to every executor as ``fn(ctx)``.

This module is imported in every worker before the step runs, so it imports
almost nothing: a worker's start-up time is the per-step overhead of the whole
tool. structlog is loaded only if the step actually asks for ``ctx.log``.
"""

from __future__ import annotations

import os

from aicp._worker.protocol import FAILURE_REASONS, Channel

__all__ = ["AtomicOutput", "Channel", "StepContext", "StepFailed"]  # Channel: what a StepContext talks through

TYPE_CHECKING = False  # typing, pathlib and contextlib would add ~15 ms to every worker's start
if TYPE_CHECKING:
    from collections.abc import MutableMapping
    from pathlib import Path
    from typing import Any

    from aicp._worker.protocol import FailureReason, WorkerSpec


class StepFailed(Exception):
    """Raise from a step to fail it with a precise reason instead of ``exception``.

    ``reason`` is one of the ``step_error`` reasons (``aicp._worker.protocol.FAILURE_REASONS``);
    the ``command`` step uses it to report the program's exit status
    (``exit_code``) or signal. ``run_exit_code`` is what the whole run then
    exits with (default 5, a step failed); provider steps use 4 for a rejected
    key or an unreachable service, so scripts can tell "fix your account" from
    "fix your chain".
    """

    def __init__(self, message: str, *, reason: FailureReason = "exception", exit_code: int | None = None,
                 signal: str | None = None, run_exit_code: int | None = None) -> None:
        if reason not in FAILURE_REASONS:
            raise ValueError(f"StepFailed reason {reason!r} is not one of {', '.join(FAILURE_REASONS)}")
        super().__init__(message)
        self.reason = reason
        self.exit_code = exit_code
        self.signal = signal
        self.run_exit_code = run_exit_code


class StepContext:
    """The step's view of its run.

    Attributes: ``input`` (the previous step's output, or the chain's input),
    ``params``, ``output_dir`` (created), ``step`` (index of the step among the
    enabled steps), ``member`` (index inside a parallel group, else None),
    ``name``, ``type``, ``model``, ``latest`` (the most recent output of each
    kind so far: ``{"text": ..., "video": ...}``) and ``chain_dir`` (the folder
    of the chain file, for resolving relative paths).
    """

    def __init__(self, spec: WorkerSpec, channel: Channel) -> None:
        self.input: Any = spec.get("input")
        self.params: dict[str, Any] = spec.get("params") or {}
        self._output_dir: str = spec["output_dir"]
        if not os.path.isdir(self._output_dir):  # (one stat where makedirs makes three calls and raises)
            os.makedirs(self._output_dir, exist_ok=True)
        self.step: int = spec["step"]
        self.member: int | None = spec.get("member")
        self.name: str = spec.get("name") or ""
        self.type: str = spec.get("type", "")
        self.model: str | None = spec.get("model")
        self.latest: dict[str, Any] = spec.get("latest") or {}
        self._remote: list[dict[str, Any]] = spec.get("remote") or []
        self._chain_dir: str = spec.get("chain_dir") or "."
        self._channel = channel
        self._log: Any = None

    @property
    def output_dir(self) -> Path:
        from pathlib import Path

        return Path(self._output_dir)

    @property
    def chain_dir(self) -> Path:
        from pathlib import Path

        return Path(self._chain_dir)

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress (0..1); it becomes a ``step_progress`` event."""
        fraction = min(1.0, max(0.0, float(fraction)))
        self._channel.progress(fraction, message)

    def remote_submitted(self, provider: str, endpoint: str, request_id: str, index: int = 0) -> None:
        """Tell the run record that a paid request is out (before waiting for it), so a resumed run
        polls it instead of submitting, and paying, again. ``index`` tells apart the requests of one step."""
        self._channel.remote(provider, endpoint, request_id, index)

    def remote_pending(self, provider: str, endpoint: str, index: int = 0) -> str | None:
        """The request an interrupted run of this very step (same definition, same input) submitted, if any."""
        for request in self._remote:
            if (request.get("provider"), request.get("endpoint"), request.get("index", 0)) == (provider, endpoint,
                                                                                             index):
                return str(request["request_id"])
        return None

    @property
    def log(self) -> Any:
        """A structlog logger whose events are relayed as ``step_log`` events."""
        if self._log is None:
            import structlog

            channel = self._channel

            def relay(_logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
                channel.log(method, event_dict)
                raise structlog.DropEvent

            self._log = structlog.wrap_logger(
                structlog.PrintLogger(), processors=[relay], context_class=dict
            )
        return self._log

    def output_path(self, ext: str, suffix: str = "") -> Path:
        from pathlib import Path

        """The predictable name of this step's output: ``step_{n}_{type}{suffix}.{ext}``.

        ``n`` counts from 1, as the result's output keys (``step_{n}_{type}``) and the
        human view do (``self.step`` is the 0-based index events carry). Members of a
        parallel group get ``step_{n}_{m}_{type}...`` (``m`` from 1 too) so they never collide.
        """
        stem = f"step_{self.step + 1}" if self.member is None else f"step_{self.step + 1}_{self.member + 1}"
        return Path(self._output_dir) / f"{stem}_{self.type}{suffix}.{ext.lstrip('.')}"

    def atomic_output(self, ext: str, suffix: str = "") -> AtomicOutput:
        """``with ctx.atomic_output("mp4") as tmp:`` write to ``tmp``; it is renamed to
        :meth:`output_path` only when the block succeeds.

        A step killed halfway leaves at most a hidden ``.part`` file, never a
        file under the final name that looks finished.
        """
        return AtomicOutput(self.output_path(ext, suffix))


class AtomicOutput:
    """A temporary sibling of ``final``, renamed onto it on success and removed on failure."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.tmp = final.with_name(f".{final.stem}.part{os.getpid()}{final.suffix}")

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                if not self.tmp.exists():
                    raise RuntimeError(f"the step did not write {self.final.name}")
                os.replace(self.tmp, self.final)
        finally:
            if self.tmp.exists():
                self.tmp.unlink()
