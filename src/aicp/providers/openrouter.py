"""``prompt_generation`` on OpenRouter: a video prompt written by a vision model from an image.

The protocol is OpenAI's chat completions, which OpenRouter serves
(https://openrouter.ai/docs/api-reference/chat-completion; request and
response shapes as in openai/openai-python's ``chat.completions.create``):

* ``POST {base}/api/v1/chat/completions`` with ``Authorization: Bearer KEY``
  and ``{"model", "messages": [{"role": "user", "content": [{"type": "text"},
  {"type": "image_url", "image_url": {"url"}}]}], "max_tokens",
  "temperature", "usage": {"include": true}}`` -> ``choices[0].message.content``
  and ``usage`` (with ``cost`` in USD, which becomes the step's cost);
* errors are ``{"error": {"message", "code"}}``, also inside a 200 answer
  when the upstream model failed.

Retries follow openai-python: 408, 409, 429 and 5xx (unless the server says
``x-should-retry: false``) and connection failures, 2 retries, delays
0.5 s then 1 s (at most 8 s, jitter -25%), or the ``Retry-After`` /
``retry-after-ms`` the server asks for when it is at most 2 minutes (longer:
no retry). The call is synchronous: a cancelled step just drops it.

As in the old tool, the model analyses the image (scene, movement, camera,
atmosphere, style) and ends with an ``OPTIMIZED PROMPT`` section; that
section is the step's output text, the whole analysis stays in the ``.json``.
Each model of the catalogue is a style (``task``); ``params.video_style``,
``params.duration_preference`` and ``params.background_context`` (the old
tool's) refine it.
"""

from __future__ import annotations

import os
import re
from typing import Any

from aicp._context import StepFailed
from aicp.providers._files import data_uri, is_url, local_file, save_text, single_input
from aicp.providers._http import Http, RetryPolicy, describe_error

DEFAULT_URL = "https://openrouter.ai"
URL_ENV = "AICP_OPENROUTER_URL"  # a proxy or the local fake server the tests start
RETRY = RetryPolicy(frozenset({408, 409, 429}), attempts=3, base=0.5, cap=8.0, jitter=(0.75, 1.0),
                    retry_after_max=120.0, should_retry_header=True)
MAX_TOKENS = 4000
TEMPERATURE = 0.1

# model task -> (style, pacing), as the old tool mapped its five models
STYLES = {"video_prompt": ("cinematic", "medium"), "cinematic": ("cinematic", "medium"),
          "realistic": ("realistic", "medium"), "artistic": ("artistic", "long"), "dramatic": ("dramatic", "medium")}
SECTION = "OPTIMIZED PROMPT"
INSTRUCTION = """Study this image and write a prompt for an AI image-to-video model that will animate it.

Context: {context}
Style wanted: {style}
Pacing wanted: {pacing}

Consider the main subject and the scene, what could naturally move (wind, water, people, objects), how the \
light could change, atmospheric effects (fog, clouds, particles), camera moves that suit the framing, and the mood.

Answer in these sections, each headed in bold:

**SCENE DESCRIPTION:** the static elements.
**MOVEMENT SUGGESTIONS:** specific, believable motion.
**CAMERA WORK:** camera moves or angles that fit.
**ATMOSPHERIC EFFECTS:** weather, light or environment changes.
**STYLE NOTES:** direction in the {style} style.
**{section}:** one or two sentences: the prompt itself, ready to use.

Keep the motion natural; enhance the image's story without overloading it."""


def check(params: dict[str, Any], model: str | None = None) -> list[tuple[str, str]]:
    """Problems with a prompt_generation step's params that are certain before anything runs."""
    return [(f"params.{key}", f"must be a string, got {params[key]!r}")
            for key in ("background_context", "video_style", "duration_preference", "prompt")
            if params.get(key) is not None and not isinstance(params[key], str)]


def optimized_prompt(analysis: str) -> str:
    """The text of the OPTIMIZED PROMPT section; without one, the analysis's last two sentences."""
    lines = analysis.splitlines()
    for i, line in enumerate(lines):
        if SECTION in line.upper():
            inline = re.sub(r"^[\s*#]*" + SECTION + r"[\s*:]*", "", line, flags=re.IGNORECASE).strip(" *")
            body = [inline] if inline else []
            for following in lines[i + 1:]:
                if following.strip().startswith("**") and body:
                    break
                if following.strip():
                    body.append(following.strip())
            if body:
                return " ".join(body).strip()
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", analysis.strip()) if s.strip()]
    return " ".join(sentences[-2:])


def run(ctx: Any) -> dict[str, Any]:
    from aicp.providers.credentials import step_model_and_key

    model, key = step_model_and_key(ctx, "openrouter")
    image = single_input(ctx)
    url = str(image) if is_url(image) else data_uri(local_file(ctx, image, "input"))
    style, pacing = STYLES[str(model.task)]
    params = ctx.params
    text = INSTRUCTION.format(context=params.get("background_context") or params.get("prompt") or "none given",
                              style=params.get("video_style") or style,
                              pacing=params.get("duration_preference") or pacing, section=SECTION)
    body = {"model": model.endpoint, "max_tokens": MAX_TOKENS, "temperature": TEMPERATURE,
            "usage": {"include": True},
            "messages": [{"role": "user", "content": [{"type": "text", "text": text},
                                                      {"type": "image_url", "image_url": {"url": url}}]}]}
    base = (os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
    http = Http("OpenRouter", "OPENROUTER_API_KEY",
                lambda u: {"Authorization": f"Bearer {key}", "X-Title": "aicp"} if u.startswith(base + "/") else {},
                RETRY, notify=lambda message: ctx.log.warning(message), timeout=300.0)
    ctx.progress(0.2, f"asking {model.endpoint} for a {style} video prompt")
    try:
        answer = http.json("POST", f"{base}/api/v1/chat/completions", what="chat completion", json=body)
    finally:
        http.close()
    analysis = _content(answer)
    prompt = optimized_prompt(analysis)
    usage: dict[str, Any] = answer["usage"] if isinstance(answer.get("usage"), dict) else {}
    cost = usage.get("cost") if isinstance(usage.get("cost"), (int, float)) else model.price
    ctx.progress(1.0, f"prompt of {len(prompt)} characters")
    return {"output": prompt, "outputs": save_text(ctx, prompt, answer), "cost": cost, "provider": "openrouter",
            "endpoint": model.endpoint, "usage": usage or None}


def _content(answer: dict[str, Any]) -> str:
    """The assistant's text, or StepFailed with OpenRouter's own words (an error can come inside a 200)."""
    if answer.get("error"):
        raise StepFailed(f"OpenRouter failed: {describe_error(answer['error'])}")
    choices = answer.get("choices") or []
    first = choices[0] if choices and isinstance(choices[0], dict) else {}
    if first.get("error"):
        raise StepFailed(f"OpenRouter's model failed: {describe_error(first['error'])}")
    content = (first.get("message") or {}).get("content")
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str) or not content.strip():
        raise StepFailed(f"OpenRouter's answer has no text (finish_reason {first.get('finish_reason') or 'unknown'})")
    return content
