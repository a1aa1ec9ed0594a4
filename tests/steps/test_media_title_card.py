"""text_to_image / title_card: a designed card from text, at the asked size."""

from __future__ import annotations

import pytest
from PIL import Image, ImageFont

from aicp.steps.media import title_card



def _bright_pixels(path) -> int:
    return sum(1 for px in Image.open(path).convert("L").tobytes() if px > 200)


def test_default_card_is_720p_png_with_text(step):
    run = step("text_to_image", "Hello, aicp", model="title_card")
    res = title_card.run(run.ctx)
    out = run.ctx.output_dir / "step_1_text_to_image.png"
    assert res["output"] == str(out) and res["outputs"] == [str(out)]
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size == (1280, 720)
    assert _bright_pixels(out) > 2000  # the text is drawn in light on a dark card
    assert run.progress()[-1] == 1.0


@pytest.mark.parametrize("params, size", [
    ({"aspect_ratio": "9:16", "resolution": 320}, (320, 568)),
    ({"aspect_ratio": "1:1", "resolution": 256}, (256, 256)),
    ({"aspect_ratio": "4:3", "resolution": 240}, (320, 240)),
    ({"aspect_ratio": "3:4", "resolution": "240p"}, (240, 320)),
    ({"resolution": "400x200"}, (400, 200)),
])
def test_sizes_follow_aspect_and_resolution(step, params, size):
    res = title_card.run(step("text_to_image", "Title", params).ctx)
    assert Image.open(res["output"]).size == size == (res["width"], res["height"])


def test_params_text_colours_and_subtitle(step):
    params = {"text": "Red on white", "background": "white", "color": "#ff0000",
              "subtitle": "part two", "resolution": 240}
    res = title_card.run(step("text_to_image", None, params).ctx)
    img = Image.open(res["output"]).convert("RGB")
    assert min(img.getpixel((2, 2))) >= 250
    raw = img.tobytes()
    assert any(raw[i] > 200 and raw[i + 1] < 60 and raw[i + 2] < 60 for i in range(0, len(raw), 3))
    assert res["text"] == "Red on white"


def test_long_text_is_wrapped_inside_the_margins(step):
    text = "a rather long title that cannot possibly fit on one line of a small card " * 3
    res = title_card.run(step("text_to_image", text, {"resolution": "320x180"}).ctx)
    img = Image.open(res["output"]).convert("L")
    lit_columns = [x for x in range(img.width) if any(img.getpixel((x, y)) > 200 for y in range(img.height))]
    assert lit_columns and min(lit_columns) >= 320 * 0.05 and max(lit_columns) <= 320 * 0.95


def test_wrap_cuts_words_wider_than_a_line():
    font = ImageFont.load_default(size=20)
    lines = title_card._wrap("x" * 200 + " tail\nsecond paragraph", font, 200)
    assert all(font.getlength(line) <= 200 for line in lines)
    assert "".join(lines).replace(" ", "").startswith("x" * 200)
    assert lines[-1] == "second paragraph"


@pytest.mark.parametrize("params, where", [
    ({"aspect_ratio": "2:1"}, "params.aspect_ratio"),
    ({"resolution": "huge"}, "params.resolution"),
    ({"font_size": 0}, "params.font_size"),
    ({"background": "not-a-colour"}, "params.background"),
    ({"color": "#12345"}, "params.color"),
])
def test_bad_params_are_reported_and_fail_the_step(step, params, where, probes):
    assert [p for p, _ in title_card.check(params, "title_card")] == [where]
    run = step("text_to_image", "Hello", params)
    with pytest.raises(ValueError, match=where.replace(".", r"\.")):
        title_card.run(run.ctx)
    assert probes.outputs_in(run.ctx.output_dir) == []


def test_no_text_fails_clearly(step):
    with pytest.raises(ValueError, match="no text"):
        title_card.run(step("text_to_image", None).ctx)


def test_custom_font_path_resolves_against_chain_dir(step, tmp_path):
    (tmp_path / "f.ttf").write_bytes(ImageFont.load_default(size=10).font_bytes)
    res = title_card.run(step("text_to_image", "Font", {"font": "f.ttf", "resolution": 120}).ctx)
    assert Image.open(res["output"]).size == (214, 120)
    with pytest.raises(FileNotFoundError, match="missing.ttf"):
        title_card.run(step("text_to_image", "Font", {"font": "missing.ttf"}, n=1).ctx)
