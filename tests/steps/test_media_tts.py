"""text_to_speech / espeak: real speech from the espeak-ng program."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import pytest

from aicp.steps.media import tts_espeak

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (apt-get install espeak-ng)")


def test_available_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert tts_espeak.available() == ("text_to_speech/espeak needs the espeak-ng program: "
                                      "apt-get install espeak-ng")


def test_check_rejects_bad_params():
    problems = tts_espeak.check({"speed": 5, "pitch": 120, "format": "flac", "voice": "-x"}, "espeak")
    assert [p for p, _ in problems] == ["params.speed", "params.pitch", "params.format", "params.voice"]


@needs_espeak
def test_speaks_text_to_wav(step, probes):
    run = step("text_to_speech", "Hello from the offline narrator. This is a test.", model="espeak")
    assert tts_espeak.available() is None
    res = tts_espeak.run(run.ctx)
    assert res["output"] == str(run.ctx.output_dir / "step_1_text_to_speech.wav")
    with wave.open(res["output"]) as w:
        seconds = w.getnframes() / w.getframerate()
    assert 1.5 < seconds < 10 and seconds == pytest.approx(res["duration"])
    assert probes.audio_seconds(res["output"]) == pytest.approx(seconds, abs=0.05)
    assert run.progress()[-1] == 1.0


@needs_espeak
def test_speed_changes_length_and_mp3_output(step, probes, media):
    text = "one two three four five six seven eight nine ten"
    slow = tts_espeak.run(step("text_to_speech", None, {"text": text, "speed": 100}).ctx)
    fast = tts_espeak.run(step("text_to_speech", str(media["grid.png"]),  # a path is not text
                               {"text": text, "speed": 300, "format": "mp3"}, n=1).ctx)
    assert fast["output"].endswith(".mp3")
    assert probes.audio_seconds(fast["output"]) < slow["duration"] * 0.6
    # the intermediate WAV of the mp3 conversion is gone
    assert sorted(p.name for p in Path(fast["output"]).parent.iterdir()) == [
        "step_1_text_to_speech.wav", "step_2_text_to_speech.mp3"]


@needs_espeak
def test_dash_leading_text_is_spoken_not_parsed(step):
    res = tts_espeak.run(step("text_to_speech", "--help me please", latest={}).ctx)
    assert res["duration"] > 0.5


def test_no_text_fails(step):
    if tts_espeak.available():
        pytest.skip("espeak-ng is not installed")
    with pytest.raises(ValueError, match="no text"):
        tts_espeak.run(step("text_to_speech", None).ctx)
