"""Never pay twice: a remote request's id is in the run record from the moment it is submitted,
so ``run-chain --resume`` after ``kill -9`` polls that request instead of submitting (and paying) again.

Through the real CLI against the fake fal (tests/providers/fal_fake_server.py, which follows fal's queue
API as fal-ai/fal's fal_client speaks it: submit -> request_id; status/result/cancel URLs by request id).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import psutil
from _aicp import LiveRun
from fal_fake_server import Script
from test_fal_cli import env_for

CHAIN = """
    name: fox clip
    prompt: a red fox in the snow
    steps:
      - {type: text_to_image, model: flux_schnell}
      - {type: image_to_video, model: kling_2_1, params: {duration: 5}}
"""
I2V = "fal-ai/kling-video/v2.1/standard/image-to-video"


def _kill_mid_poll(tmp_path, write_chain, fake_fal):
    fake_fal.scripts[I2V] = Script(never_complete=True)
    chain = write_chain(CHAIN)
    live = LiveRun(["run-chain", "--config", chain, "--stream"], cwd=tmp_path, env=env_for(fake_fal))
    try:
        live.wait_for(lambda e: e["event"] == "step_progress" and e["step"] == 1
                      and "generating on fal" in (e.get("message") or ""), timeout=60)
        workers = [p for p in psutil.Process(live.pid).children(recursive=True)]
        os.kill(live.pid, signal.SIGKILL)
        killed = live.finish()
    finally:
        live.kill()
    assert killed.returncode == -signal.SIGKILL
    psutil.wait_procs(workers, timeout=10)
    assert len(fake_fal.submits(I2V)) == 1
    return chain


def _runs_dir(tmp_path: Path) -> Path:
    return next(p for p in tmp_path.rglob("runs") if p.is_dir())


def test_kill_9_mid_poll_then_resume_polls_the_same_request(aicp, write_chain, fake_fal, tmp_path):
    chain = _kill_mid_poll(tmp_path, write_chain, fake_fal)
    (manifest_path,) = _runs_dir(tmp_path).glob("*/manifest.json")
    manifest = json.loads(manifest_path.read_text())
    (pending,) = manifest["requests"]["1"]
    request_id = next(rid for rid, job in fake_fal.jobs.items() if job.endpoint == I2V)
    assert (pending["provider"], pending["endpoint"], pending["request_id"]) == ("fal", I2V, request_id)
    assert fake_fal.cancels == []  # kill -9: nothing cancelled the paid request

    fake_fal.scripts[I2V].never_complete = False  # meanwhile, fal finished it
    resumed = aicp("run-chain", "--config", chain, "--stream", "--resume", env=env_for(fake_fal))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert len(fake_fal.submits(I2V)) == 1  # exactly one submit: the killed run's, polled to its end
    assert len(fake_fal.submits("fal-ai/flux-1/schnell")) == 1  # step 0 was reused
    polled = [e for e in resumed.of("step_log") if e.get("fields", {}).get("request_id") == request_id]
    assert any("not submitting it again" in e["line"] for e in polled)
    done = next(e for e in resumed.of("step_complete") if e["step"] == 1)
    assert Path(done["output"]).exists() and done["output"].endswith(".mp4")
    assert "1" not in json.loads(manifest_path.read_text()).get("requests", {})  # completed: forgotten


def test_a_request_that_is_gone_is_submitted_again(aicp, write_chain, fake_fal, tmp_path):
    chain = _kill_mid_poll(tmp_path, write_chain, fake_fal)
    fake_fal.jobs.clear()  # fal no longer knows it (expired): the status poll answers 404
    fake_fal.scripts[I2V].never_complete = False
    resumed = aicp("run-chain", "--config", chain, "--stream", "--resume", env=env_for(fake_fal))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert len(fake_fal.submits(I2V)) == 2
    assert any("submitting it again" in e["line"] for e in resumed.of("step_log"))


def test_a_changed_step_does_not_poll_the_old_request(aicp, write_chain, fake_fal, tmp_path):
    chain = _kill_mid_poll(tmp_path, write_chain, fake_fal)
    fake_fal.scripts[I2V].never_complete = False
    Path(chain).write_text(Path(chain).read_text().replace("duration: 5", "duration: 10"))
    resumed = aicp("run-chain", "--config", chain, "--stream", "--resume", env=env_for(fake_fal))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [s["duration"] for s in fake_fal.submits(I2V)] == ["5", "10"]  # a new definition is a new request


def test_a_fresh_run_never_polls_another_runs_request(aicp, write_chain, fake_fal, tmp_path):
    chain = _kill_mid_poll(tmp_path, write_chain, fake_fal)
    fake_fal.scripts[I2V].never_complete = False
    fresh = aicp("run-chain", "--config", chain, "--stream", env=env_for(fake_fal))
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert len(fake_fal.submits(I2V)) == 2
