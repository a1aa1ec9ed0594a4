"""Models on Replicate (``gen4``: Runway's Gen-4 Image), through its predictions API.

The protocol (https://replicate.com/docs/reference/http, and the official
client replicate/replicate-python):

* ``POST {base}/v1/models/{owner}/{name}/predictions`` with ``Authorization:
  Bearer TOKEN`` and ``{"input": {...}}`` -> 201, a prediction: ``id``,
  ``status`` (``starting``), ``urls.get``, ``urls.cancel``;
* ``GET urls.get`` -> ``status`` ``starting`` | ``processing`` |
  ``succeeded`` | ``failed`` | ``canceled``, the model's ``logs`` so far (one
  text), ``output`` (a file URL or a list of them), ``error``, ``metrics``;
* ``POST urls.cancel`` -> the prediction is cancelled;
* files: inputs up to 1 MiB travel as data URIs (Replicate accepts them);
  larger ones go to ``POST {base}/v1/files`` (multipart form, field
  ``content``) -> ``urls.get``.

Retries follow replicate-python's RetryTransport: 429, 503 and 504 on
idempotent methods only (GET, PUT, DELETE: never a ``POST``, so neither a
submit nor a cancel is repeated), up to 10 attempts, 0.1 s doubling with
±10 % jitter, at most 60 s, or what ``Retry-After`` asks. A 429, 503 or 504 on
a submit is therefore final: the provider's or the account's limit, exit 4.

:class:`ReplicateClient` speaks this in fal's vocabulary of statuses, so the
queue executor (:func:`aicp.providers.fal_step.run_queued`) runs Replicate's
models as it runs fal's: progress, logs, cancellation, never paying twice.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, ContextManager

import httpx

from aicp._context import StepFailed
from aicp.providers._files import content_type, data_uri
from aicp.providers._http import Http, RetryPolicy
from aicp.providers.fal_queue import Submission

DEFAULT_URL = "https://api.replicate.com"
URL_ENV = "AICP_REPLICATE_URL"  # a proxy or the local fake server the tests start
DATA_URI_MAX_BYTES = 1024 * 1024
RETRY = RetryPolicy(frozenset({429, 503, 504}), attempts=10, base=0.1, cap=60.0, jitter=(0.9, 1.1),
                    server_errors="none", methods=frozenset({"GET", "PUT", "DELETE", "HEAD", "OPTIONS"}),
                    connection_errors=False)
CANCEL_TIMEOUT = 3.0
# Replicate's statuses in fal's words (what the queue executor reads)
STATES = {"starting": "IN_QUEUE", "processing": "IN_PROGRESS", "succeeded": "COMPLETED", "failed": "FAILED",
          "canceled": "CANCELLED", "aborted": "CANCELLED"}


class ReplicateClient:
    """One step's conversation with Replicate. ``notify(message)`` hears about retries."""

    name = "Replicate"
    provider = "replicate"

    def __init__(self, token: str, notify: Callable[[str], None] | None = None) -> None:
        self.base = (os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        self._token = token
        self.http = Http("Replicate", "REPLICATE_API_TOKEN", self._headers, RETRY, notify=notify)
        self._latest: dict[str, dict[str, Any]] = {}  # request id -> the last prediction seen

    def _headers(self, url: str) -> dict[str, str]:
        """The token, for the API host only (never for the host that serves the outputs)."""
        return {"Authorization": f"Bearer {self._token}"} if url.startswith(self.base + "/") else {}

    def close(self) -> None:
        self.http.close()

    def submit(self, endpoint: str, arguments: dict[str, Any]) -> Submission:
        prediction = self.http.json("POST", f"{self.base}/v1/models/{endpoint}/predictions", what="submit",
                                    json={"input": arguments}, idempotent=False)
        if not prediction.get("id"):
            raise StepFailed(f"Replicate accepted the prediction but returned no id: {str(prediction)[:200]}")
        self._latest[str(prediction["id"])] = prediction
        return self.submission(endpoint, str(prediction["id"]), prediction.get("urls"))

    def submission(self, endpoint: str, request_id: str, urls: Any = None) -> Submission:
        urls = urls if isinstance(urls, dict) else {}
        get = urls.get("get") or f"{self.base}/v1/predictions/{request_id}"
        return Submission(request_id=request_id, status_url=get, response_url=get,
                          cancel_url=urls.get("cancel") or f"{get}/cancel")

    def status(self, sub: Submission) -> dict[str, Any]:
        """The prediction, as fal would say it: status, the log lines so far, the error."""
        prediction = self.http.json("GET", sub.status_url, what="status")
        self._latest[sub.request_id] = prediction
        logs = str(prediction.get("logs") or "").splitlines()
        return {"status": STATES.get(str(prediction.get("status")), "IN_PROGRESS"),
                "error": prediction.get("error"),
                "logs": [{"message": line, "timestamp": str(i), "level": "INFO"} for i, line in enumerate(logs)
                         if line.strip()]}

    def result(self, sub: Submission) -> dict[str, Any]:
        """The finished prediction, its ``output`` always a list of URLs (``output[]``)."""
        prediction = self._latest.get(sub.request_id) or self.http.json("GET", sub.response_url, what="result")
        output = prediction.get("output")
        return {**prediction, "output": output if isinstance(output, list) else [output] if output else []}

    def cancel(self, sub: Submission) -> bool:
        try:
            self.http.send("POST", sub.cancel_url, what="cancel", timeout=CANCEL_TIMEOUT, attempts=1)
        except (StepFailed, httpx.HTTPError):
            return False
        return True

    def upload(self, path: Path) -> str:
        """A URL Replicate can read ``path`` from: a data URI when small, else its Files API."""
        if path.stat().st_size <= DATA_URI_MAX_BYTES:
            return data_uri(path)
        with open(path, "rb") as f:
            created = self.http.json("POST", f"{self.base}/v1/files", what=f"upload of {path.name}",
                                     files={"content": (path.name, f, content_type(path))}, timeout=600.0)
        url = (created.get("urls") or {}).get("get")
        if not url:
            raise StepFailed(f"Replicate's file upload returned no URL: {str(created)[:200]}")
        return str(url)

    def download(self, url: str, target: Callable[[str | None], ContextManager[Path]],
                 progress: Callable[[int, int | None], None]) -> None:
        self.http.download(url, target, progress)


def run(ctx: Any) -> dict[str, Any]:
    from aicp.providers.fal_step import run_queued

    return run_queued(ctx, "replicate", lambda token: ReplicateClient(token, lambda m: ctx.log.warning(m)))
