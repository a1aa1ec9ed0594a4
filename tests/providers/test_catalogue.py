"""The model catalogue (every key of the old tool's registry), its place in the step types, and the credentials check."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from aicp._errors import CredentialsError
from aicp._chain.steptypes import PROVIDER_EXECUTORS, STEP_TYPES, executor_for
from aicp.providers.credentials import check_credentials, required_credentials
from aicp.providers.models import MODELS as FAL_MODELS, PROVIDERS, TYPE_IO, model_for as fal_model, resolve

# The AI Content Pipeline tool's model registry (registry_data.py of donghaozhang/video-agent-skill at
# e7e52b5): its 74 keys by category, and the 6 names its image-to-video provider used for the i2v
# variants (provider_key): 80 names in all.
OLD_REGISTRY = {
    "text_to_video": ["hailuo_pro", "veo3", "veo3_fast", "kling_2_6_pro", "kling_3_standard", "kling_3_pro",
                      "kling_o3_pro_t2v", "sora_2", "sora_2_pro", "grok_imagine"],
    "image_to_video": ["hailuo", "kling_2_1", "kling_2_6_pro_i2v", "kling_3_standard_i2v", "kling_3_pro_i2v",
                       "kling_o3_standard_i2v", "kling_o3_pro_i2v", "kling_o3_standard_ref", "kling_o3_pro_ref",
                       "seedance_1_5_pro", "sora_2_i2v", "sora_2_pro_i2v", "veo_3_1_fast", "wan_2_6",
                       "grok_imagine_i2v"],
    "image_to_image": ["photon", "photon_base", "kontext", "kontext_multi", "seededit", "clarity",
                       "nano_banana_pro_edit", "nano_banana_2_edit", "gpt_image_1_5_edit"],
    "avatar": ["omnihuman_v1_5", "fabric_1_0", "fabric_1_0_fast", "fabric_1_0_text", "kling_ref_to_video",
               "kling_v2v_reference", "kling_v2v_edit", "kling_motion_control", "multitalk", "grok_video_edit"],
    "add_audio": ["thinksound"],
    "upscale_video": ["topaz"],
    "video_to_video": ["kling_o3_standard_edit", "kling_o3_pro_edit", "kling_o3_standard_v2v_ref",
                       "kling_o3_pro_v2v_ref"],
    "text_to_image": ["flux_dev", "flux_schnell", "imagen4", "seedream_v3", "seedream3", "gen4", "nano_banana_pro",
                      "gpt_image_1_5"],
    "text_to_speech": ["elevenlabs", "elevenlabs_turbo", "elevenlabs_v3"],
    "image_understanding": ["gemini_describe", "gemini_detailed", "gemini_classify", "gemini_objects", "gemini_ocr",
                            "gemini_composition", "gemini_qa"],
    "prompt_generation": ["openrouter_video_prompt", "openrouter_video_cinematic", "openrouter_video_realistic",
                          "openrouter_video_artistic", "openrouter_video_dramatic"],
    "speech_to_text": ["scribe_v2"],
}
OLD_PROVIDER_KEYS = {"kling_2_6_pro": "kling_2_6_pro_i2v", "kling_3_standard": "kling_3_standard_i2v",
                     "kling_3_pro": "kling_3_pro_i2v", "sora_2": "sora_2_i2v", "sora_2_pro": "sora_2_pro_i2v",
                     "grok_imagine": "grok_imagine_i2v"}
# The other names its step executors accepted (the drop-in issue lists them), and what they run.
OLD_ALIASES = {
    "image_to_video": {"veo3": "veo3_i2v", "veo3_fast": "veo3_fast_i2v", "veo2": "veo2_i2v", "kling": "kling_2_1",
                       "auto": "veo3_fast_i2v", **OLD_PROVIDER_KEYS},
    "image_to_image": {"photon_flash": "photon", "seededit_v3": "seededit", "flux_kontext": "kontext",
                       "flux_kontext_multi": "kontext_multi", "clarity_upscaler": "clarity"},
    "text_to_image": {"flux": "flux_dev", "auto": "flux_dev"},
}
PROVIDER_OF = {"image_understanding": "gemini", "prompt_generation": "openrouter"}


def test_the_old_registry_has_80_names():
    assert sum(map(len, OLD_REGISTRY.values())) + len(OLD_PROVIDER_KEYS) == 80


@pytest.mark.parametrize("step_type", sorted(OLD_REGISTRY))
def test_every_key_of_the_old_registry_is_served_in_its_step_type(step_type):
    executors = STEP_TYPES[step_type].executors
    for key in OLD_REGISTRY[step_type]:
        model = fal_model(step_type, key)
        assert model is not None, key
        assert model.provider == PROVIDER_OF.get(step_type, "replicate" if key == "gen4" else "fal")
        executor = executors[key]
        target, check = PROVIDER_EXECUTORS[model.provider]
        assert (executor.target, executor.check) == (target, check)
        assert executor.cost == model.price > 0
        assert executor_for(STEP_TYPES[step_type], key) is executor


@pytest.mark.parametrize("step_type", sorted(OLD_ALIASES))
def test_the_old_tools_other_names_resolve(step_type):
    for alias, key in OLD_ALIASES[step_type].items():
        assert fal_model(step_type, alias) is FAL_MODELS[key], alias
        assert executor_for(STEP_TYPES[step_type], alias) is STEP_TYPES[step_type].executors[key]
    assert fal_model("text_to_video", "kling") is None  # an alias belongs to its step type


def test_auto_picks_what_the_old_tool_picked():
    # its recommend_model: params.criteria (default "balanced") from its recommendations, else the
    # first available model; with a budget no model fits, the cheapest
    assert resolve("image_to_video", "auto", {}) == "veo3_fast_i2v"
    assert resolve("image_to_video", "auto", {"criteria": "speed"}) == "hailuo"
    assert resolve("image_to_video", "auto", {"criteria": "quality"}) == "veo3_i2v"
    assert resolve("image_to_video", "auto", {"criteria": "whatever"}) == "hailuo"
    assert resolve("image_to_video", "auto", {"budget": 0.01}) == "hailuo"
    assert resolve("text_to_image", "auto", {}) == "flux_dev"
    assert resolve("text_to_image", "auto", {"criteria": "speed"}) == "flux_schnell"
    assert resolve("text_to_image", "auto", {"criteria": "cinematic"}) == "gen4"
    assert resolve("text_to_image", "auto", {"budget": 0.0001}) == "flux_schnell"
    assert resolve("text_to_video", "auto", {}) is None


def test_rows_are_consistent():
    assert set(TYPE_IO) <= set(STEP_TYPES)
    for model in FAL_MODELS.values():
        assert model.provider in PROVIDERS
        assert (model.endpoint.count("/") >= 1 or model.provider == "gemini") and not model.endpoint.startswith(("/", "http"))
        assert model.duration in (None, "str", "int", "s")
        assert model.output_path and model.request_input_field
        assert STEP_TYPES[model.step_type].produces == model.io.kind
        assert model.seconds > 0
        if model.provider in ("gemini", "openrouter"):  # each language-model row is one instruction
            from aicp.providers import gemini, openrouter

            assert model.task in (gemini.TASKS if model.provider == "gemini" else openrouter.STYLES)
    assert fal_model("text_to_video", "kling_2_1") is None  # a key serves its own step type only
    # local executors are still there
    assert STEP_TYPES["text_to_image"].executors["title_card"].provider == "local"
    assert executor_for(STEP_TYPES["add_audio"], None).provider == "local"
    assert executor_for(STEP_TYPES["add_audio"], "whatever").provider == "local"
    assert executor_for(STEP_TYPES["add_audio"], "thinksound").provider == "fal"


def _chain(text: str):
    from aicp._chain.load import load_chain

    return load_chain(textwrap.dedent(text))


def test_credentials_are_needed_only_by_enabled_fal_steps():
    offline = _chain("""
        name: offline
        prompt: a cat
        steps:
          - {type: text_to_image, model: title_card}
          - {type: text_to_image, model: flux_dev, enabled: false}
    """)
    assert required_credentials(offline) == {}
    check_credentials(offline, environ={})

    remote = _chain("""
        name: remote
        prompt: a cat
        steps:
          - {type: text_to_image, model: flux_dev}
          - {type: image_to_video, model: hailuo}
    """)
    assert list(required_credentials(remote)) == ["FAL_KEY"]
    check_credentials(remote, environ={"FAL_KEY": "k"})
    for environ in ({}, {"FAL_KEY": "  "}):
        with pytest.raises(CredentialsError, match="^FAL_KEY is not set; steps\\[0\\]") as caught:
            check_credentials(remote, environ=environ)
        assert caught.value.exit_code == 3


def test_the_python_api_checks_credentials_before_running(tmp_path, monkeypatch):
    from aicp import run_chain

    monkeypatch.delenv("FAL_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    events = []
    with pytest.raises(CredentialsError, match="FAL_KEY"):
        run_chain("name: r\nprompt: a cat\nsteps:\n  - {type: text_to_image, model: flux_dev}\n",
                  observer=events.append)
    assert events == []


def test_validation_and_listing_never_import_the_http_library(tmp_path):
    chain = tmp_path / "c.yaml"
    chain.write_text("name: r\nprompt: a cat\nsteps:\n  - {type: text_to_video, model: veo3, params: {duration: 8}}\n")
    code = textwrap.dedent(f"""
        import sys
        from aicp import cli
        for argv in (["validate", "--offline", "-c", {str(chain)!r}], ["estimate-cost", "-c", {str(chain)!r}], ["list-models"]):
            try:
                cli.main(argv)
            except SystemExit as exit:
                assert exit.code == 0, exit.code
        print("httpx" in sys.modules, "aicp.providers.fal_queue" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "False False"
