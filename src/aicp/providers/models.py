"""The model catalogue: one row per remote model, whichever provider serves it.

Each row says which step type the model serves (under the key chains already
use with the AI Content Pipeline tool, plus the other names that tool accepted
for it), which provider runs it and at which endpoint, how a step's input and
params become the request, where the result is in the response, and the price
used for estimates (USD per request, the old tool's estimate for its default
settings).

It is the one table of remote models: the step-type catalogue
(:mod:`aicp._chain.steptypes`) turns every row into an executor of its step
type, ``list-models`` / ``estimate-cost`` print it, each provider's executor
reads its rows. Everything a row does not say comes from its step type
(:data:`TYPE_IO`), so most rows are one line. This module imports nothing
heavy: the CLI loads it to validate chains and to list models.

Providers: ``fal`` (queue API) serves most models, including the ones the old
tool ran elsewhere when fal hosts the same model (``seedream3``, Replicate
there; the ``elevenlabs*`` voices and ``scribe_v2``, ElevenLabs' own API
there); ``gemini`` (Google's ``generateContent``) serves ``image_understanding``;
``openrouter`` (OpenAI-compatible chat completions) serves
``prompt_generation``; ``replicate`` (predictions API) serves ``gen4``.
"""

from __future__ import annotations


from aicp._chain.params import Param, ignored
from aicp._record import field, record

TYPE_CHECKING = False  # typing costs ~5 ms at start-up: for the type checker only
if TYPE_CHECKING:
    from typing import Any, Mapping

PROVIDERS = ("fal", "gemini", "openrouter", "replicate")


@record
class TypeIO:
    """How a step type talks to a provider unless a model says otherwise.

    ``params`` are the params every model of the type takes (a model's row adds
    its own): each is sent as the request field of its name (or its rename),
    except those declared ``ignored``, the AI Content Pipeline tool's params
    accepted so its files stay valid and never sent.
    """

    input_field: str          # the request field that takes the step's input
    output: str               # where the result is: "video.url", "images[].url" (every item), "text"
    prompt: str | None = None  # media-input types: the prompt sent when neither params nor the chain give one
    defaults: Mapping[str, Any] = field(default_factory=dict)  # request params every model of the type gets
    kind: str = "image"       # what the step produces: file extensions, or "text" for a text result
    params: tuple[Param, ...] = ()


# --------------------------------------------------------------------------- params of remote models

_OLD_STYLE = "the old tool accepted it and sent it nowhere; put the style in the prompt"
_OLD_FILE = "files are named step_<n>_<type>.<ext> in output_dir"
_DURATION = Param("duration", ("integer", "string"), "seconds: 5, \"5\" or \"5s\" (sent as the model wants it)")
_SEED = Param("seed", ("integer",), "the same seed gives the same result", minimum=0)
_PROMPT = Param("prompt", ("string",), "what to make (default: the step's input or the latest text)")
_NEGATIVE = Param("negative_prompt", ("string",), "what to avoid")
_ASPECT = Param("aspect_ratio", ("string",), "e.g. 16:9, 9:16, 1:1, 4:3, 3:4")
_RESOLUTION = Param("resolution", ("string",), "e.g. 720p, 1080p, 1K, 2K")
_GUIDANCE = Param("guidance_scale", ("number",), "how closely to follow the prompt", minimum=0, maximum=30)
_STEPS = Param("num_inference_steps", ("integer",), "denoising steps", minimum=1, maximum=100)
_URLS = Param("image_urls", ("list",), "reference images: URLs or files (uploaded)")
_SELECTION = (
    Param("criteria", ("string",), "model: auto picks by it",
          choices=("quality", "speed", "cost_effective", "photorealistic", "high_resolution", "balanced", "cinematic")),
    Param("budget", ("number",), "model: auto picks a model within it (USD)", minimum=0),
)
_COMMON = (_PROMPT, _SEED, *_SELECTION)
_IMAGE_GEN = (*_COMMON, _NEGATIVE, _ASPECT, _GUIDANCE, _STEPS,
              Param("image_size", ("string", "mapping"), "a fal size name or {width, height}"),
              Param("num_images", ("integer",), minimum=1, maximum=4, default=1),
              Param("output_format", ("string",), choices=("jpeg", "png", "webp")),
              Param("enable_safety_checker", ("boolean",)), _RESOLUTION,
              *ignored(_OLD_STYLE, "style", "quality"), *ignored(_OLD_FILE, "output_file"),
              *ignored("the size comes from image_size or aspect_ratio", "width", "height"))
