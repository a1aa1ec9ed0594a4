"""A fake of OpenRouter's chat completions API on 127.0.0.1.

Shapes from OpenRouter's API reference (https://openrouter.ai/docs/api-reference/chat-completion,
usage accounting with ``usage.cost``; errors ``{"error": {"code", "message"}}``) and from
openai/openai-python (``chat.completions.create``: the request's ``messages`` with
``image_url`` content parts, the response's ``choices[].message.content`` and ``usage``;
``_base_client.py``: Bearer auth, retry headers).
"""

from __future__ import annotations

import json
import time
from typing import Any

from fake_api import Answer, FakeAPI

KEY = "test-openrouter-key"
ANALYSIS = """**SCENE DESCRIPTION:**
A red square stands alone on a pale background.

**MOVEMENT SUGGESTIONS:**
The square slowly rotates.

**OPTIMIZED PROMPT:**
A red square slowly turns in soft light, the camera drifting closer.
"""


class FakeOpenRouter(FakeAPI):
    def __init__(self) -> None:
        super().__init__()
        self.content: str = ANALYSIS
        self.delay = 0.0  # seconds a completion takes (a slow model)

    def answer(self, method: str, path: str, record: dict[str, Any]) -> Answer:
        if record["headers"].get("Authorization") != f"Bearer {KEY}":
            return 401, {}, {"error": {"code": 401, "message": "No auth credentials found"}}
        if method != "POST" or path != "/api/v1/chat/completions":
            return 404, {}, {"error": {"code": 404, "message": f"no route {method} {path}"}}
        time.sleep(self.delay)
        scripted = self.scripted("chat")
        if scripted:
            return scripted
        body = json.loads(record["body"])
        content = body["messages"][0]["content"]
        if not any(part.get("type") == "image_url" and part["image_url"]["url"] for part in content):
            return 400, {}, {"error": {"code": 400, "message": "expected an image_url part"}}
        return 200, {}, {
            "id": "gen-1", "object": "chat.completion", "created": 1700000000, "model": body["model"],
            "provider": "Google",
            "choices": [{"index": 0, "finish_reason": "stop", "native_finish_reason": "STOP",
                         "message": {"role": "assistant", "content": self.content}}],
            "usage": {"prompt_tokens": 1290, "completion_tokens": 120, "total_tokens": 1410, "cost": 0.00042},
        }
