"""fal's queue API, over httpx: submit, poll, fetch, cancel, upload and download.

Imported only by :func:`aicp.providers.fal_step.run`, inside the worker of a
step that runs on fal, so httpx never weighs on the CLI or on offline steps.

The protocol (https://docs.fal.ai/model-endpoints/queue):

* ``POST {queue}/{endpoint}`` with the JSON input -> ``request_id``,
  ``status_url``, ``response_url``, ``cancel_url``;
* ``GET {status_url}?logs=1`` -> ``IN_QUEUE`` (``queue_position``),
  ``IN_PROGRESS`` (``logs``), ``COMPLETED`` (``error`` if it failed);
* ``GET {response_url}`` -> the model's output;
* ``PUT {cancel_url}`` -> the request leaves the queue (or the runner is told to stop).

Files: inputs up to :data:`DATA_URI_MAX_BYTES` travel inline as a data URI,
larger ones go to fal's storage (``POST {rest}/storage/upload/initiate`` ->
``upload_url``, ``file_url``; then ``PUT`` the bytes to ``upload_url``).

Every call is retried on 429 and 5xx answers and on connection failures, with
exponential backoff that honours ``Retry-After``, a bounded number of times.
The key goes only to the queue and storage hosts, never to the CDN that
serves the produced files. Errors are :class:`StepFailed` with the run exit
code scripts can branch on: 4 for a rejected key or an unreachable or
overloaded fal, the default (a step failed) for a request fal refused or ran
and failed.
"""

from __future__ import annotations

import base64
import email.utils
import mimetypes
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator

import httpx

from aicp._context import StepFailed

DEFAULT_QUEUE_URL = "https://queue.fal.run"
DEFAULT_REST_URL = "https://rest.fal.ai"
QUEUE_URL_ENV = "AICP_FAL_QUEUE_URL"  # a proxy or a test server; it also serves storage unless
REST_URL_ENV = "AICP_FAL_REST_URL"    # this one names the storage host separately
KEY_ENV = "FAL_KEY"

DATA_URI_MAX_BYTES = 1024 * 1024  # inputs up to 1 MiB go inline; larger ones through fal's storage
MAX_RETRIES = 5                   # after the first attempt, for 429 / 5xx / connection failures
MAX_RETRY_DELAY = 30.0            # seconds; also the cap on a Retry-After the server asks for
CANCEL_TIMEOUT = 3.0              # the cancel request must fit in the supervisor's kill grace
PROVIDER_EXIT = 4                 # ExitCode.PROVIDER; not imported to keep the worker light
CHUNK = 256 * 1024


@dataclass(frozen=True)
class Submission:
    request_id: str
    status_url: str
    response_url: str
    cancel_url: str


def error_detail(response: httpx.Response) -> str:
    """fal's own words about a failed call: ``detail`` (text or validation list), ``error`` or the body."""
    try:
        body: Any = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    return describe_error(body) or response.reason_phrase