_VIDEO_GEN = (*_COMMON, _NEGATIVE, _ASPECT, _RESOLUTION, _DURATION,
              Param("cfg_scale", ("number",), "how closely to follow the prompt", minimum=0, maximum=1),
              Param("prompt_optimizer", ("boolean",), "let the model rewrite the prompt"),
              Param("generate_audio", ("boolean",), "a soundtrack too (where the model offers it)"),
              Param("end_image_url", ("url",), "the last frame: a URL or a file"),
              *ignored(_OLD_STYLE, "style", "quality", "motion_level", "natural_motion", "optimize_for_cost",
                       "camera_movement"), *ignored(_OLD_FILE, "output_file"))
_SPEECH_IN = (Param("audio_url", ("url",), "the speech: a URL or a file (default: the latest audio output)"),)


TYPE_IO: dict[str, TypeIO] = {
    "text_to_image": TypeIO("prompt", "images[].url", defaults={"aspect_ratio": "16:9"}, params=_IMAGE_GEN),
    "image_to_image": TypeIO("image_url", "images[].url", prompt="modify this image", params=(
        *_IMAGE_GEN, _URLS, Param("strength", ("number",), "how much to change", minimum=0, maximum=1))),
    "upscale_image": TypeIO("image_url", "image.url", params=(
        Param("factor", ("number",), "scale by", minimum=1, maximum=10),
        Param("upscale_factor", ("number",), "fal's name for factor", minimum=1, maximum=10),
        Param("target", ("string",), "a target resolution instead: 720p, 1080p, 1440p, 2160p"),
        Param("target_resolution", ("string",), "fal's name for target"),
        Param("output_format", ("string",), choices=("jpeg", "png", "webp")), _SEED)),
    "text_to_video": TypeIO("prompt", "video.url", kind="video", params=_VIDEO_GEN),
    "image_to_video": TypeIO("image_url", "video.url", prompt="Create a cinematic video from this image",
                             kind="video", params=_VIDEO_GEN),
    "upscale_video": TypeIO("video_url", "video.url", kind="video", params=(
        Param("factor", ("number",), "scale by", minimum=1, maximum=4),
        Param("upscale_factor", ("number",), "fal's name for factor", minimum=1, maximum=4),
        Param("target_fps", ("integer",), "frame interpolation up to this rate", minimum=1, maximum=120),
        *ignored(_OLD_FILE, "output_file"))),
    "video_to_video": TypeIO("video_url", "video.url", prompt="Transform this video", kind="video", params=(
        *_COMMON, _NEGATIVE, _ASPECT, _DURATION, _URLS,
        Param("keep_audio", ("boolean",), "keep the input's soundtrack"))),
    "avatar": TypeIO("image_url", "video.url", kind="video", params=(
        *_COMMON, *_SPEECH_IN, _ASPECT, _RESOLUTION, _DURATION,
        Param("text", ("string",), "what the avatar says (text models; default: the latest text)"),
        Param("video_url", ("url",), "the motion or the video to edit: a URL or a file"),
        Param("first_audio_url", ("url",), "MultiTalk's first speaker: a URL or a file"),
        Param("second_audio_url", ("url",), "MultiTalk's second speaker: a URL or a file"),
        Param("reference_images", ("list",), "reference images: URLs or files"),
        Param("turbo_mode", ("boolean",)), Param("num_frames", ("integer",), minimum=1),
        Param("acceleration", ("string",)), Param("character_orientation", ("string",), choices=("video", "image")),
        Param("keep_original_sound", ("boolean",)))),
    "add_audio": TypeIO("video_url", "video.url", kind="video", params=(
        *_COMMON, _NEGATIVE, _STEPS, Param("cfg_scale", ("number",), minimum=0, maximum=20),
        *ignored(_OLD_STYLE, "audio_style", "style", "quality"))),
    "text_to_speech": TypeIO("text", "audio.url", kind="audio", params=(
        Param("voice", ("string",), "a voice name or id: rachel, drew, bella, ..."),
        Param("stability", ("number",), minimum=0, maximum=1), Param("similarity_boost", ("number",), minimum=0, maximum=1),
        Param("style", ("number",), "style exaggeration", minimum=0, maximum=1),
        Param("speed", ("number",), minimum=0.7, maximum=1.2, default=1.0),
        Param("text_override", ("string",), "say this instead of the input (the old tool's param)"),
        Param("language_code", ("string",)), Param("previous_text", ("string",)), Param("next_text", ("string",)),
        *ignored(_OLD_FILE, "output_file"), *ignored("fal returns MP3", "output_format"))),
    "speech_to_text": TypeIO("audio_url", "text", kind="text", params=(
        Param("language_code", ("string",), "e.g. eng, spa (default: detected)"),
        Param("diarize", ("boolean",), "who spoke when", default=True),
        Param("tag_audio_events", ("boolean",), "laughter, music...", default=True),
        Param("keyterms", ("list",), "terms to bias the transcript toward"))),
    "image_understanding": TypeIO("image", "text", kind="text", params=(
        Param("prompt", ("string",), "the instruction (default: the model's own)"),
        Param("analysis_prompt", ("string",), "the old tool's name for prompt"),
        Param("question", ("string",), "a question about the image (gemini_qa)"),
        Param("image_path", ("path",), "analyse this file instead of the step's input"),
        *ignored("the model's instruction says what to analyse", "analysis_type", "focus_areas", "detailed"))),
    "prompt_generation": TypeIO("image", "text", kind="text", params=(
        Param("background_context", ("string",), "what the video is for"),
        Param("video_style", ("string",), "cinematic, realistic, artistic, dramatic, ..."),
        Param("duration_preference", ("string",), "short, medium, long"),
        Param("prompt", ("string",), "extra instruction"))),
}

