"""Where a media step's inputs come from and how its outputs are written.

Inputs arrive as ``ctx.input`` (a path, or a list of paths from a split or a
parallel group) or as paths in params; relative ones resolve against the chain
file's folder. Outputs are written under their final names only when complete.
"""

from __future__ import annotations

import os
from pathlib import Path

TYPE_CHECKING = False  # typing costs ~5 ms at start-up: for the type checker only
if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from typing import Any, Iterator, Sequence


def resolve_path(ctx: Any, value: Any, what: str) -> Path:
    """An existing file named by ``value``; relative paths resolve against ``ctx.chain_dir``.

    A relative path that is not there but exists from the current directory
    (a chain input typed on the command line) is accepted too.
    """
    if isinstance(value, dict) and "output" in value:
        value = value["output"]
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise ValueError(f"{what} must be a file path, got {value!r}")
    path = Path(value).expanduser()
    candidates = [path] if path.is_absolute() else [Path(ctx.chain_dir) / path, path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    tried = " or ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"{what} not found: {tried}")


def input_paths(ctx: Any, param: str | None = None, what: str = "input") -> list[Path]:
    """All input files: ``params[param]`` when given, else ``ctx.input`` (one path or a list)."""
    value = ctx.params.get(param) if param else None
    source = f"params.{param}" if value is not None else what
    if value is None:
        value = ctx.input
    if value is None:
        raise ValueError(f"no {what}: this step needs a file from the previous step"
                         + (f" or params.{param}" if param else ""))
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items:
        raise ValueError(f"{source} is an empty list")
    return [resolve_path(ctx, item, source) for item in items]


def first_input(ctx: Any, what: str = "input") -> Path:
    """The input file; of a list (e.g. split_image's tiles) the first one."""
    return input_paths(ctx, what=what)[0]


def input_text(ctx: Any) -> str:
    """The text to speak or draw: ``ctx.input`` if it is text (not a file), else params.text, else the latest text."""
    candidates = [ctx.input, ctx.params.get("text"), ctx.latest.get("text")]
    for value in candidates:
        if isinstance(value, str) and value.strip() and not _is_file(ctx, value):
            return value.strip()
    raise ValueError("no text: give the step text input, params.text, or an earlier text output")


def _is_file(ctx: Any, value: str) -> bool:
    if "\n" in value or len(value) > 1024:
        return False
    path = Path(value)
    return path.is_file() or (not path.is_absolute() and (Path(ctx.chain_dir) / path).is_file())


def atomic_outputs(ctx: Any, specs: Sequence[tuple[str, str]]) -> AbstractContextManager[list[Path]]:
    """Temporary paths for several outputs ``(ext, suffix)``, renamed together on success.

    If the block fails, none of them appears under its final name — a step
    that writes tiles or subtitle pairs is all-or-nothing like a single file.
    (contextlib is imported here: validate imports this module with the steps' checks.)
    """
    from contextlib import ExitStack, contextmanager

    @contextmanager
    def outputs() -> Iterator[list[Path]]:
        with ExitStack() as stack:
            yield [stack.enter_context(ctx.atomic_output(ext, suffix)) for ext, suffix in specs]

    return outputs()


def result(output: Any, outputs: Sequence[Path | str], **meta: Any) -> dict[str, Any]:
    """The executor's return value: the main output, every file written, and metadata."""
    main = [str(p) for p in output] if isinstance(output, (list, tuple)) else str(output)
    return {"output": main, "outputs": [str(p) for p in outputs], **meta}


def open_image(path: Path) -> Any:
    """Open ``path`` with Pillow, fully loaded; a non-image is a clear ValueError."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
        image.load()  # reads the pixels and closes the file (single-frame images)
        return image
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"not a readable image: {path} ({exc})") from exc


def image_format(path: Path) -> tuple[str, str]:
    """(extension, Pillow format) to save a derived image in: the source's if common, else PNG."""
    ext = path.suffix.lower().lstrip(".")
    formats = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}
    return (ext, formats[ext]) if ext in formats else ("png", "PNG")


def save_image(image: Any, path: Path, fmt: str) -> None:
    """Save in ``fmt``; JPEG has no alpha, so such images are flattened first."""
    if fmt == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    image.save(path, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
