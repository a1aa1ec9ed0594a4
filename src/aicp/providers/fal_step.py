"""The one executor of every fal model: ``run(ctx)``, and ``check(params, model)`` for validation.

A step runs as: build the request from the step's input and params (the
model's row in :mod:`aicp.providers.models` says how), upload local
files, submit to fal's queue, poll its status while relaying the queue
position and the model's log lines as ``step_progress`` / ``step_log``
events, fetch the result, and download the produced files into the output
folder atomically. If the step stops before fal finished (timeout, Ctrl-C,
a failed poll), the queue's cancel request is sent on the way out: the
worker turns SIGTERM into an exception, so the ``finally`` runs.

``check`` runs in the CLI during validation and imports nothing but the
model table; httpx is imported only when ``run`` starts.
"""

from __future__ import annotations

import time

from aicp._context import StepFailed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from aicp.providers.models import Model
    from aicp.providers.fal_queue import FalClient, Submission

POLL_MIN = 0.5  # seconds between status polls while something changes...
POLL_MAX = 3.0  # ...growing to this while nothing does
LOG_LINE_MAX = 4000
EXTENSIONS = {
    "image": ("png", {"png", "jpg", "jpeg", "webp", "gif"}),
    "video": ("mp4", {"mp4", "mov", "webm", "mkv", "m4v"}),
    "audio": ("mp3", {"mp3", "wav", "m4a", "aac", "ogg", "flac", "opus"}),
}
_FAL_LEVELS = {"DEBUG": "debug", "INFO": "info", "WARN": "warning", "WARNING": "warning",
               "ERROR": "error", "STDERR": "warning"}


# --------------------------------------------------------------------------- validation


def seconds_of(value: Any) -> int | None:
    """A duration as whole seconds: 5, 5.0, "5" or "5s"; None if it is none of these."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        text = value.strip().lower().removesuffix("s").strip()
        value = int(text) if text.isdigit() else None
    return value if isinstance(value, int) and value > 0 else None


def check(params: dict[str, Any], model: str | None = None) -> list[tuple[str, str]]:
    """Problems with a fal step's params that are certain before anything runs."""
    from aicp.providers.models import MODELS

    problems: list[tuple[str, str]] = []
    if params.get("duration") is not None and seconds_of(params["duration"]) is None:
        problems.append(("params.duration", f"must be a whole number of seconds (5, \"5\" or \"5s\"), "
                                            f"got {params['duration']!r}"))
    for key in ("prompt", "text", "negative_prompt", "aspect_ratio"):
        if params.get(key) is not None and not isinstance(params[key], str):
            problems.append((f"params.{key}", f"must be a string, got {params[key]!r}"))
    entry = MODELS.get(model or "")
    sizes = entry.sizes if entry else None
    if sizes and isinstance(params.get("aspect_ratio"), str) and params["aspect_ratio"] not in sizes \
            and params["aspect_ratio"] not in sizes.values():
        problems.append(("params.aspect_ratio", f"{model} takes {', '.join(sizes)}; got {params['aspect_ratio']!r}"))
    for key, value in params.items():
        if key.endswith("_url") and value is not None and not isinstance(value, str):
            problems.append((f"params.{key}", f"must be a URL or a file path, got {value!r}"))
        if key.endswith("_urls") and value is not None and not (
                isinstance(value, list) and all(isinstance(v, str) for v in value)):
            problems.append((f"params.{key}", f"must be a list of URLs or file paths, got {value!r}"))
    return problems


# --------------------------------------------------------------------------- the step


