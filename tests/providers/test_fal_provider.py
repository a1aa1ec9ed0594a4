"""The fal executor in-process, against the fake fal: requests, uploads, polling, retries, failures, files."""

from __future__ import annotations

import base64
import os
import socket
import time
from pathlib import Path

import pytest

from aicp._context import StepFailed
from aicp.providers import _http, fal_queue
from aicp.providers.models import MODELS as FAL_MODELS
from aicp.providers.fal_step import check, run, seconds_of
from fal_fake_server import Script


def test_text_to_image_submits_polls_relays_and_downloads(fal_env, make_ctx, media):
    fal_env.scripts["fal-ai/flux-1/dev"] = Script(queue=[3, 2, 1], progress_polls=2,
                                                  logs=["loading weights", "step 10/28"])
    ctx, messages = make_ctx("text_to_image", "flux_dev", "a red fox in the snow")
    result = run(ctx)

    body = fal_env.submits("fal-ai/flux-1/dev")[0]
    assert body["prompt"] == "a red fox in the snow"
    assert body["image_size"] == "landscape_16_9" and "aspect_ratio" not in body
    submit = next(r for r in fal_env.requests if r["method"] == "POST")
    assert submit["headers"]["Authorization"] == "Key test-key"
    # status polls carry logs=1 and go to the app's path, without the endpoint's sub-path
    assert any(p.startswith("/fal-ai/flux-1/requests/") and p.endswith("/status?logs=1")
               for p in fal_env.paths("GET"))

    out = Path(result["output"])
    assert out.name == "step_1_text_to_image.png"
    assert out.read_bytes() == media["png"].read_bytes()
    assert result["outputs"] == [str(out)]
    assert result["cost"] == pytest.approx(0.003)
    assert result["provider"] == "fal" and result["endpoint"] == "fal-ai/flux-1/dev"
    assert result["url"].endswith("/files/image.png")
    assert not [p for p in out.parent.iterdir() if ".part" in p.name]

    progress = messages.progress()
    for position in (3, 2, 1):
        assert f"in queue, position {position}" in progress
    assert any(m.startswith("generating on fal") for m in progress)
    lines = [m["fields"]["event"] for m in messages.logs()]
    assert lines.count("loading weights") == 1 and lines.count("step 10/28") == 1  # each line once
    assert fal_env.cancels == []


def test_image_to_video_sends_a_small_local_image_inline_with_the_chain_prompt(fal_env, make_ctx, media):
    ctx, _ = make_ctx("image_to_video", "kling_2_1", str(media["png"]), params={"duration": 10},
                      latest={"text": "the fox runs"})
    result = run(ctx)
    body = fal_env.submits("fal-ai/kling-video/v2.1/standard/image-to-video")[0]
    assert body["image_url"] == "data:image/png;base64," + base64.b64encode(media["png"].read_bytes()).decode()
    assert body["prompt"] == "the fox runs"
    assert body["duration"] == "10"
    assert Path(result["output"]).name == "step_1_image_to_video.mp4"
    assert result["cost"] == pytest.approx(0.5)
    assert not any("/storage/" in p for p in fal_env.paths())


