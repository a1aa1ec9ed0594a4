"""Fixtures for the media step tests: small media made on the spot, a real StepContext, probes.

Media are made with Pillow and ffmpeg's lavfi sources (testsrc, sine), tiny
and short so the whole suite stays fast. Probes use imageio-ffmpeg's own
readers, not the code under test, so results are checked independently.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Callable

import imageio_ffmpeg
import pytest

from aicp._context import Channel, StepContext


def ffmpeg(*args: Any) -> None:
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run([exe, "-hide_banner", "-loglevel", "error", "-y", *map(str, args)],
                   check=True, stdin=subprocess.DEVNULL)


def video_meta(path: str | Path) -> dict[str, Any]:
    """codec, pix_fmt, size, fps, duration, audio_codec as ffmpeg reports them."""
    gen = imageio_ffmpeg.read_frames(str(path))
    meta = next(gen)
    gen.close()
    meta["pix_fmt"] = meta["pix_fmt"].split("(")[0]
    return meta


def frame_count(path: str | Path) -> int:
    return imageio_ffmpeg.count_frames_and_secs(str(path))[0]


def audio_seconds(path: str | Path) -> float:
    """Length of the first audio stream, by decoding it (8 kHz mono s16)."""
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    raw = subprocess.run([exe, "-hide_banner", "-loglevel", "error", "-i", str(path),
                          "-map", "0:a:0", "-f", "s16le", "-ac", "1", "-ar", "8000", "-"],
                         check=True, capture_output=True, stdin=subprocess.DEVNULL).stdout
    return len(raw) / 2 / 8000


class StepRun:
    """A StepContext wired to a real pipe, with the messages the step sent."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self._r, w = os.pipe()
        fcntl.fcntl(self._r, fcntl.F_SETFL, os.O_NONBLOCK)
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 1 << 20)  # never block a step on a full pipe
        self._w = w
        self.ctx = StepContext(spec, Channel(w))
        self._buf = b""

    def messages(self, kind: str | None = None) -> list[dict[str, Any]]:
        while True:
            try:
                chunk = os.read(self._r, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                break
            self._buf += chunk
        msgs = [json.loads(line) for line in self._buf.decode().splitlines() if line]
        return [m for m in msgs if kind is None or m["k"] == kind]

    def progress(self) -> list[float]:
        return [m["fraction"] for m in self.messages("progress")]

    def close(self) -> None:
        os.close(self._r)
        os.close(self._w)


@pytest.fixture
def step(tmp_path: Path) -> Callable[..., StepRun]:
    """``step(type, input, params, model=None, latest=None, n=0)`` -> StepRun with ``.ctx``."""
    runs: list[StepRun] = []

    def make(type_: str, input_: Any = None, params: dict[str, Any] | None = None,
             model: str | None = None, latest: dict[str, Any] | None = None, n: int = 0,
             chain_dir: Path | None = None) -> StepRun:
        run = StepRun({"step": n, "type": type_, "model": model, "params": params or {},
                       "input": input_, "output_dir": str(tmp_path / "out"),
                       "latest": latest or {}, "chain_dir": str(chain_dir or tmp_path)})
        runs.append(run)
        return run

    yield make
    for run in runs:
        run.close()


def outputs_in(folder: Path) -> list[str]:
    """Every file in the output folder, hidden temporaries included."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small test media, made once per session."""
    from PIL import Image, ImageDraw

    d = tmp_path_factory.mktemp("media")
    grid = Image.new("RGB", (320, 180), "white")
    draw = ImageDraw.Draw(grid)
    for i, colour in enumerate(["red", "green", "blue", "yellow"]):
        x, y = (i % 2) * 160, (i // 2) * 90
        draw.rectangle([x, y, x + 159, y + 89], fill=colour)
    grid.save(d / "grid.png")
    grid.convert("RGB").save(d / "grid.jpg", quality=95)
    (d / "notes.txt").write_text("not an image\n")
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-f", "lavfi",
           "-i", "sine=frequency=440:sample_rate=44100", "-t", "2", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", d / "clip_a.mp4")
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-f", "lavfi",
           "-i", "sine=frequency=660:sample_rate=44100", "-t", "1", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", d / "clip_b.mp4")
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=200x150:rate=30", "-t", "1",
           "-c:v", "libx264", "-pix_fmt", "yuv444p", d / "odd_noaudio.mp4")
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=330:sample_rate=22050", "-t", "0.7",
           d / "beep.wav")
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=330:sample_rate=22050", "-t", "4",
           d / "long.wav")
    return {p.name: p for p in d.iterdir()}


@pytest.fixture(scope="session")
def probes() -> Any:
    """The independent probes and helpers above, for the test modules (tests/ is no package)."""
    from types import SimpleNamespace

    return SimpleNamespace(video_meta=video_meta, frame_count=frame_count,
                           audio_seconds=audio_seconds, outputs_in=outputs_in, ffmpeg=ffmpeg)
