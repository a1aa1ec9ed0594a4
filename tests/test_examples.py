"""The example chains, end to end through the real CLI with --stream: their final MP4s decode."""

from __future__ import annotations

import shutil
from pathlib import Path

import imageio_ffmpeg
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _decode(path: str) -> tuple[int, float]:
    """Decode every frame (not just the header): (frames, seconds)."""
    return imageio_ffmpeg.count_frames_and_secs(path)


def _run_example(aicp, tmp_path, name: str):
    run = aicp("run-chain", "--config", str(EXAMPLES / name), "--stream", "--output-dir", str(tmp_path / "out"),
               timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    result = run.result
    assert result["event"] == "pipeline_complete" and result["success"] is True
    assert result["steps_completed"] == result["total_steps"]
    assert all(e["schema_version"] == "1" for e in run.events)
    return run, result


def _final_video(result: dict) -> str:
    last = list(result["outputs"].values())[-1]
    assert last["path"] and last["path"].endswith(".mp4"), last
    assert Path(last["path"]).is_file()
    return last["path"]


def test_prompt_to_video_makes_a_decodable_subtitled_clip(aicp, tmp_path, validate_events):
    run, result = _run_example(aicp, tmp_path, "prompt_to_video.yaml")
    validate_events(run.events + [result])
    video = _final_video(result)
    frames, seconds = _decode(video)
    assert frames == 150 and seconds == pytest.approx(6.0, abs=0.05)
    meta = next(imageio_ffmpeg.read_frames(video))
    assert meta["size"] == (1280, 720) and meta["codec"] == "h264"
    subtitles = [f for f in result["outputs"]["step_3_generate_subtitles"]["files"] if f.endswith(".srt")]
    assert subtitles and "lighthouse" in Path(subtitles[0]).read_text().lower()
    assert any(e["event"] == "step_progress" for e in run.events)  # ffmpeg's progress is relayed


def test_parallel_clips_renders_members_concurrently_then_joins_them(aicp, tmp_path, validate_events):
    run, result = _run_example(aicp, tmp_path, "parallel_clips.yaml")
    validate_events(run.events + [result])
    members = [e for e in run.events if e["event"] == "step_complete" and "member" in e]
    assert sorted(e["member"] for e in members) == [0, 1, 2]
    assert len({e["pid"] for e in members}) == 3  # each member had its own worker
    frames, seconds = _decode(_final_video(result))
    assert frames == 150 and seconds == pytest.approx(6.0, abs=0.1)  # three 2 s clips at 25 fps


@pytest.mark.skipif(shutil.which("espeak-ng") is None,
                    reason="espeak-ng is not installed (apt-get install espeak-ng; .ci/run installs it)")
def test_narrated_video_has_picture_and_sound(aicp, tmp_path, validate_events):
    run, result = _run_example(aicp, tmp_path, "narrated_video.yaml")
    validate_events(run.events + [result])
    video = _final_video(result)
    frames, seconds = _decode(video)
    assert frames >= 175 and seconds >= 7.0
    meta = next(imageio_ffmpeg.read_frames(video))
    assert meta.get("audio_codec")
