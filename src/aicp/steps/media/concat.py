"""``concat_videos``: one MP4 from a list of clips (the outputs of a parallel group, or params.videos).

Clips that already share codec, size, frame rate, pixel format and audio
layout are joined by the concat demuxer without re-encoding (fast, lossless).
Otherwise every clip is scaled/padded to the first one's size and frame rate
and re-encoded; clips without sound get silence so the audio stays in sync.
"""

from __future__ import annotations

from pathlib import Path

from ._ffmpeg import H264_ARGS, MP4_AUDIO, MP4_VIDEO, MediaInfo, probe_video, run_ffmpeg
from ._io import atomic_outputs, input_paths, result
from ._params import (Problem, check_number, check_resolution, even, parse_resolution,
                      raise_problems)

TYPE_CHECKING = False  # typing costs ~5 ms at start-up: for the type checker only
if TYPE_CHECKING:
    from typing import Any

_RATE, _LAYOUT = 48000, "stereo"


def check(params: dict[str, Any], model: str | None = None) -> list[Problem]:
    problems = check_resolution(params) + check_number(params, "fps", maximum=120)
    videos = params.get("videos")
    if videos is not None and (not isinstance(videos, list) or not videos
                               or not all(isinstance(v, str) for v in videos)):
        problems.append(("params.videos", "must be a non-empty list of video paths"))
    return problems


def _signature(info: MediaInfo) -> tuple[Any, ...]:
    return (info.video_codec, info.width, info.height, info.fps, info.pix_fmt,
            info.audio_codec, info.sample_rate, info.channels)


def can_copy(infos: list[MediaInfo], params: dict[str, Any]) -> bool:
    """Whether the clips can be joined as they are: same format, MP4-compatible, nothing asked to change."""
    first = infos[0]
    return (not params.get("resolution") and not params.get("fps")
            and all(_signature(i) == _signature(first) for i in infos)
            and first.video_codec in MP4_VIDEO
            and (not first.has_audio or first.audio_codec in MP4_AUDIO))


def _copy_args(paths: list[Path], list_file: Path) -> list[Any]:
    def quote(p: Path) -> str:
        return "'" + str(p).replace("'", "'\\''") + "'"

    list_file.write_text("".join(f"file {quote(p)}\n" for p in paths))
    return ["-f", "concat", "-safe", "0", "-i", list_file, "-map", "0",
            "-c", "copy", "-movflags", "+faststart"]


def _reencode_args(paths: list[Path], infos: list[MediaInfo], width: int, height: int,
                   fps: float) -> list[Any]:
    """Normalise every clip (size, fps, pixel format, audio layout), then the concat filter.

    Each clip's streams are padded/trimmed to the clip's duration (last frame
    held, silence added) so that sound and picture stay aligned across joins.
    """
    with_audio = any(i.has_audio for i in infos)
    chains, labels = [], []
    for n, info in enumerate(infos):
        chains.append(f"[{n}:v:0]scale={width}:{height}:force_original_aspect_ratio=decrease,"
                      f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1,fps={fps},"
                      f"format=yuv420p,tpad=stop_mode=clone:stop_duration={info.duration},"
                      f"trim=duration={info.duration}[v{n}]")
        labels.append(f"[v{n}]")
        if with_audio:
            src = (f"[{n}:a:0]aresample={_RATE}," if info.has_audio
                   else f"anullsrc=r={_RATE}:cl={_LAYOUT},")
            chains.append(f"{src}aformat=sample_rates={_RATE}:channel_layouts={_LAYOUT},"
                          f"apad,atrim=duration={info.duration}[a{n}]")
            labels.append(f"[a{n}]")
    outs = "[v][a]" if with_audio else "[v]"
    graph = ";".join(chains) + ";" + "".join(labels) + (
        f"concat=n={len(infos)}:v=1:a={int(with_audio)}{outs}")
    inputs = [arg for p in paths for arg in ("-i", p)]
    maps = ["-map", "[v]"] + (["-map", "[a]", "-c:a", "aac"] if with_audio else [])
    return [*inputs, "-filter_complex", graph, *maps, *H264_ARGS]


def run(ctx: Any) -> dict[str, Any]:
    raise_problems(check(ctx.params, ctx.model))
    paths = input_paths(ctx, "videos", "input videos")
    infos = [probe_video(p) for p in paths]
    total = sum(i.duration or 0 for i in infos)
    copy = can_copy(infos, ctx.params)
    first = infos[0]
    if ctx.params.get("resolution"):
        width, height = parse_resolution(ctx.params["resolution"], (first.width, first.height))
    else:
        width, height = even(first.width), even(first.height)
    fps = float(ctx.params.get("fps") or first.fps or 25)
    import tempfile  # the worker's: check() runs in validate

    with tempfile.TemporaryDirectory(prefix="aicp-concat-") as scratch, \
            atomic_outputs(ctx, [("mp4", "")]) as (tmp,):
        args = (_copy_args(paths, Path(scratch) / "list.txt") if copy
                else _reencode_args(paths, infos, width, height, fps))
        run_ffmpeg([*args, tmp], ctx, duration=total,
                   message="joining clips" if copy else "re-encoding clips")
    final = ctx.output_path("mp4")
    return result(final, [final], clips=len(paths), duration=total, reencoded=not copy,
                  width=first.width if copy else width, height=first.height if copy else height)
