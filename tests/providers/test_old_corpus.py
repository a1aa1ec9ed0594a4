"""The drop-in corpus: chain files written in the AI Content Pipeline tool's format (tests/corpus/old_tool/),
covering its step types, model names (aliases, auto), chain keys and params, validate and run unchanged.

Each file is validated (``aicp validate --offline``) and run through the real CLI against the fake fal
server (tests/providers/fal_fake_server.py, which follows fal's queue API), and what reached fal is
checked: the old names reach the right endpoints, the old params aicp honours are sent, the ones it
deliberately ignores are not.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from fal_fake_server import FakeFal, Script
from test_fal_cli import env_for

from aicp.providers.models import MODELS

CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "old_tool"
FILES = sorted(CORPUS.glob("*.yaml"))
# what each endpoint must never receive: the old tool's params its model declares ignored
IGNORED = {m.endpoint: m.ignored for m in MODELS.values()}


@pytest.fixture
def folder(tmp_path: Path, media: dict[str, Path]) -> Path:
    for f in FILES:
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "media").mkdir()
    shutil.copy(media["mp4"], tmp_path / "media" / "clip.mp4")
    return tmp_path


def test_the_corpus_covers_the_old_format() -> None:
    """The corpus is what it claims: the old step types, names, keys and params are all in it."""
    text = "\n".join(f.read_text() for f in FILES)
    for word in ("temp_dir", "cleanup_temp", "save_intermediates", "input_type", "input_from", "parallel_group",
                 "subtitle_text", "words_per_second", "text_override", "output_file", "model: \"auto\"",
                 "photon_flash", "seededit_v3", "flux_kontext", "kling_2_6_pro", "veo3", "sora_2_pro", "thinksound",
                 "generate_subtitles", "upscale_video", "upscale_image", "text_to_video", "add_audio"):
        assert word in text, word
    assert any("name:" not in f.read_text().split("steps:")[0] for f in FILES)  # a chain without a name


@pytest.mark.parametrize("chain", FILES, ids=[f.stem for f in FILES])
def test_old_chain_validates_and_runs_unchanged(chain: Path, aicp, folder: Path, fake_fal: FakeFal,
                                                validate_events) -> None:
    assert (folder / chain.name).read_text() == chain.read_text()  # unchanged
    env = env_for(fake_fal)
    checked = aicp("validate", "--config", chain.name, "--json", env=env)
    assert checked.returncode == 0, checked.stderr
    assert checked.result["data"]["problems"] == []  # no warning either: every key is known
    run = aicp("run-chain", "--config", chain.name, "--stream", "--yes", env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    validate_events(run)
    result = run.result
    assert result["success"] and result["steps_completed"] == result["total_steps"]
    assert result["outputs"]["final"] == result["outputs"][list(result["outputs"])[-2]]
    for endpoint, bodies in _submitted(fake_fal).items():
        for body in bodies:
            assert not IGNORED[endpoint] & set(body), (endpoint, body)  # ignored params never reach fal


def _submitted(fake: FakeFal) -> dict[str, list[dict[str, Any]]]:
    """Endpoint -> the bodies submitted to it."""
    endpoints = {r["path"].split("?")[0].strip("/") for r in fake.requests if r["method"] == "POST"}
    return {e: fake.submits(e) for e in endpoints if fake.submits(e)}


def test_old_names_reach_their_models(aicp, folder: Path, fake_fal: FakeFal) -> None:
    run = aicp("run-chain", "--config", "image_to_video_aliases.yaml", "--stream", "--yes", env=env_for(fake_fal))
    assert run.returncode == 0, run.stderr[-3000:]
    sent = _submitted(fake_fal)
    for endpoint in ("fal-ai/flux-1/schnell",                               # auto, criteria speed
                     "fal-ai/kling-video/v2.1/standard/image-to-video",     # kling
                     "fal-ai/kling-video/v2.6/pro/image-to-video",          # kling_2_6_pro
                     "fal-ai/kling-video/v3/standard/image-to-video", "fal-ai/kling-video/v3/pro/image-to-video",
                     "fal-ai/sora-2/image-to-video", "fal-ai/sora-2/image-to-video/pro",
                     "fal-ai/veo3/image-to-video", "fal-ai/veo3/fast/image-to-video", "fal-ai/veo2/image-to-video",
                     "fal-ai/minimax/hailuo-02/standard/image-to-video"):   # auto, cost_effective
        assert endpoint in sent, (endpoint, sorted(sent))
    assert sent["fal-ai/kling-video/v2.1/standard/image-to-video"][0]["cfg_scale"] == 0.5
    assert "criteria" not in sent["fal-ai/flux-1/schnell"][0]


def test_old_params_are_honoured(aicp, folder: Path, fake_fal: FakeFal, tmp_path: Path) -> None:
    env = env_for(fake_fal)
    voices = aicp("run-chain", "--config", "voices_in_sequence.yaml", "--stream", "--yes", env=env)
    assert voices.returncode == 0, voices.stderr[-3000:]
    texts = [b["text"] for b in fake_fal.submits() if "voice" in b]
    assert texts == ["Welcome to our advanced AI content creation platform.", "This is Drew speaking.",
                     "Hello! This is Bella."]  # text_override replaces the input
    subs = aicp("run-chain", "--config", "subtitles_for_video.yaml", "--stream", "--yes", env=env)
    assert subs.returncode == 0, subs.stderr[-3000:]
    srt = tmp_path / "output" / "subtitles" / "step_1_generate_subtitles.srt"
    assert srt.is_file() and not srt.with_suffix(".vtt").exists()  # format: srt only, in params.output_dir
    # subtitle_text, read at words_per_second 2.0: six words, three seconds
    assert srt.read_text().startswith("1\n00:00:00,000 --> 00:00:03,000\nWelcome to our amazing video presentation.")
    reports = list((tmp_path / "output" / "reports").glob("video_subtitle_generation_step1_intermediate_*.json"))
    assert len(reports) == 1 and json.loads(reports[0].read_text())["report_type"] == "intermediate"
    # input_from: the video starts from the hero image (step 1), not the thumbnail the step before made
    thumb = _png((10, 200, 10))
    fake_fal.files["thumb.png"] = (thumb, "image/png")
    fake_fal.scripts["fal-ai/flux-kontext/dev"] = Script(result={"images": [{"url": f"{fake_fal.url}/files/thumb.png"}]})
    named = aicp("run-chain", "--config", "named_steps_input_from.yaml", "--stream", "--yes", env=env)
    assert named.returncode == 0, named.stderr[-3000:]
    assert named.of("pipeline_start")[0]["name"] == "unnamed_chain"
    outputs = named.result["outputs"]
    assert Path(outputs["step_2_image_to_image"]["path"]).read_bytes() == thumb
    hero = Path(outputs["step_1_text_to_image"]["path"]).read_bytes()
    sent = fake_fal.submits("fal-ai/kling-video/v2.6/pro/image-to-video")[-1]["start_image_url"]
    assert sent.startswith("data:image/png;base64,") and base64.b64decode(sent.split(",", 1)[1]) == hero != thumb


def _png(colour: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 18), colour).save(buf, "PNG")
    return buf.getvalue()
