"""``split_image``: a grid image (e.g. a 2x2 storyboard from an image model) cut into tiles.

Tiles are listed row by row, so step N+1 (which takes the first of a list) gets
the top-left panel. Edges are spread evenly when the size does not divide.
"""

from __future__ import annotations


from ._io import atomic_outputs, first_input, image_format, open_image, result, save_image
from ._params import Problem, check_number, raise_problems

TYPE_CHECKING = False  # typing costs ~5 ms at start-up: for the type checker only
if TYPE_CHECKING:
    from typing import Any


def check(params: dict[str, Any], model: str | None = None) -> list[Problem]:
    return (check_number(params, "rows", minimum=1, inclusive=True, integer=True, maximum=64)
            + check_number(params, "cols", minimum=1, inclusive=True, integer=True, maximum=64))


def boxes(width: int, height: int, rows: int, cols: int) -> list[tuple[int, int, int, int]]:
    """Crop boxes (left, top, right, bottom), row-major, covering the image exactly."""
    xs = [round(c * width / cols) for c in range(cols + 1)]
    ys = [round(r * height / rows) for r in range(rows + 1)]
    return [(xs[c], ys[r], xs[c + 1], ys[r + 1]) for r in range(rows) for c in range(cols)]


def run(ctx: Any) -> dict[str, Any]:
    raise_problems(check(ctx.params, ctx.model))
    rows, cols = int(ctx.params.get("rows") or 2), int(ctx.params.get("cols") or 2)
    source = first_input(ctx, "input image")
    image = open_image(source)
    if rows > image.height or cols > image.width:
        raise ValueError(f"cannot cut a {image.width}x{image.height} image into {rows}x{cols} tiles")
    ext, fmt = image_format(source)
    specs = [(ext, f"_{i + 1}") for i in range(rows * cols)]
    with atomic_outputs(ctx, specs) as tmps:
        for i, (tmp, box) in enumerate(zip(tmps, boxes(image.width, image.height, rows, cols))):
            save_image(image.crop(box), tmp, fmt)
            ctx.progress((i + 1) / len(tmps), f"tile {i + 1}/{len(tmps)}")
    tiles = [ctx.output_path(ext, suffix) for ext, suffix in specs]
    return result(tiles, tiles, rows=rows, cols=cols, count=len(tiles))
