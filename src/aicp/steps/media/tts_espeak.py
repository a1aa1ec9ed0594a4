"""``text_to_speech`` / ``espeak``: narration from text with the espeak-ng program, offline.

Robotic but free, instant and deterministic — good for drafts and tests of
chains that add narration. The WAV espeak writes is the output, or it is
converted with ffmpeg when ``params.format`` asks for mp3 or m4a.
"""

from __future__ import annotations

from ._ffmpeg import run_ffmpeg
from ._io import atomic_outputs, input_text, result
from ._params import Problem, check_choice, check_number, raise_problems

TYPE_CHECKING = False  # typing costs ~5 ms at start-up: for the type checker only
if TYPE_CHECKING:
    from typing import Any

PROGRAMS = ("espeak-ng", "espeak")
FORMATS = {"wav": [], "mp3": ["-c:a", "libmp3lame", "-q:a", "4"], "m4a": ["-c:a", "aac"]}


def _program() -> str | None:
    import shutil  # here and below, not at the top: validate imports this module for available()

    return next((p for p in map(shutil.which, PROGRAMS) if p), None)


def available() -> str | None:
    """None when espeak-ng (or espeak) is on PATH, else how to install it."""
    if _program():
        return None
    return "text_to_speech/espeak needs the espeak-ng program: apt-get install espeak-ng"


def check(params: dict[str, Any], model: str | None = None) -> list[Problem]:
    problems = (check_number(params, "speed", minimum=80, inclusive=True, maximum=500)
                + check_number(params, "pitch", minimum=0, inclusive=True, maximum=99)
                + check_choice(params, "format", FORMATS))
    voice = params.get("voice")
    if voice is not None and (not isinstance(voice, str) or not voice.strip() or voice.startswith("-")):
        problems.append(("params.voice", f"must be a voice name like 'en' or 'en-us', got {voice!r}"))
    return problems


def _speak(program: str, text: str, params: dict[str, Any], wav: Any) -> None:
    """espeak reads the text on stdin, so long or dash-leading text is never taken for options."""
    cmd = [program, "--stdin", "-w", str(wav), "-v", str(params.get("voice") or "en")]
    cmd += ["-s", str(int(params["speed"]))] if params.get("speed") else []
    cmd += ["-p", str(int(params["pitch"]))] if params.get("pitch") is not None else []
    import subprocess

    proc = subprocess.run(cmd, input=text.encode(), capture_output=True)
    if proc.returncode != 0 or not wav.exists() or wav.stat().st_size <= 44:
        detail = proc.stderr.decode(errors="replace").strip() or f"exit status {proc.returncode}"
        raise RuntimeError(f"{program} failed: {detail}")


def _wav_seconds(path: Any) -> float:
    import wave

    with wave.open(str(path), "rb") as w:
        return w.getnframes() / float(w.getframerate())


def run(ctx: Any) -> dict[str, Any]:
    missing = available()
    if missing:
        raise RuntimeError(missing)
    raise_problems(check(ctx.params, ctx.model))
    text = input_text(ctx)
    fmt = ctx.params.get("format") or "wav"
    ctx.progress(0.1, "speaking")
    with atomic_outputs(ctx, [(fmt, "")]) as (tmp,):
        wav = tmp if fmt == "wav" else tmp.with_name(tmp.stem + ".speech.wav")
        try:
            _speak(_program() or PROGRAMS[0], text, ctx.params, wav)
            duration = _wav_seconds(wav)
            if fmt != "wav":
                run_ffmpeg(["-i", wav, *FORMATS[fmt], tmp], ctx, duration=duration,
                           message=f"converting to {fmt}")
        finally:
            if wav != tmp and wav.exists():
                wav.unlink()
    final = ctx.output_path(fmt)
    ctx.progress(1.0, "speech written")
    return result(final, [final], duration=duration, words=len(text.split()))