def describe_error(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("detail", "error", "message"):
            if body.get(key):
                return describe_error(body[key])
        return ""
    if isinstance(body, list):  # FastAPI validation errors: [{"loc": [...], "msg": "..."}]
        parts = []
        for item in body:
            if isinstance(item, dict) and "msg" in item:
                loc = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                parts.append(f"{loc}: {item['msg']}" if loc else str(item["msg"]))
            else:
                parts.append(describe_error(item))
        return "; ".join(p for p in parts if p)
    return str(body)


def retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asked us to wait (``Retry-After``: seconds or an HTTP date), or None."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class FalClient:
    """One step's conversation with fal. ``notify(message)`` hears about retries."""

    def __init__(self, key: str, *, queue_url: str | None = None, rest_url: str | None = None,
                 notify: Callable[[str], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._key = key
        overridden = queue_url or os.environ.get(QUEUE_URL_ENV)
        self.queue_url = (overridden or DEFAULT_QUEUE_URL).rstrip("/")
        self.rest_url = (rest_url or os.environ.get(REST_URL_ENV) or overridden or DEFAULT_REST_URL).rstrip("/")
        self._notify = notify or (lambda message: None)
        self._sleep = sleep
        self._http = httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0), follow_redirects=True)

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------ transport

    def _headers(self, url: str, extra: dict[str, str] | None) -> dict[str, str]:
        headers = dict(extra or {})
        if url.startswith((self.queue_url + "/", self.rest_url + "/")):
            headers["Authorization"] = f"Key {self._key}"
        return headers

    def _local(self, url: str) -> str:
        """fal's own queue URLs, redirected to the configured base when it is a proxy or a test server."""
        if self.queue_url != DEFAULT_QUEUE_URL and url.startswith(DEFAULT_QUEUE_URL + "/"):
            return self.queue_url + url[len(DEFAULT_QUEUE_URL):]
        return url

    def send(self, method: str, url: str, *, what: str, json: Any = None,
             content: Callable[[], Any] | None = None, headers: dict[str, str] | None = None,
             stream: bool = False, idempotent: bool = True, timeout: float | None = None,
             retries: int = MAX_RETRIES) -> httpx.Response:
        """One call, retried on 429/5xx and connection failures; a 2xx response or :class:`StepFailed`.

        ``content`` is a factory, so a retried upload sends its body again
        from the start. A non-idempotent call (a submit) is retried when fal
        refused it (429, 5xx) or the connection never opened, never after a
        connection broke off mid-call: fal may have queued (and billed) it.
        """
        attempt = 0
        while True:
            request = self._http.build_request(
                method, url, json=json, content=content() if content else None,
                headers=self._headers(url, headers),
                timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)) if timeout else httpx.USE_CLIENT_DEFAULT)
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                connect_failed = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
                if attempt >= retries or not (idempotent or connect_failed):
                    host = httpx.URL(url).host or url
                    raise StepFailed(f"fal is unreachable ({what}, {host}): {type(exc).__name__}: {exc}",
                                     run_exit_code=PROVIDER_EXIT) from None
                delay, why = self._backoff(attempt), f"{type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                if status < 400:
                    return response
                if stream:
                    response.read()
                if status in (401, 403):
                    raise StepFailed(f"fal: key rejected (HTTP {status}, {what}): {error_detail(response)}; "
                                     f"check {KEY_ENV}", run_exit_code=PROVIDER_EXIT)
                if status != 429 and status < 500:
                    raise StepFailed(f"fal refused the request (HTTP {status}, {what}): {error_detail(response)}")
                if attempt >= retries:
                    raise StepFailed(f"fal answered HTTP {status} to {what} {attempt + 1} times in a row: "
                                     f"{error_detail(response)}", run_exit_code=PROVIDER_EXIT)
                response.close()
                asked = retry_after(response)
                delay = min(MAX_RETRY_DELAY, asked) if asked is not None else self._backoff(attempt)
                why = f"HTTP {status}" + (f", Retry-After {asked:g} s" if asked is not None else "")
            attempt += 1
            self._notify(f"fal {what}: {why}; retry {attempt} of {retries} in {delay:.1f} s")
            self._sleep(delay)

    @staticmethod
    def _backoff(attempt: int) -> float:
        return min(MAX_RETRY_DELAY, 0.5 * 2 ** attempt) * random.uniform(0.75, 1.0)

    def get_json(self, url: str, what: str) -> dict[str, Any]:
        return _object(self.send("GET", url, what=what), what)

    # ------------------------------------------------------------------ the queue

    def submit(self, endpoint: str, arguments: dict[str, Any]) -> Submission:
        body = _object(self.send("POST", f"{self.queue_url}/{endpoint}", what="submit", json=arguments,
                                 idempotent=False), "submit")
        request_id = body.get("request_id")
        if not request_id:
            raise StepFailed(f"fal accepted the request but returned no request_id: {str(body)[:200]}")
        # The returned URLs are the right ones (an endpoint's sub-path is not part of them);
        # build them only if an older or proxied queue leaves them out.
        base = f"{self.queue_url}/{'/'.join(endpoint.split('/')[:2])}/requests/{request_id}"
        return Submission(
            request_id=request_id,
            status_url=self._local(body.get("status_url") or f"{base}/status"),
            response_url=self._local(body.get("response_url") or base),
            cancel_url=self._local(body.get("cancel_url") or f"{base}/cancel"),
        )

    def status(self, sub: Submission) -> dict[str, Any]:
        return self.get_json(_with_query(sub.status_url, "logs=1"), "status")

    def result(self, sub: Submission) -> dict[str, Any]:
        return self.get_json(sub.response_url, "result")

    def cancel(self, sub: Submission) -> bool:
        """Ask fal to drop the request; quick and never raising (it runs while the step is stopping)."""
        try:
            self.send("PUT", sub.cancel_url, what="cancel", timeout=CANCEL_TIMEOUT, retries=0)
        except (StepFailed, httpx.HTTPError):
            return False
        return True

    # ------------------------------------------------------------------ files

    def upload(self, path: Path) -> str:
        """A URL fal can read ``path`` from: a data URI when small, else a storage upload."""
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        size = path.stat().st_size
        if size <= DATA_URI_MAX_BYTES:
            return f"data:{content_type};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"
        body = _object(self.send("POST", f"{self.rest_url}/storage/upload/initiate?storage_type=fal-cdn-v3",
                                 what="upload", json={"file_name": path.name, "content_type": content_type}),
                       "upload")
        if not body.get("upload_url") or not body.get("file_url"):
            raise StepFailed(f"fal storage returned no upload_url/file_url: {str(body)[:200]}")
        self.send("PUT", body["upload_url"], what=f"upload of {path.name}", content=lambda: _chunks(path),
                  headers={"Content-Type": content_type, "Content-Length": str(size)}, timeout=600.0)
        return body["file_url"]

    def download(self, url: str, target: Callable[[str | None], ContextManager[Path]],
                 progress: Callable[[int, int | None], None]) -> None:
        """Stream ``url`` into the temporary file ``target(content_type)`` gives; check its size.

        ``target`` is an atomic output: the file appears under its final name
        only if the whole body arrived, as many bytes as Content-Length said.
        """
        response = self.send("GET", url, what="download", stream=True, timeout=600.0)
        try:
            expected = response.headers.get("content-length")
            total = int(expected) if expected and expected.isdigit() else None
            content_type = response.headers.get("content-type", "").split(";")[0].strip() or None
            with target(content_type) as tmp:
                with open(tmp, "wb") as out:
                    try:
                        for chunk in response.iter_bytes(CHUNK):
                            out.write(chunk)
                            progress(response.num_bytes_downloaded, total)
                    except httpx.TransportError as exc:
                        raise StepFailed(f"fal: the download of {url} broke off: {type(exc).__name__}: {exc}",
                                         run_exit_code=PROVIDER_EXIT) from None
                got = response.num_bytes_downloaded
                if total is not None and got != total:
                    raise StepFailed(f"fal: the download of {url} is incomplete: {got} of {total} bytes")
                if got == 0:
                    raise StepFailed(f"fal: {url} is empty")
        finally:
            response.close()


def _object(response: httpx.Response, what: str) -> dict[str, Any]:
    """The JSON object of a successful answer, or :class:`StepFailed` saying what came instead."""
    try:
        body = response.json()
    except ValueError:
        raise StepFailed(f"fal answered {what} with something that is not JSON: {response.text[:200]!r}") from None
    if not isinstance(body, dict):
        raise StepFailed(f"fal answered {what} with {type(body).__name__}, not an object")
    return body


def _with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk
