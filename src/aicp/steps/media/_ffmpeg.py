"""The one place that knows how to find, run and read the ffmpeg binary.

No system ffmpeg is required: the binary shipped by the ``imageio-ffmpeg``
wheel is used unless ``AICP_FFMPEG`` names another one. There is no ffprobe in
that wheel, so probing parses what ``ffmpeg -i`` prints about its input.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections import deque
from pathlib import Path

from aicp._cache import entry_path, read_entry, write_entry
from aicp._record import record

TYPE_CHECKING = False  # typing costs ~5 ms at start-up: for the type checker only
if TYPE_CHECKING:
    from typing import Any, Sequence

# What every H.264 output of these steps shares: widely playable (yuv420p),
# streamable from the start (faststart).
H264_ARGS = ("-c:v", "libx264", "-preset", "veryfast", "-crf", "20",
             "-pix_fmt", "yuv420p", "-movflags", "+faststart")

# Audio codecs an MP4 can carry as they are; anything else is re-encoded to AAC.
MP4_AUDIO = frozenset({"aac", "mp3", "alac", "opus", "ac3", "eac3", "flac"})
# Video codecs an MP4 can carry as they are.
MP4_VIDEO = frozenset({"h264", "hevc", "av1", "mpeg4", "vp9"})


class FFmpegError(RuntimeError):
    """ffmpeg exited with an error; the message carries the tail of its stderr."""


def ffmpeg_exe() -> str:
    """The ffmpeg binary to run: ``$AICP_FFMPEG`` when set, else imageio-ffmpeg's."""
    override = os.environ.get("AICP_FFMPEG")
    if override:
        if not Path(override).is_file():
            raise FileNotFoundError(f"AICP_FFMPEG points at {override}, which does not exist")
        return override
    import imageio_ffmpeg  # type: ignore[import-untyped]  # ships no type information

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def _drain(stream: Any, tail: deque[str]) -> None:
    """Relay ffmpeg's stderr to ours (the worker turns it into log lines), keeping the tail."""
    for raw in stream:
        line = raw.decode(errors="replace").rstrip()
        if line:
            tail.append(line)
            print(line, file=sys.stderr, flush=True)


def run_ffmpeg(args: Sequence[str | float | os.PathLike[str]], ctx: Any = None,
               duration: float | None = None, message: str = "encoding",
               cwd: str | os.PathLike[str] | None = None) -> None:
    """Run ffmpeg with ``args`` (inputs, filters, output); raise FFmpegError if it fails.

    When ``ctx`` and the expected output ``duration`` are given, progress is
    read from ``-progress pipe:1`` (``out_time_us``) and reported with
    ``ctx.progress`` — long encodes then show they are alive.
    """
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
           "-progress", "pipe:1", "-nostats", *map(str, args)]
    import subprocess  # in the functions that start ffmpeg: validating a chain starts nothing
    import threading

    tail: deque[str] = deque(maxlen=15)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=cwd)
    relay = threading.Thread(target=_drain, args=(proc.stderr, tail), daemon=True)
    relay.start()
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            key, _, value = raw.decode(errors="replace").strip().partition("=")
            if ctx is not None and duration and key == "out_time_us" and value.isdigit():
                ctx.progress(min(0.99, int(value) / 1e6 / duration), message)
        code = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        relay.join(timeout=5)
    if code != 0:
        detail = "\n".join(tail) or f"exit status {code}"
        raise FFmpegError(f"ffmpeg failed ({message}): {detail}")
    if ctx is not None and duration:
        ctx.progress(1.0, message)


@record
class MediaInfo:
    """What ``ffmpeg -i`` says about a file: enough to choose between copy and re-encode."""

    path: Path
    duration: float | None = None
    video_codec: str | None = None
    pix_fmt: str | None = None
    width: int = 0
    height: int = 0
    fps: float | None = None
    audio_codec: str | None = None
    sample_rate: int | None = None
    channels: str | None = None

    @property
    def has_video(self) -> bool:
        return self.video_codec is not None

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None


def _split_top(text: str) -> list[str]:
    """Split a stream description on commas that are not inside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


# compiled on first use (re keeps them), not at import: the CLI imports this module to validate
_DURATION = r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)"
_STREAM = r"Stream #\d+:\d+\S*: (Video|Audio): (.*)"
_SIZE = r"^(\d+)x(\d+)"
_FPS = r"^([\d.]+)(k?) (fps|tbr)$"


def _video_stream(fields: list[str]) -> dict[str, Any]:
    """The MediaInfo fields of a video stream's description: ``h264 (High), yuv420p(tv), 640x360, 25 fps``."""
    info: dict[str, Any] = {"video_codec": fields[0].split()[0]}
    if len(fields) > 1:
        info["pix_fmt"] = fields[1].split("(")[0].strip()
    for f in fields[1:]:
        size, rate = re.match(_SIZE, f), re.match(_FPS, f)
        if size and not info.get("width"):
            info["width"], info["height"] = int(size[1]), int(size[2])
        # tbr (the stream's base rate) beats fps (an average that gaps and
        # uneven stream lengths skew) when both are printed
        if rate and (rate[3] == "tbr" or "fps" not in info):
            info["fps"] = float(rate[1]) * (1000 if rate[2] else 1)
    return info


