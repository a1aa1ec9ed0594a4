"""split_image and upscale_image / upscale_video: exact tiles and sizes, checked with real probes."""

from __future__ import annotations

import pytest
from PIL import Image

from aicp.steps.media import split_image, upscale


def _centre_colour(path) -> tuple[int, int, int]:
    with Image.open(path) as img:
        return img.convert("RGB").getpixel((img.width // 2, img.height // 2))


def test_split_2x2_gives_row_major_tiles(step, media):
    run = step("split_image", str(media["grid.png"]))
    res = split_image.run(run.ctx)
    names = [f"step_1_split_image_{i}.png" for i in range(1, 5)]
    assert res["output"] == [str(run.ctx.output_dir / n) for n in names] == res["outputs"]
    assert [Image.open(p).size for p in res["output"]] == [(160, 90)] * 4
    assert [_centre_colour(p) for p in res["output"]] == [
        (255, 0, 0), (0, 128, 0), (0, 0, 255), (255, 255, 0)]
    assert run.progress()[-1] == 1.0


def test_uneven_split_covers_the_whole_image(step, media):
    res = split_image.run(step("split_image", [str(media["grid.png"])], {"rows": 7, "cols": 3}).ctx)
    sizes = [Image.open(p).size for p in res["output"]]
    assert len(sizes) == 21 == res["count"]
    assert sum(w for w, _ in sizes[:3]) == 320 and sum(sizes[i * 3][1] for i in range(7)) == 180


def test_split_keeps_jpeg_format(step, media):
    res = split_image.run(step("split_image", str(media["grid.jpg"]), {"rows": 1, "cols": 2}).ctx)
    assert all(p.endswith(".jpg") and Image.open(p).format == "JPEG" for p in res["output"])


@pytest.mark.parametrize("params, where", [
    ({"rows": 0}, "params.rows"), ({"cols": 1.5}, "params.cols"), ({"rows": "2"}, "params.rows")])
def test_split_rejects_bad_grid(step, media, params, where, probes):
    assert [p for p, _ in split_image.check(params, None)] == [where]
    run = step("split_image", str(media["grid.png"]), params)
    with pytest.raises(ValueError, match=where.replace(".", r"\.")):
        split_image.run(run.ctx)
    assert probes.outputs_in(run.ctx.output_dir) == []


def test_split_more_tiles_than_pixels_fails_and_writes_nothing(step, tmp_path, probes):
    Image.new("RGB", (4, 4)).save(tmp_path / "tiny.png")
    run = step("split_image", str(tmp_path / "tiny.png"), {"rows": 5, "cols": 1})
    with pytest.raises(ValueError, match="cannot cut a 4x4 image into 5x1 tiles"):
        split_image.run(run.ctx)
    assert probes.outputs_in(run.ctx.output_dir) == []


def test_split_rejects_non_image(step, media):
    with pytest.raises(ValueError, match="not a readable image: .*notes.txt"):
        split_image.run(step("split_image", str(media["notes.txt"])).ctx)


@pytest.mark.parametrize("params, size", [({}, (640, 360)), ({"factor": 1.5}, (480, 270)),
                                          ({"target_width": 500}, (500, 281))])
def test_upscale_image_sizes(step, media, params, size):
    res = upscale.run_image(step("upscale_image", str(media["grid.png"]), params, model="lanczos").ctx)
    with Image.open(res["output"]) as img:
        assert img.size == size == (res["width"], res["height"]) and img.format == "PNG"
    with Image.open(res["output"]) as img:  # top-left quadrant is still red, bottom-right yellow
        assert img.convert("RGB").getpixel((size[0] // 4, size[1] // 4)) == (255, 0, 0)
        assert img.convert("RGB").getpixel((size[0] * 3 // 4, size[1] * 3 // 4)) == (255, 255, 0)


def test_upscale_image_checks(step, media):
    assert [p for p, _ in upscale.check({"factor": -2}, "lanczos")] == ["params.factor"]
    assert [p for p, _ in upscale.check({"target_width": 0}, "lanczos")] == ["params.target_width"]
    assert upscale.check({"factor": 2, "target_width": 100}, "lanczos")[0][1].startswith("give factor")
    with pytest.raises(ValueError, match="32000x1600 exceeds"):
        upscale.target_size({"factor": 16}, 2000, 100)
    with pytest.raises(ValueError, match=r"params\.factor"):
        upscale.run_image(step("upscale_image", str(media["grid.png"]), {"factor": 0}).ctx)
    with pytest.raises(FileNotFoundError, match="absent.png"):
        upscale.run_image(step("upscale_image", "/nonexistent/absent.png").ctx)


def test_upscale_video_keeps_audio_and_frames(step, media, probes):
    run = step("upscale_video", str(media["clip_a.mp4"]), {"factor": 2}, model="lanczos")
    res = upscale.run_video(run.ctx)
    meta = probes.video_meta(res["output"])
    assert (meta["codec"], meta["pix_fmt"], meta["size"]) == ("h264", "yuv420p", (320, 240))
    assert meta["audio_codec"] == "aac"
    assert probes.frame_count(res["output"]) == 50
    assert probes.audio_seconds(res["output"]) == pytest.approx(2.0, abs=0.1)
    fractions = run.progress()
    assert fractions[-1] == 1.0 and len(fractions) >= 2


def test_upscale_video_even_sides_without_audio(step, media, probes):
    res = upscale.run_video(step("upscale_video", str(media["odd_noaudio.mp4"]),
                                 {"target_width": 301}).ctx)
    meta = probes.video_meta(res["output"])
    assert meta["size"] == (300, 226) and meta["pix_fmt"] == "yuv420p"
    assert meta.get("audio_codec") is None


def test_upscale_video_rejects_image(step, media, probes):
    run = step("upscale_video", str(media["grid.png"]))
    with pytest.raises(ValueError, match="not a video"):
        upscale.run_video(run.ctx)
    assert probes.outputs_in(run.ctx.output_dir) == []