# fal's named image sizes, by the aspect ratio a chain asks for
FAL_IMAGE_SIZES = {"1:1": "square_hd", "4:3": "landscape_4_3", "3:4": "portrait_4_3",
                   "16:9": "landscape_16_9", "9:16": "portrait_16_9"}
GPT_IMAGE_SIZES = {"1:1": "1024x1024", "3:2": "1536x1024", "4:3": "1536x1024", "16:9": "1536x1024",
                   "2:3": "1024x1536", "3:4": "1024x1536", "9:16": "1024x1536"}


@record
class Model:
    """One remote model.

    ``endpoint`` is what the provider calls it: fal's application path, the
    Gemini or OpenRouter model id, Replicate's ``owner/name``. ``aliases`` are
    the other names the old tool accepted for this model in this step type.
    ``consumes`` overrides the step type's input kind (an avatar model that
    edits a video). ``takes`` fills further request fields from the chain's
    flow: ``{"audio_url": "audio"}`` sends ``params.audio_url`` if given, else
    the latest audio an earlier step produced. ``prompt`` overrides the type's
    default prompt; ``""`` means the model takes no prompt at all.

    ``duration`` is how the endpoint wants ``params.duration``: ``"str"``
    (``"5"``), ``"int"`` (``5``) or ``"s"`` (``"8s"``); chains may write any
    of them. ``sizes`` maps ``params.aspect_ratio`` onto ``size_field`` for
    endpoints that take named sizes. ``renames`` maps chain param names onto
    request fields; ``switch`` sets a mode field from whichever request field
    is present, e.g. ``("upscale_mode", {"target_resolution": "target"})``.
    ``task`` is the instruction a language model is given (see the
    provider's module).
    """

    key: str
    step_type: str
    provider: str
    endpoint: str
    price: float
    name: str
    seconds: int = 60  # typical processing time: scales the progress bar while it runs
    aliases: tuple[str, ...] = ()
    consumes: str | None = None
    takes: Mapping[str, str] = field(default_factory=dict)
    prompt: str | None = None
    input_field: str | None = None
    output: str | None = None
    duration: str | None = None
    sizes: Mapping[str, str] | None = None
    size_field: str = "image_size"
    defaults: Mapping[str, Any] = field(default_factory=dict)
    renames: Mapping[str, str] = field(default_factory=dict)
    switch: tuple[str, Mapping[str, str]] | None = None
    task: str | None = None
    params: tuple[Param, ...] = ()  # the params this model takes besides its type's

    @property
    def declared(self) -> tuple[Param, ...]:
        """Every param the model takes: its type's, then its own (which win)."""
        own = {p.name for p in self.params}
        return tuple(p for p in self.io.params if p.name not in own) + self.params

    @property
    def ignored(self) -> frozenset[str]:
        """The old tool's params this model accepts and never sends."""
        return frozenset(p.name for p in self.declared if p.status == "ignored")

    @property
    def unsent(self) -> frozenset[str]:
        """The params that never reach the provider: auto's selection params and the ignored ones."""
        return frozenset(SELECTION_PARAMS) | self.ignored

    @property
    def io(self) -> TypeIO:
        return TYPE_IO[self.step_type]

    @property
    def request_input_field(self) -> str:
        return self.input_field or self.io.input_field

    @property
    def output_path(self) -> str:
        return self.output or self.io.output

    @property
    def default_prompt(self) -> str | None:
        """The prompt sent when neither params nor the chain give one; None: the model takes none."""
        if self.prompt is not None:
            return self.prompt or None
        return self.io.prompt

    @property
    def summary(self) -> str:
        return f"{self.name} on {PROVIDER_NAMES[self.provider]} ({self.endpoint}), ~${self.price:g} a request"


