"""Resolve ``"module:attribute"`` strings, the way steps and executors are named.

:func:`load_target` imports (the worker, the executors); :func:`target_problem`
tells, without running a line of the module, whether a chain's target would
load: ``aicp validate`` must not execute the user's code, and a misnamed
function should be an error before the run, not a traceback in it.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ast
    from typing import Any


def load_target(target: str) -> Any:
    """Import ``module`` and return ``attribute`` (dotted paths allowed) from it."""
    import sys

    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"expected 'module:attribute', got {target!r}")
    if module_name.startswith("."):  # relative: import_module says what is wrong with it
        import importlib

        obj: Any = importlib.import_module(module_name)
    else:  # what import_module does for an absolute name, without loading importlib's package
        __import__(module_name)
        obj = sys.modules[module_name]
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def target_problem(target: str, path: list[str]) -> str | None:
    """Why ``target`` would not load in a process whose ``sys.path`` is ``path``, or None.

    Only certain misses are told: a module found nowhere, a source module that
    does not parse, or one that binds no such name at its top level. Where only
    running the module could tell (a compiled module, a submodule its package
    makes when it runs, a module-level ``__getattr__``, a star import), it is
    taken to load, and the run will say.
    """
    module_name, _, attr = target.partition(":")
    exists, origin = _locate(module_name, path)
    if not exists:
        return f"no module '{module_name}' (looked next to the chain file and in the installed packages)"
    if not origin.endswith(".py"):
        return None
    try:
        with open(origin, "rb") as source:
            names = _top_level_names(source.read(), origin)
    except SyntaxError as exc:
        return f"{origin}:{exc.lineno}: the module does not parse: {exc.msg}"
    except (OSError, ValueError) as exc:  # unreadable; ValueError: NUL bytes in the source
        return f"cannot read {origin}: {exc}"
    first = attr.split(".")[0]
    if names is None or first in names:
        return None
    return f"module '{module_name}' ({origin}) defines no '{first}'"


def _locate(module_name: str, path: list[str]) -> tuple[bool, str]:
    """Whether the module may exist, and its source file ("" when there is none to read, or only
    importing could find it), found without importing anything (not even its parent packages)."""
    import importlib.util
    import sys
    from importlib.machinery import PathFinder

    if module_name in sys.builtin_module_names:
        return True, ""
    parts = module_name.split(".")
    spec = PathFinder.find_spec(parts[0], path)
    if spec is None:  # an installed package may have its own finder (editable installs)
        try:
            spec = importlib.util.find_spec(parts[0])
        except (ImportError, ValueError):
            spec = None
    if spec is None:
        return False, ""
    for depth in range(1, len(parts)):
        locations = spec.submodule_search_locations
        found = PathFinder.find_spec(".".join(parts[:depth + 1]), list(locations)) if locations else None
        if found is None:  # a package may make a submodule when it runs ('os.path'): only a run can tell
            return True, ""
        spec = found
    return True, spec.origin or ""


def _top_level_names(source: bytes, filename: str) -> set[str] | None:
    """The names a module binds when it runs, read from its syntax tree; None when a star import,
    ``globals()`` or a module-level ``__getattr__`` makes them unknowable without running it.

    When in doubt a name counts as bound (a walrus, a match capture or a ``global`` anywhere): a name wrongly
    counted only leaves the miss to the run, a name wrongly missed would refuse a good chain."""
    import ast

    tree = ast.parse(source, filename)
    names = _bound_anywhere(tree)
    if names is None:
        return None
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            continue  # their bodies bind nothing at the top level
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    return None
                names.add(alias.asname or alias.name.split(".")[0])
        names |= _bound_names(node)
        # statements whose bodies run at the top level (if, try, for, with, match): theirs count too
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            pending.extend(child for child in getattr(node, field, ()) if isinstance(child, ast.AST))
    return None if "__getattr__" in names else names


def _bound_anywhere(tree: ast.AST) -> set[str] | None:
    """Names that may be bound at the top level from anywhere in the module (a walrus, a match
    capture, a ``global``); None when ``globals()`` or ``vars()`` could bind any name."""
    import ast

    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.NamedExpr) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:  # case [first, *rest]
            names.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:  # case {**rest}
            names.add(node.rest)
        elif isinstance(node, ast.Global):
            names.update(node.names)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("globals", "vars"):
            return None
    return names


def _bound_names(node: ast.AST) -> set[str]:
    """The plain names a statement binds: ``a, b = ...``, ``for x in``, ``with ... as f``, ``except E as e``."""
    import ast

    targets: list[ast.AST] = []
    if isinstance(node, ast.Assign):
        targets = list(node.targets)
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.For, ast.AsyncFor)):
        targets = [node.target]
    elif isinstance(node, (ast.With, ast.AsyncWith)):
        targets = [item.optional_vars for item in node.items if item.optional_vars is not None]
    elif isinstance(node, ast.ExceptHandler) and node.name:
        return {node.name}
    return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
