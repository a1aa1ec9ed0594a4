"""What a run produces, by name: a step's result, an entry of the final ``outputs``, the run's result.

The supervisor makes them, the run record keeps them (and gives them back to
a resumed run), and the terminal ``pipeline_complete`` event carries them, so
their shapes are written here once. The ``outputs`` entries keep the shape the
AI Content Pipeline tool used (path, url, text, model, metadata): scripts read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict

from aicp._chain.model import Step
from aicp._chain.steptypes import kind_of
from aicp._errors import ExitCode


class _StepResultFields(TypedDict):
    output: Any  # what flows to the next step: text, a file path, or a list of them
    outputs: list[str]  # every file the step produced
    cost: float  # USD actually charged (0.0 when reused from an earlier run)


class StepResult(_StepResultFields, total=False):
    """One step's (or group's) result. Beside these keys: whatever else the step returned (metadata)."""

    members: list[StepResult]  # a parallel group's: its members' results, in member order
    named: dict[str, Any]  # a parallel group's: the output of each named member (input_from)
    reused: bool  # taken from an earlier run's record instead of running again
    url: str | None


class OutputEntry(TypedDict):
    """One entry of the run's ``outputs``, keyed ``step_{n}_{type}``."""

    path: Any  # the output when it is one media file
    paths: Any  # the output when it is a list
    url: str | None
    text: Any  # the output when it is text
    model: str | None
    files: list[str]
    cost: float
    metadata: dict[str, Any]


_NOT_METADATA = ("output", "outputs", "cost", "members", "named")


def output_entry(step: Step, result: StepResult) -> OutputEntry:
    """The ``outputs`` entry of a finished top-level step."""
    output = result.get("output")
    kind = kind_of(output)
    return {
        "path": output if kind in ("image", "video", "audio") else None,
        "paths": output if isinstance(output, list) else None,
        "url": result.get("url"),
        "text": output if kind == "text" else None,
        "model": step.model,
        "files": result.get("outputs") or [],
        "cost": result.get("cost", 0.0),
        "metadata": {k: v for k, v in result.items() if k not in _NOT_METADATA},
    }


@dataclass
class ChainResult:
    """What a run ended with; the fields of the terminal ``pipeline_complete`` event."""

    success: bool
    steps_completed: int
    total_steps: int
    total_cost: float
    total_time: float
    outputs: dict[str, OutputEntry]
    error: str | None = None
    exit_code: int = ExitCode.OK  # what the run exits with (the CLI's exit status)
    run_id: str | None = None
    step_results: list[StepResult] = field(default_factory=list)

    @classmethod
    def not_started(cls, error: str, exit_code: int) -> ChainResult:
        """The result of a run that failed before its first step (invalid chain, missing input)."""
        return cls(success=False, steps_completed=0, total_steps=0, total_cost=0.0, total_time=0.0,
                   outputs={}, error=error, exit_code=exit_code)

    def event_fields(self) -> dict[str, Any]:
        return {"success": self.success, "steps_completed": self.steps_completed,
                "total_steps": self.total_steps, "total_cost": round(self.total_cost, 6),
                "total_time": round(self.total_time, 3), "outputs": self.outputs,
                "error": self.error, "exit_code": int(self.exit_code)}