PROVIDER_NAMES = {"fal": "fal", "gemini": "Gemini", "openrouter": "OpenRouter", "replicate": "Replicate"}


def _rows(step_type: str, *rows: tuple[Any, ...], provider: str = "fal", **common: Any) -> list[Model]:
    """``(key, endpoint, price, name, seconds, {overrides})`` rows of one step type."""
    models = []
    for key, endpoint, price, name, seconds, *extra in rows:
        options = {**common, **(extra[0] if extra else {})}
        models.append(Model(key, step_type, provider, endpoint, price, name, seconds, **options))
    return models


# The language models the old tool used were Gemini 2.0 Flash (directly, and through OpenRouter);
# 2.5 Flash is its successor on both services.
GEMINI_MODEL = "gemini-2.5-flash"
OPENROUTER_MODEL = "google/gemini-2.5-flash"

_ASPECT_AS_SIZE = {"sizes": FAL_IMAGE_SIZES}
_START_FRAME = {"input_field": "start_image_url"}
_REFERENCES = {"input_field": "image_urls"}
_SINGLE_IMAGE = {"output": "image.url"}
_NO_AUDIO = {"generate_audio": False}  # fal's default is true (billed 1.5x); the old tool sent false
_SPEECH = {"takes": {"audio_url": "audio"}, "prompt": ""}
_VIDEO_IN = {"consumes": "video", "input_field": "video_url", "prompt": "Transform this video"}

