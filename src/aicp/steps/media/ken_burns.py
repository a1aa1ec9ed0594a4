"""``image_to_video`` / ``ken_burns``: a slow zoom (and optional pan) over a still, as H.264 MP4.

A still becomes motion without any model. ffmpeg's ``zoompan`` crops at whole
pixels, which makes slow zooms judder; the still is therefore first scaled up
(supersampled) so each pixel step is a fraction of an output pixel.
"""

from __future__ import annotations


from ._ffmpeg import H264_ARGS, probe, run_ffmpeg
from ._io import atomic_outputs, first_input, result
from ._params import (Problem, aspect_of, check_aspect, check_choice, check_number,
                      check_resolution, even, parse_resolution, raise_problems)

TYPE_CHECKING = False  # typing costs ~5 ms at start-up: for the type checker only
if TYPE_CHECKING:
    from typing import Any

DEFAULTS = {"duration": 5.0, "fps": 25, "zoom": 1.2, "direction": "in", "pan": "center"}
# Where the crop window drifts to while zooming: (x, y) of its end position, 0..1.
PANS = {"center": (0.5, 0.5), "left": (0.0, 0.5), "right": (1.0, 0.5),
        "up": (0.5, 0.0), "down": (0.5, 1.0)}
_SUPERSAMPLE_MAX = 8192  # px: enough for smooth motion, bounded memory for huge stills


def check(params: dict[str, Any], model: str | None = None) -> list[Problem]:
    return (check_number(params, "duration", maximum=3600)
            + check_number(params, "fps", maximum=120)
            + check_number(params, "zoom", minimum=1, inclusive=True, maximum=10)
            + check_choice(params, "direction", ("in", "out"))
            + check_choice(params, "pan", PANS)
            + check_resolution(params) + check_aspect(params))


def output_size(params: dict[str, Any], src_w: int, src_h: int) -> tuple[int, int]:
    """params.resolution (a short side follows aspect_ratio, else the still's shape), else the still's size."""
    aspect = aspect_of(params) if params.get("aspect_ratio") else (src_w, src_h)
    if params.get("resolution"):
        return parse_resolution(params["resolution"], aspect)
    return even(src_w), even(src_h)


def zoompan_filter(width: int, height: int, frames: int, fps: float, zoom: float,
                   direction: str, pan: str) -> str:
    """Fill the frame (crop, no distortion), supersample, then zoom/pan linearly over ``frames``."""
    scale = max(1, min(4, _SUPERSAMPLE_MAX // max(width, height)))
    sw, sh = width * scale, height * scale
    progress = f"(on/{max(1, frames - 1)})"
    if direction == "out":
        progress = f"(1-{progress})"
    px, py = PANS[pan]
    # the window starts centred and drifts to the pan target as it zooms in
    x = f"(iw-iw/zoom)*(0.5+({px}-0.5)*{progress})"
    y = f"(ih-ih/zoom)*(0.5+({py}-0.5)*{progress})"
    return (f"scale={sw}:{sh}:force_original_aspect_ratio=increase:flags=lanczos,"
            f"crop={sw}:{sh},setsar=1,"
            f"zoompan=z='1+{zoom - 1}*{progress}':x='{x}':y='{y}'"
            f":d={frames}:s={width}x{height}:fps={fps},format=yuv420p")


def run(ctx: Any) -> dict[str, Any]:
    raise_problems(check(ctx.params, ctx.model))
    p = {**DEFAULTS, **{k: v for k, v in ctx.params.items() if v is not None}}
    still = first_input(ctx, "input image")
    info = probe(still)
    if not info.has_video or not info.width:
        raise ValueError(f"not an image: {still}")
    width, height = output_size(p, info.width, info.height)
    fps, duration = float(p["fps"]), float(p["duration"])
    frames = max(1, round(duration * fps))
    vf = zoompan_filter(width, height, frames, fps, float(p["zoom"]), p["direction"], p["pan"])
    with atomic_outputs(ctx, [("mp4", "")]) as (tmp,):
        run_ffmpeg(["-i", still, "-vf", vf, "-frames:v", frames, "-r", fps, *H264_ARGS, tmp],
                   ctx, duration=frames / fps, message="ken burns")
    final = ctx.output_path("mp4")
    return result(final, [final], width=width, height=height, fps=fps,
                  frames=frames, duration=frames / fps)
