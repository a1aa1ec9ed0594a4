"""``generate_subtitles``: SRT and WebVTT cues from text, timed by speech rate or fitted to a video.

The text is ``params.text`` (the old tool's ``subtitle_text``) or the chain's
latest text (usually the prompt or a script). Cues are cut at sentence ends and
kept short (two lines of ~42 characters). Timing: fitted over the duration of
the input video (or of ``params.fit_to``), each cue in proportion to its words;
or, with no media or when ``words_per_minute`` (or the old ``words_per_second``)
is given, read at that rate (160 words a minute by default).

The step passes its input video through as ``output`` and lists the subtitle
files: SRT and WebVTT, or only the one ``format`` names (as the old tool wrote),
in the step's output folder or in ``params.output_dir``. ``burn_in: true``
instead outputs a new video with the cues drawn in (needs an ffmpeg built with
libass; Pillow's bundled font is used, so no system fonts are needed).
"""

from __future__ import annotations

import re
from pathlib import Path

from ._ffmpeg import H264_ARGS, MediaInfo, audio_args, has_filter, probe, probe_video, run_ffmpeg
from ._io import input_paths, resolve_path, result
from ._params import Problem, check_choice, check_number, check_paths, raise_problems

TYPE_CHECKING = False  # typing costs ~5 ms at start-up: for the type checker only
if TYPE_CHECKING:
    from typing import Any

Cue = tuple[float, float, str]
DEFAULT_WPM = 160
_LINE, _LINES = 42, 2
_MIN_CUE = 0.8  # s: shorter cues cannot be read


FORMATS = ("srt", "vtt")
_RATES = ("words_per_minute", "words_per_second", "fit_to")


def check(params: dict[str, Any], model: str | None = None) -> list[Problem]:
    problems = (check_number(params, "words_per_minute", maximum=1000)
                + check_number(params, "words_per_second", maximum=1000 / 60)
                + check_number(params, "font_size", maximum=200)
                + check_choice(params, "format", FORMATS)
                + check_paths(params, "fit_to", "output_dir"))
    given = [k for k in _RATES if params.get(k) is not None]
    if len(given) > 1:
        problems.append((f"params.{given[1]}", f"give one of {', '.join(_RATES)}, not {' and '.join(given)}"))
    if params.get("burn_in") and not has_filter("subtitles"):
        problems.append(("params.burn_in", "this ffmpeg has no 'subtitles' filter (libass); "
                         "set AICP_FFMPEG to a build with libass or drop burn_in"))
    return problems


def chunks(text: str) -> list[str]:
    """Cue texts: sentences, split further so each fits in two lines."""
    from textwrap import wrap  # here, as everything that only runs in the worker: check() runs in validate

    sentences = re.split(r"(?<=[.!?…])\s+", " ".join(text.split()))
    out: list[str] = []
    for sentence in filter(None, sentences):
        lines = wrap(sentence, _LINE, break_long_words=True)
        out += ["\n".join(lines[i:i + _LINES]) for i in range(0, len(lines), _LINES)]
    return out


def timed(texts: list[str], fit_to: float | None, wpm: float) -> list[Cue]:
    """Consecutive cues: spread over ``fit_to`` seconds by word count, or at ``wpm`` words a minute."""
    words = [max(1, len(t.split())) for t in texts]
    if fit_to:
        # every cue gets a readable minimum, the rest of the time goes by word count
        base = min(_MIN_CUE, fit_to / len(texts))
        lengths = [base + (fit_to - base * len(texts)) * w / sum(words) for w in words]
    else:
        lengths = [max(_MIN_CUE, w * 60.0 / wpm) for w in words]
    cues, start = [], 0.0
    for text, length in zip(texts, lengths):
        cues.append((start, start + length, text))
        start += length
    return cues