_MODELS: list[Model] = [
    *_rows(
        "text_to_image",
        ("flux_dev", "fal-ai/flux-1/dev", 0.003, "FLUX.1 Dev", 15, {**_ASPECT_AS_SIZE, "aliases": ("flux",)}),
        ("flux_schnell", "fal-ai/flux-1/schnell", 0.001, "FLUX.1 Schnell", 5, _ASPECT_AS_SIZE),
        ("imagen4", "fal-ai/imagen4/preview/fast", 0.004, "Google Imagen 4 (fast)", 20),
        ("seedream_v3", "fal-ai/bytedance/seedream/v3/text-to-image", 0.002, "Seedream v3", 10,
         _ASPECT_AS_SIZE),
        ("seedream3", "fal-ai/bytedance/seedream/v3/text-to-image", 0.003, "Seedream-3", 15,
         _ASPECT_AS_SIZE),
        ("nano_banana_pro", "fal-ai/nano-banana-pro", 0.002, "Nano Banana Pro", 5),
        ("gpt_image_1_5", "fal-ai/gpt-image-1.5", 0.003, "GPT Image 1.5", 10, {"sizes": GPT_IMAGE_SIZES}),
    ),
    *_rows(
        "text_to_image",
        ("gen4", "runwayml/gen4-image", 0.08, "Runway Gen-4 Image", 20,
         {"defaults": {"resolution": "1080p"}, "output": "output[]"}),
        provider="replicate",
    ),
    *_rows(
        "text_to_video",
        ("hailuo_pro", "fal-ai/minimax/hailuo-02/pro/text-to-video", 0.08, "MiniMax Hailuo-02 Pro", 60,
         {"defaults": {"prompt_optimizer": True}}),
        ("veo3", "fal-ai/veo3", 4.00, "Google Veo 3", 300, {"duration": "s"}),
        ("veo3_fast", "fal-ai/veo3/fast", 2.00, "Google Veo 3 Fast", 120, {"duration": "s"}),
        ("kling_2_6_pro", "fal-ai/kling-video/v2.6/pro/text-to-video", 0.35, "Kling Video v2.6 Pro", 90),
        ("kling_3_standard", "fal-ai/kling-video/v3/standard/text-to-video", 0.84, "Kling Video v3 Standard", 90,
         {"defaults": _NO_AUDIO}),
        ("kling_3_pro", "fal-ai/kling-video/v3/pro/text-to-video", 1.12, "Kling Video v3 Pro", 90,
         {"defaults": _NO_AUDIO}),
        ("kling_o3_pro_t2v", "fal-ai/kling-video/o3/pro/text-to-video", 1.12, "Kling O3 Pro", 90),
        ("sora_2", "fal-ai/sora-2/text-to-video", 0.40, "Sora 2", 120, {"duration": "int"}),
        ("sora_2_pro", "fal-ai/sora-2/text-to-video/pro", 2.00, "Sora 2 Pro", 180, {"duration": "int"}),
        ("grok_imagine", "xai/grok-imagine-video/text-to-video", 0.30, "xAI Grok Imagine Video", 60,
         {"duration": "int"}),
        duration="str",
    ),
    *_rows(
        "image_to_video",
        ("hailuo", "fal-ai/minimax/hailuo-02/standard/image-to-video", 0.08, "MiniMax Hailuo-02", 60,
         {"defaults": {"prompt_optimizer": True}}),
        ("kling_2_1", "fal-ai/kling-video/v2.1/standard/image-to-video", 0.50, "Kling Video v2.1", 90,
         {"aliases": ("kling",)}),
        ("kling_2_6_pro_i2v", "fal-ai/kling-video/v2.6/pro/image-to-video", 1.00, "Kling Video v2.6 Pro", 120,
         {**_START_FRAME, "aliases": ("kling_2_6_pro",)}),
        ("kling_3_standard_i2v", "fal-ai/kling-video/v3/standard/image-to-video", 0.84,
         "Kling Video v3 Standard", 90, {**_START_FRAME, "aliases": ("kling_3_standard",), "defaults": _NO_AUDIO}),
        ("kling_3_pro_i2v", "fal-ai/kling-video/v3/pro/image-to-video", 1.12, "Kling Video v3 Pro", 90,
         {**_START_FRAME, "aliases": ("kling_3_pro",), "defaults": _NO_AUDIO}),
        ("kling_o3_standard_i2v", "fal-ai/kling-video/o3/standard/image-to-video", 0.84, "Kling O3 Standard", 90),
        ("kling_o3_pro_i2v", "fal-ai/kling-video/o3/pro/image-to-video", 1.12, "Kling O3 Pro", 90),
        ("kling_o3_standard_ref", "fal-ai/kling-video/o3/standard/reference-to-video", 0.42,
         "Kling O3 Standard Reference-to-Video", 90, _REFERENCES),
        ("kling_o3_pro_ref", "fal-ai/kling-video/o3/pro/reference-to-video", 1.12,
         "Kling O3 Pro Reference-to-Video", 90, _REFERENCES),
        ("seedance_1_5_pro", "fal-ai/bytedance/seedance/v1.5/pro/image-to-video", 0.80,
         "ByteDance Seedance v1.5 Pro", 90),
        ("sora_2_i2v", "fal-ai/sora-2/image-to-video", 0.40, "Sora 2", 120,
         {"duration": "int", "aliases": ("sora_2",)}),
        ("sora_2_pro_i2v", "fal-ai/sora-2/image-to-video/pro", 2.00, "Sora 2 Pro", 180,
         {"duration": "int", "aliases": ("sora_2_pro",)}),
        ("veo_3_1_fast", "fal-ai/veo3.1/fast/image-to-video", 1.20, "Veo 3.1 Fast", 120, {"duration": "s"}),
        ("wan_2_6", "wan/v2.6/image-to-video", 0.50, "Wan v2.6", 90),
        ("grok_imagine_i2v", "xai/grok-imagine-video/image-to-video", 0.302, "xAI Grok Imagine Video", 60,
         {"duration": "int", "aliases": ("grok_imagine",)}),
        # The old tool accepted these three names for image_to_video and then failed ("Google Veo
        # integration not yet implemented"); fal hosts Veo's image-to-video, so they run there.
        ("veo3_i2v", "fal-ai/veo3/image-to-video", 4.00, "Google Veo 3", 300,
         {"duration": "s", "aliases": ("veo3",)}),
        ("veo3_fast_i2v", "fal-ai/veo3/fast/image-to-video", 2.00, "Google Veo 3 Fast", 120,
         {"duration": "s", "aliases": ("veo3_fast",)}),
        ("veo2_i2v", "fal-ai/veo2/image-to-video", 2.50, "Google Veo 2", 180,
         {"duration": "s", "aliases": ("veo2",)}),
        duration="str",
    ),
    *_rows(
        "image_to_image",
        ("photon", "fal-ai/luma-photon/flash/modify", 0.02, "Luma Photon Flash", 8,
         {"aliases": ("photon_flash",), "defaults": {"strength": 0.8, "aspect_ratio": "1:1"}}),
        ("photon_base", "fal-ai/luma-photon/modify", 0.03, "Luma Photon Base", 12,
         {"defaults": {"strength": 0.8, "aspect_ratio": "1:1"}}),
        ("kontext", "fal-ai/flux-kontext/dev", 0.025, "FLUX Kontext Dev", 15, {"aliases": ("flux_kontext",)}),
        ("kontext_multi", "fal-ai/flux-pro/kontext/max/multi", 0.04, "FLUX Kontext [max] Multi", 25,
         {**_REFERENCES, "aliases": ("flux_kontext_multi",)}),
        ("seededit", "fal-ai/bytedance/seededit/v3/edit-image", 0.02, "ByteDance SeedEdit v3", 10,
         {**_SINGLE_IMAGE, "aliases": ("seededit_v3",)}),
        ("clarity", "fal-ai/clarity-upscaler", 0.05, "Clarity Upscaler", 30,
         {**_SINGLE_IMAGE, "aliases": ("clarity_upscaler",)}),
        ("nano_banana_pro_edit", "fal-ai/nano-banana-pro/edit", 0.015, "Nano Banana Pro Edit", 8, _REFERENCES),
        ("nano_banana_2_edit", "fal-ai/nano-banana-2/edit", 0.08, "Nano Banana 2 Edit", 10, _REFERENCES),
        ("gpt_image_1_5_edit", "fal-ai/gpt-image-1.5/edit", 0.02, "GPT Image 1.5 Edit", 10, _REFERENCES),
    ),
    *_rows(
        "upscale_image",
        ("seedvr", "fal-ai/seedvr/upscale/image", 0.01, "SeedVR2 image upscaler", 30,
         {"defaults": {"upscale_factor": 2}, "renames": {"factor": "upscale_factor", "target": "target_resolution"},
          "switch": ("upscale_mode", {"target_resolution": "target", "upscale_factor": "factor"})}),
    ),
    *_rows(
        "upscale_video",
        ("topaz", "fal-ai/topaz/upscale/video", 1.50, "Topaz Video Upscale", 120,
         {"defaults": {"upscale_factor": 2}, "renames": {"factor": "upscale_factor"}}),
    ),
    *_rows(
        "avatar",
        ("omnihuman_v1_5", "fal-ai/bytedance/omnihuman/v1.5", 0.80, "ByteDance OmniHuman v1.5", 60,
         {**_SPEECH, "defaults": {"resolution": "1080p", "turbo_mode": False}}),
        ("fabric_1_0", "veed/fabric-1.0", 0.75, "VEED Fabric 1.0", 45, {**_SPEECH, "defaults": {"resolution": "720p"}}),
        ("fabric_1_0_fast", "veed/fabric-1.0/fast", 0.94, "VEED Fabric 1.0 Fast", 30,
         {**_SPEECH, "defaults": {"resolution": "720p"}}),
        ("fabric_1_0_text", "veed/fabric-1.0/text", 0.75, "VEED Fabric 1.0 Text", 50,
         {"takes": {"text": "text"}, "prompt": "", "defaults": {"resolution": "720p"}}),
        ("kling_ref_to_video", "fal-ai/kling-video/o1/standard/reference-to-video", 0.56,
         "Kling O1 Reference-to-Video", 90, {"input_field": "reference_images", "prompt": "Animate this character",
                                             "defaults": {"duration": "5", "aspect_ratio": "16:9"}}),
        ("kling_v2v_reference", "fal-ai/kling-video/o1/standard/video-to-video/reference", 0.84,
         "Kling O1 Video-to-Video Reference", 90, {**_VIDEO_IN, "defaults": {"duration": "5", "aspect_ratio": "16:9"}}),
        ("kling_v2v_edit", "fal-ai/kling-video/o1/standard/video-to-video/edit", 0.84, "Kling O1 Video-to-Video Edit",
         60, _VIDEO_IN),
        ("kling_motion_control", "fal-ai/kling-video/v2.6/standard/motion-control", 0.60, "Kling v2.6 Motion Control",
         60, {"takes": {"video_url": "video"}, "prompt": "",
              "defaults": {"character_orientation": "video", "keep_original_sound": True}}),
        ("multitalk", "fal-ai/ai-avatar/multi", 0.10, "AI Avatar Multi (MultiTalk)", 60,
         {"takes": {"first_audio_url": "audio"}, "prompt": "A person talking naturally",
          "defaults": {"num_frames": 81, "resolution": "480p", "acceleration": "regular"}}),
        ("grok_video_edit", "xai/grok-imagine-video/edit-video", 0.36, "xAI Grok Imagine Video Edit", 45,
         {**_VIDEO_IN, "defaults": {"resolution": "auto"}}),
        duration="str",
    ),
    *_rows(
        "video_to_video",
        ("kling_o3_standard_edit", "fal-ai/kling-video/o3/standard/video-to-video/edit", 1.26,
         "Kling O3 Standard Video Edit", 60),
        ("kling_o3_pro_edit", "fal-ai/kling-video/o3/pro/video-to-video/edit", 1.68, "Kling O3 Pro Video Edit", 60),
        ("kling_o3_standard_v2v_ref", "fal-ai/kling-video/o3/standard/video-to-video/reference", 1.26,
         "Kling O3 Standard Video Reference", 60, {"defaults": {"keep_audio": False}}),
        ("kling_o3_pro_v2v_ref", "fal-ai/kling-video/o3/pro/video-to-video/reference", 1.68,
         "Kling O3 Pro Video Reference", 60, {"defaults": {"keep_audio": False}}),
        duration="int",
    ),
    *_rows(
        "add_audio",
        ("thinksound", "fal-ai/thinksound", 0.05, "ThinkSound (generates the soundtrack)", 45),
    ),
    *_rows(
        "text_to_speech",
        ("elevenlabs", "fal-ai/elevenlabs/tts/multilingual-v2", 0.05, "ElevenLabs TTS (multilingual v2)", 15),
        ("elevenlabs_turbo", "fal-ai/elevenlabs/tts/turbo-v2.5", 0.03, "ElevenLabs Turbo v2.5", 8),
        ("elevenlabs_v3", "fal-ai/elevenlabs/tts/eleven-v3", 0.08, "ElevenLabs v3", 20),
        renames={"text_override": "text"},  # the old tool's per-step text replaces the input
    ),
    *_rows(
        "image_understanding",
        *((f"gemini_{task}", GEMINI_MODEL, price, f"Gemini image analysis: {task}", seconds, {"task": task})
          for task, price, seconds in (("describe", 0.001, 3), ("detailed", 0.002, 5), ("classify", 0.001, 3),
                                       ("objects", 0.002, 4), ("ocr", 0.001, 3), ("composition", 0.002, 5),
                                       ("qa", 0.001, 4))),
        provider="gemini",
    ),
    *_rows(
        "prompt_generation",
        *((f"openrouter_{task}" if task == "video_prompt" else f"openrouter_video_{task}", OPENROUTER_MODEL, 0.002,
           f"Video prompt writer: {'general' if task == 'video_prompt' else task}", seconds, {"task": task})
          for task, seconds in (("video_prompt", 4), ("cinematic", 5), ("realistic", 4), ("artistic", 5),
                                ("dramatic", 5))),
        provider="openrouter",
    ),
    *_rows(
        "speech_to_text",
        ("scribe_v2", "fal-ai/elevenlabs/speech-to-text/scribe-v2", 0.08, "ElevenLabs Scribe v2", 15,
         {"defaults": {"diarize": True, "tag_audio_events": True}}),
    ),
]

