"""One HTTP layer for every provider: retries, authentication and error mapping, written once.

Imported only inside the worker of a step that runs on a provider, so httpx
never weighs on the CLI or on offline steps.

Each provider states its official client's retry behaviour as a
:class:`RetryPolicy` (which statuses, how many attempts, which backoff,
whether ``Retry-After`` is honoured, which methods); :class:`Http` applies it.
The outcome of a call is a 2xx response or :class:`StepFailed` carrying the
run's exit code scripts branch on:

* 401 / 403: the key was rejected -> exit 4, naming the variable to check;
* a retryable status or a connection failure, still failing after the last
  attempt -> exit 4 (the provider is unreachable or overloaded);
* any other 4xx or 5xx: the provider refused or failed this request -> a
  step failure (exit 5), with the provider's own words.

A call that may have been billed once it reached the server (a submit) is
retried only when the server refused it or the connection never opened,
never after a connection broke off mid-call.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Mapping

import httpx

from aicp._context import StepFailed
from aicp._errors import ExitCode

PROVIDER_EXIT = ExitCode.PROVIDER  # what the run exits with when a provider fails (not the step's fault)
CHUNK = 256 * 1024


@dataclass(frozen=True)
class RetryPolicy:
    """Which answers are retried, and how long to wait between attempts.

    Delay before retry *n* (1-based) is ``base * 2 ** (n - 1)`` times a
    random factor in ``jitter``, plus up to ``added_jitter`` seconds, at most
    ``cap``; a ``Retry-After`` (or ``retry-after-ms``) the server sends wins
    when ``retry_after`` is set (capped at ``cap``). ``server_errors``
    says which 5xx are retried: ``"all"``, ``"none"`` or ``"gateway"`` (502,
    503, 504 that did not come from the model itself, see ``from_model``).
    ``methods`` limits retries to those HTTP methods (None: any).
    """

    statuses: frozenset[int]
    attempts: int
    base: float
    cap: float
    jitter: tuple[float, float] = (1.0, 1.0)
    added_jitter: float = 0.0  # seconds added at random (tenacity's wait_exponential_jitter)
    server_errors: str = "all"
    retry_after: bool = True
    methods: frozenset[str] | None = None
    connection_errors: bool = True
    from_model: Callable[[httpx.Response], bool] | None = None  # a 5xx the model itself answered
    retry_after_max: float | None = None  # openai-python: a longer Retry-After is not waited for (no retry)
    should_retry_header: bool = False     # openai-python: x-should-retry: true/false decides

    def retryable(self, method: str, response: httpx.Response) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        told = response.headers.get("x-should-retry") if self.should_retry_header else None
        if told in ("true", "false"):
            return told == "true"
        status = response.status_code
        if status in self.statuses:
            return True
        if status < 500 or self.server_errors == "none":
            return False
        if self.server_errors == "gateway":
            return status in (502, 503, 504) and not (self.from_model and self.from_model(response))
        return True

    def delay(self, retry: int) -> float:
        delay = self.base * 2 ** (retry - 1) * random.uniform(*self.jitter) + random.uniform(0, self.added_jitter)
        return min(self.cap, delay)


def error_detail(response: httpx.Response) -> str:
    """A provider's own words about a failed call, whichever of the usual shapes it uses."""
    try:
        body: Any = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    return describe_error(body) or response.reason_phrase


def describe_error(body: Any) -> str:
    """``detail`` (text or a validation list), ``error`` (text or ``{message}``), ``message``, ``title``."""
    if isinstance(body, dict):
        for key in ("detail", "error", "message", "title"):
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
    """Seconds the server asked us to wait (``retry-after-ms``, ``Retry-After``: seconds or an HTTP date), or None."""
    millis = response.headers.get("retry-after-ms")
    try:
        return max(0.0, float(millis) / 1000) if millis else retry_after_header(response)
    except ValueError:
        return retry_after_header(response)


def retry_after_header(response: httpx.Response) -> float | None:
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