def _stamp(seconds: float, sep: str) -> str:
    ms = int(round(seconds * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


def to_srt(cues: list[Cue]) -> str:
    return "".join(f"{n}\n{_stamp(a, ',')} --> {_stamp(b, ',')}\n{t}\n\n"
                   for n, (a, b, t) in enumerate(cues, start=1))


def to_vtt(cues: list[Cue]) -> str:
    return "WEBVTT\n\n" + "".join(f"{_stamp(a, '.')} --> {_stamp(b, '.')}\n{t}\n\n"
                                  for a, b, t in cues)


def _text(ctx: Any) -> str:
    for value in (ctx.params.get("text"), ctx.params.get("subtitle_text"), ctx.latest.get("text")):
        if isinstance(value, str) and value.strip():
            return value
    raise ValueError("no text to subtitle: set params.text or run after a step with text output")


def _rate(params: dict[str, Any]) -> float | None:
    """Words a minute, when the chain asks for a reading rate instead of fitting the cues to the video."""
    if params.get("words_per_minute") is not None:
        return float(params["words_per_minute"])
    if params.get("words_per_second") is not None:
        return 60.0 * float(params["words_per_second"])
    return None


def _finals(ctx: Any, specs: list[tuple[str, str]]) -> list[Path]:
    """Where the files go: the step's output folder, or ``params.output_dir`` (relative: to the
    current directory, as the chain's own output_dir)."""
    paths = [ctx.output_path(ext, suffix) for ext, suffix in specs]
    folder = ctx.params.get("output_dir")
    if folder is None:
        return paths
    Path(folder).mkdir(parents=True, exist_ok=True)
    return [Path(folder).resolve() / p.name for p in paths]


def _burn(ctx: Any, video: MediaInfo, srt: str, tmp: Path) -> None:
    """Draw the cues into a new video; run in a scratch folder so filter arguments need no escaping."""
    from PIL import ImageFont

    size = int(ctx.params.get("font_size") or 18)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="aicp-subs-") as scratch:
        (Path(scratch) / "fonts").mkdir()
        font = ImageFont.load_default(size=size)
        if not isinstance(font, ImageFont.FreeTypeFont):  # Pillow's wheels bundle FreeType
            raise RuntimeError("burning in subtitles needs Pillow built with FreeType")
        (Path(scratch) / "fonts" / "Aileron.ttf").write_bytes(font.font_bytes)
        (Path(scratch) / "subs.srt").write_text(srt, encoding="utf-8")
        vf = f"subtitles=subs.srt:fontsdir=fonts:force_style='FontName=Aileron,FontSize={size}'"
        run_ffmpeg(["-i", video.path, "-map", "0:v:0", "-map", "0:a:0?", "-vf", vf,
                    *H264_ARGS, *audio_args(video), tmp.resolve()],
                   ctx, duration=video.duration, message="burning in subtitles", cwd=scratch)


def _fit(ctx: Any, video: MediaInfo | None, rate: float | None) -> float | None:
    """The seconds to spread the cues over: params.fit_to's duration, else the video's unless a
    reading rate was asked for; None: read at the rate."""
    if ctx.params.get("fit_to"):
        fit = probe(resolve_path(ctx, ctx.params["fit_to"], "params.fit_to")).duration
        if not fit:
            raise ValueError(f"params.fit_to has no duration: {ctx.params['fit_to']}")
        return fit
    return video.duration if video is not None and rate is None else None


def run(ctx: Any) -> dict[str, Any]:
    from contextlib import ExitStack

    from aicp._context import AtomicOutput

    raise_problems(check(ctx.params, ctx.model))
    video = probe_video(input_paths(ctx, what="input video")[0]) if ctx.input else None
    if ctx.params.get("burn_in") and video is None:
        raise ValueError("params.burn_in needs an input video")
    rate = _rate(ctx.params)
    texts = chunks(_text(ctx))
    if not texts:
        raise ValueError("the text to subtitle is empty")
    cues = timed(texts, _fit(ctx, video, rate), rate or DEFAULT_WPM)
    srt, vtt = to_srt(cues), to_vtt(cues)
    formats = [ctx.params["format"]] if ctx.params.get("format") else list(FORMATS)
    burn = bool(ctx.params.get("burn_in"))
    files = _finals(ctx, [(ext, "") for ext in formats] + ([("mp4", "")] if burn else []))
    with ExitStack() as stack:
        tmps = [stack.enter_context(AtomicOutput(f)) for f in files]
        for tmp, ext in zip(tmps, formats):
            tmp.write_text(srt if ext == "srt" else vtt, encoding="utf-8")
        if burn and video is not None:  # burn_in: checked above that there is a video
            _burn(ctx, video, srt, tmps[-1])
    subs = [str(f) for f in files[:len(formats)]]
    main = files[-1] if burn else (video.path if video else files[0])
    return result(main, files, subtitles=subs, subtitle_path=subs[0], format=formats[0] if len(formats) == 1
                  else None, cues=len(cues), duration=cues[-1][1], burned_in=burn)
