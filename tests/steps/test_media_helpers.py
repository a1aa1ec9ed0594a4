"""Shared media helpers: parameter parsing, probing, running ffmpeg, paths, atomic outputs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from aicp.steps.media import _ffmpeg, _io, _params


@pytest.mark.parametrize("value, aspect, expected", [
    ("1280x720", (16, 9), (1280, 720)),
    ("641x359", (16, 9), (640, 360)),
    (720, (16, 9), (1280, 720)),
    ("720p", (9, 16), (720, 1280)),
    (360, (4, 3), (480, 360)),
    (360, (3, 4), (360, 480)),
    (512, (1, 1), (512, 512)),
])
def test_parse_resolution(value, aspect, expected):
    assert _params.parse_resolution(value, aspect) == expected


@pytest.mark.parametrize("bad", ["wide", "0x10", -5, "1280*720", True, 1])
def test_parse_resolution_rejects(bad):
    with pytest.raises(ValueError, match="resolution"):
        _params.parse_resolution(bad, (16, 9))


def test_check_number_messages():
    assert _params.check_number({"n": -1}, "n") == [("params.n", "must be > 0, got -1")]
    assert _params.check_number({"n": 1.5}, "n", integer=True)[0][1].startswith("must be an integer")
    assert _params.check_number({"n": "3"}, "n")[0][0] == "params.n"
    assert _params.check_number({"n": 0}, "n", inclusive=True) == []
    assert _params.check_number({}, "n") == []
    assert _params.check_number({"n": 99}, "n", maximum=10)[0][1] == "must be <= 10, got 99"


def test_raise_problems_names_every_param():
    with pytest.raises(ValueError, match=r"params\.a: x; params\.b: y"):
        _params.raise_problems([("params.a", "x"), ("params.b", "y")])
    _params.raise_problems([])


def test_probe_describes_video_and_audio(media):
    info = _ffmpeg.probe(media["clip_a.mp4"])
    assert (info.video_codec, info.pix_fmt, info.width, info.height) == ("h264", "yuv420p", 160, 120)
    assert info.fps == 25 and info.duration == pytest.approx(2.0, abs=0.05)
    assert info.audio_codec == "aac" and info.sample_rate == 44100 and info.channels == "mono"
    assert not _ffmpeg.probe(media["odd_noaudio.mp4"]).has_audio


def test_probe_errors_are_clear(media, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        _ffmpeg.probe(tmp_path / "nope.mp4")
    with pytest.raises(ValueError, match="not a readable media file: .*notes.txt"):
        _ffmpeg.probe(media["notes.txt"])
    with pytest.raises(ValueError, match="not a video"):
        _ffmpeg.probe_video(media["grid.png"])
    with pytest.raises(ValueError, match="no audio stream"):
        _ffmpeg.probe_audio(media["odd_noaudio.mp4"])


def test_run_ffmpeg_failure_carries_stderr(tmp_path):
    with pytest.raises(_ffmpeg.FFmpegError, match="(?s)ffmpeg failed \\(testing\\):.*missing.mp4"):
        _ffmpeg.run_ffmpeg(["-i", tmp_path / "missing.mp4", tmp_path / "x.mp4"], message="testing")


def test_aicp_ffmpeg_override_wins(monkeypatch, tmp_path, step):
    real = _ffmpeg.ffmpeg_exe()
    marker = tmp_path / "used"
    wrapper = tmp_path / "my-ffmpeg"
    wrapper.write_text(f'#!/bin/sh\ntouch "{marker}"\nexec "{real}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("AICP_FFMPEG", str(wrapper))
    run = step("x")
    _ffmpeg.run_ffmpeg(["-f", "lavfi", "-i", "color=size=32x32:duration=1", "-c:v", "libx264",
                        "-pix_fmt", "yuv420p", tmp_path / "c.mp4"], run.ctx, duration=1.0)
    assert marker.exists()
    assert run.progress()[-1] == 1.0
    monkeypatch.setenv("AICP_FFMPEG", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="AICP_FFMPEG"):
        _ffmpeg.ffmpeg_exe()


def test_resolve_path_uses_chain_dir(step, tmp_path):
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "a.txt").write_text("x")
    ctx = step("x", chain_dir=tmp_path).ctx
    assert _io.resolve_path(ctx, "assets/a.txt", "params.a") == (tmp_path / "assets" / "a.txt").resolve()
    with pytest.raises(FileNotFoundError, match="params.a not found: .*assets/b.txt"):
        _io.resolve_path(ctx, "assets/b.txt", "params.a")
    with pytest.raises(ValueError, match="must be a file path"):
        _io.resolve_path(ctx, 42, "params.a")


def test_input_text_prefers_input_then_params_then_latest(step, media):
    assert _io.input_text(step("x", "hello", {"text": "p"}).ctx) == "hello"
    assert _io.input_text(step("x", str(media["grid.png"]), {"text": "p"}).ctx) == "p"
    assert _io.input_text(step("x", None, latest={"text": "late"}).ctx) == "late"
    with pytest.raises(ValueError, match="no text"):
        _io.input_text(step("x", "   ").ctx)


def test_atomic_outputs_all_or_nothing(step, tmp_path):
    ctx = step("split_image").ctx
    with pytest.raises(RuntimeError, match="boom"):
        with _io.atomic_outputs(ctx, [("png", "_1"), ("png", "_2")]) as (a, b):
            a.write_bytes(b"1")
            raise RuntimeError("boom")
    assert os.listdir(ctx.output_dir) == []
    with _io.atomic_outputs(ctx, [("png", "_1"), ("png", "_2")]) as (a, b):
        a.write_bytes(b"1")
        b.write_bytes(b"2")
    assert sorted(os.listdir(ctx.output_dir)) == ["step_1_split_image_1.png", "step_1_split_image_2.png"]
    assert Path(ctx.output_path("png", "_2")).read_bytes() == b"2"
