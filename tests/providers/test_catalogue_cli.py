"""The old tool's step types and model names through the real CLI, against the fake fal.

Each chain is written as a user of the AI Content Pipeline tool would write it
(its step types, its model names and aliases); the assertions are on what
reached fal (the request bodies, shaped as fal's model pages document them)
and on what the run produced.
"""

from __future__ import annotations

import json

import pytest

from test_fal_cli import env_for


def _run(aicp, write_chain, fake, text):
    chain = write_chain(text)
    run = aicp("run-chain", "--config", chain, "--stream", env=env_for(fake))
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def _completed(run, step):
    return next(e for e in run.of("step_complete") if e["step"] == step)


def test_avatar_takes_the_portrait_and_the_narration_before_it(aicp, write_chain, fake_fal):
    run = _run(aicp, write_chain, fake_fal, """
        name: talking head
        prompt: hello, I am a fox
        steps:
          - {type: text_to_image, model: flux_dev}
          - {type: text_to_speech, model: elevenlabs}
          - {type: avatar, model: omnihuman_v1_5}
    """)
    body = fake_fal.submits("fal-ai/bytedance/omnihuman/v1.5")[0]
    assert body["image_url"].startswith("data:image/png;base64,")
    assert body["audio_url"].startswith("data:audio/mpeg;base64,")  # the narration of step 2
    assert body["resolution"] == "1080p" and body["turbo_mode"] is False
    assert "prompt" not in body
    assert _completed(run, 2)["output"].endswith("_avatar.mp4")
    assert run.result["total_cost"] == pytest.approx(0.003 + 0.05 + 0.80)


def test_text_avatar_speaks_the_prompt(aicp, write_chain, fake_fal):
    _run(aicp, write_chain, fake_fal, """
        name: text avatar
        prompt: welcome to the show
        steps:
          - {type: text_to_image, model: flux_schnell}
          - {type: avatar, model: fabric_1_0_text, params: {resolution: 480p}}
    """)
    body = fake_fal.submits("veed/fabric-1.0/text")[0]
    assert body["text"] == "welcome to the show" and body["resolution"] == "480p"
    assert body["image_url"].startswith("data:image/png")


def test_video_models_take_the_video(aicp, write_chain, fake_fal):
    _run(aicp, write_chain, fake_fal, """
        name: edit a clip
        prompt: a fox running
        steps:
          - {type: text_to_video, model: kling_3_standard}
          - {type: video_to_video, model: kling_o3_pro_edit, params: {prompt: make it snow, duration: 5}}
          - {type: avatar, model: grok_video_edit, params: {prompt: colorize}}
          - {type: add_audio, model: thinksound, params: {prompt: wind and paws on snow}}
    """)
    t2v = fake_fal.submits("fal-ai/kling-video/v3/standard/text-to-video")[0]
    assert t2v["generate_audio"] is False  # fal's default is true (billed 1.5x); the old tool sent false
    edit = fake_fal.submits("fal-ai/kling-video/o3/pro/video-to-video/edit")[0]
    assert edit["video_url"].startswith("data:video/mp4") and edit["prompt"] == "make it snow"
    assert edit["duration"] == 5
    grok = fake_fal.submits("xai/grok-imagine-video/edit-video")[0]
    assert grok["video_url"].startswith("data:video/mp4") and grok["prompt"] == "colorize"
    sound = fake_fal.submits("fal-ai/thinksound")[0]
    assert sound["video_url"].startswith("data:video/mp4") and sound["prompt"] == "wind and paws on snow"


def test_speech_to_text_gives_the_transcript_as_text(aicp, write_chain, fake_fal):
    run = _run(aicp, write_chain, fake_fal, """
        name: transcribe
        prompt: hello there
        steps:
          - {type: text_to_speech, model: elevenlabs_turbo}
          - {type: speech_to_text, model: scribe_v2, params: {language_code: eng}}
          - {type: text_to_image, model: flux_schnell}
    """)
    body = fake_fal.submits("fal-ai/elevenlabs/speech-to-text/scribe-v2")[0]
    assert body["audio_url"].startswith("data:audio") and body["language_code"] == "eng"
    assert body["diarize"] is True and body["tag_audio_events"] is True
    assert fake_fal.submits("fal-ai/flux-1/schnell")[0]["prompt"] == "hello there"
    done = _completed(run, 1)
    assert done["output"] == "hello there"  # the text flows on; the files keep it and the whole answer
    txt, raw = done["outputs"]
    assert txt.endswith("_speech_to_text.txt") and open(txt).read() == "hello there\n"
    assert json.load(open(raw))["words"][0]["text"] == "hello"


