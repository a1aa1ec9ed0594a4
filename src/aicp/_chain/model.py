"""The plan a chain file becomes: immutable, validated :class:`Chain` and :class:`Step` records.

:mod:`aicp._chain.load` builds them (with the validator, :mod:`aicp._chain.validate`, the only
place that does); the supervisor, the run record and the commands read them. Nothing here parses
or validates, so everything that only needs the plan's shape imports this module.
"""

from __future__ import annotations

from pathlib import Path

from aicp._chain.steptypes import Executor
from aicp._errors import Problem
from aicp._record import field, record
from aicp._redact import secret_param_values

TYPE_CHECKING = False  # typing costs ~5 ms at start-up: for the type checker only
if TYPE_CHECKING:
    from typing import Any

DEFAULT_NAME = "unnamed_chain"  # the AI Content Pipeline tool's name for a chain without one


def path_text(path: tuple[Any, ...]) -> str:
    """``("steps", 2, "timeout")`` as people write it: ``steps[2].timeout``."""
    out = ""
    for part in path:
        if part == "<key>":
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@record
class Step:
    """One validated step (or member of a parallel group)."""

    type: str
    model: str | None
    params: dict[str, Any]
    enabled: bool = True
    retry_count: int | None = None
    name: str | None = None
    timeout: float | None = None
    max_memory_mb: float | None = None
    executor: Executor | None = None
    members: tuple["Step", ...] = ()
    max_workers: int = 1
    merge_strategy: str = "collect_all"
    consumes: str = "any"
    produces: str = "any"
    path: tuple[Any, ...] = ()
    input_from: str | None = None  # the name of an earlier step whose output this step takes

    @property
    def location(self) -> str:
        """Where the step is in the chain file: ``steps[2]``, ``steps[1].params.parallel_steps[0]``."""
        return path_text(self.path)

    @property
    def is_group(self) -> bool:
        return self.type == "parallel_group"

    @property
    def takes(self) -> str:
        """The kind of input this step wants: a group wants what its first member does."""
        if self.is_group:
            return next((m.consumes for m in self.members if m.enabled), "any")
        return self.consumes

    @property
    def estimated_cost(self) -> float:
        if self.is_group:
            return sum(m.estimated_cost for m in self.members if m.enabled)
        return self.executor.cost if self.executor else 0.0


@record
class Chain:
    """A validated chain, ready to run. ``steps`` holds the enabled steps only."""

    name: str
    steps: tuple[Step, ...]
    source: str
    base_dir: Path
    output_dir: Path
    description: str = ""
    prompt: str | None = None
    input_type: str = "auto"
    input_image: str | None = None
    input_video: str | None = None
    timeout: float | None = None
    retry_count: int = 0
    kill_grace: float = 5.0
    retry_delay: float = 1.0
    retry_max_delay: float = 30.0
    max_cost: float | None = None  # the run stops before a step that would take it past this (USD)
    save_intermediates: bool = False  # write a report after every step, as the old tool did
    disabled_steps: tuple[Step, ...] = ()  # skipped, not counted in `steps`; kept to be reported
    extra: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    notes: tuple[Problem, ...] = ()  # the warnings, positioned (validate --json)
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def estimated_cost(self) -> float:
        return sum(s.estimated_cost for s in self.steps)

    @property
    def secrets(self) -> list[str]:
        """Secret-looking param values, to be masked in every event."""
        return secret_param_values(self.raw.get("steps"))
