"""Fixtures for the provider tests: fakes of fal, Gemini, OpenRouter and Replicate on 127.0.0.1, real media, a real ctx."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fal_fake_server import FakeFal  # noqa: E402
from gemini_fake import FakeGemini  # noqa: E402
from openrouter_fake import FakeOpenRouter  # noqa: E402
from replicate_fake import FakeReplicate  # noqa: E402

from aicp._context import Channel, StepContext  # noqa: E402


def _ffmpeg(*args: Any) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
                    *map(str, args)], check=True, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A PNG, a 1 s H.264 MP4 and a 1 s WAV, made once."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("fal_media")
    png = folder / "image.png"
    buf = io.BytesIO()
    Image.new("RGB", (64, 36), (200, 40, 40)).save(buf, "PNG")
    png.write_bytes(buf.getvalue())
    mp4 = folder / "clip.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x36:rate=10", "-t", "1", "-c:v", "libx264",
            "-pix_fmt", "yuv420p", mp4)
    wav = folder / "tone.wav"
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=8000", "-t", "1", wav)
    return {"png": png, "mp4": mp4, "wav": wav}


@pytest.fixture
def fake_fal(media: dict[str, Path]):
    fake = FakeFal({
        "image.png": (media["png"].read_bytes(), "image/png"),
        "clip.mp4": (media["mp4"].read_bytes(), "video/mp4"),
        "speech.mp3": (media["wav"].read_bytes(), "audio/mpeg"),
    }).start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_gemini():
    fake = FakeGemini().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_openrouter():
    fake = FakeOpenRouter().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_replicate(media: dict[str, Path]):
    fake = FakeReplicate(media["png"].read_bytes()).start()
    yield fake
    fake.stop()


@pytest.fixture
def fal_env(fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch) -> FakeFal:
    """In-process: FAL_KEY and AICP_FAL_QUEUE_URL point at the fake; polling and backoff made quick."""
    from aicp.providers import fal_queue, fal_step

    monkeypatch.setenv("FAL_KEY", "test-key")
    monkeypatch.setenv("AICP_FAL_QUEUE_URL", fake_fal.url)
    monkeypatch.delenv("AICP_FAL_REST_URL", raising=False)
    monkeypatch.setattr(fal_step, "POLL_MIN", 0.02)
    monkeypatch.setattr(fal_step, "POLL_MAX", 0.05)
    monkeypatch.setattr(fal_queue, "MAX_RETRY_DELAY", 0.05)
    return fake_fal


class Messages:
    """What a step sent on its result channel (progress, log), read back from a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def all(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def progress(self) -> list[str]:
        return [m.get("message") or "" for m in self.all() if m["k"] == "progress"]

    def logs(self) -> list[dict[str, Any]]:
        return [m for m in self.all() if m["k"] == "log"]


@pytest.fixture
def make_ctx(tmp_path: Path):
    """``make_ctx(type, model, input, params=..., latest=...)`` -> (StepContext, Messages)."""
    opened: list[int] = []

    def make(step_type: str, model: str, value: Any, params: dict[str, Any] | None = None,
             latest: dict[str, Any] | None = None, step: int = 0) -> tuple[StepContext, Messages]:
        channel_path = tmp_path / f"channel_{len(opened)}.jsonl"
        fd = os.open(channel_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        opened.append(fd)
        spec = {"input": value, "params": params or {}, "output_dir": str(tmp_path / "out"), "step": step,
                "type": step_type, "model": model, "latest": latest or {}, "chain_dir": str(tmp_path)}
        return StepContext(spec, Channel(fd)), Messages(channel_path)

    yield make
    for fd in opened:
        os.close(fd)
