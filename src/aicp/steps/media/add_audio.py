"""``add_audio``: mux an audio file (narration, music) into the input video as its only track.

The audio is ``params.audio`` or, by default, the most recent audio an earlier
step produced (e.g. text_to_speech). Length policy: ``shortest`` cuts both to
the shorter (default), ``loop`` repeats the audio over the whole video, ``pad``
keeps the whole video and fills the end with silence. The video stream is
copied, not re-encoded, whenever MP4 can carry it and it is not cut.
"""

from __future__ import annotations

from pathlib import Path

from ._ffmpeg import H264_ARGS, probe, probe_audio, probe_video, run_ffmpeg, video_copy_args
from ._io import atomic_outputs, first_input, resolve_path, result
from ._params import Problem, check_choice, check_paths, raise_problems

TYPE_CHECKING = False  # typing costs ~5 ms at start-up: for the type checker only
if TYPE_CHECKING:
    from typing import Any

POLICIES = ("shortest", "loop", "pad")


def check(params: dict[str, Any], model: str | None = None) -> list[Problem]:
    return check_choice(params, "policy", POLICIES) + check_paths(params, "audio")


def _audio_source(ctx: Any) -> Any:
    if ctx.params.get("audio"):
        return resolve_path(ctx, ctx.params["audio"], "params.audio")
    if ctx.latest.get("audio"):
        return resolve_path(ctx, ctx.latest["audio"], "latest audio output")
    raise ValueError("no audio: set params.audio or put an audio step (e.g. text_to_speech) before this one")


def run(ctx: Any) -> dict[str, Any]:
    raise_problems(check(ctx.params, ctx.model))
    policy = ctx.params.get("policy") or "shortest"
    video = probe_video(first_input(ctx, "input video"))
    audio = probe_audio(_audio_source(ctx))
    vdur = float(video.duration or 0)
    # An explicit -t, not -shortest: -shortest cuts a copied video stream early, and
    # streams of unequal length make a later stream-copy concat drift.
    if policy == "shortest":
        audio_in: list[str | Path]
        audio_in, expected = ["-i", audio.path], min(vdur, audio.duration or vdur)
    elif policy == "loop":
        audio_in, expected = ["-stream_loop", "-1", "-i", audio.path], vdur
    else:  # pad
        audio_in, expected = ["-i", audio.path, "-af", "apad"], vdur
    # Cutting a copied stream stops at a packet boundary (B-frames: a few frames late);
    # a cut picture is therefore re-encoded so sound and picture end together.
    cuts_video = expected < vdur - 0.5 / (video.fps or 25)
    vcodec = list(H264_ARGS) if cuts_video else video_copy_args(video)
    with atomic_outputs(ctx, [("mp4", "")]) as (tmp,):
        run_ffmpeg(["-i", video.path, *audio_in, "-map", "0:v:0", "-map", "1:a:0",
                    *vcodec, "-c:a", "aac", "-t", f"{expected:.3f}", tmp],
                   ctx, duration=expected, message=f"adding audio ({policy})")
        duration = probe(tmp).duration
    final = ctx.output_path("mp4")
    return result(final, [final], duration=duration, policy=policy, audio=str(audio.path))
