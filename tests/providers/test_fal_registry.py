"""The fal model table, its place in the catalogue, and the credentials check."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from aicp._errors import CredentialsError
from aicp._chain.steptypes import STEP_TYPES
from aicp.providers.credentials import check_credentials, required_credentials
from aicp.providers.fal_models import FAL_MODELS, TYPE_IO, fal_model

# The model keys the AI Content Pipeline tool offers for these step types
# (its registry_data.py and text-to-image provider), which chains already use.
OLD_TOOL_MODELS = {
    "text_to_image": ["flux_dev", "flux_schnell", "imagen4", "seedream_v3", "seedream3", "nano_banana_pro",
                      "gpt_image_1_5"],  # and gen4, Runway via Replicate: no fal endpoint
    "text_to_video": ["hailuo_pro", "veo3", "veo3_fast", "kling_2_6_pro", "kling_3_standard", "kling_3_pro",
                      "kling_o3_pro_t2v", "sora_2", "sora_2_pro", "grok_imagine"],
    "image_to_video": ["hailuo", "kling_2_1", "kling_2_6_pro_i2v", "kling_3_standard_i2v", "kling_3_pro_i2v",
                       "kling_o3_standard_i2v", "kling_o3_pro_i2v", "kling_o3_standard_ref", "kling_o3_pro_ref",
                       "seedance_1_5_pro", "sora_2_i2v", "sora_2_pro_i2v", "veo_3_1_fast", "wan_2_6",
                       "grok_imagine_i2v"],
    "image_to_image": ["photon", "photon_base", "kontext", "kontext_multi", "seededit", "clarity",
                       "nano_banana_pro_edit", "gpt_image_1_5_edit"],
    "upscale_image": ["seedvr"],
    "upscale_video": ["topaz"],
    "text_to_speech": ["elevenlabs", "elevenlabs_turbo", "elevenlabs_v3"],
}


@pytest.mark.parametrize("step_type", sorted(OLD_TOOL_MODELS))
def test_every_model_of_the_old_tool_is_a_fal_executor_of_its_type(step_type):
    executors = STEP_TYPES[step_type].executors
    for key in OLD_TOOL_MODELS[step_type]:
        model = fal_model(step_type, key)
        assert model is not None, key
        executor = executors[key]
        assert (executor.provider, executor.target, executor.check) == (
            "fal", "aicp.providers.fal_step:run", "aicp.providers.fal_step:check")
        assert executor.cost == model.price > 0
    assert sorted(k for k, m in FAL_MODELS.items() if m.step_type == step_type) == sorted(OLD_TOOL_MODELS[step_type])


def test_rows_are_consistent():
    assert set(TYPE_IO) == set(OLD_TOOL_MODELS)
    for model in FAL_MODELS.values():
        assert model.endpoint.count("/") >= 1 and not model.endpoint.startswith(("/", "http"))
        assert model.duration in (None, "str", "int", "s")
        assert model.output_path and model.request_input_field
        assert STEP_TYPES[model.step_type].produces == model.io.kind
    assert fal_model("text_to_video", "kling_2_1") is None  # a key serves its own step type only
    # local executors are still there
    assert STEP_TYPES["text_to_image"].executors["title_card"].provider == "local"


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
