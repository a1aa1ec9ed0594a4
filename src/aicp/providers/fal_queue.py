"""fal's queue API: submit, poll, fetch, cancel, upload (inline, storage, multipart) and download.

Imported only by :func:`aicp.providers.fal_step.run`, inside the worker of a
step that runs on fal, so httpx never weighs on the CLI or on offline steps.

The protocol (https://docs.fal.ai/model-endpoints/queue, and fal's official
client, fal-ai/fal ``projects/fal_client``):

* ``POST {queue}/{endpoint}`` with the JSON input -> ``request_id``,
  ``status_url``, ``response_url``, ``cancel_url``;
* ``GET {status_url}?logs=1`` -> ``IN_QUEUE`` (``queue_position``),
  ``IN_PROGRESS`` (``logs``), ``COMPLETED`` (``error`` if it failed);
* ``GET {response_url}`` -> the model's output;
* ``PUT {cancel_url}`` -> the request leaves the queue (or the runner is told to stop).

Files: inputs up to :data:`DATA_URI_MAX_BYTES` travel inline as a data URI;
larger ones go to fal's storage (``POST {rest}/storage/upload/initiate`` ->
``upload_url``, ``file_url``; then ``PUT`` the bytes); above
:data:`MULTIPART_THRESHOLD`, fal's multipart upload (a CDN token from
``POST {rest}/storage/auth/token?storage_type=fal-cdn-v3``; ``POST
{base_url}/files/upload/multipart`` -> ``access_url``, ``uploadId``; ``PUT``
each part to ``{access_url}/multipart/{uploadId}/{n}`` keeping its ETag;
``POST .../complete`` with the parts; the file is at ``access_url``).

Retries follow fal-client: 408, 409 and 429 and connection failures, up to
:data:`MAX_ATTEMPTS` attempts with exponential backoff from 0.1 s (jitter
0.5-1.5x, at most :data:`MAX_RETRY_DELAY`); we also honour ``Retry-After``.
fal's own 5xx on the queue calls are retried too (fal is overloaded: exit 4
when they never end). The result URL is different: a 5xx there is the
model's own failure, a step failure at once, unless it is a gateway error
that never reached fal (502/503/504 without ``x-fal-request-id``). The key
goes only to the queue and storage hosts, never to the CDN that serves the
produced files.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator

import httpx

from aicp._context import StepFailed
from aicp.providers._files import content_type, data_uri
from aicp.providers._http import Http, RetryPolicy, file_chunks

DEFAULT_QUEUE_URL = "https://queue.fal.run"
DEFAULT_REST_URL = "https://rest.fal.ai"
QUEUE_URL_ENV = "AICP_FAL_QUEUE_URL"  # a proxy or a test server; it also serves storage unless
REST_URL_ENV = "AICP_FAL_REST_URL"    # this one names the storage host separately
KEY_ENV = "FAL_KEY"

DATA_URI_MAX_BYTES = 1024 * 1024           # inputs up to 1 MiB go inline; larger ones through fal's storage
MULTIPART_THRESHOLD = 90 * 1024 * 1024     # above this, fal's multipart upload
MULTIPART_CHUNK = 10 * 1024 * 1024         # fal-client's part size
MAX_ATTEMPTS = 10                          # fal-client's, the first one included
BASE_DELAY = 0.1
MAX_RETRY_DELAY = 30.0                     # seconds; also the cap on a Retry-After the server asks for
CANCEL_TIMEOUT = 3.0                       # the cancel request must fit in the supervisor's kill grace


@dataclass(frozen=True)
class Submission:
    request_id: str
    status_url: str
    response_url: str
    cancel_url: str


def _from_the_model(response: httpx.Response) -> bool:
    """fal-client's test for a 5xx that fal itself answered (not its ingress): a request id, or no nginx page."""
    return "x-fal-request-id" in response.headers or "nginx" not in response.text


