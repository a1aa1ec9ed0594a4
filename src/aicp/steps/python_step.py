"""The ``python`` step: call a function of the user's, ``params.function: "module:attr"``, as ``fn(ctx)``.

Modules next to the chain file are importable first (the supervisor puts the
chain's folder at the front of the worker's ``sys.path``).
"""

from __future__ import annotations

from aicp._targets import load_target

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: the worker template pre-imports this module
if TYPE_CHECKING:
    from typing import Any

    from aicp._context import StepContext


def check(params: dict[str, Any], model: str | None) -> list[tuple[str, str]]:
    function = params.get("function")
    if not isinstance(function, str) or function.count(":") != 1 or function.startswith(":") or function.endswith(":"):
        return [("params.function", f"must be 'module:function', got {function!r}")]
    return []


def run(ctx: StepContext) -> Any:
    fn = load_target(ctx.params["function"])
    return fn(ctx)
