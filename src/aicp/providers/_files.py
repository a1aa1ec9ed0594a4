"""What every provider does with files: find a step's local inputs, keep what a model produced.

Produced files are written under ``step_{n}_{type}[_i].{ext}`` in the output
folder, atomically (a file appears under its final name only when complete),
with an extension of the right kind (from the URL, else the content type, else
the kind's usual one). Text a model produced (a transcript, a description, a
prompt) flows to the next step as text and is also kept as ``.txt``, with the
provider's whole answer as ``.json`` (word timings, token usage), so a run's
folder holds everything it paid for.
"""

from __future__ import annotations

import base64
import json
import mimetypes
from pathlib import Path
from typing import Any, Callable, ContextManager

from aicp._context import StepFailed

EXTENSIONS = {
    "image": ("png", {"png", "jpg", "jpeg", "webp", "gif"}),
    "video": ("mp4", {"mp4", "mov", "webm", "mkv", "m4v"}),
    "audio": ("mp3", {"mp3", "wav", "m4a", "aac", "ogg", "flac", "opus"}),
}
Download = Callable[[str, Callable[[str | None], ContextManager[Path]], Callable[[int, int | None], None]], None]


def is_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://", "data:"))


def single_input(ctx: Any) -> Any:
    """The one file a step takes: its input, or the first of a list of them; StepFailed if there is none."""
    value = ctx.input[0] if isinstance(ctx.input, list) and ctx.input else ctx.input
    if value in (None, "", []):
        raise StepFailed(f"{ctx.type} got no input")
    return value


def local_file(ctx: Any, value: Any, where: str) -> Path:
    """The local file a step's input or param names (relative to the chain's folder), or StepFailed."""
    text = str(value)
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = ctx.chain_dir / path
    if not path.is_file():
        raise StepFailed(f"{where}: file not found: {text}")
    return path


def content_type(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def data_uri(path: Path) -> str:
    return f"data:{content_type(path)};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def extension(url: str, mime: str | None, kind: str) -> str:
    """From the URL's file name, else the content type, else the kind's usual one; always of the right kind."""
    from urllib.parse import urlsplit

    default, allowed = EXTENSIONS[kind]
    name = "" if url.startswith("data:") else urlsplit(url).path.rsplit("/", 1)[-1]
    for candidate in (name.rpartition(".")[2].lower() if "." in name else "",
                      (mimetypes.guess_extension(mime or "") or "").lstrip(".")):
        if candidate in allowed:
            return candidate
    return default


def save_url(ctx: Any, download: Download, url: str, kind: str, suffix: str,
             progress: Callable[[float, str], None]) -> str:
    """Keep one produced file (a URL, or a data URI from a synchronous answer); ``progress`` hears 0..1."""
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        ext = extension(url, header[5:].split(";")[0], kind)
        with ctx.atomic_output(ext, suffix) as tmp:
            tmp.write_bytes(base64.b64decode(data) if header.endswith(";base64") else data.encode())
        return str(ctx.output_path(ext, suffix))
    final: list[Path] = []
    shown = [-1]

    def target(mime: str | None) -> Any:
        ext = extension(url, mime, kind)
        final.append(ctx.output_path(ext, suffix))
        return ctx.atomic_output(ext, suffix)

    def downloaded(got: int, total: int | None) -> None:
        tenth = 10 * got // total if total else 0
        if tenth != shown[0]:
            shown[0] = tenth
            progress(got / total if total else 0.0, f"downloading {final[0].name}" + (f", {10 * tenth}%" if total else ""))

    download(url, target, downloaded)
    return str(final[0])


def save_text(ctx: Any, text: str, raw: Any, suffix: str = "") -> list[str]:
    """Keep a text result and the provider's whole answer; return their paths."""
    paths = []
    for ext, content in (("txt", text if text.endswith("\n") else text + "\n"),
                         ("json", json.dumps(raw, indent=2, ensure_ascii=False) + "\n")):
        with ctx.atomic_output(ext, suffix) as tmp:
            tmp.write_text(content, encoding="utf-8")
        paths.append(str(ctx.output_path(ext, suffix)))
    return paths
