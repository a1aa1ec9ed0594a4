"""The catalogue of step types: what each consumes and produces, and which executor serves it.

It is data, not code paths: validation, ``aicp list-steps``, cost estimates and
the worker all read this one table. Executors are named as ``"module:function"``
strings and imported only inside the worker (or, for parameter checks, only when
a chain that uses them is validated), so loading the catalogue costs nothing.

Kinds of data that flow between steps: ``text``, ``image``, ``images`` (a list),
``video``, ``videos`` (a list), ``audio``; ``any`` accepts whatever comes.
"""

from __future__ import annotations

from pathlib import PurePath

from aicp._chain.params import Param
from aicp._record import field, record, replace

TYPE_CHECKING = False  # typing costs ~5 ms at start-up: for the type checker only
if TYPE_CHECKING:
    from typing import Any, Collection, Mapping

KINDS = ("text", "image", "images", "video", "videos", "audio", "any")


@record
class Executor:
    """One implementation of a step type.

    ``target`` is the ``module:function`` called in the worker as ``fn(ctx)``.
    ``params`` declares what it takes; the validator checks every value against
    it. ``check`` (optional) adds the rules one param cannot say alone (``argv``
    or ``run``, not both): ``check(params, model) -> list[(param_path, message)]``.
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
    # the params it takes (name, type, range or choices, default; the old tool's it ignores);
    # any other name is an error, unless open_params (a python step's params are the user's)
    params: tuple[Param, ...] = ()
    open_params: bool = False

    @property
    def declared(self) -> dict[str, Param]:
        return {p.name: p for p in self.params}


@record
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


# --------------------------------------------------------------------------- the local executors' params

_ASPECT = Param("aspect_ratio", ("string",), choices=("16:9", "9:16", "1:1", "4:3", "3:4"), default="16:9",
                help="the frame's shape")
_RESOLUTION = Param("resolution", ("string", "integer"), pattern=r"\s*\d+\s*[xX×]\s*\d+\s*|\s*\d+\s*[pP]?\s*",
                    help="'WIDTHxHEIGHT', or the short side like 720")
_TEXT = Param("text", ("string",), help="the text to use instead of the input or the latest text")
_FPS = Param("fps", ("number",), minimum=0, exclusive_minimum=True, maximum=120, help="frames a second")


def _colour(name: str, default: str) -> Param:
    return Param(name, ("string",), "a colour Pillow knows ('#0f172a', 'white')", default=default)


_PYTHON = _local("python_step:run", "calls params.function ('module:attr') as fn(ctx)",
                 check="aicp.steps.python_step:check", open_params=True, params=(
                     Param("function", ("target",), required=True, pattern=r"[\w.]+:[\w.]+",
                           help="'module:function', the module next to the chain file or importable"),))
_COMMAND = _local("command_step:run", "runs params.argv (no shell) or params.run (shell)",
                  check="aicp.steps.command_step:check", params=(
                      Param("argv", ("list",), nonempty=True, help="the program and its arguments, no shell; {input} is replaced"),
                      Param("run", ("string",), nonempty=True, help="a shell command; {input} is replaced, quoted"),
                      Param("env", ("mapping",), help="extra environment variables"),
                      Param("cwd", ("string",), help="the working folder, relative to the chain file"),
                      Param("output", ("string",), help="the file the program writes: the step's output"),
                  ))
_UPSCALE = (
    Param("factor", ("number",), minimum=0, exclusive_minimum=True, maximum=16, default=2),
    Param("target_width", ("integer",), minimum=2, maximum=16384, help="instead of factor"),
)
_SUBTITLES = (
    _TEXT, Param("subtitle_text", ("string",), help="the old tool's name for text"),
    Param("format", ("string",), choices=("srt", "vtt"), help="write only this format (default: both)"),
    Param("words_per_minute", ("number",), minimum=0, exclusive_minimum=True, maximum=1000,
          help="read at this rate instead of fitting the cues to the video (default 160)"),
    Param("words_per_second", ("number",), minimum=0, exclusive_minimum=True, maximum=1000 / 60,
          help="the old tool's reading rate (words_per_minute / 60)"),
    Param("fit_to", ("path",), help="fit the cues over this media file's duration"),
    Param("burn_in", ("boolean",), default=False, help="output a new video with the cues drawn in (libass)"),
    Param("font_size", ("number",), minimum=0, exclusive_minimum=True, maximum=200, help="burned-in text size"),
    Param("output_dir", ("string",), help="write the subtitle files here (relative: to the current directory)"),
)

STEP_TYPES: dict[str, StepType] = {
    t.name: t
    for t in (
        StepType("text_to_image", "text", "image", "an image from a prompt",
                 executors={"title_card": _local(
                     "media.title_card:run", "renders the prompt as a title card (PNG), offline",
                     check="aicp.steps.media.title_card:check", params=(
                         _TEXT, _ASPECT, _RESOLUTION,
                         Param("subtitle", ("string",), help="a smaller second line"),
                         Param("font", ("path",), help="a TrueType font file (default: Pillow's)"),
                         Param("font_size", ("number",), minimum=1, help="default: fitted to the card"),
                         _colour("background", "#0f172a"),
                         _colour("color", "#f8fafc"),
                         _colour("accent", "#38bdf8"),
                     ))}),
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
                     check="aicp.steps.media.ken_burns:check", params=(
                         Param("duration", ("number",), minimum=0, exclusive_minimum=True, maximum=3600,
                               default=5, help="seconds"),
                         _FPS, _ASPECT, _RESOLUTION,
                         Param("zoom", ("number",), minimum=1, maximum=10, default=1.2, help="how far to zoom"),
                         Param("direction", ("string",), choices=("in", "out"), default="in"),
                         Param("pan", ("string",), choices=("center", "left", "right", "up", "down"),
                               default="center"),
                     ))}),
        StepType("text_to_speech", "text", "audio", "narration from text",
                 executors={"espeak": _local(
                     "media.tts_espeak:run", "speech from the espeak-ng program (WAV), offline",
                     check="aicp.steps.media.tts_espeak:check",
                     available="aicp.steps.media.tts_espeak:available", params=(
                         _TEXT, Param("voice", ("string",), pattern=r"[^-].*", help="an espeak-ng voice: 'en', 'en-us'"),
                         Param("speed", ("number",), minimum=80, maximum=500, help="words a minute"),
                         Param("pitch", ("number",), minimum=0, maximum=99),
                         Param("format", ("string",), choices=("wav", "mp3", "m4a"), default="wav"),
                     ))}),
        StepType("add_audio", "video", "video", "a video with an audio track muxed in (or generated: thinksound)",
                 model_required=False, any_model=True,
                 executors={None: _local(
                     "media.add_audio:run", "muxes params.audio or the latest audio (ffmpeg)",
                     check="aicp.steps.media.add_audio:check", needs=(("audio", "audio"),), params=(
                         Param("audio", ("path",), help="the audio file (default: the latest audio output)"),
                         Param("policy", ("string",), choices=("shortest", "loop", "pad"), default="shortest",
                               help="when the lengths differ"),
                     ))}),
        StepType("upscale_video", "video", "video", "a larger video",
                 executors={"lanczos": _local(
                     "media.upscale:run_video", "lanczos resampling by factor or target_width (ffmpeg)",
                     check="aicp.steps.media.upscale:check", params=_UPSCALE)}),
        StepType("upscale_image", "image", "image", "a larger image",
                 executors={"lanczos": _local(
                     "media.upscale:run_image", "lanczos resampling by factor or target_width (Pillow)",
                     check="aicp.steps.media.upscale:check", params=_UPSCALE)}),
        StepType("split_image", "image", "images", "a grid image cut into tiles",
                 model_required=False, any_model=True,
                 executors={None: _local(
                     "media.split_image:run", "cuts params.rows x params.cols tiles (Pillow)",
                     check="aicp.steps.media.split_image:check", params=(
                         Param("rows", ("integer",), minimum=1, maximum=64, default=2),
                         Param("cols", ("integer",), minimum=1, maximum=64, default=2),
                     ))}),
        StepType("generate_subtitles", "video", "video", "SRT and WebVTT subtitles for the video",
                 model_required=False, any_model=True,
                 executors={None: _local(
                     "media.subtitles:run", "cues from the text, timed by speech rate or the video",
                     check="aicp.steps.media.subtitles:check", params=_SUBTITLES)}),
        StepType("parallel_group", "any", "any", "runs params.parallel_steps concurrently",
                 model_required=False),
        StepType("concat_videos", "videos", "video", "one video from a list of clips",
                 model_required=False, any_model=True,
                 executors={None: _local(
                     "media.concat:run", "joins clips: stream copy, or re-encode if formats differ",
                     check="aicp.steps.media.concat:check", params=(
                         Param("videos", ("list",), help="the clips (default: the input list)"),
                         _FPS, _RESOLUTION,
                     ))}),
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
    from aicp.providers.models import MODELS

    remote: dict[str, dict[str | None, Executor]] = {}
    for m in MODELS.values():
        target, check = PROVIDER_EXECUTORS[m.provider]
        remote.setdefault(m.step_type, {})[m.key] = Executor(
            target=target, summary=m.summary, check=check, cost=m.price, provider=m.provider, consumes=m.consumes,
            needs=tuple(m.takes.items()), params=m.declared)
    for name, executors in remote.items():  # one new record per step type, local executors first
        STEP_TYPES[name] = replace(STEP_TYPES[name], executors={**STEP_TYPES[name].executors, **executors})


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


def resolve_model(step_type: StepType, name: str, params: Mapping[str, Any] | None = None) -> str | None:
    """The executor key a model name (a key, an alias, ``auto``) stands for in this type, or None."""
    from aicp.providers.models import resolve

    key = resolve(step_type.name, name, params)
    return key if key and key in step_type.executors else None


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
