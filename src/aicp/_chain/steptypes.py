"""The catalogue of step types: what each consumes and produces, and which executor serves it.

It is data, not code paths: validation, ``aicp list-steps``, cost estimates and
the worker all read this one table. Executors are named as ``"module:function"``
strings and imported only inside the worker (or, for parameter checks, only when
a chain that uses them is validated), so loading the catalogue costs nothing.

Kinds of data that flow between steps: ``text``, ``image``, ``images`` (a list),
``video``, ``videos`` (a list), ``audio``; ``any`` accepts whatever comes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Collection, Mapping

KINDS = ("text", "image", "images", "video", "videos", "audio", "any")


@dataclass(frozen=True)
class Executor:
    """One implementation of a step type.

    ``target`` is the ``module:function`` called in the worker as ``fn(ctx)``.
    ``check`` (optional) validates params before anything runs:
    ``check(params, model) -> list[(param_path, message)]``.
    ``available`` (optional) returns ``None`` when the executor can run on this
    machine, or a message saying what is missing and how to install it.
    """

    target: str
    summary: str
    check: str | None = None
    available: str | None = None
    cost: float = 0.0
    provider: str = "local"
    consumes: str | None = None  # what the step takes when it differs from its type's (a model that edits video)
    needs: tuple[tuple[str, str], ...] = ()  # (param, kind): further inputs taken from the flow unless given


@dataclass(frozen=True)
class StepType:
    name: str
    consumes: str
    produces: str
    summary: str
    model_required: bool = True
    # model key -> executor; the key None serves a step that names no model
    # (or any model, for types with a single local implementation).
    executors: Mapping[str | None, Executor] = field(default_factory=dict)
    any_model: bool = False


def _local(target: str, summary: str, **kw: Any) -> Executor:
    return Executor(target=f"aicp.steps.{target}", summary=summary, **kw)


_PYTHON = _local("python_step:run", "calls params.function ('module:attr') as fn(ctx)",
                 check="aicp.steps.python_step:check")
_COMMAND = _local("command_step:run", "runs params.argv (no shell) or params.run (shell)",
                  check="aicp.steps.command_step:check")

STEP_TYPES: dict[str, StepType] = {
    t.name: t
    for t in (
        StepType("text_to_image", "text", "image", "an image from a prompt",
                 executors={"title_card": _local(
                     "media.title_card:run", "renders the prompt as a title card (PNG), offline",
                     check="aicp.steps.media.title_card:check")}),
        StepType("text_to_video", "text", "video", "a video clip from a prompt"),
        StepType("image_understanding", "image", "text", "a description of an image"),
        StepType("prompt_generation", "image", "text", "a video prompt written from an image"),
        StepType("avatar", "image", "video", "a talking or moving person from a portrait (and speech)"),
        StepType("video_to_video", "video", "video", "an edited or restyled video"),
        StepType("speech_to_text", "audio", "text", "a transcript of speech"),
        StepType("image_to_image", "image", "image", "an edited or restyled image"),
        StepType("image_to_video", "image", "video", "a video clip from a still image",
                 executors={"ken_burns": _local(
                     "media.ken_burns:run", "a pan/zoom H.264 clip from the still, offline",
                     check="aicp.steps.media.ken_burns:check")}),
        StepType("text_to_speech", "text", "audio", "narration from text",
                 executors={"espeak": _local(
                     "media.tts_espeak:run", "speech from the espeak-ng program (WAV), offline",
                     check="aicp.steps.media.tts_espeak:check",
                     available="aicp.steps.media.tts_espeak:available")}),
        StepType("add_audio", "video", "video", "a video with an audio track muxed in (or generated: thinksound)",
                 model_required=False, any_model=True,
                 executors={None: _local(
                     "media.add_audio:run", "muxes params.audio or the latest audio (ffmpeg)",
                     check="aicp.steps.media.add_audio:check", needs=(("audio", "audio"),))}),
        StepType("upscale_video", "video", "video", "a larger video",
                 executors={"lanczos": _local(
                     "media.upscale:run_video", "lanczos resampling by factor or target_width (ffmpeg)",
                     check="aicp.steps.media.upscale:check")}),
        StepType("upscale_image", "image", "image", "a larger image",
                 executors={"lanczos": _local(
                     "media.upscale:run_image", "lanczos resampling by factor or target_width (Pillow)",
                     check="aicp.steps.media.upscale:check")}),
        StepType("split_image", "image", "images", "a grid image cut into tiles",
                 model_required=False, any_model=True,
                 executors={None: _local(
                     "media.split_image:run", "cuts params.rows x params.cols tiles (Pillow)",
                     check="aicp.steps.media.split_image:check")}),
        StepType("generate_subtitles", "video", "video", "SRT and WebVTT subtitles for the video",
                 model_required=False, any_model=True,
                 executors={None: _local(
                     "media.subtitles:run", "cues from the text, timed by speech rate or the video",
                     check="aicp.steps.media.subtitles:check")}),
        StepType("parallel_group", "any", "any", "runs params.parallel_steps concurrently",
                 model_required=False),
        StepType("concat_videos", "videos", "video", "one video from a list of clips",
                 model_required=False, any_model=True,
                 executors={None: _local(
                     "media.concat:run", "joins clips: stream copy, or re-encode if formats differ",
                     check="aicp.steps.media.concat:check")}),
        StepType("replicate_multitalk", "image", "video", "a talking-head video (Replicate)"),
        StepType("python", "any", "any", "a Python function of yours, supervised",
                 model_required=False, executors={None: _PYTHON}, any_model=True),
        StepType("command", "any", "any", "a program of yours, supervised",
                 model_required=False, executors={None: _COMMAND}, any_model=True),
    )
}


# provider -> (executor, params check) of its models
PROVIDER_EXECUTORS = {
    "fal": ("aicp.providers.fal_step:run", "aicp.providers.fal_step:check"),
    "gemini": ("aicp.providers.gemini:run", "aicp.providers.gemini:check"),
    "openrouter": ("aicp.providers.openrouter:run", "aicp.providers.openrouter:check"),
    "replicate": ("aicp.providers.replicate:run", "aicp.providers.fal_step:check"),
}


def _add_remote_models() -> None:
    """Every row of the model catalogue becomes an executor of its step type."""
    from dataclasses import replace

    from aicp.providers.models import MODELS

    for m in MODELS.values():
        target, check = PROVIDER_EXECUTORS[m.provider]
        executor = Executor(target=target, summary=m.summary, check=check, cost=m.price, provider=m.provider,
                            consumes=m.consumes, needs=tuple(m.takes.items()))
        step_type = STEP_TYPES[m.step_type]
        STEP_TYPES[m.step_type] = replace(step_type, executors={**step_type.executors, m.key: executor})


_add_remote_models()


def executor_for(step_type: StepType, model: str | None, params: Mapping[str, Any] | None = None) -> Executor | None:
    """The executor that serves ``model`` (a key, one of its aliases, or ``auto``) for this type, or None.

    A type that takes any model (``add_audio``) runs its local executor unless
    the model is one of the catalogue's (``thinksound``).
    """
    from aicp.providers.models import resolve

    executor = step_type.executors.get(resolve(step_type.name, model, params)) if model else None
    if executor is None and step_type.any_model:
        return step_type.executors.get(None)
    return executor


def model_names(step_type: StepType) -> list[str]:
    """Every name a chain may write as this type's ``model``: local executors, catalogue keys, aliases, auto."""
    from aicp.providers.models import names_for

    local = [k for k, e in step_type.executors.items() if k and e.provider == "local"]
    return local + names_for(step_type.name)


