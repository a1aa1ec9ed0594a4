"""A fake of Replicate's HTTP API (predictions, files) on 127.0.0.1.

Shapes from Replicate's HTTP reference (https://replicate.com/docs/reference/http: ``POST
/v1/models/{owner}/{name}/predictions`` -> 201 with ``id``, ``status``, ``urls.get``,
``urls.cancel``; ``GET /v1/predictions/{id}``; ``POST .../cancel``; ``POST /v1/files``
multipart field ``content``; errors ``{"title", "detail", "status"}``) and the official client
replicate/replicate-python (client.py: Bearer auth, RetryTransport's statuses and methods;
prediction.py: statuses starting/processing/succeeded/failed/canceled, ``logs`` as one text).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from fake_api import Answer, FakeAPI

TOKEN = "r8_test-token"


class FakeReplicate(FakeAPI):
    def __init__(self, image: bytes) -> None:
        super().__init__()
        self.image = image
        self.predictions: dict[str, dict[str, Any]] = {}
        self.polls_before_done = 2
        self.never_complete = False
        self.fail: str | None = None
        self.cancelled: list[str] = []
        self.uploads: dict[str, bytes] = {}

    def answer(self, method: str, path: str, record: dict[str, Any]) -> Answer:
        if method == "GET" and path.startswith("/delivery/"):
            return 200, {"Content-Type": "image/webp"}, self.image  # the output host: no token needed
        if record["headers"].get("Authorization") != f"Bearer {TOKEN}":
            return 401, {}, {"title": "Unauthenticated", "detail": "You did not pass a valid authentication token",
                             "status": 401}
        if method == "POST" and path.startswith("/v1/models/") and path.endswith("/predictions"):
            return self.scripted("submit") or self.create(path[len("/v1/models/"):-len("/predictions")],
                                                          json.loads(record["body"]))
        if method == "POST" and path == "/v1/files":
            return self.upload(record)
        if path.startswith("/v1/predictions/"):
            rest = path[len("/v1/predictions/"):]
            if method == "POST" and rest.endswith("/cancel"):
                return self.cancel(rest[:-len("/cancel")])
            if method == "GET":
                return self.scripted("get") or self.get(rest)
        return 404, {}, {"title": "Not found", "detail": f"no route {method} {path}", "status": 404}

    def create(self, model: str, body: dict[str, Any]) -> Answer:
        if "input" not in body:
            return 422, {}, {"title": "Invalid input", "detail": "input is required", "status": 422}
        pid = uuid.uuid4().hex[:20]
        self.predictions[pid] = {"id": pid, "model": model, "version": "hidden", "input": body["input"],
                                 "logs": "", "output": None, "error": None, "status": "starting",
                                 "created_at": "2024-01-01T00:00:00Z", "polls": 0,
                                 "urls": {"get": f"{self.url}/v1/predictions/{pid}",
                                          "cancel": f"{self.url}/v1/predictions/{pid}/cancel"}}
        return 201, {}, self.public(pid)

    def public(self, pid: str) -> dict[str, Any]:
        return {k: v for k, v in self.predictions[pid].items() if k != "polls"}

    def get(self, pid: str) -> Answer:
        p = self.predictions.get(pid)
        if p is None:
            return 404, {}, {"title": "Not found", "detail": "Prediction not found", "status": 404}
        if p["status"] in ("starting", "processing"):
            p["polls"] += 1
            p["status"] = "processing"
            p["logs"] += f"step {p['polls']}\n"
            if p["polls"] > self.polls_before_done and not self.never_complete:
                if self.fail:
                    p.update(status="failed", error=self.fail)
                else:
                    # served from another host name, as replicate.delivery is: it must not see the token
                    delivery = self.url.replace("127.0.0.1", "localhost")
                    p.update(status="succeeded", output=[f"{delivery}/delivery/{pid}/out-0.webp"],
                             metrics={"predict_time": 4.2})
        return 200, {}, self.public(pid)

    def cancel(self, pid: str) -> Answer:
        if pid not in self.predictions:
            return 404, {}, {"title": "Not found", "detail": "Prediction not found", "status": 404}
        self.cancelled.append(pid)
        self.predictions[pid]["status"] = "canceled"
        return 200, {}, self.public(pid)

    def upload(self, record: dict[str, Any]) -> Answer:
        ctype = record["headers"].get("Content-Type", "")
        if not ctype.startswith("multipart/form-data") or b'name="content"' not in record["body"]:
            return 400, {}, {"title": "Bad request", "detail": "expected multipart field 'content'", "status": 400}
        fid = uuid.uuid4().hex[:12]
        self.uploads[fid] = record["body"]
        return 201, {}, {"id": fid, "urls": {"get": f"{self.url}/v1/files/{fid}"}}

    def submits(self) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.requests
                if r["method"] == "POST" and r["path"].endswith("/predictions")]
