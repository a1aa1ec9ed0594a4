"""A fake of fal's queue and storage API on 127.0.0.1, with scripted behaviours.

It speaks the protocol aicp's fal provider speaks (submit, status with logs
and queue position, result, cancel, storage upload, file download) and
records every request, so tests can assert what the provider sent: the key
header, the request body, a cancel PUT.

Behaviour is scripted per endpoint with :class:`Script`; an endpoint with no
script completes at once with a result of the kind its name suggests.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from fake_api import FAKE_LENGTH, Answer, FakeAPI


@dataclass
class Script:
    """How one endpoint behaves."""

    queue: list[int] = field(default_factory=list)  # queue positions, one per status poll
    progress_polls: int = 1           # IN_PROGRESS polls before COMPLETED
    logs: list[str] = field(default_factory=list)  # log lines, one more per IN_PROGRESS poll
    never_complete: bool = False      # IN_PROGRESS forever (until cancelled)
    fail: str | None = None           # the request fails with this message...
    fail_style: str = "FAILED"        # ...as status FAILED, or "COMPLETED" with an error field
    submit_status: int | None = None  # answer the submit with this HTTP status (401, 403, 422)
    submit_errors: list[int] = field(default_factory=list)  # statuses for the first submits (429, 500)
    status_errors: list[int] = field(default_factory=list)  # statuses for the first status polls
    retry_after: str | None = None    # Retry-After header on the scripted error answers
    result: dict[str, Any] | None = None  # the result body (default: by the endpoint's kind)
    foreign_urls: bool = False        # return https://queue.fal.run/... URLs, like a real fal behind a proxy
    echo_key_in_logs: bool = False    # put the Authorization header into a log line (the stream must mask it)
    result_errors: list[int] = field(default_factory=list)  # statuses for the first result fetches...
    gateway_errors: bool = False      # ...as an nginx page from fal's ingress (else fal's own, x-fal-request-id)


@dataclass
class Job:
    endpoint: str
    script: Script
    polls: int = 0
    cancelled: bool = False


class FakeFal(FakeAPI):
    def __init__(self, files: dict[str, tuple[bytes, str]]) -> None:
        super().__init__()
        self.files = dict(files)  # name -> (bytes, content type), served at /files/<name>
        self.scripts: dict[str, Script] = {}
        self.jobs: dict[str, Job] = {}
        self.cancels: list[str] = []
        self.uploads: dict[str, bytes] = {}
        self.multiparts: dict[str, dict[int, bytes]] = {}
        self.valid_keys = {"test-key"}
        self.truncate: set[str] = set()  # file names served with a Content-Length larger than the body

    # ------------------------------------------------------------------ inspection

    def submits(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        """The JSON bodies of the (accepted or not) submits, optionally to one endpoint."""
        return [json.loads(r["body"] or b"{}") for r in self.requests
                if r["method"] == "POST" and "/requests/" not in r["path"] and "/storage/" not in r["path"]
                and (endpoint is None or r["path"].lstrip("/") == endpoint)]

    def paths(self, method: str | None = None) -> list[str]:
        return [r["path"] for r in self.requests if method is None or r["method"] == method]

    # ------------------------------------------------------------------ behaviour

    def answer(self, method: str, path: str, record: dict[str, Any]) -> Answer:
        headers, body = record["headers"], record["body"]
        plain = path.lstrip("/")
        if method == "GET" and plain.startswith("files/"):
            return self.serve_file(plain[len("files/"):])
        if method == "POST" and plain == "storage/upload/initiate":
            return self.initiate_upload(headers, json.loads(body))
        if method == "POST" and plain == "storage/auth/token":
            return self._auth_error(headers) or (200, {}, {
                "token": "cdn-token", "token_type": "Bearer", "base_url": f"{self.url}/cdn",
                "expires_at": "2099-01-01T00:00:00+00:00"})
        if plain == "cdn/files/upload/multipart" or "/multipart/" in plain:
            return self.multipart(method, plain, headers, body)
        if method == "PUT" and plain.startswith("upload/"):
            self.uploads[plain[len("upload/"):]] = body
            return 200, {}, b""
        if "/requests/" in plain:
            app, _, rest = plain.partition("/requests/")
            request_id, _, action = rest.partition("/")
            return self.request_action(method, request_id, action, headers)
        if method == "POST":
            return self.submit(plain, headers, json.loads(body or b"{}"))
        return 404, {}, {"detail": f"no route {method} {path}"}

    def _auth_error(self, headers: dict[str, str]) -> tuple[int, dict, Any] | None:
        if headers.get("Authorization") not in {f"Key {key}" for key in self.valid_keys}:
            return 401, {}, {"detail": "No user found for Key ID and Secret"}
        return None

    @staticmethod
    def _error(script: Script, statuses: list[int]) -> tuple[int, dict, Any] | None:
        if statuses:
            status = statuses.pop(0)
            headers = {"Retry-After": script.retry_after} if script.retry_after else {}
            return status, headers, {"detail": f"scripted HTTP {status}"}
        return None

    def submit(self, endpoint: str, headers: dict[str, str], arguments: dict[str, Any]) -> tuple[int, dict, Any]:
        script = self.scripts.setdefault(endpoint, Script())
        if script.submit_status:
            return script.submit_status, {}, {"detail": f"scripted HTTP {script.submit_status} on submit"}
        error = self._auth_error(headers) or self._error(script, script.submit_errors)
        if error:
            return error
        request_id = uuid.uuid4().hex
        self.jobs[request_id] = Job(endpoint, script)
        app = "/".join(endpoint.split("/")[:2])
        base = ("https://queue.fal.run" if script.foreign_urls else self.url) + f"/{app}/requests/{request_id}"
        return 200, {}, {"request_id": request_id, "status_url": f"{base}/status", "response_url": base,
                         "cancel_url": f"{base}/cancel", "queue_position": script.queue[0] if script.queue else 0}

    def request_action(self, method: str, request_id: str, action: str,
                       headers: dict[str, str]) -> tuple[int, dict, Any]:
        error = self._auth_error(headers)
        if error:
            return error
        job = self.jobs.get(request_id)
        if job is None:
            return 404, {}, {"detail": "request not found"}
        if method == "PUT" and action == "cancel":
            job.cancelled = True
            self.cancels.append(request_id)
            return 202, {}, {"status": "CANCELLATION_REQUESTED"}
        if action == "status":
            return self.status(job, headers)
        if action == "":
            return self.result(job)
        return 404, {}, {"detail": f"no action {action}"}

    def status(self, job: Job, headers: dict[str, str]) -> tuple[int, dict, Any]:
        script = job.script
        error = self._error(script, script.status_errors)
        if error:
            return error
        job.polls += 1
        n = job.polls
        if job.cancelled:
            return 200, {}, {"status": "COMPLETED", "error": "Request cancelled", "error_type": "cancelled"}
        if n <= len(script.queue):
            return 202, {}, {"status": "IN_QUEUE", "queue_position": script.queue[n - 1]}
        running = n - len(script.queue)
        logs = [{"message": m, "level": "INFO", "source": "user", "timestamp": f"2024-01-01T00:00:{i:02d}"}
                for i, m in enumerate(script.logs[:running])]
        if script.echo_key_in_logs:
            logs.append({"message": f"auth header was {headers.get('Authorization')}", "level": "INFO",
                         "timestamp": "2024-01-01T00:01:00"})
        if script.never_complete or running <= script.progress_polls:
            return 202, {}, {"status": "IN_PROGRESS", "logs": logs}
        if script.fail and script.fail_style == "FAILED":
            return 200, {}, {"status": "FAILED", "error": script.fail, "logs": logs}
        if script.fail:
            return 200, {}, {"status": "COMPLETED", "error": script.fail, "error_type": "runner_error",
                             "logs": logs}
        return 200, {}, {"status": "COMPLETED", "logs": logs}

    def result(self, job: Job) -> tuple[int, dict, Any]:
        if job.script.result_errors:
            status = job.script.result_errors.pop(0)
            if job.script.gateway_errors:
                return status, {"Content-Type": "text/html"}, b"<html><center>nginx</center></html>"
            return status, {"x-fal-request-id": "req"}, {"detail": "CUDA out of memory"}
        if job.script.result is not None:
            return 200, {}, job.script.result
        endpoint = job.endpoint
        if "tts" in endpoint:
            return 200, {}, {"audio": {"url": f"{self.url}/files/speech.mp3"}}
        if "speech-to-text" in endpoint:  # fal's scribe-v2 output: text, language, words with timings
            return 200, {}, {"text": "hello there", "language_code": "eng", "language_probability": 0.98,
                             "words": [{"text": "hello", "start": 0.0, "end": 0.4, "type": "word",
                                        "speaker_id": "speaker_0"},
                                       {"text": "there", "start": 0.5, "end": 0.9, "type": "word",
                                        "speaker_id": "speaker_0"}]}
        if any(word in endpoint for word in ("video", "topaz", "omnihuman", "fabric", "ai-avatar", "thinksound")):
            return 200, {}, {"video": {"url": f"{self.url}/files/clip.mp4"}, "seed": 7}
        if "seedvr" in endpoint or "clarity" in endpoint or "seededit" in endpoint:
            return 200, {}, {"image": {"url": f"{self.url}/files/image.png"}}
        return 200, {}, {"images": [{"url": f"{self.url}/files/image.png", "content_type": "image/png"}],
                         "seed": 42}

    def serve_file(self, name: str) -> tuple[int, dict, Any]:
        if name in self.uploads:
            return 200, {"Content-Type": "application/octet-stream"}, self.uploads[name]
        if name not in self.files:
            return 404, {}, {"detail": "no such file"}
        data, content_type = self.files[name]
        headers = {"Content-Type": content_type}
        if name in self.truncate:
            headers[FAKE_LENGTH] = str(len(data) + 1000)
        return 200, headers, data

    def multipart(self, method: str, plain: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, Any]:
        """fal-client's multipart protocol on the CDN (token auth, not the key)."""
        if headers.get("Authorization") != "Bearer cdn-token":
            return 401, {}, {"detail": "bad CDN token"}
        if method == "POST" and plain == "cdn/files/upload/multipart":
            name = f"{uuid.uuid4().hex}-{headers.get('X-Fal-File-Name', 'upload.bin')}"
            upload_id = uuid.uuid4().hex
            self.multiparts[upload_id] = {}
            return 200, {}, {"access_url": f"{self.url}/files/{name}", "uploadId": upload_id}
        name, _, rest = plain[len("files/"):].partition("/multipart/")
        upload_id, _, part = rest.partition("/")
        if upload_id not in self.multiparts:
            return 404, {}, {"detail": "no such upload"}
        if method == "PUT":
            self.multiparts[upload_id][int(part)] = body
            return 200, {"ETag": f'"etag-{part}"'}, b""
        parts = json.loads(body)["parts"]
        if [p["etag"] for p in parts] != [f'"etag-{p["partNumber"]}"' for p in parts]:
            return 400, {}, {"detail": "etag mismatch"}
        self.uploads[name] = b"".join(self.multiparts[upload_id][p["partNumber"]] for p in parts)
        return 200, {}, {}

    def initiate_upload(self, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, dict, Any]:
        error = self._auth_error(headers)
        if error:
            return error
        name = f"{uuid.uuid4().hex}-{body.get('file_name', 'upload.bin')}"
        return 200, {}, {"upload_url": f"{self.url}/upload/{name}", "file_url": f"{self.url}/files/{name}"}