class Http:
    """One step's HTTP conversation with one provider.

    ``auth(url)`` gives the headers that authenticate a request to ``url``
    (empty for hosts that must not see the key, such as a CDN); ``notify``
    hears about retries (the step's log); ``key_rejected`` recognises a
    provider's other way of saying the key is wrong (Gemini: a 400).
    """

    def __init__(self, provider: str, key_env: str, auth: Callable[[str], Mapping[str, str]], policy: RetryPolicy,
                 *, notify: Callable[[str], None] | None = None, sleep: Callable[[float], None] = time.sleep,
                 timeout: float = 60.0, key_rejected: Callable[[httpx.Response], bool] | None = None) -> None:
        self.provider = provider
        self.key_env = key_env
        self.policy = policy
        self._auth = auth
        self._notify = notify or (lambda message: None)
        self._sleep = sleep
        self._key_rejected = key_rejected or (lambda response: False)
        self._client = httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0), follow_redirects=True)

    def close(self) -> None:
        self._client.close()

    def send(self, method: str, url: str, *, what: str, json: Any = None,
             content: Callable[[], Any] | None = None, files: Mapping[str, Any] | None = None,
             headers: Mapping[str, str] | None = None,
             stream: bool = False, idempotent: bool = True, timeout: float | None = None,
             policy: RetryPolicy | None = None, attempts: int | None = None) -> httpx.Response:
        """One call, retried as the policy says; a 2xx response or :class:`StepFailed`.

        ``content`` is a factory, so a retried upload sends its body again from the start;
        ``files`` is a multipart form (httpx's ``files``).
        """
        policy = policy or self.policy
        limit = attempts or policy.attempts
        attempt = 1
        while True:
            request = self._client.build_request(
                method, url, json=json, content=content() if content else None, files=files,
                headers={**self._auth(url), **(headers or {})},
                timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)) if timeout else httpx.USE_CLIENT_DEFAULT)
            try:
                response = self._client.send(request, stream=stream)
            except httpx.TransportError as exc:
                connect_failed = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
                if attempt >= limit or not policy.connection_errors or not (idempotent or connect_failed):
                    host = httpx.URL(url).host or url
                    raise StepFailed(f"{self.provider} is unreachable ({what}, {host}): {type(exc).__name__}: {exc}",
                                     run_exit_code=PROVIDER_EXIT) from None
                delay, why = policy.delay(attempt), f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 400:
                    return response
                delay, why = self._refused(response, method, what, policy, attempt, limit)
            self._notify(f"{self.provider} {what}: {why}; retry {attempt} of {limit - 1} in {delay:.1f} s")
            self._sleep(delay)
            attempt += 1

    def _refused(self, response: httpx.Response, method: str, what: str, policy: RetryPolicy, attempt: int,
                 limit: int) -> tuple[float, str]:
        """Raise for an answer that is final; else the delay before the next attempt, and why."""
        status = response.status_code
        response.read()
        response.close()
        if status in (401, 403) or self._key_rejected(response):
            raise StepFailed(f"{self.provider}: key rejected (HTTP {status}, {what}): {error_detail(response)}; "
                             f"check {self.key_env}", run_exit_code=PROVIDER_EXIT)
        if status in policy.statuses and policy.methods is not None and method not in policy.methods:
            raise StepFailed(f"{self.provider} answered HTTP {status} to {what} (not retried: a {method} may "
                             f"already have been billed): {error_detail(response)}", run_exit_code=PROVIDER_EXIT)
        if not policy.retryable(method, response):
            refused = "failed" if status >= 500 else "refused the request"
            raise StepFailed(f"{self.provider} {refused} (HTTP {status}, {what}): {error_detail(response)}")
        asked = retry_after(response) if policy.retry_after else None
        too_long = asked is not None and policy.retry_after_max is not None and asked > policy.retry_after_max
        if attempt >= limit or too_long:
            raise StepFailed(f"{self.provider} answered HTTP {status} to {what} {attempt} times in a row"
                             + (f" (and asked to wait {asked:g} s)" if too_long else "")
                             + f": {error_detail(response)}", run_exit_code=PROVIDER_EXIT)
        if asked is not None and policy.retry_after_max is not None:
            delay = asked
        else:
            delay = min(policy.cap, asked) if asked is not None else policy.delay(attempt)
        return delay, f"HTTP {status}" + (f", Retry-After {asked:g} s" if asked is not None else "")

    def json(self, method: str, url: str, *, what: str, **kwargs: Any) -> dict[str, Any]:
        """The JSON object of a successful answer, or :class:`StepFailed` saying what came instead."""
        response = self.send(method, url, what=what, **kwargs)
        try:
            body = response.json()
        except ValueError:
            raise StepFailed(f"{self.provider} answered {what} with something that is not JSON: "
                             f"{response.text[:200]!r}") from None
        if not isinstance(body, dict):
            raise StepFailed(f"{self.provider} answered {what} with {type(body).__name__}, not an object")
        return body

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
                        raise StepFailed(f"{self.provider}: the download of {url} broke off: "
                                         f"{type(exc).__name__}: {exc}", run_exit_code=PROVIDER_EXIT) from None
                got = response.num_bytes_downloaded
                if total is not None and got != total:
                    raise StepFailed(f"{self.provider}: the download of {url} is incomplete: {got} of {total} bytes")
                if got == 0:
                    raise StepFailed(f"{self.provider}: {url} is empty")
        finally:
            response.close()


def file_chunks(path: Path, start: int = 0, size: int | None = None) -> Iterator[bytes]:
    """The bytes of ``path`` from ``start`` (``size`` of them, or to the end), in pieces."""
    left = size
    with open(path, "rb") as f:
        f.seek(start)
        while left is None or left > 0:
            chunk = f.read(CHUNK if left is None else min(CHUNK, left))
            if not chunk:
                return
            if left is not None:
                left -= len(chunk)
            yield chunk
