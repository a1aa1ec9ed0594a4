"""The folders are layers of the data path, and imports only go down (README's module map).

Read from the source (imports at run time; ``if TYPE_CHECKING:`` blocks are
for the type checker and do not count): the CLI's commands are imported by
``cli`` alone, a run never reaches up into the commands, one worker seen from
the supervisor (``_process``) knows nothing of runs or chains, and the
import-light worker side imports only itself, ``_context``, ``_targets`` and
the built-in steps it pre-imports.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "aicp"
UPPER = {"cli", "__main__", "_commands", "_batch", "_view"}

# folder -> what its modules must not import at run time
FORBIDDEN = {
    "_run": UPPER,
    "_process": UPPER | {"_run", "_chain"},
    "_chain": UPPER | {"_run", "_process", "_worker"},
    "steps": UPPER | {"_run", "_process", "_chain"},
    "providers": UPPER | {"_run", "_process"},
}
WORKER_MAY_IMPORT = {"_worker", "_context", "_targets", "steps"}


def _part(module: str) -> str:
    """The top-level part of the package a module belongs to: ``aicp._run.run`` -> ``_run``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "aicp"


def _runtime_imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(("aicp", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {id(n) for node in ast.walk(tree)
                       if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING"
                       for n in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            graph[module].update(n for n in names if n == "aicp" or n.startswith("aicp."))
    return graph


def test_imports_only_go_down() -> None:
    graph = _runtime_imports()
    assert len(graph) > 40  # the walk found the package
    wrong = [f"{module} imports {target}" for module, targets in sorted(graph.items())
             for target in sorted(targets) if _part(target) in FORBIDDEN.get(_part(module), set())]
    assert not wrong, wrong


def test_only_the_cli_imports_the_commands() -> None:
    wrong = [f"{module} imports {target}" for module, targets in sorted(_runtime_imports().items())
             for target in sorted(targets)
             if _part(target) == "_commands" and _part(module) not in ("cli", "_commands")]
    assert not wrong, wrong


def test_the_worker_side_imports_only_what_a_worker_needs() -> None:
    wrong = [f"{module} imports {target}" for module, targets in sorted(_runtime_imports().items())
             if _part(module) == "_worker" for target in sorted(targets)
             if _part(target) not in WORKER_MAY_IMPORT]
    assert not wrong, wrong