@pytest.mark.parametrize("alias, endpoint, expected", [
    ("photon_flash", "fal-ai/luma-photon/flash/modify", {"strength": 0.8, "aspect_ratio": "1:1"}),
    ("photon_base", "fal-ai/luma-photon/modify", {"strength": 0.8, "aspect_ratio": "1:1"}),
    ("seededit_v3", "fal-ai/bytedance/seededit/v3/edit-image", {}),
    ("flux_kontext", "fal-ai/flux-kontext/dev", {}),
    ("clarity_upscaler", "fal-ai/clarity-upscaler", {}),
])
def test_image_to_image_names_of_the_old_tool(aicp, write_chain, fake_fal, alias, endpoint, expected):
    _run(aicp, write_chain, fake_fal, f"""
        name: restyle
        prompt: a cat
        steps:
          - {{type: text_to_image, model: flux}}
          - {{type: image_to_image, model: {alias}, params: {{prompt: watercolour}}}}
    """)
    assert len(fake_fal.submits("fal-ai/flux-1/dev")) == 1
    body = fake_fal.submits(endpoint)[0]
    assert body["prompt"] == "watercolour"
    for key, value in expected.items():
        assert body[key] == value


@pytest.mark.parametrize("name, endpoint", [
    ("veo3", "fal-ai/veo3/image-to-video"), ("veo3_fast", "fal-ai/veo3/fast/image-to-video"),
    ("veo2", "fal-ai/veo2/image-to-video"), ("kling", "fal-ai/kling-video/v2.1/standard/image-to-video"),
    ("kling_3_pro", "fal-ai/kling-video/v3/pro/image-to-video"), ("sora_2", "fal-ai/sora-2/image-to-video"),
    ("auto", "fal-ai/veo3/fast/image-to-video"),
])
def test_image_to_video_names_of_the_old_tool(aicp, write_chain, fake_fal, name, endpoint):
    _run(aicp, write_chain, fake_fal, f"""
        name: animate
        prompt: a cat
        steps:
          - {{type: text_to_image, model: auto}}
          - {{type: image_to_video, model: {name}, params: {{duration: 8}}}}
    """)
    assert len(fake_fal.submits("fal-ai/flux-1/dev")) == 1  # text_to_image auto: flux_dev
    body = fake_fal.submits(endpoint)[0]
    assert body.get("image_url", body.get("start_image_url", "")).startswith("data:image/png")
    if name == "kling_3_pro":
        assert body["generate_audio"] is False


def test_auto_with_criteria_is_not_sent_to_fal(aicp, write_chain, fake_fal):
    _run(aicp, write_chain, fake_fal, """
        name: animate
        prompt: a cat
        steps:
          - {type: text_to_image, model: auto, params: {criteria: speed}}
          - {type: image_to_video, model: auto, params: {criteria: speed, budget: 5}}
    """)
    body = fake_fal.submits("fal-ai/flux-1/schnell")[0]
    assert "criteria" not in body
    body = fake_fal.submits("fal-ai/minimax/hailuo-02/standard/image-to-video")[0]
    assert "criteria" not in body and "budget" not in body


def test_list_models_names_every_alias(aicp):
    run = aicp("list-models", "--json")
    rows = json.loads(run.stdout)["data"]
    aliases = {(r["type"], a): r["model"] for r in rows for a in r["aliases"]}
    assert aliases[("image_to_image", "photon_flash")] == "photon"
    assert aliases[("image_to_video", "auto")] == "veo3_fast_i2v"
    text = aicp("list-models").stdout
    assert "photon_flash -> photon" in text


# complete_content_pipeline.yaml from the old tool's input folder (donghaozhang/video-agent-skill history),
# unchanged but for its comments: every provider in one chain
OLD_COMPLETE_PIPELINE = """
    name: "complete_content_pipeline"
    description: "Full content creation pipeline with audio and all AI optimizations"

    steps:
      - type: "text_to_image"
        model: "flux_dev"
        params:
          aspect_ratio: "16:9"
          style: "cinematic"
          quality: "high"
        enabled: true

      - type: "image_understanding"
        model: "gemini_detailed"
        params:
          analysis_prompt: "Provide comprehensive analysis for video creation including mood, lighting, potential camera movements, and audio suggestions"
        enabled: true

      - type: "prompt_generation"
        model: "openrouter_video_cinematic"
        params:
          background_context: "Create a cinematic masterpiece with professional camera work and compelling visual storytelling"
          video_style: "cinematic"
          duration_preference: "medium"
        enabled: true

      - type: "image_to_video"
        model: "veo3"
        params:
          duration: 8
          motion_level: "medium"
          quality: "high"
        enabled: true

      - type: "add_audio"
        model: "thinksound"
        params:
          prompt: "Epic cinematic soundtrack that matches the visual mood and enhances the storytelling"
          style: "cinematic"
        enabled: true

    output_dir: "output"
"""