def test_a_large_local_file_goes_through_fal_storage(fal_env, make_ctx, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(os.urandom(fal_queue.DATA_URI_MAX_BYTES + 1))
    ctx, _ = make_ctx("image_to_image", "kontext", "big.png", params={"prompt": "make it blue"})
    run(ctx)
    initiate = next(r for r in fal_env.requests if r["path"].startswith("/storage/upload/initiate"))
    assert "storage_type=fal-cdn-v3" in initiate["path"]
    assert initiate["headers"]["Authorization"] == "Key test-key"
    body = fal_env.submits("fal-ai/flux-kontext/dev")[0]
    name = body["image_url"].rsplit("/files/", 1)[1]
    assert fal_env.uploads[name] == big.read_bytes()
    assert body["prompt"] == "make it blue"


def test_local_files_in_url_params_are_uploaded_too(fal_env, make_ctx, media):
    ctx, _ = make_ctx("image_to_video", "kling_2_1", str(media["png"]),
                      params={"tail_image_url": str(media["png"]), "prompt": "p"})
    run(ctx)
    body = fal_env.submits()[0]
    assert body["tail_image_url"].startswith("data:image/png;base64,")


def test_a_missing_input_file_fails_before_anything_is_sent(fal_env, make_ctx):
    ctx, _ = make_ctx("image_to_video", "kling_2_1", "nope.png")
    with pytest.raises(StepFailed, match="input: file not found: nope.png"):
        run(ctx)
    assert fal_env.requests == []


def test_key_rejected_fails_with_exit_4(fal_env, make_ctx, monkeypatch):
    monkeypatch.setenv("FAL_KEY", "wrong-key")
    ctx, _ = make_ctx("text_to_image", "flux_schnell", "x")
    with pytest.raises(StepFailed, match="key rejected") as caught:
        run(ctx)
    assert caught.value.run_exit_code == 4
    assert "HTTP 401" in str(caught.value) and "FAL_KEY" in str(caught.value)
    assert len(fal_env.submits()) == 1  # never retried


def test_403_is_a_rejected_key_too(fal_env, make_ctx):
    fal_env.scripts["fal-ai/flux-1/schnell"] = Script(submit_status=403)
    ctx, _ = make_ctx("text_to_image", "flux_schnell", "x")
    with pytest.raises(StepFailed, match="key rejected") as caught:
        run(ctx)
    assert caught.value.run_exit_code == 4


def test_429_is_retried_after_the_delay_the_server_asks_for(fal_env, make_ctx, monkeypatch):
    monkeypatch.setattr(fal_queue, "MAX_RETRY_DELAY", 30.0)
    fal_env.scripts["fal-ai/flux-1/schnell"] = Script(submit_errors=[429], retry_after="1")
    ctx, messages = make_ctx("text_to_image", "flux_schnell", "x")
    started = time.monotonic()
    result = run(ctx)
    assert time.monotonic() - started >= 1.0
    assert len(fal_env.submits()) == 2
    assert Path(result["output"]).exists()
    warnings = [m for m in messages.logs() if m["level"] == "warning"]
    assert any("HTTP 429, Retry-After 1 s; retry 1 of 9 in 1.0 s" in m["fields"]["event"] for m in warnings)


@pytest.mark.parametrize("status", [408, 409, 429, 500, 503])
def test_the_statuses_fal_client_retries_are_retried(fal_env, make_ctx, status):
    # fal-client (fal-ai/fal, projects/fal_client/src/fal_client/client.py): RETRY_CODES = [408, 409, 429];
    # fal's own 5xx on the queue calls are retried too (an overloaded queue)
    fal_env.scripts["fal-ai/flux-1/schnell"] = Script(submit_errors=[status], status_errors=[status, status])
    ctx, messages = make_ctx("text_to_image", "flux_schnell", "x")
    assert Path(run(ctx)["output"]).exists()
    assert len(fal_env.submits()) == 2
    assert sum(f"HTTP {status}" in m["fields"]["event"] for m in messages.logs()) == 3


def test_a_models_own_5xx_on_the_result_is_a_step_failure_not_retried(fal_env, make_ctx):
    fal_env.scripts["fal-ai/flux-1/schnell"] = Script(result_errors=[500, 500])
    ctx, _ = make_ctx("text_to_image", "flux_schnell", "x")
    with pytest.raises(StepFailed, match=r"fal failed \(HTTP 500, result\): CUDA out of memory") as caught:
        run(ctx)
    assert caught.value.run_exit_code is None  # a step failure (exit 5), not the provider's (4)
    results = [r for r in fal_env.requests if r["method"] == "GET" and "/requests/" in r["path"]
               and not r["path"].split("?")[0].endswith("/status")]
    assert len(results) == 1


def test_a_gateway_error_on_the_result_is_retried(fal_env, make_ctx):
    fal_env.scripts["fal-ai/flux-1/schnell"] = Script(result_errors=[502, 504], gateway_errors=True)
    ctx, _ = make_ctx("text_to_image", "flux_schnell", "x")
    assert Path(run(ctx)["output"]).exists()


def test_fal_key_id_and_secret_stand_for_fal_key(fal_env, make_ctx, monkeypatch):
    # fal-client's auth: FAL_KEY, else FAL_KEY_ID and FAL_KEY_SECRET joined by ':'
    monkeypatch.delenv("FAL_KEY")
    monkeypatch.setenv("FAL_KEY_ID", "test")
    monkeypatch.setenv("FAL_KEY_SECRET", "key")
    fal_env.valid_keys.add("test:key")
    ctx, _ = make_ctx("text_to_image", "flux_schnell", "x")
    assert Path(run(ctx)["output"]).exists()
    assert fal_env.requests[0]["headers"]["Authorization"] == "Key test:key"


def test_a_file_above_the_threshold_goes_through_fals_multipart_upload(fal_env, make_ctx, tmp_path, monkeypatch):
    # the protocol of fal-client's MultipartUpload: CDN token, create, PUT parts (ETags), complete
    monkeypatch.setattr(fal_queue, "MULTIPART_THRESHOLD", 3 * 1024 * 1024)
    monkeypatch.setattr(fal_queue, "MULTIPART_CHUNK", 1024 * 1024)
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    ctx, _ = make_ctx("upscale_video", "topaz", str(big))
    run(ctx)
    body = fal_env.submits("fal-ai/topaz/upscale/video")[0]
    name = body["video_url"].rsplit("/files/", 1)[1]
    assert fal_env.uploads[name] == big.read_bytes()
    parts = [r for r in fal_env.requests if r["method"] == "PUT" and "/multipart/" in r["path"]]
    assert [r["path"].rsplit("/", 1)[1] for r in parts] == ["1", "2", "3", "4"]
    assert all(r["headers"]["Authorization"] == "Bearer cdn-token" for r in parts)  # the CDN token, not the key
    assert not any(r["path"].startswith("/storage/upload/initiate") for r in fal_env.requests)


def test_5xx_then_success(fal_env, make_ctx):
    fal_env.scripts["fal-ai/flux-1/schnell"] = Script(submit_errors=[500], status_errors=[502, 503])
    ctx, _ = make_ctx("text_to_image", "flux_schnell", "x")
    assert Path(run(ctx)["output"]).exists()


def test_5xx_that_never_ends_gives_up_with_exit_4_and_cancels(fal_env, make_ctx):
    fal_env.scripts["fal-ai/flux-1/schnell"] = Script(status_errors=[500] * 20)
    ctx, _ = make_ctx("text_to_image", "flux_schnell", "x")
    with pytest.raises(StepFailed, match=r"HTTP 500 to status 10 times in a row") as caught:
        run(ctx)
    assert caught.value.run_exit_code == 4
    assert len(fal_env.cancels) == 1


@pytest.mark.parametrize("style", ["FAILED", "COMPLETED"])
def test_a_failed_request_fails_the_step_with_fals_message(fal_env, make_ctx, style):
    fal_env.scripts["fal-ai/flux-1/schnell"] = Script(fail="content policy violation", fail_style=style)
    ctx, _ = make_ctx("text_to_image", "flux_schnell", "x")
    with pytest.raises(StepFailed, match="content policy violation") as caught:
        run(ctx)
    assert caught.value.run_exit_code is None  # a step failure (5), not the account's
    assert fal_env.cancels == []  # fal finished: nothing to cancel


def test_a_refused_request_reports_the_validation_errors(fal_env, make_ctx):
    fal_env.scripts["fal-ai/flux-1/schnell"] = Script(submit_status=422)
    ctx, _ = make_ctx("text_to_image", "flux_schnell", "x")
    with pytest.raises(StepFailed, match="fal refused the request \\(HTTP 422, submit\\)"):
        run(ctx)


def test_unreachable_fal_is_a_clear_exit_4(fal_env, make_ctx, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AICP_FAL_QUEUE_URL", f"http://127.0.0.1:{port}")
    ctx, _ = make_ctx("text_to_image", "flux_schnell", "x")
    with pytest.raises(StepFailed, match=r"fal is unreachable \(submit, 127.0.0.1\): ConnectError") as caught:
        run(ctx)
    assert caught.value.run_exit_code == 4


def test_a_download_shorter_than_its_content_length_fails_and_leaves_no_file(fal_env, make_ctx, tmp_path):
    fal_env.truncate.add("image.png")
    ctx, _ = make_ctx("text_to_image", "flux_schnell", "x")
    with pytest.raises(StepFailed, match="broke off|incomplete"):
        run(ctx)
    assert list((tmp_path / "out").iterdir()) == []


def test_queue_urls_of_real_fal_are_redirected_to_the_configured_base(fal_env, make_ctx):
    fal_env.scripts["fal-ai/flux-1/schnell"] = Script(foreign_urls=True, queue=[1])
    ctx, _ = make_ctx("text_to_image", "flux_schnell", "x")
    assert Path(run(ctx)["output"]).exists()


def test_inline_and_multiple_outputs(fal_env, make_ctx, media):
    inline = "data:image/png;base64," + base64.b64encode(media["png"].read_bytes()).decode()
    fal_env.scripts["fal-ai/nano-banana-pro"] = Script(result={"images": [
        {"url": inline}, {"url": f"{fal_env.url}/files/image.png"}]})
    ctx, _ = make_ctx("text_to_image", "nano_banana_pro", "x", step=2)
    result = run(ctx)
    assert [Path(p).name for p in result["outputs"]] == ["step_3_text_to_image_1.png", "step_3_text_to_image_2.png"]
    assert all(Path(p).read_bytes() == media["png"].read_bytes() for p in result["outputs"])
    assert result["url"].endswith("/files/image.png")  # never a data URI
    assert fal_env.submits()[0]["aspect_ratio"] == "16:9"  # endpoints that take aspect_ratio get it as is


def test_a_result_without_files_names_what_it_had(fal_env, make_ctx):
    fal_env.scripts["fal-ai/flux-1/schnell"] = Script(result={"seed": 1, "has_nsfw_concepts": [True]})
    ctx, _ = make_ctx("text_to_image", "flux_schnell", "x")
    with pytest.raises(StepFailed, match="no file at images\\[\\].url; the result has seed, has_nsfw_concepts"):
        run(ctx)


def test_a_list_of_images_makes_one_request_each(fal_env, make_ctx, media):
    ctx, _ = make_ctx("image_to_video", "hailuo", [str(media["png"]), str(media["png"])],
                      params={"prompt": "pan"})
    result = run(ctx)
    assert len(fal_env.submits()) == 2
    assert [Path(p).name for p in result["output"]] == ["step_1_image_to_video_1.mp4", "step_1_image_to_video_2.mp4"]
    assert result["cost"] == pytest.approx(0.16)


def test_text_to_speech_and_upscalers_map_their_params(fal_env, make_ctx, media):
    ctx, _ = make_ctx("text_to_speech", "elevenlabs_turbo", "Hello there.", params={"voice": "Rachel"})
    result = run(ctx)
    assert fal_env.submits("fal-ai/elevenlabs/tts/turbo-v2.5")[0] == {"text": "Hello there.", "voice": "Rachel"}
    assert Path(result["output"]).suffix == ".mp3"

    ctx, _ = make_ctx("upscale_image", "seedvr", str(media["png"]), params={"target": "1080p"})
    run(ctx)
    body = fal_env.submits("fal-ai/seedvr/upscale/image")[0]
    assert body["upscale_mode"] == "target" and body["target_resolution"] == "1080p"
    assert "prompt" not in body

    ctx, _ = make_ctx("upscale_image", "seedvr", str(media["png"]), params={"factor": 3})
    run(ctx)
    body = fal_env.submits("fal-ai/seedvr/upscale/image")[1]
    assert body["upscale_mode"] == "factor" and body["upscale_factor"] == 3

    ctx, _ = make_ctx("upscale_video", "topaz", str(media["mp4"]))
    result = run(ctx)
    body = fal_env.submits("fal-ai/topaz/upscale/video")[0]
    assert body["video_url"].startswith("data:video/mp4;base64,") and body["upscale_factor"] == 2
    assert result["cost"] == pytest.approx(1.5)


@pytest.mark.parametrize("model, given, sent", [
    ("veo3", 8, "8s"), ("veo3", "8s", "8s"), ("sora_2", "4s", 4), ("kling_2_6_pro", 5, "5"), ("grok_imagine", "6", 6),
])
def test_duration_is_sent_the_way_each_endpoint_wants_it(fal_env, make_ctx, model, given, sent):
    ctx, _ = make_ctx("text_to_video", model, "x", params={"duration": given})
    run(ctx)
    assert fal_env.submits(FAL_MODELS[model].endpoint)[0]["duration"] == sent


def test_no_key_in_the_worker_is_exit_3(make_ctx, monkeypatch):
    monkeypatch.delenv("FAL_KEY", raising=False)
    ctx, _ = make_ctx("text_to_image", "flux_dev", "x")
    with pytest.raises(StepFailed, match="FAL_KEY is not set") as caught:
        run(ctx)
    assert caught.value.run_exit_code == 3


def test_the_key_goes_to_fal_hosts_only():
    client = fal_queue.FalClient("secret", queue_url="http://queue.example", rest_url="http://rest.example")
    try:
        assert client._headers("http://queue.example/fal-ai/x")["Authorization"] == "Key secret"
        assert client._headers("http://rest.example/storage/upload/initiate")["Authorization"] == "Key secret"
        assert "Authorization" not in client._headers("https://v3.fal.media/files/abc.png")
        assert "Authorization" not in client._headers("http://queue.example.evil.com/x")
    finally:
        client.close()


def test_retry_after_accepts_seconds_and_http_dates():
    import email.utils

    import httpx

    def response(value: str) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": value})

    retry_after = _http.retry_after
    assert retry_after(response("3")) == 3.0
    later = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 8 <= retry_after(response(later)) <= 10
    assert retry_after(response("soon")) is None
    assert retry_after(httpx.Response(429)) is None


def test_check_reports_params_fal_would_refuse():
    assert check({"duration": "5s", "aspect_ratio": "16:9"}, "flux_dev") == []
    assert check({"duration": "five"}, "veo3") == [
        ("params.duration", "must be a whole number of seconds (5, \"5\" or \"5s\"), got 'five'")]
    assert check({"aspect_ratio": "21:9"}, "flux_dev")[0][0] == "params.aspect_ratio"
    assert check({"aspect_ratio": "21:9"}, "nano_banana_pro") == []  # passed through as is
    assert check({"image_url": 3, "image_urls": ["a", 1]}, "kling_2_1") == [
        ("params.image_url", "must be a URL or a file path, got 3"),
        ("params.image_urls", "must be a list of URLs or file paths, got ['a', 1]")]
    assert seconds_of(True) is None and seconds_of(5.0) == 5 and seconds_of(0) is None
