"""image_to_video / ken_burns: a real H.264 clip of the asked length, size and motion."""

from __future__ import annotations

import imageio_ffmpeg
import pytest

from aicp.steps.media import ken_burns



def _frames(path) -> list[bytes]:
    gen = imageio_ffmpeg.read_frames(str(path))
    next(gen)
    return list(gen)


def _diff(a: bytes, b: bytes) -> float:
    """Mean absolute difference of two RGB24 frames, 0..255."""
    return sum(abs(x - y) for x, y in zip(a, b)) / len(a)


def test_clip_has_the_asked_frames_size_codec(step, media, probes):
    run = step("image_to_video", str(media["grid.png"]),
               {"duration": 1.2, "fps": 10, "resolution": "160x90"}, model="ken_burns")
    res = ken_burns.run(run.ctx)
    out = run.ctx.output_path("mp4")
    assert res["output"] == str(out) and out.name == "step_1_image_to_video.mp4"
    meta = probes.video_meta(out)
    assert (meta["codec"], meta["pix_fmt"], meta["size"], meta["fps"]) == ("h264", "yuv420p", (160, 90), 10)
    assert probes.frame_count(out) == 12 == res["frames"]
    assert meta["duration"] == pytest.approx(1.2, abs=0.05)
    assert out.read_bytes()[4:8] == b"ftyp" and b"moov" in out.read_bytes()[:4096]  # faststart
    fractions = run.progress()
    assert fractions and fractions[-1] == 1.0 and fractions == sorted(fractions)


def test_zoom_moves_the_picture_and_zoom_1_holds_still(step, media):
    moving = ken_burns.run(step("image_to_video", str(media["grid.png"]),
                                {"duration": 1, "fps": 8, "resolution": "96x54", "zoom": 1.8,
                                 "pan": "right"}).ctx)
    frames = _frames(moving["output"])
    assert _diff(frames[0], frames[-1]) > 10
    still = ken_burns.run(step("image_to_video", str(media["grid.png"]),
                               {"duration": 1, "fps": 8, "resolution": "96x54", "zoom": 1}, n=1).ctx)
    frames = _frames(still["output"])
    assert _diff(frames[0], frames[-1]) < 3


def test_list_input_uses_first_image_and_keeps_its_shape(step, media, tmp_path, probes):
    from PIL import Image

    Image.new("RGB", (101, 203), "teal").save(tmp_path / "tall.png")
    res = ken_burns.run(step("image_to_video", [str(tmp_path / "tall.png"), str(media["grid.png"])],
                             {"duration": 0.5, "fps": 10}).ctx)
    assert probes.video_meta(res["output"])["size"] == (100, 204)  # even sides for yuv420p


def test_short_side_resolution_with_aspect_ratio(step, media, probes):
    res = ken_burns.run(step("image_to_video", str(media["grid.png"]),
                             {"duration": 0.4, "fps": 5, "resolution": 64, "aspect_ratio": "9:16"}).ctx)
    assert probes.video_meta(res["output"])["size"] == (64, 114)


@pytest.mark.parametrize("params, where", [
    ({"zoom": 0.5}, "params.zoom"), ({"fps": -1}, "params.fps"), ({"duration": 0}, "params.duration"),
    ({"direction": "sideways"}, "params.direction"), ({"pan": "diagonal"}, "params.pan"),
    ({"resolution": "0x0"}, "params.resolution"),
])
def test_check_rejects_impossible_params(params, where):
    assert [p for p, _ in ken_burns.check(params, "ken_burns")] == [where]


def test_bad_inputs_fail_clearly_and_leave_nothing(step, media, tmp_path, probes):
    run = step("image_to_video", str(media["notes.txt"]), {"duration": 1})
    with pytest.raises(ValueError, match="notes.txt"):
        ken_burns.run(run.ctx)
    run2 = step("image_to_video", str(tmp_path / "gone.png"), n=1)
    with pytest.raises(FileNotFoundError, match="gone.png"):
        ken_burns.run(run2.ctx)
    with pytest.raises(ValueError, match="no input image"):
        ken_burns.run(step("image_to_video", None, n=2).ctx)
    assert probes.outputs_in(run.ctx.output_dir) == []