def test_an_old_chain_with_every_provider(aicp, write_chain, fake_fal, fake_gemini, fake_openrouter):
    from gemini_fake import KEY as GEMINI_KEY
    from openrouter_fake import KEY as OPENROUTER_KEY

    env = env_for(fake_fal, GEMINI_API_KEY=GEMINI_KEY, AICP_GEMINI_URL=fake_gemini.url,
                  OPENROUTER_API_KEY=OPENROUTER_KEY, AICP_OPENROUTER_URL=fake_openrouter.url)
    chain = write_chain(OLD_COMPLETE_PIPELINE)
    estimate = aicp("estimate-cost", "--config", chain, "--json", env=env)
    assert estimate.returncode == 0, estimate.stderr
    assert json.loads(estimate.stdout)["data"]["estimated_cost"] == pytest.approx(0.003 + 0.002 + 0.002 + 4.0 + 0.05)
    run = aicp("run-chain", "--config", chain, "--input-text", "a lighthouse at dawn", "--stream", env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    image = fake_gemini.bodies("POST", ":generateContent")[0]["contents"][0]["parts"][0]["inline_data"]
    assert image["mime_type"] == "image/png"  # the image step 1 made
    veo = fake_fal.submits("fal-ai/veo3/image-to-video")[0]
    assert veo["prompt"] == "A red square slowly turns in soft light, the camera drifting closer."  # OpenRouter's
    assert veo["duration"] == "8s" and veo["image_url"].startswith("data:image/png")
    sound = fake_fal.submits("fal-ai/thinksound")[0]
    assert sound["video_url"].startswith("data:video/mp4")
    assert [e["type"] for e in run.of("step_complete")] == ["text_to_image", "image_understanding",
                                                            "prompt_generation", "image_to_video", "add_audio"]
    assert run.result["total_cost"] == pytest.approx(0.003 + 0.002 + 0.00042 + 4.0 + 0.05)


@pytest.mark.parametrize("model, kind, param", [
    ("omnihuman_v1_5", "audio", "audio_url"), ("fabric_1_0", "audio", "audio_url"),
    ("multitalk", "audio", "first_audio_url"), ("kling_motion_control", "video", "video_url"),
])
def test_validate_says_what_a_model_also_needs(aicp, write_chain, media, tmp_path, model, kind, param):
    chain = write_chain(f"""
        name: avatar
        prompt: hello
        steps:
          - {{type: text_to_image, model: flux_dev}}
          - {{type: avatar, model: {model}}}
    """)
    run = aicp("validate", "--config", chain)
    assert run.returncode == 2
    assert f"steps[1].model: {model} also needs {kind}: give params.{param}" in run.stderr
    (tmp_path / f"given.{'wav' if kind == 'audio' else 'mp4'}").write_bytes(
        media["wav" if kind == "audio" else "mp4"].read_bytes())
    given = write_chain(f"""
        name: avatar
        prompt: hello
        steps:
          - {{type: text_to_image, model: flux_dev}}
          - {{type: avatar, model: {model}, params: {{{param}: given.{'wav' if kind == 'audio' else 'mp4'}}}}}
    """, name="given.yaml")
    assert aicp("validate", "--config", given, "--offline").returncode == 0  # no keys here: --offline


def test_add_audio_with_nothing_to_mux_is_an_error_that_names_thinksound(aicp, write_chain):
    # the old tool's add_audio always generated a soundtrack (thinksound); ours muxes unless asked to generate
    chain = write_chain("""
        name: silent
        prompt: a cat
        steps:
          - {type: text_to_video, model: hailuo_pro}
          - {type: add_audio}
    """)
    run = aicp("validate", "--config", chain)
    assert run.returncode == 2
    assert ("steps[1]: add_audio also needs audio: give params.audio, or put a step that produces audio "
            "before this one (or use model: thinksound, which generates it)") in run.stderr
