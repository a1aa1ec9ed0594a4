"""generate_subtitles: SRT/WebVTT cues timed by reading speed or fitted to the video; burn-in."""

from __future__ import annotations

import re
from pathlib import Path

import imageio_ffmpeg
import pytest

from aicp.steps.media import _ffmpeg, subtitles

TEXT = ("Welcome to the pipeline. Every step runs in its own process, supervised. "
        "This sentence is long enough that it has to be split over more than two lines of a cue.")
_STAMP = re.compile(r"(\d\d):(\d\d):(\d\d)[,.](\d{3}) --> (\d\d):(\d\d):(\d\d)[,.](\d{3})")


def _cue_times(text: str) -> list[tuple[float, float]]:
    def secs(h, m, s, ms):
        return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000
    return [(secs(*m[:4]), secs(*m[4:])) for m in _STAMP.findall(text)]


def test_cues_are_short_and_split_at_sentences():
    texts = subtitles.chunks(TEXT)
    assert texts[0] == "Welcome to the pipeline."
    assert all(len(t.split("\n")) <= 2 and all(len(line) <= 42 for line in t.split("\n")) for t in texts)
    assert " ".join(t.replace("\n", " ") for t in texts) == TEXT


def test_words_per_minute_timing():
    cues = subtitles.timed(["one two three four", "five"], None, 120)
    assert cues == [(0.0, 2.0, "one two three four"), (2.0, 2.8, "five")]  # 0.8 s minimum


def test_fit_gives_every_cue_a_readable_minimum():
    cues = subtitles.timed(["a b", "c d e f g h i j k l m n o p q r"], 3.0, 160)
    assert cues[-1][1] == pytest.approx(3.0)
    assert cues[0][1] - cues[0][0] >= 0.8


def test_fitted_to_the_input_video_and_passed_through(step, media):
    run = step("generate_subtitles", str(media["clip_a.mp4"]), latest={"text": TEXT})
    res = subtitles.run(run.ctx)
    out = run.ctx.output_dir
    assert res["output"] == str(media["clip_a.mp4"].resolve())
    assert res["subtitles"] == [str(out / "step_1_generate_subtitles.srt"),
                                str(out / "step_1_generate_subtitles.vtt")] == res["outputs"]
    srt, vtt = (Path(p).read_text() for p in res["subtitles"])
    assert srt.startswith("1\n00:00:00,000 --> ") and vtt.startswith("WEBVTT\n\n00:00:00.000 --> ")
    times = _cue_times(srt)
    assert times == _cue_times(vtt) and len(times) == res["cues"] >= 4
    assert times[-1][1] == pytest.approx(2.0, abs=0.01)
    assert all(a < b for a, b in times) and all(times[i][1] == times[i + 1][0] for i in range(len(times) - 1))


def test_words_per_minute_param_and_fit_to(step, media):
    text = " ".join(["word"] * 16)
    res = subtitles.run(step("generate_subtitles", None, {"text": text, "words_per_minute": 160}).ctx)
    assert res["output"].endswith(".srt") and res["duration"] == pytest.approx(6.0)
    res = subtitles.run(step("generate_subtitles", None, {"text": text, "fit_to": "beep.wav"},
                             chain_dir=media["beep.wav"].parent, n=1).ctx)
    assert res["duration"] == pytest.approx(0.7, abs=0.01)


@pytest.mark.skipif(not _ffmpeg.has_filter("subtitles"), reason="this ffmpeg has no libass subtitles filter")
def test_burn_in_draws_the_text_into_a_new_video(step, media, probes):
    run = step("generate_subtitles", str(media["clip_a.mp4"]),
               {"text": "BURNED IN TEXT", "burn_in": True, "font_size": 28})
    res = subtitles.run(run.ctx)
    assert res["burned_in"] and res["output"] == str(run.ctx.output_dir / "step_1_generate_subtitles.mp4")
    assert res["output"] in res["outputs"] and len(res["subtitles"]) == 2
    meta = probes.video_meta(res["output"])
    assert (meta["codec"], meta["pix_fmt"], meta["audio_codec"]) == ("h264", "yuv420p", "aac")
    assert probes.frame_count(res["output"]) == 50
    burned, plain = (imageio_ffmpeg.read_frames(p) for p in (res["output"], str(media["clip_a.mp4"])))
    next(burned), next(plain)
    a, b = next(burned), next(plain)
    lower = slice(len(a) * 2 // 3, len(a))  # subtitles sit in the bottom third
    changed = sum(1 for x, y in zip(a[lower], b[lower]) if abs(x - y) > 60)
    assert changed > 200
    assert run.progress()[-1] == 1.0


def test_failures(step, media, probes):
    assert [p for p, _ in subtitles.check({"words_per_minute": -3}, None)] == ["params.words_per_minute"]
    assert subtitles.check({"words_per_minute": 100, "fit_to": "x.mp4"}, None)[0][0] == "params.fit_to"
    run = step("generate_subtitles", str(media["clip_a.mp4"]))
    with pytest.raises(ValueError, match="no text to subtitle"):
        subtitles.run(run.ctx)
    with pytest.raises(ValueError, match="not a video"):
        subtitles.run(step("generate_subtitles", str(media["grid.png"]), {"text": "hi"}).ctx)
    with pytest.raises(ValueError, match="burn_in needs an input video"):
        subtitles.run(step("generate_subtitles", None, {"text": "hi", "burn_in": True}).ctx)
    assert probes.outputs_in(run.ctx.output_dir) == []


def test_the_old_tools_params_subtitle_text_format_words_per_second_output_dir(step, media, tmp_path):
    """The AI Content Pipeline tool's generate_subtitles params mean what they meant there."""
    text = " ".join(["word"] * 10)
    folder = tmp_path / "subs"
    run = step("generate_subtitles", str(media["clip_a.mp4"]),
               {"subtitle_text": text, "format": "vtt", "words_per_second": 2.5, "output_dir": str(folder)})
    res = subtitles.run(run.ctx)
    assert res["output"] == str(media["clip_a.mp4"].resolve())  # the video passes through
    assert res["subtitles"] == res["outputs"] == [str(folder / "step_1_generate_subtitles.vtt")]
    assert res["subtitle_path"] == res["subtitles"][0] and res["format"] == "vtt"
    assert res["duration"] == pytest.approx(4.0)  # 10 words at 2.5 a second, not fitted to the 2 s clip
    assert Path(res["subtitle_path"]).read_text().startswith("WEBVTT")
    srt = subtitles.run(step("generate_subtitles", None, {"subtitle_text": text, "format": "srt"}, n=1).ctx)
    assert [Path(p).suffix for p in srt["outputs"]] == [".srt"]
    assert subtitles.check({"format": "ass"}, None)[0][0] == "params.format"
    assert subtitles.check({"words_per_second": 2, "words_per_minute": 100}, None)[0][0] == "params.words_per_second"
    assert subtitles.check({"words_per_second": 0}, None)[0][0] == "params.words_per_second"
