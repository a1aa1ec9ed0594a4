"""Chain files: read YAML or JSON text, find where every value is, and hand it to the validator.

This module knows the document (reading the file, parsing it with the safe
loader only, positions of values and duplicate keys); what a chain may
contain is checked by :mod:`aicp._chain.validate`, which returns the plan
(:mod:`aicp._chain.model`). Every error names the file, the line and column,
and the field: ``chain.yaml:7:5: steps[2].timeout: must be a positive number, got -3``.

The format is the one of the AI Content Pipeline tool (``name``, ``prompt``,
``steps: [{type, model, params, enabled, retry_count}]``, ``output_dir``,
``parallel_group``), so its users' files load unchanged, plus our additions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import yaml

from aicp._chain.model import Chain, Step
from aicp._chain.validate import Validator
from aicp._errors import ChainError, MissingInputError

__all__ = ["Chain", "Step", "load_chain", "parse_document", "read_chain_text"]


# --------------------------------------------------------------------------- loading


def read_chain_text(path: str, stdin: Callable[[], str] | None = None) -> tuple[str, str, Path]:
    """Return (text, label for messages, folder that relative paths resolve against)."""
    if path == "-":
        import sys

        return (stdin or sys.stdin.read)(), "<stdin>", Path.cwd()
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8"), path, p.resolve().parent
    except FileNotFoundError:
        raise MissingInputError(f"chain file not found: {path}") from None
    except IsADirectoryError:
        raise MissingInputError(f"chain file is a directory: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MissingInputError(f"cannot read chain file {path}: {exc}") from None


class _Positions:
    """Line and column of every value in a YAML document, by its path."""

    def __init__(self, text: str) -> None:
        self._marks: dict[tuple[Any, ...], tuple[int, int]] = {}
        # (path of the repeated key, line of its first occurrence): YAML loaders keep the
        # last value silently, which hides typos like a second `timeout:` in a step
        self.duplicates: list[tuple[tuple[Any, ...], int, tuple[int, int]]] = []
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            node = None
        if node is not None:
            self._walk(node, ())

    def _walk(self, node: yaml.Node, path: tuple[Any, ...]) -> None:
        self._marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    where = path + ("<key>", key.value)
                    if where in self._marks and key.value != "<<":
                        again = (key.start_mark.line + 1, key.start_mark.column + 1)
                        self.duplicates.append((path + (key.value,), self._marks[where][0], again))
                        continue
                    self._marks[where] = (key.start_mark.line + 1, key.start_mark.column + 1)
                    self._walk(value, path + (key.value,))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, path + (i,))

    def of(self, path: tuple[Any, ...]) -> tuple[int, int] | None:
        """The position of the value at ``path``: of its key when it is in a mapping
        (``chain.yaml:7:5: steps[2].timeout``), else of the value; else of the nearest parent."""
        while path:
            key = path[:-1] + ("<key>", path[-1])
            if key in self._marks:
                return self._marks[key]
            if path in self._marks:
                return self._marks[path]
            path = path[:-1]
        return self._marks.get(())


def parse_document(text: str, label: str) -> Any:
    """YAML (safe loader only) or JSON text to Python data; syntax errors name the position."""
    if label.endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ChainError(f"{label}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{label}:{mark.line + 1}:{mark.column + 1}" if mark else label
        raise ChainError(f"{where}: invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ChainError(f"{label}: invalid YAML: {exc}") from None


def load_chain(source: str | Path | dict[str, Any], *, base_dir: Path | None = None,
               label: str | None = None, output_dir: str | Path | None = None,
               overrides: dict[str, Any] | None = None, here: str = "no",
               work_dir: str | Path | None = None) -> Chain:
    """Load and validate a chain from a file path (``-`` for stdin), a YAML/JSON text, or a dict.

    Relative paths in the chain resolve against the chain file's folder (the
    current directory for stdin, text and dicts). ``output_dir`` overrides the
    chain's own; ``overrides`` replace top-level keys (``run-chain --set``, a batch row's); a
    relative output folder resolves against ``work_dir`` (default: the current
    directory; ``--base-dir``). ``here`` also checks that it will run on this machine (see
    :class:`~aicp._chain.validate.Validator`). Raises :class:`ChainError` (exit 2) with every message
    positioned, or :class:`MissingInputError` (exit 3) when the file cannot be read.
    """
    text = ""
    if isinstance(source, dict):
        data: Any = source
    elif isinstance(source, Path) or ("\n" not in source and not source.lstrip().startswith("{")):
        text, label, folder = read_chain_text(str(source))
        base_dir = base_dir or folder
        data = parse_document(text, label)
    else:
        text = source
        data = parse_document(text, label or "<chain>")
    if overrides and isinstance(data, dict):
        data = {**data, **overrides}
    if overrides and isinstance(data, dict):
        data = {**data, **overrides}
    if output_dir is not None and isinstance(data, dict):
        data = {**data, "output_dir": str(output_dir)}
    return Validator(label or "<chain>", _Positions(text), base_dir or Path.cwd(), here=here,
                     work_dir=Path(work_dir) if work_dir is not None else None).chain(data)
