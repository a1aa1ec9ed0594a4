"""The catalogue rows of the media steps point at importable executors, checks and availability."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from aicp._chain.steptypes import STEP_TYPES

MEDIA = {"text_to_image": "title_card", "image_to_video": "ken_burns", "text_to_speech": "espeak",
         "upscale_image": "lanczos", "upscale_video": "lanczos", "split_image": None,
         "add_audio": None, "concat_videos": None, "generate_subtitles": None}


def _load(target: str):
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@pytest.mark.parametrize("type_name, model", MEDIA.items())
def test_rows_resolve(type_name, model):
    executor = STEP_TYPES[type_name].executors[model]
    assert callable(_load(executor.target))
    assert executor.check and _load(executor.check)({}, model) == []
    if type_name == "text_to_speech":
        assert executor.available == "aicp.steps.media.tts_espeak:available"
        assert _load(executor.available)() in (None, "text_to_speech/espeak needs the espeak-ng "
                                                     "program: apt-get install espeak-ng")


def test_importing_checks_loads_neither_pillow_nor_imageio():
    code = ("import sys, aicp.steps.media.title_card, aicp.steps.media.ken_burns, "
            "aicp.steps.media.concat, aicp.steps.media.subtitles, aicp.steps.media.upscale, "
            "aicp.steps.media.split_image, aicp.steps.media.add_audio, aicp.steps.media.tts_espeak; "
            "print(sorted(m for m in ('PIL', 'imageio_ffmpeg') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
