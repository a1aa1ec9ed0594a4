"""A small offline chain of executor calls: title_card -> ken_burns (3 s, 720p) -> add_audio."""

from __future__ import annotations

import shutil

import pytest

from aicp.steps.media import add_audio, ken_burns, title_card, tts_espeak


def test_title_card_to_ken_burns_to_add_audio(step, media, probes):
    card = title_card.run(step("text_to_image", "A short film about pipes", model="title_card").ctx)
    clip = ken_burns.run(step("image_to_video", card["output"],
                              {"duration": 3, "resolution": "1280x720"}, model="ken_burns", n=1).ctx)
    if shutil.which("espeak-ng"):
        audio = tts_espeak.run(step("text_to_speech", "A short film about pipes.", n=2).ctx)["output"]
    else:
        audio = str(media["long.wav"])
    final = add_audio.run(step("add_audio", clip["output"], {"policy": "pad"},
                               latest={"audio": audio}, n=3).ctx)
    meta = probes.video_meta(final["output"])
    assert (meta["codec"], meta["pix_fmt"], meta["size"], meta["audio_codec"]) == (
        "h264", "yuv420p", (1280, 720), "aac")
    assert probes.frame_count(final["output"]) == 75
    assert probes.audio_seconds(final["output"]) == pytest.approx(3.0, abs=0.06)
