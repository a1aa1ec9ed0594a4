"""image_understanding on Gemini, against a fake Gemini API on 127.0.0.1 (see gemini_fake.py for its sources)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from aicp._context import StepFailed
from aicp.providers import gemini
from aicp.providers._http import RetryPolicy
from gemini_fake import KEY, FakeGemini
from test_fal_cli import env_for

TASK_WORDS = {"describe": "briefly", "detailed": "in depth", "classify": "Classify", "objects": "every object",
              "ocr": "Transcribe", "composition": "composition", "qa": "What colour is it?"}


def gemini_env(fake: FakeGemini, **extra: str) -> dict[str, str]:
    env = env_for(None, **{"GEMINI_API_KEY": KEY, "AICP_GEMINI_URL": fake.url, **extra})
    env.pop("GOOGLE_API_KEY", None)
    return env


@pytest.mark.parametrize("task", sorted(TASK_WORDS))
def test_each_gemini_model_sends_the_image_inline_and_its_instruction(aicp, write_chain, fake_gemini, media, task,
                                                                       tmp_path):
    (tmp_path / "photo.png").write_bytes(media["png"].read_bytes())
    chain = write_chain(f"""
        name: look
        steps:
          - {{type: image_understanding, model: gemini_{task}, params: {{question: "What colour is it?"}}}}
    """)
    run = aicp("run-chain", "--config", chain, "--input", "photo.png", "--stream", env=gemini_env(fake_gemini))
    assert run.returncode == 0, run.stderr[-2000:]
    request = next(r for r in fake_gemini.requests if r["path"].endswith(":generateContent"))
    assert request["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert request["headers"]["x-goog-api-key"] == KEY
    parts = json.loads(request["body"])["contents"][0]["parts"]
    assert parts[0]["inline_data"] == {"mime_type": "image/png",
                                       "data": base64.b64encode(media["png"].read_bytes()).decode()}
    assert TASK_WORDS[task] in parts[1]["text"]
    done = run.of("step_complete")[0]
    assert done["output"] == "A red rectangle on a plain background."
    assert Path(done["outputs"][0]).read_text() == "A red rectangle on a plain background.\n"
    assert json.loads(Path(done["outputs"][1]).read_text())["usageMetadata"]["totalTokenCount"] == 279
    assert done["cost"] == {"describe": 0.001, "classify": 0.001, "ocr": 0.001, "qa": 0.001}.get(task, 0.002)


def test_the_description_flows_on_as_the_next_steps_text(aicp, write_chain, fake_gemini, fake_fal, media, tmp_path):
    (tmp_path / "photo.png").write_bytes(media["png"].read_bytes())
    chain = write_chain("""
        name: describe then draw
        steps:
          - {type: image_understanding, model: gemini_describe}
          - {type: text_to_image, model: flux_schnell}
    """)
    env = gemini_env(fake_gemini, FAL_KEY="test-key", AICP_FAL_QUEUE_URL=fake_fal.url)
    run = aicp("run-chain", "--config", chain, "--input", "photo.png", "--stream", env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert fake_fal.submits("fal-ai/flux-1/schnell")[0]["prompt"] == "A red rectangle on a plain background."


def test_no_key_stops_before_any_step_with_exit_3(aicp, write_chain, fake_gemini, media, tmp_path):
    (tmp_path / "photo.png").write_bytes(media["png"].read_bytes())
    chain = write_chain("name: look\nsteps:\n  - {type: image_understanding, model: gemini_ocr}\n")
    env = gemini_env(fake_gemini)
    del env["GEMINI_API_KEY"]
    run = aicp("run-chain", "--config", chain, "--input", "photo.png", env=env)
    assert run.returncode == 3
    assert "GEMINI_API_KEY is not set" in run.stderr and "GOOGLE_API_KEY" in run.stderr
    assert fake_gemini.requests == []
    run = aicp("run-chain", "--config", chain, "--input", "photo.png", env={**env, "GOOGLE_API_KEY": KEY})
    assert run.returncode == 0, run.stderr[-2000:]  # python-genai's other variable works too


def test_a_wrong_key_is_exit_4(aicp, write_chain, fake_gemini, media, tmp_path):
    (tmp_path / "photo.png").write_bytes(media["png"].read_bytes())
    chain = write_chain("name: look\nsteps:\n  - {type: image_understanding, model: gemini_describe}\n")
    run = aicp("run-chain", "--config", chain, "--input", "photo.png", "--stream",
               env=gemini_env(fake_gemini, GEMINI_API_KEY="wrong"))
    assert run.returncode == 4, run.stderr[-2000:]
    assert "key rejected" in run.result["error"] and "API key not valid" in run.result["error"]
    assert len(fake_gemini.requests) == 1  # never retried


# -- in-process: the upload, retries and failures ----------------------------------------------------------


@pytest.fixture
def gemini_ctx(fake_gemini, make_ctx, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("AICP_GEMINI_URL", fake_gemini.url)
    monkeypatch.setattr(gemini, "RETRY", RetryPolicy(gemini.RETRY.statuses, gemini.RETRY.attempts, 0.01, 0.02,
                                                     retry_after=False))
    return make_ctx


def test_a_large_image_goes_through_the_files_api_and_is_deleted_after(gemini_ctx, fake_gemini, tmp_path,
                                                                         monkeypatch):
    monkeypatch.setattr(gemini, "INLINE_MAX_BYTES", 1000)
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + bytes(5000))
    ctx, _ = gemini_ctx("image_understanding", "gemini_detailed", str(big))
    result = gemini.run(ctx)
    assert result["output"] == "A red rectangle on a plain background."
    parts = fake_gemini.bodies("POST", ":generateContent")[0]["contents"][0]["parts"]
    name = parts[0]["file_data"]["file_uri"].rsplit("/v1beta/", 1)[1]
    assert parts[0]["file_data"]["mime_type"] == "image/png"
    assert fake_gemini.files[name]["data"] == big.read_bytes()
    assert fake_gemini.deleted == [name]


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_the_statuses_python_genai_retries_are_retried(gemini_ctx, fake_gemini, media, status):
    fake_gemini.errors["generate"] = [(status, {}, {"error": {"code": status, "message": "busy",
                                                              "status": "UNAVAILABLE"}})] * 2
    ctx, messages = gemini_ctx("image_understanding", "gemini_describe", str(media["png"]))
    assert gemini.run(ctx)["output"]
    assert len(fake_gemini.bodies("POST", ":generateContent")) == 3
    assert sum(f"HTTP {status}" in m["fields"]["event"] for m in messages.logs()) == 2


def test_retries_that_never_end_give_up_with_exit_4(gemini_ctx, fake_gemini, media):
    fake_gemini.errors["generate"] = [(503, {}, {"error": {"code": 503, "message": "overloaded"}})] * 10
    ctx, _ = gemini_ctx("image_understanding", "gemini_describe", str(media["png"]))
    with pytest.raises(StepFailed, match="HTTP 503 to generateContent 5 times in a row") as caught:
        gemini.run(ctx)
    assert caught.value.run_exit_code == 4


def test_a_refused_request_is_a_step_failure_with_geminis_words(gemini_ctx, fake_gemini, media):
    fake_gemini.errors["generate"] = [(400, {}, {"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                                           "message": "Unsupported MIME type: image/x-foo"}})]
    ctx, _ = gemini_ctx("image_understanding", "gemini_describe", str(media["png"]))
    with pytest.raises(StepFailed, match="Unsupported MIME type: image/x-foo") as caught:
        gemini.run(ctx)
    assert caught.value.run_exit_code is None
    assert len(fake_gemini.bodies("POST", ":generateContent")) == 1


def test_a_blocked_image_fails_the_step_saying_why(gemini_ctx, fake_gemini, media):
    fake_gemini.block = True
    ctx, _ = gemini_ctx("image_understanding", "gemini_describe", str(media["png"]))
    with pytest.raises(StepFailed, match="blocked: SAFETY"):
        gemini.run(ctx)


def test_a_step_stopped_mid_call_drops_it_and_deletes_its_upload(aicp, write_chain, fake_gemini, tmp_path):
    # generateContent has no cancel: stopping the step drops the connection; the uploaded image goes
    fake_gemini.delay = 30
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + bytes(16 * 1024 * 1024))  # above the inline limit: the Files API
    chain = write_chain("""
        name: slow look
        steps:
          - {type: image_understanding, model: gemini_describe, timeout: 4}
    """)
    run = aicp("run-chain", "--config", chain, "--input", "big.png", "--stream", env=gemini_env(fake_gemini),
               timeout=60)
    assert run.returncode == 5, run.stderr[-2000:]
    assert run.of("step_error")[0]["reason"] == "timeout"
    assert list(fake_gemini.files) and fake_gemini.deleted == list(fake_gemini.files)


@pytest.mark.parametrize("params, expected", [
    ({"prompt": "Count the cats."}, "Count the cats."),
    ({"analysis_prompt": "Describe the mood."}, "Describe the mood."),  # the old tool's name
    ({}, "Analyse this image in depth"),
])
def test_the_steps_own_prompt_replaces_the_instruction(gemini_ctx, fake_gemini, media, params, expected):
    ctx, _ = gemini_ctx("image_understanding", "gemini_detailed", str(media["png"]), params=params)
    gemini.run(ctx)
    assert fake_gemini.prompts()[0].startswith(expected)


def test_image_path_analyses_that_file_instead(gemini_ctx, fake_gemini, media, tmp_path):
    other = tmp_path / "other.png"
    other.write_bytes(media["png"].read_bytes() + b"x")
    ctx, _ = gemini_ctx("image_understanding", "gemini_qa", "ignored.png",
                        params={"image_path": str(other), "question": "Is it red?"})
    gemini.run(ctx)
    parts = fake_gemini.bodies("POST", ":generateContent")[0]["contents"][0]["parts"]
    assert base64.b64decode(parts[0]["inline_data"]["data"]) == other.read_bytes()
    assert "Is it red?" in parts[1]["text"]
