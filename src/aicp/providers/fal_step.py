"""The executor of every queued model (fal, and Replicate's predictions): ``run(ctx)``, and ``check``.

A step runs as: build the request from the step's input and params (the
model's row in :mod:`aicp.providers.models` says how), upload local
files, submit to the provider's queue, tell the run record the request's id
(so a resumed run polls that request instead of paying for another), poll
its status while relaying the queue position and the model's log lines as
``step_progress`` / ``step_log`` events, fetch the result, and download the
produced files into the output folder atomically. If the step stops before
the provider finished (timeout, Ctrl-C, a failed poll), the queue's cancel
request is sent on the way out: the worker turns SIGTERM into an exception,
so the ``finally`` runs. A client (:class:`aicp.providers.fal_queue.FalClient`,
:class:`aicp.providers.replicate.ReplicateClient`) speaks one provider's
protocol in fal's vocabulary of statuses.

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

    from typing import Callable, Protocol

    from aicp.providers.models import Model
    from aicp.providers.fal_queue import Submission

    class QueueClient(Protocol):
        name: str      # as people read it: "fal", "Replicate"
        provider: str  # as the catalogue says it: "fal", "replicate"

        def submit(self, endpoint: str, arguments: dict[str, Any]) -> Submission: ...
        def submission(self, endpoint: str, request_id: str) -> Submission: ...
        def status(self, sub: Submission) -> dict[str, Any]: ...
        def result(self, sub: Submission) -> dict[str, Any]: ...
        def cancel(self, sub: Submission) -> bool: ...
        def upload(self, path: Path) -> str: ...
        def download(self, url: str, target: Any, progress: Any) -> None: ...
        def close(self) -> None: ...

POLL_MIN = 0.5  # seconds between status polls while something changes...
POLL_MAX = 3.0  # ...growing to this while nothing does
LOG_LINE_MAX = 4000
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
    return problems + _url_problems(params)


def _url_problems(params: dict[str, Any]) -> list[tuple[str, str]]:
    """``*_url`` params must be one URL or path, ``*_urls`` params a list of them."""
    problems: list[tuple[str, str]] = []
    for key, value in params.items():
        if key.endswith("_url") and value is not None and not isinstance(value, str):
            problems.append((f"params.{key}", f"must be a URL or a file path, got {value!r}"))
        if key.endswith("_urls") and value is not None and not (
                isinstance(value, list) and all(isinstance(v, str) for v in value)):
            problems.append((f"params.{key}", f"must be a list of URLs or file paths, got {value!r}"))
    return problems


# --------------------------------------------------------------------------- the step


def run(ctx: Any) -> dict[str, Any]:
    from aicp.providers.fal_queue import FalClient

    return run_queued(ctx, "fal", lambda key: FalClient(key, notify=lambda message: ctx.log.warning(message)))


def run_queued(ctx: Any, provider: str, connect: Callable[[str], QueueClient]) -> dict[str, Any]:
    """Run a step on a queued provider: ``connect(key)`` gives the client."""
    from aicp.providers.credentials import step_model_and_key

    model, key = step_model_and_key(ctx, provider)
    problems = check(ctx.params, model.key)
    if problems:
        raise StepFailed("; ".join(f"{where}: {message}" for where, message in problems))
    client = connect(key)
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
        "provider": provider,
        "endpoint": model.endpoint,
        "request_id": first["request_id"] if len(results) == 1 else [r["request_id"] for r in results],
    }


def _shape(body: dict[str, Any], model: Model) -> None:
    """The model's own forms of the common params: its duration type, its size names, its mode switch."""
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


