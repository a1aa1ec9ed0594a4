"""``upscale_image`` / ``upscale_video`` with model ``lanczos``: plain resampling, no model.

Both compute the new size the same way (``factor``, default 2, or a
``target_width`` keeping the aspect ratio); video sizes are kept even for H.264.
"""

from __future__ import annotations


from ._ffmpeg import H264_ARGS, audio_args, probe_video, run_ffmpeg
from ._io import atomic_outputs, first_input, image_format, open_image, result, save_image
from ._params import Problem, check_number, even, raise_problems

TYPE_CHECKING = False  # typing costs ~5 ms at start-up: for the type checker only
if TYPE_CHECKING:
    from typing import Any

_MAX_SIDE = 16384  # px: past this the output is almost surely a typo, not a wish


def check(params: dict[str, Any], model: str | None = None) -> list[Problem]:
    problems = (check_number(params, "factor", maximum=16)
                + check_number(params, "target_width", minimum=2, inclusive=True,
                               integer=True, maximum=_MAX_SIDE))
    if params.get("factor") is not None and params.get("target_width") is not None:
        problems.append(("params.factor", "give factor or target_width, not both"))
    return problems


def target_size(params: dict[str, Any], width: int, height: int,
                even_sides: bool = False) -> tuple[int, int]:
    """The new (width, height) from ``target_width`` or ``factor``; aspect ratio kept."""
    if params.get("target_width"):
        scale = int(params["target_width"]) / width
    else:
        scale = float(params.get("factor") or 2)
    w, h = width * scale, height * scale
    size = (even(w), even(h)) if even_sides else (max(1, round(w)), max(1, round(h)))
    if max(size) > _MAX_SIDE:
        raise ValueError(f"upscaled size {size[0]}x{size[1]} exceeds {_MAX_SIDE} px")
    return size


def run_image(ctx: Any) -> dict[str, Any]:
    from PIL import Image

    raise_problems(check(ctx.params, ctx.model))
    source = first_input(ctx, "input image")
    image = open_image(source)
    width, height = target_size(ctx.params, image.width, image.height)
    ext, fmt = image_format(source)
    with atomic_outputs(ctx, [(ext, "")]) as (tmp,):
        save_image(image.resize((width, height), Image.Resampling.LANCZOS), tmp, fmt)
    final = ctx.output_path(ext)
    ctx.progress(1.0, "upscaled")
    return result(final, [final], width=width, height=height)


def run_video(ctx: Any) -> dict[str, Any]:
    raise_problems(check(ctx.params, ctx.model))
    source = first_input(ctx, "input video")
    info = probe_video(source)
    width, height = target_size(ctx.params, info.width, info.height, even_sides=True)
    with atomic_outputs(ctx, [("mp4", "")]) as (tmp,):
        run_ffmpeg(["-i", source, "-map", "0:v:0", "-map", "0:a:0?",
                    "-vf", f"scale={width}:{height}:flags=lanczos,setsar=1",
                    *H264_ARGS, *audio_args(info), tmp],
                   ctx, duration=info.duration, message="upscaling")
    final = ctx.output_path("mp4")
    return result(final, [final], width=width, height=height, duration=info.duration)
