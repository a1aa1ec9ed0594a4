"""``image_understanding`` on Google's Gemini API: ``generateContent`` with the image inline or uploaded.

The protocol (https://ai.google.dev/api, and Google's official client,
googleapis/python-genai):

* ``POST {base}/v1beta/models/{model}:generateContent`` with the key in
  ``x-goog-api-key`` and ``{"contents": [{"role": "user", "parts": [image,
  {"text": instruction}]}]}`` -> ``candidates[0].content.parts[].text`` and
  ``usageMetadata``; a blocked prompt has no candidates and a
  ``promptFeedback.blockReason``;
* an image up to :data:`INLINE_MAX_BYTES` travels inline
  (``inline_data: {mime_type, data}``, base64); a larger one goes through the
  Files API's resumable upload (``POST {base}/upload/v1beta/files`` with
  ``X-Goog-Upload-Protocol: resumable`` and ``X-Goog-Upload-Command: start``
  -> ``x-goog-upload-url``; then the bytes with ``upload, finalize`` ->
  ``file.uri``), is referenced as ``file_data: {mime_type, file_uri}``, and
  is deleted afterwards (``DELETE {base}/v1beta/{file.name}``), as the old
  tool did;
* errors are ``{"error": {"code", "message", "status"}}``; a wrong key is a
  400 whose details say ``API_KEY_INVALID`` (exit 4, like 401/403).

Retries follow python-genai's HttpRetryOptions: 408, 429, 500, 502, 503, 504
and connection failures, 5 attempts, delays 1, 2, 4, 8 s (+ up to 1 s jitter,
at most 60 s). ``generateContent`` is synchronous: a cancelled step simply
drops the connection (nothing is queued), and deletes its uploaded image.

Each model of the catalogue is one instruction (``task``) for the same Gemini
model, as in the old tool: describe, detailed, classify, objects, ocr,
composition, qa (``params.question``). ``params.prompt`` (or the old tool's
``analysis_prompt``) replaces the instruction, or is the question for qa;
``params.image_path`` analyses that file instead of the step's input.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import httpx

from aicp._context import StepFailed
from aicp.providers._files import content_type, is_url, local_file, save_text, single_input
from aicp.providers._http import Http, RetryPolicy

DEFAULT_URL = "https://generativelanguage.googleapis.com"
URL_ENV = "AICP_GEMINI_URL"  # a proxy or the local fake server the tests start
INLINE_MAX_BYTES = 15 * 1024 * 1024  # base64 grows it by 4/3; a request may carry 20 MB in all
RETRY = RetryPolicy(frozenset({408, 429, 500, 502, 503, 504}), attempts=5, base=1.0, cap=60.0, added_jitter=1.0,
                    retry_after=False)

TASKS = {
    "describe": "Describe this image briefly: its main subject, the key visual elements, the setting, "
                "and the overall impression and style.",
    "detailed": "Analyse this image in depth: the main subject; every object, person and animal; the setting; "
                "colours, light and composition; style, mood and atmosphere; technical quality; any visible "
                "text; and the details worth noticing.",
    "classify": "Classify this image: its primary category (portrait, landscape, object, scene, ...), the kind "
                "of image (photograph, artwork, diagram, screenshot, ...), what it shows (people, animals, "
                "nature, architecture, ...), its style or genre, its likely purpose, and technical traits "
                "(colour or monochrome, digital or analogue). Say how confident you are where you can.",
    "objects": "List every object you can identify in this image with where it is, counts where it helps, "
               "how the objects relate, their colours and condition, any brands, labels or text on them, "
               "and anything unusual.",
    "ocr": "Transcribe all the text visible in this image exactly, keeping its layout where you can; say where "
           "each piece of text is, how it is styled (headline, body, caption), and mark text that is "
           "unclear or cut off.",
    "composition": "Analyse this image's composition and technique: compositional devices (rule of thirds, "
                   "symmetry, leading lines, ...), lighting, colour palette and harmony, depth of field and "
                   "focus, perspective, visual balance, style, and technical quality.",
    "qa": "Look at this image carefully and answer:\n\n{question}\n\nAnswer from what the image shows; if it "
          "cannot be answered from the image, say so.",
}
DEFAULT_QUESTION = "What do you see in this image?"


def check(params: dict[str, Any], model: str | None = None) -> list[tuple[str, str]]:
    """Problems with an image_understanding step's params that are certain before anything runs."""
    return [(f"params.{key}", f"must be a string, got {params[key]!r}")
            for key in ("question", "prompt", "analysis_prompt", "image_path") if params.get(key) is not None
            and not isinstance(params[key], str)]


def _key_rejected(response: httpx.Response) -> bool:
    return response.status_code == 400 and "API_KEY_INVALID" in response.text