MODELS: dict[str, Model] = {}
"""model key -> model. Keys are unique across step types, as in the old tool's registry."""
ALIASES: dict[tuple[str, str], str] = {}
"""(step type, other name) -> model key: the names the old tool accepted besides its registry keys."""
for _model in _MODELS:
    if _model.key in MODELS:
        raise ValueError(f"duplicate model key {_model.key!r}")
    MODELS[_model.key] = _model
for _model in _MODELS:
    for _alias in _model.aliases:
        _taken = MODELS.get(_alias)
        if (_model.step_type, _alias) in ALIASES or (_taken is not None and _taken.step_type == _model.step_type):
            raise ValueError(f"alias {_alias!r} of {_model.key!r} is taken in {_model.step_type}")
        ALIASES[(_model.step_type, _alias)] = _model.key
del _model, _alias, _taken

# ``model: auto``: what the old tool picked. It chose by ``params.criteria`` (default
# "balanced") from its recommendations, else its first available model; with
# ``params.budget`` and no model within it, the cheapest model of the type.
AUTO = "auto"
SELECTION_PARAMS = ("criteria", "budget")  # read by auto, never sent to a provider
RECOMMENDATIONS: dict[str, dict[str, str]] = {
    "text_to_image": {"quality": "flux_dev", "speed": "flux_schnell", "cost_effective": "seedream_v3",
                      "photorealistic": "imagen4", "high_resolution": "seedream3", "cinematic": "gen4",
                      "reference_guided": "gen4", "": "flux_dev"},
    "image_to_video": {"quality": "veo3_i2v", "speed": "hailuo", "cost_effective": "hailuo",
                       "balanced": "veo3_fast_i2v", "cinematic": "veo3_i2v", "": "hailuo"},
}


