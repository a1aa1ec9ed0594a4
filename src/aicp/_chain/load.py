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

from pathlib import Path

from aicp._chain.model import Chain, Step
from aicp._chain.parse import Document, Positions, parse
from aicp._chain.source import read_text
from aicp._chain.validate import Validator

TYPE_CHECKING = False  # typing costs ~5 ms at start-up: for the type checker only
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Chain", "Step", "load_chain"]


def load_chain(source: str | Path | dict[str, Any], *, base_dir: Path | None = None,
               label: str | None = None, output_dir: str | Path | None = None,
               overrides: dict[str, Any] | None = None, here: str = "no",
               work_dir: str | Path | None = None, keep_parsed: bool = False) -> Chain:
    """Load and validate a chain from a file path (``-`` for stdin), a YAML/JSON text, or a dict.

    Relative paths in the chain resolve against the chain file's folder (the
    current directory for stdin, text and dicts). ``output_dir`` overrides the
    chain's own; ``overrides`` replace top-level keys (``run-chain --set``, a batch row's); a
    relative output folder resolves against ``work_dir`` (default: the current
    directory; ``--base-dir``). ``here`` also checks that it will run on this machine (see
    :class:`~aicp._chain.validate.Validator`). Raises :class:`ChainError` (exit 2) with every message
    positioned, or :class:`MissingInputError` (exit 3) when the file cannot be read.
    The text is parsed once (:mod:`aicp._chain.parse`), or read from the parsed-document cache;
    ``keep_parsed`` (``validate``, ``estimate-cost``) keeps a YAML text parsed now in that cache.
    """
    if isinstance(source, dict):
        document = Document(source, Positions(lambda: None), label or "<chain>")
    elif isinstance(source, Path) or ("\n" not in source and not source.lstrip().startswith("{")):
        text, label = read_text(str(source), "chain file")
        base_dir = base_dir or (Path.cwd() if str(source) == "-" else Path(source).resolve().parent)
        document = parse(text, label, keep_parsed)
    else:
        document = parse(source, label or "<chain>", keep_parsed)
    data = document.data
    if overrides and isinstance(data, dict):
        data = {**data, **overrides}
    if output_dir is not None and isinstance(data, dict):
        data = {**data, "output_dir": str(output_dir)}
    document.check(data)
    return Validator(document.label, document.positions, base_dir or Path.cwd(), here=here,
                     work_dir=Path(work_dir) if work_dir is not None else None).chain(data)