def _audio_stream(fields: list[str]) -> dict[str, Any]:
    """The MediaInfo fields of an audio stream's description: ``aac (LC), 44100 Hz, stereo, fltp``."""
    info: dict[str, Any] = {"audio_codec": fields[0].split()[0]}
    for i, f in enumerate(fields[1:], start=1):
        if f.endswith(" Hz"):
            info["sample_rate"] = int(f.split()[0])
            # the channel layout ("mono", "stereo", "5.1(side)") follows the rate
            info["channels"] = fields[i + 1] if i + 1 < len(fields) else None
    return info


def probe(path: str | os.PathLike[str]) -> MediaInfo:
    """Describe the first video and first audio stream of ``path``.

    Raises FileNotFoundError for a missing file and ValueError for a file
    ffmpeg cannot read as media.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"media file not found: {path}")
    import subprocess

    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
                          stdin=subprocess.DEVNULL, capture_output=True)
    text = proc.stderr.decode(errors="replace")
    if "Error opening input" in text or not re.search(_STREAM, text):
        reason = text.strip().splitlines()[-1] if text.strip() else "unreadable"
        raise ValueError(f"not a readable media file: {path} ({reason})")
    info: dict[str, Any] = {}
    m = re.search(_DURATION, text)
    if m:
        info["duration"] = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
    for kind, desc in re.findall(_STREAM, text):
        if kind == "Video" and "video_codec" not in info:
            info.update(_video_stream(_split_top(desc)))
        elif kind == "Audio" and "audio_codec" not in info:
            info.update(_audio_stream(_split_top(desc)))
    return MediaInfo(path=path, **info)


def probe_video(path: str | os.PathLike[str]) -> MediaInfo:
    """Probe ``path`` and insist it is a video with a known duration."""
    info = probe(path)
    if not info.has_video or info.duration is None:
        raise ValueError(f"not a video (no video stream with a duration): {path}")
    return info


def probe_audio(path: str | os.PathLike[str]) -> MediaInfo:
    """Probe ``path`` and insist it carries audio."""
    info = probe(path)
    if not info.has_audio:
        raise ValueError(f"no audio stream in {path}")
    return info


def audio_args(info: MediaInfo) -> list[str]:
    """Keep the input's audio in an MP4: copied when MP4 can hold it, else AAC; none if absent."""
    if not info.has_audio:
        return ["-an"]
    return ["-c:a", "copy" if info.audio_codec in MP4_AUDIO else "aac"]


def video_copy_args(info: MediaInfo) -> list[str]:
    """Copy the video stream when MP4 can carry it as it is, else re-encode to H.264."""
    if info.video_codec in MP4_VIDEO:
        return ["-c:v", "copy", "-movflags", "+faststart"]
    return list(H264_ARGS)


def has_filter(name: str) -> bool:
    """Whether the ffmpeg binary was built with filter ``name`` (e.g. libass' ``subtitles``)."""
    return name in _filters()


def _binary_state(path: str) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


@functools.lru_cache(maxsize=None)
def _filters() -> frozenset[str]:
    """The filters of the ffmpeg binary, remembered across runs per binary (its path, size and
    mtime) in ``$XDG_CACHE_HOME/aicp``: listing them starts ffmpeg, tens of milliseconds that
    ``aicp validate`` would pay on every call. A cache that cannot be read or written is skipped."""
    cache = entry_path("ffmpeg-filters")
    where = [os.environ.get("AICP_FFMPEG"), os.environ.get("IMAGEIO_FFMPEG_EXE"), sys.prefix]
    saved = read_entry(cache)
    try:
        if saved["where"] == where and _binary_state(saved["exe"]) == saved["state"]:
            return frozenset(saved["filters"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    import subprocess

    exe = ffmpeg_exe()
    out = subprocess.run([exe, "-hide_banner", "-filters"], stdin=subprocess.DEVNULL, capture_output=True,
                         text=True).stdout
    filters = frozenset(parts[1] for parts in map(str.split, out.splitlines()) if len(parts) > 1)
    write_entry(cache, {"where": where, "exe": exe, "state": _binary_state(exe), "filters": sorted(filters)})
    return filters
