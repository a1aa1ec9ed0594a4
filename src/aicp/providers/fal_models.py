"""The fal model registry: one row per model, as data.

Each row says which step type the model serves (under the model key chains
already use with the AI Content Pipeline tool), which fal endpoint runs it,
how a step's input and params become the request, where the produced files
are in the response, and the price used for estimates (USD per request, the
old tool's estimate for its default settings).

Everything a model does not say comes from its step type (:data:`TYPE_IO`),
so most rows are one line. The executor that reads this table is
:mod:`aicp.providers.fal_step`; the catalogue (:mod:`aicp._chain.steptypes`) turns
every row into an executor of its step type. This module imports nothing
heavy: the CLI loads it to validate chains and to list models.

Where the old tool did not call fal itself, the model runs on fal's hosting of
the same model: ``seedream3`` (Replicate there) on fal's Seedream v3 and the
``elevenlabs*`` voices (ElevenLabs' own API there) on fal's ElevenLabs
endpoints. ``gen4`` (Runway via Replicate) has no fal endpoint and is not
offered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class TypeIO:
    """How a step type talks to fal unless a model says otherwise."""

    input_field: str          # the request field that takes the step's input
    output: str               # where the files are: "video.url", "images[].url" (every item)
    prompt: str | None = None  # image-input types: the prompt used when neither params nor the chain give one
    defaults: Mapping[str, Any] = field(default_factory=dict)  # request params every model of the type gets
    kind: str = "image"       # what the step produces, for file extensions


TYPE_IO: dict[str, TypeIO] = {
    "text_to_image": TypeIO("prompt", "images[].url", defaults={"aspect_ratio": "16:9"}),
    "image_to_image": TypeIO("image_url", "images[].url", prompt="modify this image"),
    "upscale_image": TypeIO("image_url", "image.url"),
    "text_to_video": TypeIO("prompt", "video.url", kind="video"),
    "image_to_video": TypeIO("image_url", "video.url", prompt="Create a cinematic video from this image",
                             kind="video"),
    "upscale_video": TypeIO("video_url", "video.url", kind="video"),
    "text_to_speech": TypeIO("text", "audio.url", kind="audio"),
}

# fal's named image sizes, by the aspect ratio a chain asks for
FAL_IMAGE_SIZES = {"1:1": "square_hd", "4:3": "landscape_4_3", "3:4": "portrait_4_3",
                   "16:9": "landscape_16_9", "9:16": "portrait_16_9"}
GPT_IMAGE_SIZES = {"1:1": "1024x1024", "3:2": "1536x1024", "4:3": "1536x1024", "16:9": "1536x1024",
                   "2:3": "1024x1536", "3:4": "1024x1536", "9:16": "1024x1536"}


@dataclass(frozen=True)
class FalModel:
    """One model on fal.

    ``duration`` is how the endpoint wants ``params.duration``: ``"str"``
    (``"5"``), ``"int"`` (``5``) or ``"s"`` (``"8s"``); chains may write any
    of them. ``sizes`` maps ``params.aspect_ratio`` onto ``size_field`` for
    endpoints that take named sizes. ``renames`` maps chain param names onto
    request fields; ``switch`` sets a mode field from whichever request field
    is present, e.g. ``("upscale_mode", {"target_resolution": "target"})``.
    """

    key: str
    step_type: str
    endpoint: str
    price: float
    name: str
    seconds: int = 60  # typical processing time: scales the progress bar while it runs
    input_field: str | None = None
    output: str | None = None
    duration: str | None = None
    sizes: Mapping[str, str] | None = None
    size_field: str = "image_size"
    defaults: Mapping[str, Any] = field(default_factory=dict)
    renames: Mapping[str, str] = field(default_factory=dict)
    switch: tuple[str, Mapping[str, str]] | None = None

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
    def summary(self) -> str:
        return f"{self.name} on fal ({self.endpoint}), ~${self.price:g} a request"


def _rows(step_type: str, *rows: tuple[Any, ...], **common: Any) -> list[FalModel]:
    """``(key, endpoint, price, name, seconds, {overrides})`` rows of one step type."""
    models = []
    for key, endpoint, price, name, seconds, *extra in rows:
        options = {**common, **(extra[0] if extra else {})}
        models.append(FalModel(key, step_type, endpoint, price, name, seconds, **options))
    return models


_ASPECT_AS_SIZE = {"sizes": FAL_IMAGE_SIZES}
_START_FRAME = {"input_field": "start_image_url"}
_REFERENCES = {"input_field": "image_urls"}
_SINGLE_IMAGE = {"output": "image.url"}

_MODELS: list[FalModel] = [
    *_rows(
        "text_to_image",
        ("flux_dev", "fal-ai/flux-1/dev", 0.003, "FLUX.1 Dev", 15, _ASPECT_AS_SIZE),
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
        "text_to_video",
        ("hailuo_pro", "fal-ai/minimax/hailuo-02/pro/text-to-video", 0.08, "MiniMax Hailuo-02 Pro", 60,
         {"defaults": {"prompt_optimizer": True}}),
        ("veo3", "fal-ai/veo3", 4.00, "Google Veo 3", 300, {"duration": "s"}),
        ("veo3_fast", "fal-ai/veo3/fast", 2.00, "Google Veo 3 Fast", 120, {"duration": "s"}),
        ("kling_2_6_pro", "fal-ai/kling-video/v2.6/pro/text-to-video", 0.35, "Kling Video v2.6 Pro", 90),
        ("kling_3_standard", "fal-ai/kling-video/v3/standard/text-to-video", 0.84, "Kling Video v3 Standard", 90),
        ("kling_3_pro", "fal-ai/kling-video/v3/pro/text-to-video", 1.12, "Kling Video v3 Pro", 90),
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
        ("kling_2_1", "fal-ai/kling-video/v2.1/standard/image-to-video", 0.50, "Kling Video v2.1", 90),
        ("kling_2_6_pro_i2v", "fal-ai/kling-video/v2.6/pro/image-to-video", 1.00, "Kling Video v2.6 Pro", 120,
         _START_FRAME),
        ("kling_3_standard_i2v", "fal-ai/kling-video/v3/standard/image-to-video", 0.84,
         "Kling Video v3 Standard", 90, _START_FRAME),
        ("kling_3_pro_i2v", "fal-ai/kling-video/v3/pro/image-to-video", 1.12, "Kling Video v3 Pro", 90,
         _START_FRAME),
        ("kling_o3_standard_i2v", "fal-ai/kling-video/o3/standard/image-to-video", 0.84, "Kling O3 Standard", 90),
        ("kling_o3_pro_i2v", "fal-ai/kling-video/o3/pro/image-to-video", 1.12, "Kling O3 Pro", 90),
        ("kling_o3_standard_ref", "fal-ai/kling-video/o3/standard/reference-to-video", 0.42,
         "Kling O3 Standard Reference-to-Video", 90, _REFERENCES),
        ("kling_o3_pro_ref", "fal-ai/kling-video/o3/pro/reference-to-video", 1.12,
         "Kling O3 Pro Reference-to-Video", 90, _REFERENCES),
        ("seedance_1_5_pro", "fal-ai/bytedance/seedance/v1.5/pro/image-to-video", 0.80,
         "ByteDance Seedance v1.5 Pro", 90),
        ("sora_2_i2v", "fal-ai/sora-2/image-to-video", 0.40, "Sora 2", 120, {"duration": "int"}),
        ("sora_2_pro_i2v", "fal-ai/sora-2/image-to-video/pro", 2.00, "Sora 2 Pro", 180, {"duration": "int"}),
        ("veo_3_1_fast", "fal-ai/veo3.1/fast/image-to-video", 1.20, "Veo 3.1 Fast", 120, {"duration": "s"}),
        ("wan_2_6", "wan/v2.6/image-to-video", 0.50, "Wan v2.6", 90),
        ("grok_imagine_i2v", "xai/grok-imagine-video/image-to-video", 0.302, "xAI Grok Imagine Video", 60,
         {"duration": "int"}),
        duration="str",
    ),
    *_rows(
        "image_to_image",
        ("photon", "fal-ai/luma-photon/flash/modify", 0.02, "Luma Photon Flash", 8),
        ("photon_base", "fal-ai/luma-photon/modify", 0.03, "Luma Photon Base", 12),
        ("kontext", "fal-ai/flux-kontext/dev", 0.025, "FLUX Kontext Dev", 15),
        ("kontext_multi", "fal-ai/flux-pro/kontext/max/multi", 0.04, "FLUX Kontext [max] Multi", 25, _REFERENCES),
        ("seededit", "fal-ai/bytedance/seededit/v3/edit-image", 0.02, "ByteDance SeedEdit v3", 10, _SINGLE_IMAGE),
        ("clarity", "fal-ai/clarity-upscaler", 0.05, "Clarity Upscaler", 30, _SINGLE_IMAGE),
        ("nano_banana_pro_edit", "fal-ai/nano-banana-pro/edit", 0.015, "Nano Banana Pro Edit", 8, _REFERENCES),
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
        "text_to_speech",
        ("elevenlabs", "fal-ai/elevenlabs/tts/multilingual-v2", 0.05, "ElevenLabs TTS (multilingual v2)", 15),
        ("elevenlabs_turbo", "fal-ai/elevenlabs/tts/turbo-v2.5", 0.03, "ElevenLabs Turbo v2.5", 8),
        ("elevenlabs_v3", "fal-ai/elevenlabs/tts/eleven-v3", 0.08, "ElevenLabs v3", 20),
    ),
]

FAL_MODELS: dict[str, FalModel] = {}
"""model key -> model. Keys are unique across step types, as in the old tool's registry."""
for _model in _MODELS:
    if _model.key in FAL_MODELS:
        raise ValueError(f"duplicate fal model key {_model.key!r}")
    FAL_MODELS[_model.key] = _model
del _model


def fal_model(step_type: str, key: str | None) -> FalModel | None:
    """The fal model serving ``key`` for ``step_type``, or None."""
    model = FAL_MODELS.get(key or "")
    return model if model is not None and model.step_type == step_type else None