class FalClient:
    """One step's conversation with fal. ``notify(message)`` hears about retries."""

    name = "fal"
    provider = "fal"

    def __init__(self, key: str, *, queue_url: str | None = None, rest_url: str | None = None,
                 notify: Callable[[str], None] | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self._key = key
        overridden = queue_url or os.environ.get(QUEUE_URL_ENV)
        self.queue_url = (overridden or DEFAULT_QUEUE_URL).rstrip("/")
        self.rest_url = (rest_url or os.environ.get(REST_URL_ENV) or overridden or DEFAULT_REST_URL).rstrip("/")
        self.policy = RetryPolicy(frozenset({408, 409, 429}), MAX_ATTEMPTS, BASE_DELAY, MAX_RETRY_DELAY,
                                  jitter=(0.5, 1.5))
        self.result_policy = replace(self.policy, server_errors="gateway", from_model=_from_the_model)
        self.http = Http("fal", KEY_ENV, self._headers, self.policy, notify=notify, sleep=sleep)

    def close(self) -> None:
        self.http.close()

    def _headers(self, url: str) -> dict[str, str]:
        """The key, for fal's queue and storage hosts only."""
        if url.startswith((self.queue_url + "/", self.rest_url + "/")):
            return {"Authorization": f"Key {self._key}"}
        return {}

    def _local(self, url: str) -> str:
        """fal's own queue URLs, redirected to the configured base when it is a proxy or a test server."""
        if self.queue_url != DEFAULT_QUEUE_URL and url.startswith(DEFAULT_QUEUE_URL + "/"):
            return self.queue_url + url[len(DEFAULT_QUEUE_URL):]
        return url

    # ------------------------------------------------------------------ the queue

    def submit(self, endpoint: str, arguments: dict[str, Any]) -> Submission:
        body = self.http.json("POST", f"{self.queue_url}/{endpoint}", what="submit", json=arguments,
                              idempotent=False)
        request_id = body.get("request_id")
        if not request_id:
            raise StepFailed(f"fal accepted the request but returned no request_id: {str(body)[:200]}")
        return self.submission(endpoint, str(request_id), body)

    def submission(self, endpoint: str, request_id: str, body: dict[str, Any] | None = None) -> Submission:
        """The URLs of a request: as fal returned them, else built from the endpoint (a resumed run has only the id).

        fal's URLs leave out an endpoint's sub-path (``fal-ai/flux-1/dev`` -> ``fal-ai/flux-1``).
        """
        body = body or {}
        base = f"{self.queue_url}/{'/'.join(endpoint.split('/')[:2])}/requests/{request_id}"
        return Submission(
            request_id=request_id,
            status_url=self._local(body.get("status_url") or f"{base}/status"),
            response_url=self._local(body.get("response_url") or base),
            cancel_url=self._local(body.get("cancel_url") or f"{base}/cancel"),
        )

    def status(self, sub: Submission) -> dict[str, Any]:
        return self.http.json("GET", _with_query(sub.status_url, "logs=1"), what="status")

    def result(self, sub: Submission) -> dict[str, Any]:
        return self.http.json("GET", sub.response_url, what="result", policy=self.result_policy)

    def cancel(self, sub: Submission) -> bool:
        """Ask fal to drop the request; quick and never raising (it runs while the step is stopping)."""
        try:
            self.http.send("PUT", sub.cancel_url, what="cancel", timeout=CANCEL_TIMEOUT, attempts=1)
        except (StepFailed, httpx.HTTPError):
            return False
        return True

    # ------------------------------------------------------------------ files

    def upload(self, path: Path) -> str:
        """A URL fal can read ``path`` from: a data URI when small, a storage upload, or a multipart one."""
        mime = content_type(path)
        size = path.stat().st_size
        if size <= DATA_URI_MAX_BYTES:
            return data_uri(path)
        if size > MULTIPART_THRESHOLD:
            return self.multipart_upload(path, mime, size)
        body = self.http.json("POST", f"{self.rest_url}/storage/upload/initiate?storage_type=fal-cdn-v3",
                              what="upload", json={"file_name": path.name, "content_type": mime})
        if not body.get("upload_url") or not body.get("file_url"):
            raise StepFailed(f"fal storage returned no upload_url/file_url: {str(body)[:200]}")
        self.http.send("PUT", body["upload_url"], what=f"upload of {path.name}", content=lambda: file_chunks(path),
                       headers={"Content-Type": mime, "Content-Length": str(size)}, timeout=600.0)
        return str(body["file_url"])

    def multipart_upload(self, path: Path, mime: str, size: int) -> str:
        """fal-client's multipart protocol: a CDN token, create, the parts in order (their ETags), complete."""
        token = self.http.json("POST", f"{self.rest_url}/storage/auth/token?storage_type=fal-cdn-v3",
                               what="upload token", json={})
        if not all(token.get(k) for k in ("token", "token_type", "base_url")):
            raise StepFailed(f"fal storage returned no upload token: {str(token)[:200]}")
        auth = {"Authorization": f"{token['token_type']} {token['token']}"}
        created = self.http.json("POST", f"{str(token['base_url']).rstrip('/')}/files/upload/multipart",
                                 what="multipart upload", headers={**auth, "Content-Type": mime,
                                                                   "X-Fal-File-Name": path.name})
        access_url, upload_id = created.get("access_url"), created.get("uploadId")
        if not access_url or not upload_id:
            raise StepFailed(f"fal storage returned no access_url/uploadId: {str(created)[:200]}")
        parts = []
        for number in range(1, math.ceil(size / MULTIPART_CHUNK) + 1):
            start = (number - 1) * MULTIPART_CHUNK

            def part(start: int = start) -> Iterator[bytes]:
                return file_chunks(path, start, MULTIPART_CHUNK)

            answer = self.http.send(
                "PUT", f"{access_url}/multipart/{upload_id}/{number}", what=f"upload of {path.name}, part {number}",
                content=part, timeout=600.0,
                headers={**auth, "Content-Type": mime, "Accept-Encoding": "identity",
                         "Content-Length": str(min(MULTIPART_CHUNK, size - start))})
            etag = answer.headers.get("etag")
            if not etag:
                raise StepFailed(f"fal storage returned no ETag for part {number} of {path.name}")
            parts.append({"partNumber": number, "etag": etag})
        self.http.send("POST", f"{access_url}/multipart/{upload_id}/complete", what=f"upload of {path.name}",
                       headers=auth, json={"parts": parts})
        return str(access_url)

    def download(self, url: str, target: Callable[[str | None], ContextManager[Path]],
                 progress: Callable[[int, int | None], None]) -> None:
        self.http.download(url, target, progress)


def _with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"
