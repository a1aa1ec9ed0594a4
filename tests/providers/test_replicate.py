"""gen4 on Replicate, against a fake Replicate API on 127.0.0.1 (see replicate_fake.py for its sources)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest

from _aicp import LiveRun
from aicp._context import StepFailed
from aicp.providers import fal_step, replicate
from aicp.providers._http import RetryPolicy
from replicate_fake import TOKEN
from test_fal_cli import env_for

CHAIN = """
    name: gen4 still
    prompt: a lighthouse at dawn
    steps:
      - {type: text_to_image, model: gen4, params: {aspect_ratio: "1:1"}}
"""


def rep_env(fake, **extra):
    return env_for(None, **{"REPLICATE_API_TOKEN": TOKEN, "AICP_REPLICATE_URL": fake.url, **extra})


def test_gen4_submits_polls_relays_logs_and_downloads(aicp, write_chain, fake_replicate, media):
    run = aicp("run-chain", "--config", write_chain(CHAIN), "--stream", env=rep_env(fake_replicate))
    assert run.returncode == 0, run.stderr[-3000:]
    submit = next(r for r in fake_replicate.requests if r["method"] == "POST")
    assert submit["path"] == "/v1/models/runwayml/gen4-image/predictions"
    assert submit["headers"]["Authorization"] == f"Bearer {TOKEN}"
    body = fake_replicate.submits()[0]
    assert body == {"input": {"prompt": "a lighthouse at dawn", "aspect_ratio": "1:1", "resolution": "1080p"}}
    download = next(r for r in fake_replicate.requests if r["path"].startswith("/delivery/"))
    assert "Authorization" not in download["headers"]  # the token goes to the API host only
    done = run.of("step_complete")[0]
    assert done["cost"] == pytest.approx(0.08)
    out = Path(done["output"])
    assert out.name == "step_1_text_to_image.webp" and out.read_bytes() == media["png"].read_bytes()
    lines = [e["line"] for e in run.of("step_log") if e.get("fields", {}).get("source") == "replicate"]
    assert lines[:2] == ["step 1", "step 2"]  # the prediction's logs, each line once
    assert any("generating on Replicate" in (e.get("message") or "") for e in run.of("step_progress"))


def test_no_token_is_exit_3_and_a_wrong_one_exit_4(aicp, write_chain, fake_replicate):
    chain = write_chain(CHAIN)
    env = rep_env(fake_replicate)
    missing = aicp("run-chain", "--config", chain, env={k: v for k, v in env.items() if k != "REPLICATE_API_TOKEN"})
    assert missing.returncode == 3 and "REPLICATE_API_TOKEN is not set" in missing.stderr
    wrong = aicp("run-chain", "--config", chain, env={**env, "REPLICATE_API_TOKEN": "r8_wrong"})
    assert wrong.returncode == 4 and "valid authentication token" in wrong.stderr


def test_kill_9_then_resume_polls_the_same_prediction(aicp, write_chain, fake_replicate, tmp_path):
    fake_replicate.never_complete = True
    chain = write_chain(CHAIN)
    live = LiveRun(["run-chain", "--config", chain, "--stream"], cwd=tmp_path, env=rep_env(fake_replicate))
    try:
        live.wait_for(lambda e: e["event"] == "step_progress" and "generating on Replicate" in (e.get("message") or ""),
                      timeout=60)
        workers = psutil.Process(live.pid).children(recursive=True)
        os.kill(live.pid, signal.SIGKILL)
        live.finish()
    finally:
        live.kill()
    psutil.wait_procs(workers, timeout=10)
    fake_replicate.never_complete = False
    resumed = aicp("run-chain", "--config", chain, "--stream", "--resume", env=rep_env(fake_replicate))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert len(fake_replicate.submits()) == 1
    assert fake_replicate.cancelled == []


@pytest.fixture
def rep_ctx(fake_replicate, make_ctx, monkeypatch):
    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
    monkeypatch.setenv("AICP_REPLICATE_URL", fake_replicate.url)
    monkeypatch.setattr(fal_step, "POLL_MIN", 0.02)
    monkeypatch.setattr(fal_step, "POLL_MAX", 0.05)
    monkeypatch.setattr(replicate, "RETRY", RetryPolicy(**{**replicate.RETRY.__dict__, "base": 0.01, "cap": 0.02}))
    return make_ctx


@pytest.mark.parametrize("status", [429, 503, 504])
def test_polls_are_retried_on_the_statuses_replicate_python_retries(rep_ctx, fake_replicate, status):
    fake_replicate.errors["get"] = [(status, {}, {"title": "busy", "status": status})] * 2
    ctx, _ = rep_ctx("text_to_image", "gen4", "a cat")
    assert Path(replicate.run(ctx)["output"]).exists()


@pytest.mark.parametrize("status, code", [(429, 4), (503, 4), (504, 4), (500, None), (422, None)])
def test_a_submit_is_never_retried(rep_ctx, fake_replicate, status, code):
    # RetryTransport.RETRYABLE_METHODS leaves POST out: a submit may have been billed
    fake_replicate.errors["submit"] = [(status, {}, {"title": "nope", "detail": f"scripted {status}"})]
    ctx, _ = rep_ctx("text_to_image", "gen4", "a cat")
    with pytest.raises(StepFailed, match=f"scripted {status}") as caught:
        replicate.run(ctx)
    assert caught.value.run_exit_code == code
    assert len(fake_replicate.submits()) == 1


def test_a_failed_prediction_fails_the_step_with_its_error(rep_ctx, fake_replicate):
    fake_replicate.fail = "NSFW content detected"
    ctx, _ = rep_ctx("text_to_image", "gen4", "a cat")
    with pytest.raises(StepFailed, match="NSFW content detected") as caught:
        replicate.run(ctx)
    assert caught.value.run_exit_code is None
    assert fake_replicate.cancelled == []


def test_a_step_stopped_mid_prediction_cancels_it(rep_ctx, fake_replicate, monkeypatch):
    fake_replicate.never_complete = True
    ctx, _ = rep_ctx("text_to_image", "gen4", "a cat")
    polls = []

    def stop_after_two(seconds):
        polls.append(seconds)
        if len(polls) == 2:
            raise KeyboardInterrupt  # what the worker's SIGTERM handler raises, in effect
    monkeypatch.setattr(fal_step.time, "sleep", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        replicate.run(ctx)
    assert len(fake_replicate.cancelled) == 1


def test_reference_images_are_sent_inline_or_through_the_files_api(rep_ctx, fake_replicate, media, tmp_path):
    big = tmp_path / "big.jpg"
    big.write_bytes(os.urandom(replicate.DATA_URI_MAX_BYTES + 10))
    ctx, _ = rep_ctx("text_to_image", "gen4", "a cat", params={"reference_images": [str(media["png"]), str(big)],
                                                                   "reference_tags": ["cat", "room"]})
    replicate.run(ctx)
    sent = fake_replicate.submits()[0]["input"]
    small, large = sent["reference_images"]
    assert small.startswith("data:image/png;base64,")
    assert large.startswith(f"{fake_replicate.url}/v1/files/") and len(fake_replicate.uploads) == 1
    assert sent["reference_tags"] == ["cat", "room"]