class _Request:
    """One request for one input value (a list input, as from split_image, makes several)."""

    def __init__(self, ctx: Any, model: Model, client: QueueClient, value: Any, index: int | None,
                 count: int) -> None:
        self.ctx = ctx
        self.model = model
        self.client = client
        self.value = value
        self.index = index
        self.span = ((index or 0) / count, ((index or 0) + 1) / count)
        self.seen_logs: set[tuple[str, str]] = set()
        self.finished = False  # the provider is done with the request (completed or failed): nothing to cancel

    def progress(self, fraction: float, message: str) -> None:
        low, high = self.span
        label = f"[{self.index + 1}] " if self.index is not None else ""
        self.ctx.progress(low + (high - low) * fraction, label + message)

    # -- the request -----------------------------------------------------------

    def run(self) -> dict[str, Any]:
        name = self.client.name
        sub = self.resumed() or self.submit()
        try:
            self.wait(sub)
        finally:
            if not self.finished:
                cancelled = self.client.cancel(sub)
                self.ctx.log.warning(f"cancel requested on {name}" if cancelled
                                     else f"{name} did not take the cancel request", request_id=sub.request_id)
        self.progress(0.9, "fetching the result")
        result = self.client.result(sub)
        if self.model.io.kind == "text":
            return self.text(result, sub.request_id)
        urls = self.file_urls(result)
        paths = [self.save(url, i, len(urls)) for i, url in enumerate(urls)]
        return {"output": paths[0], "outputs": paths, "request_id": sub.request_id,
                "url": next((u for u in urls if not u.startswith("data:")), None)}

    def submit(self) -> Submission:
        """Send the request (paid from here on) and tell the run record its id at once."""
        arguments = self.arguments()
        self.progress(0.03, f"submitting to {self.client.name} ({self.model.endpoint})")
        sub = self.client.submit(self.model.endpoint, arguments)
        self.ctx.remote_submitted(self.client.provider, self.model.endpoint, sub.request_id, self.index or 0)
        self.ctx.log.info(f"submitted to {self.client.name}", request_id=sub.request_id, endpoint=self.model.endpoint)
        return sub

    def resumed(self) -> Submission | None:
        """The request an interrupted run of this step submitted, if it is still alive: polled, not paid again."""
        request_id = self.ctx.remote_pending(self.client.provider, self.model.endpoint, self.index or 0)
        if request_id is None:
            return None
        sub = self.client.submission(self.model.endpoint, request_id)
        try:
            state = _state(self.client.status(sub))
        except StepFailed as exc:
            state = f"gone ({exc})"
        if state in ("queued", "running", "completed"):
            self.ctx.log.info(f"polling the {self.client.name} request an interrupted run submitted "
                              "(not submitting it again)", request_id=request_id, endpoint=self.model.endpoint)
            return sub
        self.ctx.log.warning(f"the {self.client.name} request an interrupted run submitted is {state}; "
                             "submitting it again", request_id=request_id)
        return None

    def text(self, result: dict[str, Any], request_id: str) -> dict[str, Any]:
        """A text result (a transcript): the text flows on; it and the whole answer are saved."""
        from aicp.providers._files import save_text

        found = [t for t in _lookup(result, self.model.output_path.split(".")) if isinstance(t, str)]
        if not found:
            raise StepFailed(f"{self.client.name} returned no text at {self.model.output_path}; the result has "
                             f"{', '.join(map(str, result)) or 'nothing'}")
        suffix = f"_{self.index + 1}" if self.index is not None else ""
        return {"output": found[0], "outputs": save_text(self.ctx, found[0], result, suffix),
                "request_id": request_id, "url": None}

    def arguments(self) -> dict[str, Any]:
        """The request body: type and model defaults, the step's input, the params (renamed, converted)."""
        model = self.model
        params = {k: v for k, v in self.ctx.params.items() if k not in model.unsent}
        body: dict[str, Any] = {**model.io.defaults, **model.defaults}
        self.put_input(body)
        if model.default_prompt is not None:
            body["prompt"] = params.pop("prompt", None) or self.ctx.latest.get("text") or model.default_prompt
        for name, kind in model.takes.items():
            if params.get(name) is None:
                body[name] = self.from_flow(name, kind)
        for name, value in params.items():
            body[model.renames.get(name, name)] = value
        _shape(body, model)
        self.upload_files(body)
        return body

    def put_input(self, body: dict[str, Any]) -> None:
        """The step's input into the model's input field: text as it is, files as URLs."""
        if self.value is None or self.value == "":
            raise StepFailed(f"{self.ctx.type} got no input")
        field = self.model.request_input_field
        if self.model.io.input_field in ("prompt", "text"):
            body[field] = str(self.value)
        elif _is_list_field(field):
            values = self.value if isinstance(self.value, list) else [self.value]
            body[field] = [self.file_url(v, "input") for v in values]
        else:
            body[field] = self.file_url(self.value, "input")

    def upload_files(self, body: dict[str, Any]) -> None:
        """Every ``*_url`` (or list-of-URLs) param that names a local file becomes an uploaded URL."""
        field = self.model.request_input_field
        for name, value in list(body.items()):
            if name == field:
                continue
            if name.endswith("_url") and isinstance(value, str):
                body[name] = self.file_url(value, f"params.{name}")
            elif _is_list_field(name) and isinstance(value, list):
                body[name] = [self.file_url(v, f"params.{name}") for v in value]

    def from_flow(self, name: str, kind: str) -> Any:
        """A request field the model fills from the chain: the latest output of ``kind`` (text as it is)."""
        value = self.ctx.latest.get(kind)
        if value in (None, "", []):
            raise StepFailed(f"{self.model.key} needs {'an' if kind[0] in 'aeiou' else 'a'} {kind}: give "
                             f"params.{name}, or put a step that produces {kind} before this one")
        return value if kind == "text" else value[0] if isinstance(value, list) else value

    def file_url(self, value: Any, where: str) -> str:
        """A URL the provider can fetch: URLs pass through; local files are uploaded."""
        from aicp.providers._files import is_url, local_file

        if is_url(value):
            return str(value)
        path = local_file(self.ctx, value, where)
        self.progress(0.01, f"uploading {path.name}")
        return self.client.upload(path)

    def wait(self, sub: Submission) -> None:
        """Poll until the provider is done; raise if the request failed."""
        from aicp.providers._http import describe_error

        interval, last, running_since = POLL_MIN, None, None
        name = self.client.name
        while True:
            status = self.client.status(sub)
            state = _state(status)
            self.relay_logs(status.get("logs"))
            self.finished = state not in ("queued", "running")
            if state == "completed":
                return
            if state == "failed" and status.get("error"):
                kind = f" [{status['error_type']}]" if status.get("error_type") else ""
                raise StepFailed(f"{name} request {sub.request_id} failed{kind}: {describe_error(status['error'])}")
            if self.finished:
                raise StepFailed(f"{name} request {sub.request_id} {str(status.get('status', '')).lower()}: "
                                 f"{describe_error(status) or f'{name} gave no reason'}")
            now = time.monotonic()
            if state == "queued":
                position = status.get("queue_position")
                seen: tuple[Any, ...] = (state, position)
                if seen != last:
                    self.progress(0.05, "in queue" if position is None else f"in queue, position {position}")
            else:
                running_since = running_since or now
                elapsed = now - running_since
                seen = (state, len(self.seen_logs))
                self.progress(0.1 + 0.75 * min(1.0, elapsed / self.model.seconds),
                              f"generating on {name}, {elapsed:.0f} s (usually ~{self.model.seconds} s)")
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
            getattr(self.ctx.log, level)(ident[1][:LOG_LINE_MAX], source=self.client.provider,
                                         **{f"{self.client.provider}_timestamp": ident[0] or None})

    # -- the produced files ------------------------------------------------------

    def file_urls(self, result: dict[str, Any]) -> list[str]:
        """The URLs at the model's output path (``images[].url``: every image), else at the usual places."""
        for path in (self.model.output_path, "images[].url", "image.url", "video.url", "audio.url", "audio_url.url"):
            urls = [u for u in _lookup(result, path.split(".")) if isinstance(u, str) and u]
            if urls:
                return urls
        raise StepFailed(f"{self.client.name} returned no file at {self.model.output_path}; the result has "
                         f"{', '.join(map(str, result)) or 'nothing'}")

    def save(self, url: str, number: int, count: int) -> str:
        """Keep one produced file under ``step_{n}_{type}[_i].{ext}``, atomically."""
        from aicp.providers._files import save_url

        suffix = (f"_{self.index + 1}" if self.index is not None else "") + (f"_{number + 1}" if count > 1 else "")
        return save_url(self.ctx, self.client.download, url, self.model.io.kind, suffix,
                        lambda share, message: self.progress(0.9 + 0.1 * (number + share) / count, message))


def _state(status: dict[str, Any]) -> str:
    """A status in fal's words as one of queued, running, completed, failed (a COMPLETED with an error failed)."""
    state = str(status.get("status", "")).upper()
    if state == "COMPLETED":
        return "failed" if status.get("error") else "completed"
    if state in ("FAILED", "ERROR", "CANCELLED", "CANCELED"):
        return "failed"
    return "queued" if state == "IN_QUEUE" else "running"


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
