"""prompt_generation on OpenRouter, against a fake chat completions API on 127.0.0.1 (see openrouter_fake.py)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest

from aicp._context import StepFailed
from aicp.providers import openrouter
from openrouter_fake import KEY
from test_fal_cli import env_for

PROMPT = "A red square slowly turns in soft light, the camera drifting closer."


def router_env(fake, fal=None, **extra):
    env = env_for(fal, **{"OPENROUTER_API_KEY": KEY, "AICP_OPENROUTER_URL": fake.url, **extra})
    return env


@pytest.mark.parametrize("model, style", [
    ("openrouter_video_prompt", "cinematic"), ("openrouter_video_cinematic", "cinematic"),
    ("openrouter_video_realistic", "realistic"), ("openrouter_video_artistic", "artistic"),
    ("openrouter_video_dramatic", "dramatic"),
])
def test_the_written_prompt_drives_the_next_image_to_video(aicp, write_chain, fake_openrouter, fake_fal, media,
                                                            tmp_path, model, style):
    (tmp_path / "still.png").write_bytes(media["png"].read_bytes())
    chain = write_chain(f"""
        name: animate with a written prompt
        steps:
          - {{type: prompt_generation, model: {model}, params: {{background_context: a toy story}}}}
          - {{type: image_to_video, model: hailuo}}
    """)
    run = aicp("run-chain", "--config", chain, "--input", "still.png", "--stream", env=router_env(fake_openrouter,
                                                                                                  fake_fal))
    assert run.returncode == 0, run.stderr[-2000:]
    request = fake_openrouter.requests[0]
    assert request["path"] == "/api/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"
    body = json.loads(request["body"])
    assert body["model"] == "google/gemini-2.5-flash" and body["usage"] == {"include": True}
    text, image = body["messages"][0]["content"]
    assert image == {"type": "image_url", "image_url": {
        "url": "data:image/png;base64," + base64.b64encode(media["png"].read_bytes()).decode()}}
    assert f"Style wanted: {style}" in text["text"] and "Context: a toy story" in text["text"]
    done = run.of("step_complete")[0]
    assert done["output"] == PROMPT
    assert done["cost"] == pytest.approx(0.00042)  # OpenRouter's own figure, not the estimate
    assert json.loads(Path(done["outputs"][1]).read_text())["usage"]["total_tokens"] == 1410
    i2v = fake_fal.submits("fal-ai/minimax/hailuo-02/standard/image-to-video")[0]
    assert i2v["prompt"] == PROMPT and i2v["image_url"].startswith("data:image/png")


def test_no_key_is_exit_3_and_a_wrong_one_exit_4(aicp, write_chain, fake_openrouter, media, tmp_path):
    (tmp_path / "still.png").write_bytes(media["png"].read_bytes())
    chain = write_chain("name: p\nsteps:\n  - {type: prompt_generation, model: openrouter_video_prompt}\n")
    env = router_env(fake_openrouter)
    missing = aicp("run-chain", "--config", chain, "--input", "still.png", env={k: v for k, v in env.items()
                                                                               if k != "OPENROUTER_API_KEY"})
    assert missing.returncode == 3 and "OPENROUTER_API_KEY is not set" in missing.stderr
    assert fake_openrouter.requests == []
    wrong = aicp("run-chain", "--config", chain, "--input", "still.png", env={**env, "OPENROUTER_API_KEY": "x"})
    assert wrong.returncode == 4 and "No auth credentials found" in wrong.stderr
    assert len(fake_openrouter.requests) == 1


@pytest.fixture
def router_ctx(fake_openrouter, make_ctx, monkeypatch):
    monkeypatch.setenv("OPENROUTER_API_KEY", KEY)
    monkeypatch.setenv("AICP_OPENROUTER_URL", fake_openrouter.url)
    monkeypatch.setattr(openrouter, "RETRY", openrouter.RETRY.__class__(
        **{**openrouter.RETRY.__dict__, "base": 0.01, "cap": 0.02}))
    return make_ctx


@pytest.mark.parametrize("status", [408, 409, 429, 500, 503])
def test_the_statuses_openai_python_retries_are_retried(router_ctx, fake_openrouter, media, status):
    fake_openrouter.errors["chat"] = [(status, {}, {"error": {"code": status, "message": "busy"}})] * 2
    ctx, _ = router_ctx("prompt_generation", "openrouter_video_prompt", str(media["png"]))
    assert openrouter.run(ctx)["output"] == PROMPT
    assert len(fake_openrouter.requests) == 3


def test_two_retries_then_exit_4(router_ctx, fake_openrouter, media):
    fake_openrouter.errors["chat"] = [(502, {}, {"error": {"code": 502, "message": "upstream down"}})] * 5
    ctx, _ = router_ctx("prompt_generation", "openrouter_video_prompt", str(media["png"]))
    with pytest.raises(StepFailed, match="HTTP 502 to chat completion 3 times in a row") as caught:
        openrouter.run(ctx)
    assert caught.value.run_exit_code == 4


def test_retry_after_and_x_should_retry_are_obeyed(router_ctx, fake_openrouter, media):
    fake_openrouter.errors["chat"] = [(429, {"retry-after-ms": "300"}, {"error": {"message": "slow down"}}),
                                      (500, {"x-should-retry": "false"}, {"error": {"message": "do not"}})]
    ctx, _ = router_ctx("prompt_generation", "openrouter_video_prompt", str(media["png"]))
    started = time.monotonic()
    with pytest.raises(StepFailed, match="do not"):
        openrouter.run(ctx)
    assert time.monotonic() - started >= 0.3
    assert len(fake_openrouter.requests) == 2
    fake_openrouter.errors["chat"] = [(429, {"Retry-After": "600"}, {"error": {"message": "come back later"}})]
    with pytest.raises(StepFailed, match="asked to wait 600 s") as caught:
        openrouter.run(ctx)  # longer than openai-python waits: no retry
    assert caught.value.run_exit_code == 4


def test_an_upstream_error_inside_a_200_fails_the_step(router_ctx, fake_openrouter, media):
    fake_openrouter.errors["chat"] = [(200, {}, {"error": {"code": 502, "message": "Provider returned error"}})]
    ctx, _ = router_ctx("prompt_generation", "openrouter_video_prompt", str(media["png"]))
    with pytest.raises(StepFailed, match="Provider returned error") as caught:
        openrouter.run(ctx)
    assert caught.value.run_exit_code is None


@pytest.mark.parametrize("analysis, prompt", [
    ("**SCENE:** x\n\n**OPTIMIZED PROMPT:**\nA fox runs.\n", "A fox runs."),
    ("**OPTIMIZED PROMPT:** A fox runs. Snow falls.", "A fox runs. Snow falls."),
    ("## OPTIMIZED PROMPT\nA fox runs.\n**NOTES:** none", "A fox runs."),
    ("No sections here. The fox runs. Snow falls.", "The fox runs. Snow falls."),
])
def test_the_optimized_prompt_section_is_the_output(analysis, prompt):
    assert openrouter.optimized_prompt(analysis) == prompt


def test_a_step_stopped_mid_call_ends_at_once(aicp, write_chain, fake_openrouter, media, tmp_path):
    # a chat completion has nothing to cancel: the stopped step drops the connection
    fake_openrouter.delay = 30
    (tmp_path / "still.png").write_bytes(media["png"].read_bytes())
    chain = write_chain("""
        name: slow prompt
        steps:
          - {type: prompt_generation, model: openrouter_video_prompt, timeout: 3}
    """)
    run = aicp("run-chain", "--config", chain, "--input", "still.png", "--stream", env=router_env(fake_openrouter),
               timeout=60)
    assert run.returncode == 5, run.stderr[-2000:]
    error = run.of("step_error")[0]
    assert error["reason"] == "timeout" and error["duration_seconds"] < 15


def test_an_image_url_is_passed_as_it_is(router_ctx, fake_openrouter):
    ctx, _ = router_ctx("prompt_generation", "openrouter_video_realistic", "https://example.com/still.png")
    openrouter.run(ctx)
    image = fake_openrouter.bodies("POST", "/chat/completions")[0]["messages"][0]["content"][1]
    assert image == {"type": "image_url", "image_url": {"url": "https://example.com/still.png"}}