class GeminiClient:
    """One step's conversation with the Gemini API."""

    def __init__(self, key: str, notify: Any = None) -> None:
        self.base = (os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        self.http = Http("Gemini", "GEMINI_API_KEY", self._headers, RETRY, notify=notify,
                         key_rejected=_key_rejected, timeout=300.0)
        self._key = key

    def _headers(self, url: str) -> dict[str, str]:
        return {"x-goog-api-key": self._key} if url.startswith(self.base + "/") else {}

    def close(self) -> None:
        self.http.close()

    def upload(self, data: bytes, mime: str, name: str) -> dict[str, Any]:
        """The Files API's resumable upload in one piece: start, then upload and finalize."""
        started = self.http.send(
            "POST", f"{self.base}/upload/v1beta/files", what="upload",
            headers={"X-Goog-Upload-Protocol": "resumable", "X-Goog-Upload-Command": "start",
                     "X-Goog-Upload-Header-Content-Length": str(len(data)),
                     "X-Goog-Upload-Header-Content-Type": mime},
            json={"file": {"display_name": name}})
        upload_url = started.headers.get("x-goog-upload-url")
        if not upload_url:
            raise StepFailed("Gemini did not return an upload URL (x-goog-upload-url)")
        done = self.http.json("POST", upload_url, what="upload", content=lambda: data,
                              headers={"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "0",
                                       "Content-Length": str(len(data))})
        file = done.get("file")
        if not isinstance(file, dict) or not file.get("uri") or not file.get("name"):
            raise StepFailed(f"Gemini's upload returned no file: {str(done)[:200]}")
        return file

    def delete(self, name: str) -> None:
        try:
            self.http.send("DELETE", f"{self.base}/v1beta/{name}", what="delete", attempts=1, timeout=3.0)
        except (StepFailed, httpx.HTTPError):
            pass

    def generate(self, model: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
        return self.http.json("POST", f"{self.base}/v1beta/models/{model}:generateContent", what="generateContent",
                              json={"contents": [{"role": "user", "parts": parts}]})


def answer_text(response: dict[str, Any]) -> str:
    """The text of the first candidate, or StepFailed saying why there is none."""
    candidates = response.get("candidates") or []
    if not candidates:
        feedback = response.get("promptFeedback") or {}
        raise StepFailed(f"Gemini gave no answer (blocked: {feedback.get('blockReason') or 'no reason given'})")
    first = candidates[0]
    parts = (first.get("content") or {}).get("parts") or []
    text = "".join(p.get("text", "") for p in parts if isinstance(p, dict)).strip()
    if not text:
        raise StepFailed(f"Gemini's answer has no text (finishReason {first.get('finishReason') or 'unknown'})")
    return text


def run(ctx: Any) -> dict[str, Any]:
    from aicp.providers.credentials import step_model_and_key

    model, key = step_model_and_key(ctx, "gemini")
    image = ctx.params.get("image_path") or single_input(ctx)
    instruction = _instruction(str(model.task), ctx.params)
    client = GeminiClient(key, notify=lambda message: ctx.log.warning(message))
    uploaded: dict[str, Any] | None = None
    try:
        data, mime, name = _image_bytes(ctx, client, image)
        if len(data) > INLINE_MAX_BYTES:
            ctx.progress(0.1, f"uploading {name} to Gemini")
            uploaded = client.upload(data, mime, name)
            part: dict[str, Any] = {"file_data": {"mime_type": mime, "file_uri": uploaded["uri"]}}
        else:
            part = {"inline_data": {"mime_type": mime, "data": base64.b64encode(data).decode("ascii")}}
        ctx.progress(0.3, f"asking {model.endpoint} ({model.task})")
        response = client.generate(model.endpoint, [part, {"text": instruction}])
    finally:
        if uploaded is not None:
            client.delete(str(uploaded["name"]))
        client.close()
    text = answer_text(response)
    ctx.progress(1.0, f"{len(text)} characters")
    return {"output": text, "outputs": save_text(ctx, text, response), "cost": model.price,
            "provider": "gemini", "endpoint": model.endpoint, "usage": response.get("usageMetadata")}


def _instruction(task: str, params: dict[str, Any]) -> str:
    """What Gemini is asked: the task's instruction, or the step's own prompt; for qa, the question."""
    own = params.get("prompt") or params.get("analysis_prompt")
    if task == "qa":
        return TASKS["qa"].format(question=params.get("question") or own or DEFAULT_QUESTION)
    return str(own) if own else TASKS[task]


def _image_bytes(ctx: Any, client: GeminiClient, image: Any) -> tuple[bytes, str, str]:
    """The image's bytes, type and name: a local file, a data URI, or a URL fetched first (as the old tool did)."""
    text = str(image)
    if text.startswith("data:"):
        header, _, payload = text.partition(",")
        return base64.b64decode(payload), header[5:].split(";")[0] or "image/png", "image"
    if is_url(text):
        response = client.http.send("GET", text, what="image download", timeout=60.0)
        mime = response.headers.get("content-type", "").split(";")[0].strip() or "image/png"
        return response.content, mime, Path(httpx.URL(text).path).name or "image"
    path = local_file(ctx, text, "input")
    return path.read_bytes(), content_type(path), path.name