def auto_model(step_type: str, params: Mapping[str, Any] | None = None) -> str | None:
    """The model ``auto`` stands for in this step type with these params, or None if the type has no auto."""
    choices = RECOMMENDATIONS.get(step_type)
    if choices is None:
        return None
    params = params or {}
    budget = params.get("budget")
    if isinstance(budget, (int, float)) and not isinstance(budget, bool):
        prices = {k: m.price for k, m in MODELS.items() if m.step_type == step_type}
        if prices and min(prices.values()) > budget:
            return min(prices, key=lambda k: prices[k])
    criteria = params.get("criteria", "balanced")
    return choices.get(criteria if isinstance(criteria, str) else "") or choices[""]


def resolve(step_type: str, name: str | None, params: Mapping[str, Any] | None = None) -> str | None:
    """The model key a chain's ``model`` names in this step type: itself, an alias's model, or auto's pick."""
    if name is None:
        return None
    if name == AUTO:
        return auto_model(step_type, params)
    return ALIASES.get((step_type, name), name)


def model_for(step_type: str, name: str | None, params: Mapping[str, Any] | None = None) -> Model | None:
    """The model serving ``name`` (a key, an alias or ``auto``) for ``step_type``, or None."""
    model = MODELS.get(resolve(step_type, name, params) or "")
    return model if model is not None and model.step_type == step_type else None


def names_for(step_type: str) -> list[str]:
    """Every name a chain may write as ``model`` for this step type's remote models: keys, aliases, auto."""
    names = [k for k, m in MODELS.items() if m.step_type == step_type]
    names += [alias for (t, alias) in ALIASES if t == step_type]
    return names + ([AUTO] if step_type in RECOMMENDATIONS else [])
