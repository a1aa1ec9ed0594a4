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
    target = ctx.params["function"]
    try:
        fn = load_target(target)
    except (ImportError, AttributeError) as exc:
        if not _names_the_target(exc, target):
            raise  # the failure is inside the user's module: its traceback is the report
        from aicp._context import StepFailed

        raise StepFailed(f"params.function {target!r}: {exc}") from None
    return fn(ctx)


def _names_the_target(exc: ImportError | AttributeError, target: str) -> bool:
    """Whether ``exc`` says the target itself is not there (no such module or attribute), rather
    than something failing while the user's module ran."""
    module_name, _, attr = target.partition(":")
    if isinstance(exc, ImportError):
        parents = module_name.split(".")
        return exc.name in {".".join(parents[:n]) for n in range(1, len(parents) + 1)}
    return getattr(exc, "name", None) in attr.split(".")
