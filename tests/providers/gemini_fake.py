"""A fake of Google's Gemini API (generativelanguage v1beta) on 127.0.0.1.

Shapes from the REST reference (https://ai.google.dev/api/generate-content,
https://ai.google.dev/api/files) and Google's official client
googleapis/python-genai (google/genai/_api_client.py: the x-goog-api-key
header, the resumable upload's X-Goog-Upload-* headers and x-goog-upload-url,
X-Goog-Upload-Status; google/genai/errors.py: ``{"error": {code, message,
status}}``). A wrong key is a 400 INVALID_ARGUMENT whose details say
API_KEY_INVALID, as the real service answers.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

from fake_api import Answer, FakeAPI

KEY = "test-gemini-key"


class FakeGemini(FakeAPI):
    def __init__(self, answer_text: str = "A red rectangle on a plain background.") -> None:
        super().__init__()
        self.answer_text = answer_text
        self.files: dict[str, dict[str, Any]] = {}  # name -> metadata (and the bytes)
        self.sessions: dict[str, dict[str, Any]] = {}
        self.deleted: list[str] = []
        self.block = False
        self.delay = 0.0  # seconds generateContent takes (a slow model)

    def answer(self, method: str, path: str, record: dict[str, Any]) -> Answer:
        headers = {k.lower(): v for k, v in record["headers"].items()}
        if path.startswith("/upload-session/"):
            return self.finish_upload(path.rsplit("/", 1)[1], headers, record["body"])
        if headers.get("x-goog-api-key") != KEY:
            return 400, {}, {"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                                       "status": "INVALID_ARGUMENT",
                                       "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                                    "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}}
        if method == "POST" and path == "/upload/v1beta/files":
            return self.start_upload(headers, json.loads(record["body"] or b"{}"))
        if method == "DELETE" and path.startswith("/v1beta/files/"):
            self.deleted.append(path[len("/v1beta/"):])
            return 200, {}, {}
        if method == "POST" and path.startswith("/v1beta/models/") and path.endswith(":generateContent"):
            return self.scripted("generate") or self.generate(json.loads(record["body"]))
        return 404, {}, {"error": {"code": 404, "message": f"no route {method} {path}", "status": "NOT_FOUND"}}

    def start_upload(self, headers: dict[str, str], body: dict[str, Any]) -> Answer:
        if headers.get("x-goog-upload-protocol") != "resumable" or headers.get("x-goog-upload-command") != "start":
            return 400, {}, {"error": {"code": 400, "message": "bad upload start", "status": "INVALID_ARGUMENT"}}
        session = uuid.uuid4().hex
        self.sessions[session] = {"length": int(headers["x-goog-upload-header-content-length"]),
                                  "mime": headers["x-goog-upload-header-content-type"],
                                  "display_name": body.get("file", {}).get("display_name")}
        return 200, {"x-goog-upload-url": f"{self.url}/upload-session/{session}", "X-Goog-Upload-Status": "active"}, {}

    def finish_upload(self, session: str, headers: dict[str, str], data: bytes) -> Answer:
        meta = self.sessions.pop(session, None)
        if meta is None or headers.get("x-goog-upload-command") != "upload, finalize" or len(data) != meta["length"]:
            return 400, {}, {"error": {"code": 400, "message": "bad upload", "status": "INVALID_ARGUMENT"}}
        name = f"files/{uuid.uuid4().hex[:12]}"
        self.files[name] = {"data": data, "mime": meta["mime"]}
        file = {"name": name, "uri": f"{self.url}/v1beta/{name}", "mimeType": meta["mime"],
                "sizeBytes": str(len(data)), "state": "ACTIVE", "displayName": meta["display_name"]}
        return 200, {"X-Goog-Upload-Status": "final"}, {"file": file}

    def generate(self, body: dict[str, Any]) -> Answer:
        time.sleep(self.delay)
        parts = body["contents"][0]["parts"]
        for part in parts:
            if "inline_data" in part:
                base64.b64decode(part["inline_data"]["data"], validate=True)
            if "file_data" in part and part["file_data"]["file_uri"].rsplit("/v1beta/", 1)[1] not in self.files:
                return 400, {}, {"error": {"code": 400, "message": "File not found", "status": "INVALID_ARGUMENT"}}
        if not any("text" in p for p in parts):
            return 400, {}, {"error": {"code": 400, "message": "no text part", "status": "INVALID_ARGUMENT"}}
        usage = {"promptTokenCount": 270, "candidatesTokenCount": 9, "totalTokenCount": 279}
        if self.block:
            return 200, {}, {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": usage}
        return 200, {}, {"candidates": [{"content": {"role": "model", "parts": [{"text": self.answer_text}]},
                                         "finishReason": "STOP", "index": 0}],
                         "usageMetadata": usage, "modelVersion": "gemini-2.5-flash"}

    def prompts(self) -> list[str]:
        return [p["text"] for b in self.bodies("POST", ":generateContent") for p in b["contents"][0]["parts"]
                if "text" in p]