def run(ctx: Any) -> dict[str, Any]:
    from aicp.providers.models import model_for

    model = model_for(ctx.type, ctx.model, ctx.params)
    if model is None or model.provider != "fal":
        raise StepFailed(f"'{ctx.model}' is not a fal model for {ctx.type}")
    problems = check(ctx.params, model.key)
    if problems:
        raise StepFailed("; ".join(f"{where}: {message}" for where, message in problems))
    from aicp.providers.credentials import missing_key, provider_key

    key = provider_key("fal")
    if key is None:
        raise missing_key("fal", model.key)

    from aicp.providers.fal_queue import FalClient

    client = FalClient(key, notify=lambda message: ctx.log.warning(message))
    try:
        inputs = ctx.input if isinstance(ctx.input, list) and model.io.input_field.endswith("_url") else [ctx.input]
        if not inputs:
            raise StepFailed(f"{ctx.type} got an empty list as input")
        runs = [_Request(ctx, model, client, value, index if len(inputs) > 1 else None, len(inputs))
                for index, value in enumerate(inputs)]
        results = [r.run() for r in runs]
    finally:
        client.close()
    outputs = [path for r in results for path in r["outputs"]]
    first = results[0]
    return {
        "output": first["output"] if len(results) == 1 else [r["output"] for r in results],
        "outputs": outputs,
        "url": first["url"],
        "cost": round(model.price * len(results), 6),
        "provider": "fal",
        "endpoint": model.endpoint,
        "request_id": first["request_id"] if len(results) == 1 else [r["request_id"] for r in results],
    }


