"""fal steps through the real CLI (``--stream``), against the fake fal on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aicp.providers.models import MODELS as FAL_MODELS
from fal_fake_server import Script

CHAIN = """
    name: fox clip
    prompt: a red fox in the snow
    steps:
      - type: text_to_image
        model: flux_dev
      - type: image_to_video
        model: kling_2_1
        params: {duration: 5}
      - type: add_audio
        params: {audio: tone.wav}
"""

ONE_IMAGE = """
    name: one image
    prompt: a cat
    steps:
      - {type: text_to_image, model: flux_schnell}
"""


def env_for(fake=None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYTEST_") and k not in ("CI", "FAL_KEY", "AICP_FAL_QUEUE_URL", "AICP_FAL_REST_URL")}
    if fake is not None:
        env.update(FAL_KEY="test-key", AICP_FAL_QUEUE_URL=fake.url)
    env.update(extra)
    return env


def test_text_to_image_then_image_to_video_then_add_audio(aicp, write_chain, validate_events, fake_fal, media,
                                                          tmp_path):
    fake_fal.scripts["fal-ai/flux-1/dev"] = Script(queue=[3, 2, 1], logs=["loading FLUX weights"])
    fake_fal.scripts["fal-ai/kling-video/v2.1/standard/image-to-video"] = Script(
        queue=[1], progress_polls=2, logs=["frame 1/50", "frame 50/50"])
    shutil.copy(media["wav"], tmp_path / "tone.wav")
    chain = write_chain(CHAIN)

    run = aicp("run-chain", "--config", chain, "--stream", env=env_for(fake_fal))

    assert run.returncode == 0, run.stderr[-3000:]
    validate_events(run)
    result = run.result
    assert result["success"] and result["steps_completed"] == 3
    assert result["total_cost"] == pytest.approx(0.503)
    costs = [e["cost"] for e in run.of("step_complete")]
    assert costs == pytest.approx([0.003, 0.5, 0.0])
    assert run.of("pipeline_start")[0]["estimated_cost"] == pytest.approx(0.503)

    # live progress from the queue and the model's own log lines, per step
    progress = {(e["step"], e.get("message")) for e in run.of("step_progress")}
    for position in (3, 2, 1):
        assert (0, f"in queue, position {position}") in progress
    assert (1, "in queue, position 1") in progress
    assert any(step == 1 and (m or "").startswith("generating on fal") for step, m in progress)
    fal_lines = [(e["step"], e["line"]) for e in run.of("step_log") if e.get("fields", {}).get("source") == "fal"]
    assert fal_lines == [(0, "loading FLUX weights"), (1, "frame 1/50"), (1, "frame 50/50")]

    # step 2 got step 1's image inline and the chain's prompt; the video reached add_audio
    body = fake_fal.submits("fal-ai/kling-video/v2.1/standard/image-to-video")[0]
    assert body["image_url"].startswith("data:image/png;base64,")
    assert body["prompt"] == "a red fox in the snow" and body["duration"] == "5"
    outputs = result["outputs"]
    image = Path(outputs["step_1_text_to_image"]["path"])
    video = Path(outputs["step_2_image_to_video"]["path"])
    final = Path(outputs["step_3_add_audio"]["path"])
    assert image.read_bytes() == media["png"].read_bytes()
    assert video.read_bytes() == media["mp4"].read_bytes()
    assert final.exists() and final.stat().st_size > 0
    assert outputs["step_2_image_to_video"]["url"].endswith("/files/clip.mp4")
    assert outputs["step_2_image_to_video"]["metadata"]["provider"] == "fal"
    assert "test-key" not in run.stdout + run.stderr


def test_no_fal_key_stops_before_any_step_with_exit_3(aicp, write_chain, fake_fal, media, tmp_path):
    shutil.copy(media["wav"], tmp_path / "tone.wav")
    run = aicp("run-chain", "--config", write_chain(CHAIN), "--stream",
               env=env_for(AICP_FAL_QUEUE_URL=fake_fal.url))
    assert run.returncode == 3
    assert "FAL_KEY is not set" in run.result["error"] and run.result["exit_code"] == 3
    assert "steps[0] (text_to_image/flux_dev), steps[1] (image_to_video/kling_2_1)" in run.result["error"]
    assert '"step_start"' not in run.stderr
    assert fake_fal.requests == []

    plain = aicp("run-chain", "--config", write_chain(CHAIN), env=env_for())
    assert plain.returncode == 3 and "error: FAL_KEY is not set" in plain.stderr


def test_a_fal_member_of_a_parallel_group_needs_the_key_too(aicp, write_chain):
    chain = write_chain("""
        name: group
        prompt: a cat
        steps:
          - type: parallel_group
            params:
              parallel_steps:
                - {type: text_to_image, model: title_card}
                - {type: text_to_image, model: flux_schnell}
    """)
    run = aicp("run-chain", "--config", chain, "--stream", env=env_for())
    assert run.returncode == 3
    assert "steps[0].params.parallel_steps[1] (text_to_image/flux_schnell) needs it" in run.result["error"]


def test_offline_chains_never_ask_for_fal_key(aicp, write_chain):
    chain = write_chain("""
        name: offline
        prompt: a cat
        steps:
          - type: text_to_image
            model: title_card
          - type: text_to_image
            model: flux_dev
            enabled: false
    """)
    run = aicp("run-chain", "--config", chain, "--stream", env=env_for())
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.result["success"]


def test_rejected_key_exits_4_and_never_shows_the_key(aicp, write_chain, fake_fal):
    chain = write_chain(ONE_IMAGE)
    run = aicp("run-chain", "--config", chain, "--stream",
               env=env_for(fake_fal, FAL_KEY="wrong-key-123"))
    assert run.returncode == 4
    assert "key rejected" in run.result["error"] and run.result["exit_code"] == 4
    assert run.of("step_error")[0]["error"].startswith("fal: key rejected (HTTP 401, submit)")
    assert "wrong-key-123" not in run.stdout + run.stderr


def test_the_key_is_masked_wherever_it_appears(aicp, write_chain, fake_fal):
    fake_fal.scripts["fal-ai/flux-1/schnell"] = Script(echo_key_in_logs=True)
    chain = write_chain(ONE_IMAGE)
    run = aicp("run-chain", "--config", chain, "--stream", "--log-file", "events.jsonl", env=env_for(fake_fal))
    assert run.returncode == 0, run.stderr[-2000:]
    assert "auth header was Key ***" in [e["line"] for e in run.of("step_log")]
    log_file = (Path(chain).parent / "events.jsonl").read_text()
    assert "test-key" not in run.stdout + run.stderr + log_file


def test_a_failed_request_fails_the_run_with_fals_message(aicp, write_chain, fake_fal):
    fake_fal.scripts["fal-ai/flux-1/schnell"] = Script(fail="Unprocessable: prompt flagged")
    chain = write_chain(ONE_IMAGE)
    run = aicp("run-chain", "--config", chain, "--stream", env=env_for(fake_fal))
    assert run.returncode == 5
    assert "prompt flagged" in run.of("step_error")[0]["error"]
    assert "prompt flagged" in run.result["error"]


def test_a_timeout_sends_the_cancel_request(aicp, write_chain, fake_fal):
    fake_fal.scripts["fal-ai/veo3/fast"] = Script(never_complete=True, logs=["warming up"])
    chain = write_chain("""
        name: slow
        prompt: a cat
        steps:
          - {type: text_to_video, model: veo3_fast, timeout: 2}
    """)
    run = aicp("run-chain", "--config", chain, "--stream", env=env_for(fake_fal))
    assert run.returncode == 5
    error = run.of("step_error")[0]
    assert error["reason"] == "timeout"
    request_ids = [json.loads(r["body"] or b"{}") for r in fake_fal.requests if r["method"] == "POST"]
    assert len(request_ids) == 1 and len(fake_fal.cancels) == 1
    assert any(e["line"] == "cancel requested on fal" for e in run.of("step_log"))


def test_a_step_killed_mid_poll_cancels_its_request(write_chain, fake_fal, tmp_path):
    fake_fal.scripts["fal-ai/veo3"] = Script(never_complete=True)
    chain = write_chain("""
        name: slow
        prompt: a cat
        steps:
          - {type: text_to_video, model: veo3}
    """)
    proc = subprocess.Popen([sys.executable, "-m", "aicp", "run-chain", "--config", chain, "--stream"],
                            cwd=tmp_path, env=env_for(fake_fal), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 30
        while not any(p.endswith("/status?logs=1") for p in fake_fal.paths("GET")):
            assert time.monotonic() < deadline, "the step never polled"
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr[-2000:]
    assert len(fake_fal.cancels) == 1
    assert json.loads(stdout)["exit_code"] == 143


def test_list_models_shows_every_model_with_its_type_and_price(aicp):
    run = aicp("list-models")
    assert run.returncode == 0
    lines = run.stdout.splitlines()
    assert lines[0].split() == ["MODEL", "STEP", "TYPE", "PROVIDER", "PRICE", "ENDPOINT"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    for key, model in FAL_MODELS.items():
        assert rows[key] == [key, model.step_type, model.provider, f"${model.price:.3f}", model.endpoint]
    assert rows["title_card"][:4] == ["title_card", "text_to_image", "local", "$0.000"]

    listed = aicp("list-models", "--json")
    envelope = json.loads(listed.stdout)
    assert envelope["command"] == "list-models"
    fal_rows = [r for r in envelope["data"] if r["provider"] != "local"]
    assert len(fal_rows) == len(FAL_MODELS)
    assert {r["model"]: r["price"] for r in fal_rows}["kling_2_1"] == 0.5

    one_type = aicp("list-models", "--type", "upscale_video")
    assert [line.split()[0] for line in one_type.stdout.splitlines()[1:]] == ["lanczos", "topaz"]
    unknown = aicp("list-models", "--type", "nope")
    assert unknown.returncode == 2 and "unknown step type 'nope'" in unknown.stderr


def test_estimate_cost_is_offline_and_step_by_step(aicp, write_chain, fake_fal):
    chain = write_chain(CHAIN)
    run = aicp("estimate-cost", "--config", chain, "--json", env=env_for(AICP_FAL_QUEUE_URL=fake_fal.url))
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)["data"]
    assert data["estimated_cost"] == pytest.approx(0.503)
    assert [(s["type"], s["model"], s["provider"], s["cost"]) for s in data["steps"]] == [
        ("text_to_image", "flux_dev", "fal", 0.003), ("image_to_video", "kling_2_1", "fal", 0.5),
        ("add_audio", None, "local", 0.0)]
    assert data["credentials"] == {"FAL_KEY": False}
    assert fake_fal.requests == []

    text = aicp("estimate-cost", "--config", chain, env=env_for(fake_fal))
    assert text.stdout.splitlines() == [
        f"'fox clip' ({chain}): estimated cost $0.503",
        "  1. text_to_image (flux_dev) [fal]: $0.003",  # numbered for people, as output keys and files
        "  2. image_to_video (kling_2_1) [fal]: $0.500",
        "  3. add_audio [local]: $0.000",
        "needs FAL_KEY (set)",
    ]