def accepts(consumes: str, available: str) -> bool:
    """Whether a step that consumes ``consumes`` can take data of kind ``available``."""
    if consumes == "any" or available == "any" or consumes == available:
        return True
    # a list of images or clips can feed a step that takes one: it uses the first
    return available == consumes + "s"


PREVIOUS = "previous"  # takes_from(): the previous step's output


def made_available(kind: str) -> tuple[str, ...]:
    """The kinds an output of ``kind`` makes available to later steps: its own and, for a list, its items'."""
    return (kind, kind[:-1]) if kind.endswith("s") and kind != "any" else (kind,)


def takes_from(consumes: str, previous: str, available: Collection[str]) -> str | None:
    """Which earlier output a step that consumes ``consumes`` takes: the one rule of how data flows.

    ``previous`` is the kind of the previous step's output (or of the chain's
    input), ``available`` every kind made available so far (:func:`made_available`;
    the chain's prompt counts as text). The answer is :data:`PREVIOUS` when the
    previous output fits; else ``consumes`` itself, meaning the latest earlier
    output of that kind; else PREVIOUS again when some earlier output's kind is
    unknown (``any``: it may fit); None when nothing can fit. The validator
    checks a chain with it on kinds, the supervisor picks each step's input with
    it on values, and the chain's input is checked with it before a run starts.
    """
    if accepts(consumes, previous):
        return PREVIOUS
    if consumes in available:
        return consumes
    if "any" in available:
        return PREVIOUS
    return None


def path_like(value: Any) -> bool:
    """Whether a value could name a file (step outputs are file paths or free text)."""
    return isinstance(value, str) and "\n" not in value and len(value) < 4096


IMAGE_EXT = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
VIDEO_EXT = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"}
AUDIO_EXT = {".wav", ".mp3", ".m4a", ".aac", ".ogg", ".flac", ".opus"}


def kind_of(value: Any) -> str:
    """The kind of a value flowing between steps: a media kind by file extension, else text."""
    if isinstance(value, list):
        return kind_of(value[0]) + "s" if value and kind_of(value[0]) in ("image", "video") else "any"
    if isinstance(value, str):
        suffix = PurePath(value).suffix.lower() if path_like(value) else ""
        for kind, exts in (("image", IMAGE_EXT), ("video", VIDEO_EXT), ("audio", AUDIO_EXT)):
            if suffix in exts:
                return kind
        return "text"
    return "any"
