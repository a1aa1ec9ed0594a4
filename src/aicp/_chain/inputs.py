"""Where a run's input comes from: the command line, a file, stdin, or the chain itself.

Precedence, as in the AI Content Pipeline tool: ``--input FILE|-``, then
``--input-text``, then ``--prompt-file``, then the chain's ``prompt`` /
``input_image`` / ``input_video`` (by ``input_type``, or by what the first step
takes when it is ``auto``). Several may be given; the first of them wins.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

from aicp._chain.model import Chain
from aicp._chain.source import check_input_text, check_name, read_text
from aicp._errors import MissingInputError, UsageError
from aicp._chain.steptypes import kind_of, takes_from


def _read_text(path: str, what: str) -> str:
    text, label = read_text(path, what)
    return check_input_text(text, label)


def _existing_file(path: Path, what: str) -> str:
    """A media file the first step takes: it must exist and be a regular, readable file."""
    label = check_name(str(path), what)
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise MissingInputError(f"{what} is not a regular file: {label}")
        with path.open("rb"):
            pass
    except FileNotFoundError:
        raise MissingInputError(f"{what} not found: {label}") from None
    except (OSError, ValueError) as exc:
        raise MissingInputError(f"cannot read {what} {label}: {exc}") from None
    return str(path.resolve())


def resolve_input(chain: Chain, *, input_text: str | None = None, prompt_file: str | None = None,
                  input_file: str | None = None) -> Any:
    """Return the chain's input value (text, or an absolute file path) and check the first step takes it."""
    if input_file == "-":
        value: Any = _read_text("-", "input").strip()
    elif input_file is not None:
        path = Path(input_file)
        value = _read_text(input_file, "input file").strip() if kind_of(input_file) == "text" \
            else _existing_file(path, "input file")
    elif input_text is not None:
        value = check_input_text(input_text, "--input-text")
    elif prompt_file is not None:
        value = _read_text(prompt_file, "prompt file").strip()
    else:
        value = _from_chain(chain)
    first = chain.steps[0]
    kind = kind_of(value)
    available = {"text"} if chain.prompt else set()  # a step that wants text can read the chain's prompt
    for step in (m for m in first.members if m.enabled) if first.is_group else (first,):
        if takes_from(step.consumes, kind, available) is None:
            where = f"the first step ({step.type})" if step is first else f"{step.location} ({step.type})"
            raise UsageError(f"{where} takes {step.consumes} input, but the input is {kind}: {str(value)[:80]!r}")
    return value


def _from_chain(chain: Chain) -> Any:
    wanted = chain.input_type
    if wanted == "auto":
        wanted = chain.steps[0].takes
    if wanted in ("any", "audio", "images", "videos"):
        wanted = next((k for k, v in (("text", chain.prompt), ("image", chain.input_image),
                                      ("video", chain.input_video)) if v), "text")
    if wanted == "text":
        if not chain.prompt:
            raise UsageError(f"{chain.source}: the chain has no 'prompt'; give one with --input-text, "
                             "--prompt-file or --input")
        return chain.prompt
    key = f"input_{wanted}"
    value = getattr(chain, key, None)
    if not value:
        raise UsageError(f"{chain.source}: the first step takes {wanted} input, but the chain has no "
                         f"'{key}'; give one with --input FILE")
    path = Path(value)
    return _existing_file(path if path.is_absolute() else chain.base_dir / path, key)
