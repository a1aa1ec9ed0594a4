"""concat_videos: stream copy when clips match, a clean re-encode when they do not."""

from __future__ import annotations

import pytest

from aicp.steps.media import concat


def test_matching_clips_are_stream_copied(step, media, probes):
    run = step("concat_videos", [str(media["clip_a.mp4"]), str(media["clip_b.mp4"])])
    res = concat.run(run.ctx)
    assert res["reencoded"] is False and res["clips"] == 2
    meta = probes.video_meta(res["output"])
    assert (meta["codec"], meta["size"], meta["audio_codec"]) == ("h264", (160, 120), "aac")
    assert probes.frame_count(res["output"]) == 75
    assert meta["duration"] == pytest.approx(3.0, abs=0.1)
    assert run.progress()[-1] == 1.0


def test_mismatched_clips_are_reencoded_with_silence_for_silent_ones(step, media, probes):
    run = step("concat_videos", None,
               {"videos": [str(media["clip_a.mp4"]), str(media["odd_noaudio.mp4"])]})
    res = concat.run(run.ctx)
    assert res["reencoded"] is True
    meta = probes.video_meta(res["output"])
    assert (meta["codec"], meta["pix_fmt"], meta["size"], meta["fps"]) == ("h264", "yuv420p", (160, 120), 25)
    assert probes.frame_count(res["output"]) == 75  # 2 s + 1 s at the first clip's 25 fps
    assert probes.audio_seconds(res["output"]) == pytest.approx(3.0, abs=0.1)
    fractions = run.progress()
    assert len(fractions) >= 2 and fractions[-1] == 1.0


def test_resolution_param_forces_reencode(step, media, probes):
    res = concat.run(step("concat_videos", [str(media["clip_b.mp4"])] * 2, {"resolution": "96x72"}).ctx)
    assert res["reencoded"] and probes.video_meta(res["output"])["size"] == (96, 72)


def test_relative_videos_resolve_against_chain_dir(step, media, probes):
    res = concat.run(step("concat_videos", None, {"videos": ["clip_b.mp4", "clip_b.mp4"]},
                          chain_dir=media["clip_b.mp4"].parent).ctx)
    assert probes.frame_count(res["output"]) == 50


def test_bad_inputs(step, media, tmp_path, probes):
    assert [p for p, _ in concat.check({"videos": []}, None)] == ["params.videos"]
    with pytest.raises(ValueError, match="params.videos"):
        concat.run(step("concat_videos", None, {"videos": "one.mp4"}).ctx)
    with pytest.raises(ValueError, match="empty list"):
        concat.run(step("concat_videos", []).ctx)
    with pytest.raises(FileNotFoundError, match="lost.mp4"):
        concat.run(step("concat_videos", [str(media["clip_a.mp4"]), str(tmp_path / "lost.mp4")]).ctx)
    run = step("concat_videos", [str(media["clip_a.mp4"]), str(media["grid.png"])])
    with pytest.raises(ValueError, match="not a video.*grid.png"):
        concat.run(run.ctx)
    assert probes.outputs_in(run.ctx.output_dir) == []
