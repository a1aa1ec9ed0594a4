"""``text_to_image`` / ``title_card``: the prompt set as a designed title card (PNG).

Useful offline and in tests: a real image from text, with no model and no
system fonts (Pillow's bundled TrueType font is used unless params.font names
another). Long text is wrapped and, if it still does not fit, set smaller.
"""

from __future__ import annotations


from ._io import atomic_outputs, input_text, resolve_path, result
from ._params import (Problem, aspect_of, check_aspect, check_number, check_paths,
                      check_resolution, parse_resolution, raise_problems)

TYPE_CHECKING = False  # typing costs ~5 ms at start-up: for the type checker only
if TYPE_CHECKING:
    from typing import Any

DEFAULTS = {"background": "#0f172a", "color": "#f8fafc", "accent": "#38bdf8", "resolution": 720}
_MIN_FONT = 10


def check(params: dict[str, Any], model: str | None = None) -> list[Problem]:
    problems = check_aspect(params) + check_resolution(params) + check_paths(params, "font")
    problems += check_number(params, "font_size", minimum=1, inclusive=True)
    for key in ("background", "color", "accent"):
        if params.get(key) is not None and not _is_colour(params[key]):
            problems.append((f"params.{key}", f"is not a colour Pillow knows: {params[key]!r}"))
    return problems


_HEX_COLOUR = frozenset("0123456789abcdefABCDEF")


def _is_colour(value: Any) -> bool:
    text = str(value)
    if text.startswith("#") and len(text) in (4, 5, 7, 9) and set(text[1:]) <= _HEX_COLOUR:
        return True  # #rgb, #rgba, #rrggbb, #rrggbbaa: Pillow takes them all; no need to import it
    from PIL import ImageColor

    try:
        ImageColor.getrgb(str(value))
    except ValueError:
        return False
    return True


def _font(ctx: Any, size: int) -> Any:
    from PIL import ImageFont

    if ctx.params.get("font"):
        return ImageFont.truetype(str(resolve_path(ctx, ctx.params["font"], "params.font")), size)
    return ImageFont.load_default(size=size)


def _pieces(word: str, font: Any, max_width: float) -> list[str]:
    """A word as it can be set: whole, or cut by characters when wider than a line."""
    if font.getlength(word) <= max_width:
        return [word]
    pieces, cur = [], ""
    for ch in word:
        if cur and font.getlength(cur + ch) > max_width:
            pieces.append(cur)
            cur = ""
        cur += ch
    return pieces + [cur]


def _wrap(text: str, font: Any, max_width: float) -> list[str]:
    """Greedy word wrap by measured width, keeping the text's own line breaks."""
    lines: list[str] = []
    for paragraph in text.splitlines():
        line = ""
        for word in paragraph.split():
            for piece in _pieces(word, font, max_width):
                candidate = f"{line} {piece}".strip()
                if line and font.getlength(candidate) > max_width:
                    lines.append(line)
                    candidate = piece
                line = candidate
        lines.append(line)
    return lines or [""]


def _fit(ctx: Any, text: str, width: int, height: int) -> tuple[Any, list[str]]:
    """The largest font (up to font_size) at which the wrapped text fits the safe area."""
    size = int(ctx.params.get("font_size") or min(width, height) * 0.11)
    while True:
        font = _font(ctx, size)
        lines = _wrap(text, font, width * 0.84)
        if size <= _MIN_FONT or len(lines) * size * 1.25 <= height * 0.7:
            return font, lines
        size = max(_MIN_FONT, int(size * 0.9))


def _background(size: tuple[int, int], colour: str) -> Any:
    """A vertical gradient from ``colour`` to a darker shade of it: flat cards look unfinished."""
    from PIL import Image, ImageColor

    top = Image.new("RGB", size, ImageColor.getrgb(colour))
    bottom = Image.blend(top, Image.new("RGB", size, (0, 0, 0)), 0.45)
    mask = Image.linear_gradient("L").resize(size)
    return Image.composite(bottom, top, mask)


def render(ctx: Any, text: str, width: int, height: int) -> Any:
    """Draw the card: gradient, soft-shadowed centred text, an accent rule, optional subtitle."""
    from PIL import Image, ImageDraw, ImageFilter

    p = {**DEFAULTS, **{k: v for k, v in ctx.params.items() if v is not None}}
    card = _background((width, height), p["background"]).convert("RGBA")
    font, lines = _fit(ctx, text, width, height)
    line_h = int(font.size * 1.25)
    rule_h, gap = max(2, height // 120), int(font.size * 0.5)
    sub_font = _font(ctx, max(_MIN_FONT, int(font.size * 0.45))) if p.get("subtitle") else None
    block_h = len(lines) * line_h + gap + rule_h + (gap + sub_font.size if sub_font else 0)
    y = (height - block_h) // 2

    shadow = Image.new("RGBA", card.size, (0, 0, 0, 0))
    text_layer = Image.new("RGBA", card.size, (0, 0, 0, 0))
    sd, td = ImageDraw.Draw(shadow), ImageDraw.Draw(text_layer)
    offset = max(1, font.size // 18)
    for i, line in enumerate(lines):
        x = (width - font.getlength(line)) / 2
        sd.text((x + offset, y + i * line_h + offset), line, font=font, fill=(0, 0, 0, 170))
        td.text((x, y + i * line_h), line, font=font, fill=p["color"])
    y += len(lines) * line_h + gap
    rule_w = max(4, width // 8)
    td.rectangle([(width - rule_w) // 2, y, (width + rule_w) // 2, y + rule_h], fill=p["accent"])
    if sub_font:
        sub = str(p["subtitle"])
        td.text(((width - sub_font.getlength(sub)) / 2, y + rule_h + gap), sub,
                font=sub_font, fill=p["color"])
    card.alpha_composite(shadow.filter(ImageFilter.GaussianBlur(offset * 2)))
    card.alpha_composite(text_layer)
    return card.convert("RGB")


def run(ctx: Any) -> dict[str, Any]:
    raise_problems(check(ctx.params, ctx.model))
    text = input_text(ctx)
    width, height = parse_resolution(ctx.params.get("resolution") or DEFAULTS["resolution"],
                                     aspect_of(ctx.params))
    ctx.progress(0.1, "rendering title card")
    image = render(ctx, text, width, height)
    with atomic_outputs(ctx, [("png", "")]) as (tmp,):
        image.save(tmp, format="PNG")
    final = ctx.output_path("png")
    ctx.progress(1.0, "title card written")
    return result(final, [final], width=width, height=height, text=text)
