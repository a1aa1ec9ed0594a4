"""add_audio: the audio track replaced, cut or looped as the policy says; picture untouched."""

from __future__ import annotations

import pytest

from aicp.steps.media import add_audio


def test_shortest_cuts_to_the_audio(step, media, probes):
    run = step("add_audio", str(media["clip_a.mp4"]), {"audio": str(media["beep.wav"])})
    res = add_audio.run(run.ctx)
    assert res["policy"] == "shortest" and res["output"].endswith("step_1_add_audio.mp4")
    meta = probes.video_meta(res["output"])
    assert (meta["codec"], meta["audio_codec"], meta["size"]) == ("h264", "aac", (160, 120))
    assert probes.audio_seconds(res["output"]) == pytest.approx(0.7, abs=0.06)
    assert probes.frame_count(res["output"]) == pytest.approx(18, abs=1)  # 0.7 s at 25 fps
    assert run.progress()[-1] == 1.0


def test_shortest_cuts_long_audio_to_the_video(step, media, probes):
    res = add_audio.run(step("add_audio", str(media["clip_b.mp4"]), {"audio": str(media["long.wav"])}).ctx)
    assert probes.audio_seconds(res["output"]) == pytest.approx(1.0, abs=0.06)
    assert probes.frame_count(res["output"]) == 25


@pytest.mark.parametrize("policy", ["loop", "pad"])
def test_loop_and_pad_keep_the_whole_video(step, media, probes, policy):
    res = add_audio.run(step("add_audio", str(media["clip_a.mp4"]),
                             {"audio": str(media["beep.wav"]), "policy": policy}).ctx)
    assert probes.frame_count(res["output"]) == 50
    assert probes.audio_seconds(res["output"]) == pytest.approx(2.0, abs=0.06)
    assert res["duration"] == pytest.approx(2.0, abs=0.06)


def test_latest_audio_is_used_by_default(step, media, probes):
    res = add_audio.run(step("add_audio", str(media["clip_b.mp4"]),
                             latest={"audio": str(media["beep.wav"])}).ctx)
    assert res["audio"] == str(media["beep.wav"])
    assert probes.audio_seconds(res["output"]) == pytest.approx(0.7, abs=0.06)


def test_failures_are_clear_and_leave_nothing(step, media, tmp_path, probes):
    assert [p for p, _ in add_audio.check({"policy": "stretch"}, None)] == ["params.policy"]
    run = step("add_audio", str(media["clip_a.mp4"]))
    with pytest.raises(ValueError, match="no audio: set params.audio"):
        add_audio.run(run.ctx)
    with pytest.raises(ValueError, match="no audio stream in .*odd_noaudio.mp4"):
        add_audio.run(step("add_audio", str(media["clip_a.mp4"]), {"audio": str(media["odd_noaudio.mp4"])}).ctx)
    with pytest.raises(FileNotFoundError, match="params.audio not found: .*gone.wav"):
        add_audio.run(step("add_audio", str(media["clip_a.mp4"]), {"audio": "gone.wav"}).ctx)
    with pytest.raises(ValueError, match="not a video"):
        add_audio.run(step("add_audio", str(media["beep.wav"]), {"audio": str(media["beep.wav"])}).ctx)
    with pytest.raises(ValueError, match=r"params\.policy"):
        add_audio.run(step("add_audio", str(media["clip_a.mp4"]),
                           {"audio": str(media["beep.wav"]), "policy": "stretch"}).ctx)
    assert probes.outputs_in(run.ctx.output_dir) == []