class _Request:
    """One request to fal for one input value (a list input, as from split_image, makes several)."""

    def __init__(self, ctx: Any, model: Model, client: FalClient, value: Any, index: int | None,
                 count: int) -> None:
        self.ctx = ctx
        self.model = model
        self.client = client
        self.value = value
        self.index = index
        self.span = ((index or 0) / count, ((index or 0) + 1) / count)
        self.seen_logs: set[tuple[str, str]] = set()
        self.finished = False  # fal is done with the request (completed or failed): nothing to cancel

    def progress(self, fraction: float, message: str) -> None:
        low, high = self.span
        label = f"[{self.index + 1}] " if self.index is not None else ""
        self.ctx.progress(low + (high - low) * fraction, label + message)

    # -- the request -----------------------------------------------------------

    def run(self) -> dict[str, Any]:
        arguments = self.arguments()
        self.progress(0.03, f"submitting to fal ({self.model.endpoint})")
        sub = self.client.submit(self.model.endpoint, arguments)
        self.ctx.log.info("submitted to fal", request_id=sub.request_id, endpoint=self.model.endpoint)
        try:
            self.wait(sub)
        finally:
            if not self.finished:
                cancelled = self.client.cancel(sub)
                self.ctx.log.warning("cancel requested on fal" if cancelled else "fal did not take the cancel request",
                                     request_id=sub.request_id)
        self.progress(0.9, "fetching the result")
        result = self.client.result(sub)
        if self.model.io.kind == "text":
            return self.text(result, sub.request_id)
        urls = self.file_urls(result)
        paths = [self.save(url, i, len(urls)) for i, url in enumerate(urls)]
        return {"output": paths[0], "outputs": paths, "request_id": sub.request_id,
                "url": next((u for u in urls if not u.startswith("data:")), None)}

    def text(self, result: dict[str, Any], request_id: str) -> dict[str, Any]:
        """A text result (a transcript): the text flows on; it and the whole answer are saved."""
        from aicp.providers._text import save_text

        found = [t for t in _lookup(result, self.model.output_path.split(".")) if isinstance(t, str)]
        if not found:
            raise StepFailed(f"fal returned no text at {self.model.output_path}; the result has "
                             f"{', '.join(map(str, result)) or 'nothing'}")
        suffix = f"_{self.index + 1}" if self.index is not None else ""
        return {"output": found[0], "outputs": save_text(self.ctx, found[0], result, suffix),
                "request_id": request_id, "url": None}

    def arguments(self) -> dict[str, Any]:
        """The request body: type and model defaults, the step's input, the params (renamed, converted)."""
        model = self.model
        params = {k: v for k, v in self.ctx.params.items() if k not in model.unsent}
        body: dict[str, Any] = {**model.io.defaults, **model.defaults}
        if self.value is None or self.value == "":
            raise StepFailed(f"{self.ctx.type} got no input")
        field = model.request_input_field
        if model.io.input_field in ("prompt", "text"):
            body[field] = str(self.value)
        elif _is_list_field(field):
            values = self.value if isinstance(self.value, list) else [self.value]
            body[field] = [self.file_url(v, "input") for v in values]
        else:
            body[field] = self.file_url(self.value, "input")
        if model.default_prompt is not None:
            body["prompt"] = params.pop("prompt", None) or self.ctx.latest.get("text") or model.default_prompt
        for name, kind in model.takes.items():
            if params.get(name) is None:
                body[name] = self.from_flow(name, kind)
        for name, value in params.items():
            body[model.renames.get(name, name)] = value
        if body.get("duration") is not None and model.duration:
            seconds = seconds_of(body["duration"])
            body["duration"] = {"int": seconds, "str": str(seconds), "s": f"{seconds}s"}[model.duration]
        if model.sizes and "aspect_ratio" in body:
            ratio = body.pop("aspect_ratio")
            body[model.size_field] = model.sizes.get(ratio, ratio)
        if model.switch and model.switch[0] not in body:
            mode_field, modes = model.switch
            body[mode_field] = next((mode for name, mode in modes.items() if name in body), None)
            if body[mode_field] is None:
                del body[mode_field]
        for name, value in list(body.items()):
            if name == field:
                continue
            if name.endswith("_url") and isinstance(value, str):
                body[name] = self.file_url(value, f"params.{name}")
            elif _is_list_field(name) and isinstance(value, list):
                body[name] = [self.file_url(v, f"params.{name}") for v in value]
        return body

    def from_flow(self, name: str, kind: str) -> Any:
        """A request field the model fills from the chain: the latest output of ``kind`` (text as it is)."""
        value = self.ctx.latest.get(kind)
        if value in (None, "", []):
            raise StepFailed(f"{self.model.key} needs {'an' if kind[0] in 'aeiou' else 'a'} {kind}: give "
                             f"params.{name}, or put a step that produces {kind} before this one")
        return value if kind == "text" else value[0] if isinstance(value, list) else value

    def file_url(self, value: Any, where: str) -> str:
        """A URL fal can fetch: URLs pass through; local files are uploaded."""
        from pathlib import Path

        text = str(value)
        if text.startswith(("http://", "https://", "data:")):
            return text
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = self.ctx.chain_dir / path
        if not path.is_file():
            raise StepFailed(f"{where}: file not found: {text}")
        self.progress(0.01, f"uploading {path.name}")
        return self.client.upload(path)

    def wait(self, sub: Submission) -> None:
        """Poll until fal is done; raise if the request failed."""
        from aicp.providers._http import describe_error

        interval, last, running_since = POLL_MIN, None, None
        while True:
            status = self.client.status(sub)
            state = str(status.get("status", "")).upper()
            self.relay_logs(status.get("logs"))
            self.finished = state in ("COMPLETED", "FAILED", "ERROR", "CANCELLED", "CANCELED")
            if state == "COMPLETED":
                if status.get("error"):
                    kind = f" [{status['error_type']}]" if status.get("error_type") else ""
                    raise StepFailed(f"fal request {sub.request_id} failed{kind}: {describe_error(status['error'])}")
                return
            if self.finished:
                raise StepFailed(f"fal request {sub.request_id} {state.lower()}: "
                                 f"{describe_error(status) or 'fal gave no reason'}")
            now = time.monotonic()
            if state == "IN_QUEUE":
                position = status.get("queue_position")
                seen = (state, position)
                if seen != last:
                    self.progress(0.05, "in queue" if position is None else f"in queue, position {position}")
            else:
                running_since = running_since or now
                elapsed = now - running_since
                seen = (state, len(self.seen_logs))
                self.progress(0.1 + 0.75 * min(1.0, elapsed / self.model.seconds),
                              f"generating on fal, {elapsed:.0f} s (usually ~{self.model.seconds} s)")
            interval = POLL_MIN if seen != last else min(POLL_MAX, interval * 1.5)
            last = seen
            time.sleep(interval)

    def relay_logs(self, logs: Any) -> None:
        """The model's log lines, each once (fal repeats earlier lines in later polls)."""
        if not isinstance(logs, list):
            return
        for entry in logs:
            if not isinstance(entry, dict) or not entry.get("message"):
                continue
            ident = (str(entry.get("timestamp", "")), str(entry["message"]))
            if ident in self.seen_logs:
                continue
            self.seen_logs.add(ident)
            level = _FAL_LEVELS.get(str(entry.get("level", "INFO")).upper(), "info")
            getattr(self.ctx.log, level)(ident[1][:LOG_LINE_MAX], source="fal", fal_timestamp=ident[0] or None)

    # -- the produced files ------------------------------------------------------

    def file_urls(self, result: dict[str, Any]) -> list[str]:
        """The URLs at the model's output path (``images[].url``: every image), else at the usual places."""
        for path in (self.model.output_path, "images[].url", "image.url", "video.url", "audio.url", "audio_url.url"):
            urls = [u for u in _lookup(result, path.split(".")) if isinstance(u, str) and u]
            if urls:
                return urls
        raise StepFailed(f"fal returned no file at {self.model.output_path}; the result has "
                         f"{', '.join(map(str, result)) or 'nothing'}")

    def save(self, url: str, number: int, count: int) -> str:
        """Write one produced file under ``step_{n}_{type}[_i].{ext}``, atomically."""
        ctx = self.ctx
        suffix = (f"_{self.index + 1}" if self.index is not None else "") + (f"_{number + 1}" if count > 1 else "")
        if url.startswith("data:"):  # sync_mode results come inline
            import base64

            header, _, data = url.partition(",")
            ext = self.extension(url, header[5:].split(";")[0])
            with ctx.atomic_output(ext, suffix) as tmp:
                tmp.write_bytes(base64.b64decode(data) if header.endswith(";base64") else data.encode())
            return str(ctx.output_path(ext, suffix))
        final: list[Path] = []
        shown = [-1]

        def target(content_type: str | None) -> Any:
            ext = self.extension(url, content_type)
            final.append(ctx.output_path(ext, suffix))
            return ctx.atomic_output(ext, suffix)

        def progress(got: int, total: int | None) -> None:
            tenth = 10 * got // total if total else 0
            if tenth != shown[0]:
                shown[0] = tenth
                share = (number + (got / total if total else 0)) / count
                self.progress(0.9 + 0.1 * share, f"downloading {final[0].name}"
                              + (f", {10 * tenth}%" if total else ""))

        self.client.download(url, target, progress)
        return str(final[0])

    def extension(self, url: str, content_type: str | None) -> str:
        """From the URL's file name, else the content type, else the kind's usual one; always of the right kind."""
        import mimetypes
        from urllib.parse import urlsplit

        default, allowed = EXTENSIONS[self.model.io.kind]
        name = "" if url.startswith("data:") else urlsplit(url).path.rsplit("/", 1)[-1]
        for candidate in (name.rpartition(".")[2].lower() if "." in name else "",
                          (mimetypes.guess_extension(content_type or "") or "").lstrip(".")):
            if candidate in allowed:
                return candidate
        return default


def _is_list_field(name: str) -> bool:
    """Request fields that take a list of files: ``image_urls``, ``reference_images``."""
    return name.endswith(("_urls", "_images"))


def _lookup(value: Any, parts: list[str]) -> list[Any]:
    """Values at a dotted path; ``name[]`` walks every item of a list, a number picks one."""
    if not parts:
        return [value]
    head, rest = parts[0], parts[1:]
    if head.endswith("[]"):
        items = value.get(head[:-2]) if isinstance(value, dict) else None
        return [found for item in items for found in _lookup(item, rest)] if isinstance(items, list) else []
    if isinstance(value, list) and head.isdigit():
        return _lookup(value[int(head)], rest) if int(head) < len(value) else []
    if isinstance(value, dict) and head in value:
        return _lookup(value[head], rest)
    return []
