"""The event stream: fields of every event, the JSON Schema, StreamEmitter, secrets, closed streams, log file, human view."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import pty
import select
import subprocess
import sys
import textwrap
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from _aicp import aicp_argv, child_env

from aicp.stream import NullEmitter, StreamEmitter

SCHEMA = json.loads(files("aicp").joinpath("events.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
ENVELOPE = ("schema_version", "event", "timestamp", "elapsed_seconds", "level", "run_id")
LEVELS = {"debug", "info", "warning", "error", "critical"}




def valid(event: dict[str, Any]) -> None:
    errors = sorted(VALIDATOR.iter_errors(event), key=str)
    assert not errors, f"{event.get('event')} does not match the schema: {errors[0].message}\n{event}"


def parse_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


EVENT_MODULE = """
    import sys
    from pathlib import Path

    def talk(ctx):
        print("to stdout", ctx.input)
        print("to stderr", file=sys.stderr)
        ctx.log.info("structured", answer=42)
        ctx.progress(0.25, "a quarter")
        ctx.progress(1.0)
        return ctx.input.upper()

    def flaky(ctx):
        marker = ctx.chain_dir / "flaky.marker"
        if not marker.exists():
            marker.write_text("x")
            raise RuntimeError("first attempt fails")
        return ctx.input + " (second attempt)"

    def boom(ctx):
        raise ValueError("it went wrong")
"""

RICH_CHAIN = """
    name: rich
    description: every kind of event
    prompt: hello
    author: someone
    retry_delay: 0.01
    steps:
      - type: python
        name: talk
        params: {function: "evmod:talk"}
      - type: command
        enabled: false
        params: {run: "exit 1"}
      - type: python
        retry_count: 1
        params: {function: "evmod:flaky"}
      - type: parallel_group
        params:
          max_workers: 1
          merge_strategy: first_success
          parallel_steps:
            - {type: command, params: {argv: [echo, one]}}
            - {type: command, params: {argv: [echo, two]}}
"""

FAILING_CHAIN = """
    name: failing
    prompt: hello
    steps:
      - type: python
        params: {function: "evmod:boom"}
"""


class Run:
    def __init__(self, proc: subprocess.CompletedProcess[str], log: Path | None = None) -> None:
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.log = log

    @property
    def events(self) -> list[dict[str, Any]]:
        return parse_lines(self.stderr)

    @property
    def result(self) -> dict[str, Any]:
        lines = self.stdout.splitlines()
        assert len(lines) == 1, lines
        return json.loads(lines[0])

    def of(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == name]


def run_cli(folder: Path, *args: str, env: dict[str, str] | None = None, **kw: Any) -> Run:
    proc = subprocess.run(aicp_argv(*args), cwd=folder, env=env or child_env(), capture_output=True,
                          text=True, timeout=120, **kw)
    return Run(proc)


def make_folder(folder: Path, chain: str, name: str = "chain.yaml") -> Path:
    (folder / "evmod.py").write_text(textwrap.dedent(EVENT_MODULE))
    (folder / name).write_text(textwrap.dedent(chain).lstrip())
    return folder


@pytest.fixture(scope="module")
def rich(tmp_path_factory) -> Run:
    folder = make_folder(tmp_path_factory.mktemp("rich"), RICH_CHAIN)
    run = run_cli(folder, "run-chain", "--config", "chain.yaml", "--stream", "--log-file", "events.jsonl")
    run.log = folder / "events.jsonl"
    assert run.returncode == 0, run.stderr
    return run


@pytest.fixture(scope="module")
def failing(tmp_path_factory) -> Run:
    folder = make_folder(tmp_path_factory.mktemp("failing"), FAILING_CHAIN)
    run = run_cli(folder, "run-chain", "--config", "chain.yaml", "--stream")
    assert run.returncode == 5, run.stderr
    return run


# ----------------------------------------------------------------------------- every event


@pytest.mark.parametrize("which", ["rich", "failing"])
def test_every_event_has_the_envelope_and_matches_the_schema(request, which):
    run: Run = request.getfixturevalue(which)
    events = run.events + [run.result]
    run_ids = {e["run_id"] for e in events}
    assert len(run_ids) == 1
    for event in events:
        assert list(event)[:6] == list(ENVELOPE), event
        assert event["schema_version"] == "1"
        assert isinstance(event["timestamp"], float)
        assert isinstance(event["elapsed_seconds"], (int, float)) and event["elapsed_seconds"] >= 0
        assert event["level"] in LEVELS
        assert isinstance(event["run_id"], str) and event["run_id"]
        valid(event)
    stamps = [e["timestamp"] for e in events]
    assert max(stamps) - min(stamps) < 60
    assert events[0]["event"] == "pipeline_start"


def test_lifecycle_on_stderr_result_on_stdout_only(rich):
    names = [e["event"] for e in rich.events]
    assert "pipeline_complete" not in names
    assert rich.result["event"] == "pipeline_complete"
    for expected in ("pipeline_start", "step_start", "step_complete", "step_log", "step_progress",
                     "step_retry", "step_skipped", "warning"):
        assert expected in names, f"no {expected} in {names}"


def test_pipeline_start_fields(rich):
    (start,) = rich.of("pipeline_start")
    assert start["name"] == "rich"
    assert start["total_steps"] == 3  # the disabled step is not counted
    assert start["config"] == "chain.yaml"
    assert start["description"] == "every kind of event"
    assert start["level"] == "info"


def test_step_start_fields(rich):
    starts = rich.of("step_start")
    first = starts[0]
    assert (first["step"], first["type"], first["model"], first["name"], first["attempt"]) == (0, "python", None, "talk", 1)
    assert isinstance(first["pid"], int)
    attempts = [s["attempt"] for s in starts if s["step"] == 1]
    assert attempts == [1, 2]
    group = [s for s in starts if s["type"] == "parallel_group"]
    assert group and group[0]["members"] == 2 and group[0]["merge_strategy"] == "first_success"


def test_step_complete_fields(rich):
    done = {(e["step"], e.get("member")): e for e in rich.of("step_complete")}
    first = done[(0, None)]
    assert first["output"] == "HELLO"
    assert first["cost"] == 0.0
    assert isinstance(first["duration_seconds"], float) and first["duration_seconds"] > 0
    assert first["type"] == "python"
    assert done[(1, None)]["attempt"] == 2
    assert done[(1, None)]["output"] == "HELLO (second attempt)"
    group = done[(2, None)]
    assert group["type"] == "parallel_group"
    assert "duration_seconds" in group


def test_step_log_fields(rich):
    logs = [e for e in rich.of("step_log") if e["step"] == 0]
    by_stream = {e["stream"]: e for e in logs}
    assert by_stream["stdout"]["line"] == "to stdout hello"
    assert by_stream["stderr"]["line"] == "to stderr"
    assert by_stream["log"]["line"] == "structured"
    assert by_stream["log"]["fields"]["answer"] == 42
    assert by_stream["log"]["log_level"] == "info"


def test_step_progress_fields(rich):
    progress = rich.of("step_progress")
    assert [(p["step"], p["fraction"], p["message"]) for p in progress] == [(0, 0.25, "a quarter"), (0, 1.0, None)]


def test_step_retry_fields(rich):
    (retry,) = rich.of("step_retry")
    assert retry["step"] == 1
    assert retry["attempt"] == 2
    assert retry["reason"] == "exception"
    assert "first attempt fails" in retry["error"]
    assert 0 <= retry["delay_seconds"] <= 0.01
    assert retry["level"] == "warning"


def test_step_skipped_fields(rich):
    skipped = rich.of("step_skipped")
    member = [s for s in skipped if s.get("member") == 1]
    assert member and member[0]["step"] == 2 and member[0]["reason"]


def test_disabled_step_is_reported_as_skipped(rich):
    disabled = [s for s in rich.of("step_skipped") if s.get("location") == "steps[1]"]
    assert len(disabled) == 1, rich.of("step_skipped")
    assert disabled[0]["type"] == "command"
    assert "disabled" in disabled[0]["reason"]


def test_warning_fields(rich):
    (warning,) = rich.of("warning")
    assert "'author'" in warning["message"]
    assert warning["level"] == "warning"


def test_pipeline_complete_fields(rich):
    result = rich.result
    assert result["success"] is True
    assert (result["steps_completed"], result["total_steps"]) == (3, 3)
    assert result["total_cost"] == 0.0
    assert isinstance(result["total_time"], float) and result["total_time"] > 0
    assert result["error"] is None
    assert result["exit_code"] == 0
    # one entry per step, then "final": the last step's entry again (the seed's .outputs.final.path)
    assert list(result["outputs"]) == ["step_1_python", "step_2_python", "step_3_parallel_group", "final"]
    assert result["outputs"]["final"] == result["outputs"]["step_3_parallel_group"]
    assert result["outputs"]["step_1_python"]["text"] == "HELLO"


def test_step_error_fields(failing):
    (error,) = failing.of("step_error")
    assert (error["step"], error["type"], error["reason"]) == (0, "python", "exception")
    assert error["error"] == "ValueError: it went wrong"
    assert "Traceback" in error["traceback"] and "it went wrong" in error["traceback"]
    assert error["level"] == "error"
    result = failing.result
    assert result["success"] is False and result["level"] == "error"
    assert result["steps_completed"] == 0 and result["total_steps"] == 1
    assert "it went wrong" in result["error"]
    assert result["exit_code"] == 5


def test_timeout_and_exit_failures_match_the_schema(tmp_path):
    make_folder(tmp_path, """
        name: t
        prompt: p
        kill_grace: 0.2
        steps:
          - type: parallel_group
            params:
              parallel_steps:
                - {type: command, timeout: 0.3, params: {run: "sleep 5"}}
                - {type: command, params: {run: "exit 4"}}
    """)
    run = run_cli(tmp_path, "run-chain", "--config", "chain.yaml", "--stream")
    assert run.returncode == 5
    for event in run.events + [run.result]:
        valid(event)
    reasons = {e.get("reason") for e in run.of("step_error")}
    assert reasons & {"exit", "cancelled", "timeout"}


# ----------------------------------------------------------------------------- one stdout line, always


@pytest.mark.parametrize("case", ["ok", "step-fails", "invalid", "missing-file", "bad-args"])
def test_stream_stdout_is_exactly_one_valid_line(tmp_path, case):
    make_folder(tmp_path, FAILING_CHAIN if case == "step-fails" else
                "name: x\nprompt: p\nsteps:\n  - {type: command, timeout: -1, params: {run: echo}}\n"
                if case == "invalid" else "name: x\nprompt: p\nsteps:\n  - {type: command, params: {run: echo}}\n")
    args = {"missing-file": ["--config", "nope.yaml"], "bad-args": ["--config", "chain.yaml", "--frobnicate"]}
    run = run_cli(tmp_path, "run-chain", "--stream", *args.get(case, ["--config", "chain.yaml"]))
    assert run.returncode == {"ok": 0, "step-fails": 5, "invalid": 2, "missing-file": 3, "bad-args": 2}[case]
    result = run.result
    valid(result)
    assert result["event"] == "pipeline_complete"
    assert result["exit_code"] == run.returncode
    assert result["success"] is (case == "ok")


# ----------------------------------------------------------------------------- StreamEmitter


def test_stream_emitter_under_capsys(capsys):
    emitter = StreamEmitter(enabled=True)
    emitter.pipeline_start("demo", 2, config=Path("chains/demo.yaml"))
    emitter.step_start(0, "text_to_image", model="title_card")
    emitter.step_complete(0, cost=0.25, output_path=Path("/tmp/out/a.png"), duration=1.23456)
    emitter.step_start(1, "image_to_video")
    emitter.step_error(1, "it failed", step_type="image_to_video")
    emitter.pipeline_complete({"success": False, "steps_completed": 1, "total_steps": 2, "total_cost": 0.25,
                               "total_time": 1.5, "outputs": {"step_1": {"path": Path("/tmp/out/a.png"),
                                                                        "at": dt.datetime(2024, 1, 2, 3, 4, 5)}},
                               "error": "Step 2 failed: it failed"})
    captured = capsys.readouterr()
    events = parse_lines(captured.err)
    (result,) = parse_lines(captured.out)
    assert [e["event"] for e in events] == ["pipeline_start", "step_start", "step_complete", "step_start", "step_error"]
    start, s0, c0, s1, e1 = events
    assert start["config"] == "chains/demo.yaml" and start["total_steps"] == 2 and start["name"] == "demo"
    assert (s0["step"], s0["type"], s0["model"]) == (0, "text_to_image", "title_card")
    assert s1["model"] is None
    assert c0["output"] == "/tmp/out/a.png" and c0["cost"] == 0.25 and c0["duration_seconds"] == 1.235
    assert (e1["step"], e1["type"], e1["error"]) == (1, "image_to_video", "it failed")
    assert result["event"] == "pipeline_complete" and result["success"] is False
    assert result["outputs"]["step_1"]["path"] == "/tmp/out/a.png"
    assert isinstance(result["outputs"]["step_1"]["at"], str) and result["outputs"]["step_1"]["at"].startswith("2024-01-02")
    for event in events + [result]:
        valid(event)
    assert len({e["run_id"] for e in events + [result]}) == 1


def test_stream_emitter_step_error_without_type_matches_the_schema(capsys):
    StreamEmitter(enabled=True).step_error(3, "no type given")
    (event,) = parse_lines(capsys.readouterr().err)
    assert event["step"] == 3 and event["error"] == "no type given"
    valid(event)


def test_stream_emitter_non_json_values_render_as_strings(capsys):
    class Opaque:
        def __str__(self) -> str:
            return "opaque!"

    StreamEmitter(enabled=True).pipeline_start(Path("name"), 1, config=Opaque())  # type: ignore[arg-type]
    (event,) = parse_lines(capsys.readouterr().err)
    assert event["name"] == "name" and event["config"] == "opaque!"


def test_stream_emitter_disabled_and_null_are_silent(capsys):
    for emitter in (StreamEmitter(), StreamEmitter(enabled=False), NullEmitter()):
        emitter.pipeline_start("x", 1, config="c")
        emitter.step_start(0, "python", model=None)
        emitter.step_complete(0, cost=0.0, output_path=None, duration=0.0)
        emitter.step_error(0, "e", step_type="python")
        emitter.pipeline_complete({"success": True})
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_stream_emitter_follows_a_redirected_stream(capsys):
    emitter = StreamEmitter(enabled=True)
    buffer = io.StringIO()
    with contextlib.redirect_stderr(buffer):
        emitter.step_start(0, "python")
    emitter.step_start(1, "python")
    assert [e["step"] for e in parse_lines(buffer.getvalue())] == [0]
    assert [e["step"] for e in parse_lines(capsys.readouterr().err)] == [1]


def test_writes_carry_whole_lines(tmp_path):
    """Every write(2) carries whole lines: on a pipe at most PIPE_BUF bytes of them (atomic, so
    other writers never interleave inside a line) unless the pipe is empty (then all of the write
    goes in at once), or one line longer than that on its own."""
    script = textwrap.dedent("""
        import fcntl, json, os, sys, termios
        writes = {1: [], 2: []}
        real = os.write
        def counting(fd, data):
            if fd in writes:
                unread = bytearray(4)
                fcntl.ioctl(fd, termios.FIONREAD, unread)
                writes[fd].append((bytes(data), int.from_bytes(unread, sys.byteorder)))
            return real(fd, data)
        os.write = counting
        from aicp._events import EventLog
        log = EventLog(stream=True)
        for i in range(200):
            log.emit("step_log", step=0, stream="stdout", line="x" * (i * 50))
        log.result(success=True, steps_completed=0, total_steps=0, total_cost=0.0, total_time=0.0,
                   outputs={}, error=None)
        log.close()
        json.dump({fd: [[len(w), w.count(b"\\n"), w.endswith(b"\\n"), unread] for w, unread in ws]
                   for fd, ws in writes.items()}, open(sys.argv[1], "w"))
    """)
    out = tmp_path / "counts.json"
    proc = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(out.read_text())
    assert sum(lines for _, lines, _, _ in counts["2"]) == 200
    assert all(whole and (size <= select.PIPE_BUF or lines == 1 or (unread == 0 and size <= 65536))
               for size, lines, whole, unread in counts["2"])
    assert [(lines, whole) for _, lines, whole, _ in counts["1"]] == [(1, True)]
    assert [len(json.loads(line)["line"]) for line in proc.stderr.splitlines()] == [i * 50 for i in range(200)]


# ----------------------------------------------------------------------------- secrets


SECRET_MODULE = """
    import os, sys

    def leak(ctx):
        token = os.environ["MY_SERVICE_TOKEN"]
        key = ctx.params["api_key"]
        print("stdout", token, key)
        print("stderr", ctx.params["nested"]["password"], file=sys.stderr)
        ctx.log.info("logged " + key, value=key, headers={"Authorization": ctx.params["authorization"]})
        ctx.progress(0.5, "progress " + token)
        raise RuntimeError("failed with " + key + " and " + token)
"""
SECRETS = {"MY_SERVICE_TOKEN": "env-token-1234567", "FAL_KEY": "fal-key-abcdef"}
PARAM_SECRETS = ("param-api-key-987", "nested-password-555", "Bearer auth-header-321")


@pytest.mark.parametrize("mode", [["--stream"], ["--json"], []])
def test_secrets_are_masked_everywhere(tmp_path, mode):
    (tmp_path / "secmod.py").write_text(textwrap.dedent(SECRET_MODULE))
    (tmp_path / "chain.yaml").write_text(textwrap.dedent(f"""
        name: secrets
        prompt: "uses {SECRETS['FAL_KEY']} in the prompt"
        steps:
          - type: python
            params:
              function: "secmod:leak"
              api_key: "{PARAM_SECRETS[0]}"
              nested: {{password: "{PARAM_SECRETS[1]}"}}
              authorization: "{PARAM_SECRETS[2]}"
    """).lstrip())
    run = run_cli(tmp_path, "run-chain", "--config", "chain.yaml", "--log-file", "log.jsonl", *mode,
                  env=child_env(**SECRETS))
    assert run.returncode == 5, run.stderr
    everything = run.stdout + run.stderr + (tmp_path / "log.jsonl").read_text()
    for secret in [*SECRETS.values(), *PARAM_SECRETS]:
        assert secret not in everything, f"{secret!r} leaked"
    events = parse_lines((tmp_path / "log.jsonl").read_text())
    logs = [e for e in events if e["event"] == "step_log"]
    assert {"stdout *** ***", "stderr ***"} <= {e["line"] for e in logs}
    log_event = next(e for e in logs if e["stream"] == "log")
    assert log_event["line"] == "logged ***"
    assert log_event["fields"]["value"] == "***"
    assert log_event["fields"]["headers"]["Authorization"] == "***"
    (progress,) = [e for e in events if e["event"] == "step_progress"]
    assert progress["message"] == "progress ***"
    (error,) = [e for e in events if e["event"] == "step_error"]
    assert error["error"] == "RuntimeError: failed with *** and ***"
    assert "failed with *** and ***" in error["traceback"]
    assert "***" in events[-1]["error"]
    if mode:
        assert "***" in run.stdout  # the result / envelope carries the masked error
    else:
        assert run.stderr.splitlines()[-1] == "error: Step 1 failed: RuntimeError: failed with *** and ***"


# ----------------------------------------------------------------------------- closed or vanished streams

OK_CHAIN = """
    name: ok
    prompt: p
    steps:
      - {type: python, params: {function: "evmod:talk"}}
      - {type: command, params: {run: "for i in 1 2 3 4 5; do echo line $i; echo err $i >&2; done"}}
"""
NOISY = ("Traceback", "Exception ignored", "BrokenPipeError")


@pytest.mark.parametrize("chain, code", [(OK_CHAIN, 0), (FAILING_CHAIN, 5)])
def test_stdout_reader_gone_via_shell(tmp_path, chain, code):
    make_folder(tmp_path, chain)
    aicp = Path(sys.executable).parent / "aicp"
    proc = subprocess.run(["bash", "-c", f'"{aicp}" run-chain --config chain.yaml --stream | head -c 0; '
                                         'echo "rc=${PIPESTATUS[0]}" >&2'],
                          cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=60)
    assert proc.stderr.rstrip().splitlines()[-1] == f"rc={code}"
    for word in NOISY:
        assert word not in proc.stderr or code == 5 and word == "Traceback" and '"traceback"' in proc.stderr


@pytest.mark.parametrize("mode", [["--stream"], ["--json"], []])
@pytest.mark.parametrize("chain, code", [(OK_CHAIN, 0), (FAILING_CHAIN, 5)])
def test_stdout_pipe_closed_before_the_result(tmp_path, mode, chain, code):
    make_folder(tmp_path, chain)
    r, w = os.pipe()
    os.close(r)
    try:
        proc = subprocess.run(aicp_argv("run-chain", "--config", "chain.yaml", *mode), cwd=tmp_path,
                              env=child_env(), stdout=w, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(w)
    assert proc.returncode == code
    lines = proc.stderr.splitlines()
    if mode == ["--stream"]:
        events = parse_lines(proc.stderr)  # still whole JSON lines
        assert events[0]["event"] == "pipeline_start"
    for word in ("Exception ignored", "BrokenPipeError"):
        assert word not in proc.stderr
    assert not any(line.startswith("Traceback") for line in lines)


@pytest.mark.parametrize("how", ["shell", "preexec", "reader-gone"])
@pytest.mark.parametrize("mode", [["--stream"], []])
def test_stderr_closed_result_still_reaches_stdout(tmp_path, how, mode):
    make_folder(tmp_path, OK_CHAIN)
    args = ["run-chain", "--config", "chain.yaml", *mode]
    kw: dict[str, Any] = {}
    if how == "shell":
        cmd = ["bash", "-c", 'exec "$0" "$@" 2>&-', *aicp_argv(*args)]
        kw["stderr"] = subprocess.DEVNULL
    elif how == "preexec":
        cmd = aicp_argv(*args)
        kw["preexec_fn"] = lambda: os.close(2)
    else:
        cmd = aicp_argv(*args)
        r, w = os.pipe()
        os.close(r)
        kw["stderr"] = w
    try:
        proc = subprocess.run(cmd, cwd=tmp_path, env=child_env(), stdout=subprocess.PIPE, text=True,
                              timeout=60, **kw)
    finally:
        if how == "reader-gone":
            os.close(kw["stderr"])
    assert proc.returncode == 0
    if mode:
        result = json.loads(proc.stdout)
        assert result["success"] is True and result["steps_completed"] == 2
    else:
        assert proc.stdout.startswith("succeeded: 2/2 steps")


@pytest.mark.parametrize("how", ["preexec", "reader-gone"])
@pytest.mark.parametrize("mode", [["--stream"], []])
def test_stderr_closed_and_a_step_fails(tmp_path, how, mode):
    make_folder(tmp_path, FAILING_CHAIN)
    kw: dict[str, Any] = {}
    if how == "preexec":
        kw["preexec_fn"] = lambda: os.close(2)
    else:
        r, w = os.pipe()
        os.close(r)
        kw["stderr"] = w
    try:
        proc = subprocess.run(aicp_argv("run-chain", "--config", "chain.yaml", *mode), cwd=tmp_path,
                              env=child_env(), stdout=subprocess.PIPE, text=True, timeout=60, **kw)
    finally:
        if how == "reader-gone":
            os.close(kw["stderr"])
    assert proc.returncode == 5
    if mode:
        assert "it went wrong" in json.loads(proc.stdout)["error"]
    else:
        assert proc.stdout.startswith("failed: 0/1 steps")


def test_stderr_closed_with_an_invalid_chain(tmp_path):
    make_folder(tmp_path, "name: x\nsteps: []\n")
    proc = subprocess.run(aicp_argv("run-chain", "--config", "chain.yaml", "--stream"), cwd=tmp_path,
                          env=child_env(), stdout=subprocess.PIPE, text=True, timeout=60,
                          preexec_fn=lambda: os.close(2))
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["exit_code"] == 2


# ----------------------------------------------------------------------------- --log-file


def test_log_file_in_stream_mode_holds_every_event_and_the_result(rich):
    logged = parse_lines(rich.log.read_text())
    assert logged == rich.events + [rich.result]
    for event in logged:
        valid(event)


@pytest.mark.parametrize("mode", [[], ["--json"], ["--quiet"]])
def test_log_file_in_other_modes(tmp_path, mode):
    make_folder(tmp_path, OK_CHAIN)
    run = run_cli(tmp_path, "run-chain", "--config", "chain.yaml", "--log-file", "log.jsonl", *mode)
    assert run.returncode == 0
    logged = parse_lines((tmp_path / "log.jsonl").read_text())
    assert logged[0]["event"] == "pipeline_start" and logged[-1]["event"] == "pipeline_complete"
    assert [e["event"] for e in logged].count("pipeline_complete") == 1
    for event in logged:
        valid(event)
    assert not run.stderr.lstrip().startswith("{")  # no JSON on stderr without --stream


def test_log_file_appends(tmp_path):
    make_folder(tmp_path, OK_CHAIN)
    (tmp_path / "log.jsonl").write_text("")
    for _ in range(2):
        assert run_cli(tmp_path, "run-chain", "--config", "chain.yaml", "--log-file", "log.jsonl").returncode == 0
    logged = parse_lines((tmp_path / "log.jsonl").read_text())
    assert len({e["run_id"] for e in logged}) == 2
    assert [e["event"] for e in logged].count("pipeline_complete") == 2


@pytest.mark.parametrize("mode", [["--stream"], []])
def test_log_file_records_a_run_that_never_started(tmp_path, mode):
    make_folder(tmp_path, "name: x\nsteps: []\n")
    run = run_cli(tmp_path, "run-chain", "--config", "chain.yaml", "--log-file", "log.jsonl", *mode)
    assert run.returncode == 2
    (result,) = parse_lines((tmp_path / "log.jsonl").read_text())
    assert result["event"] == "pipeline_complete" and result["success"] is False and result["exit_code"] == 2
    valid(result)


# ----------------------------------------------------------------------------- the human view


def test_human_mode_on_a_pipe(tmp_path):
    make_folder(tmp_path, RICH_CHAIN)
    run = run_cli(tmp_path, "run-chain", "--config", "chain.yaml")
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    assert lines and not any(line.lstrip().startswith("{") for line in lines)
    assert "\x1b[" not in run.stderr
    assert lines[0] == "running 'rich': 3 steps"
    assert any("step 1 talk: python started" in line for line in lines)
    assert any("step 1 talk: python | to stdout hello" in line for line in lines)
    assert any("step 1 talk: python done" in line for line in lines)
    assert any("retrying" in line for line in lines)
    assert any(line.startswith("warning: ") and "'author'" in line for line in lines)
    out = run.stdout.splitlines()
    assert out[0].startswith("succeeded: 3/3 steps, $0.000, ")
    assert "  step_1_python: HELLO" in out


def test_human_mode_failure(tmp_path):
    make_folder(tmp_path, FAILING_CHAIN)
    run = run_cli(tmp_path, "run-chain", "--config", "chain.yaml")
    assert run.returncode == 5
    assert run.stdout.startswith("failed: 0/1 steps")
    assert any("failed: ValueError: it went wrong" in line for line in run.stderr.splitlines())
    assert run.stderr.splitlines()[-1] == "error: Step 1 failed: ValueError: it went wrong"


def test_human_mode_on_a_terminal(tmp_path):
    make_folder(tmp_path, OK_CHAIN)
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(aicp_argv("run-chain", "--config", "chain.yaml"), cwd=tmp_path, env=child_env(),
                              stdout=subprocess.PIPE, stderr=slave, text=True, timeout=60)
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    screen = b"".join(chunks).decode()
    assert proc.returncode == 0
    assert "\x1b[2K" in screen and "done" in screen
    assert proc.stdout.startswith("succeeded: 2/2 steps")


# ----------------------------------------------------------------------------- masking: the fast path agrees with the walk

TRICKY_SECRETS = ['quote"back\\slash-1', "line\nbreak-22", "tab\there-333", "ünïcode-sëcret-4", "plain-secret-55555"]


def tricky_events() -> list[dict[str, Any]]:
    return [
        {"event": "step_log", "line": "nothing to hide here", "step": 0, "n": 1, "f": 0.5, "b": True, "z": None},
        {"event": "step_log", "line": f"prefix {TRICKY_SECRETS[0]} suffix", "step": 0},
        {"event": "step_log", "line": f"{TRICKY_SECRETS[1]}", "stream": "stderr"},
        {"event": "step_log", "fields": {"nested": [{"deep": f"x{TRICKY_SECRETS[2]}y"}], "k": (1, "two")}},
        {"event": "warning", "message": f"café {TRICKY_SECRETS[3]} ☕"},
        {"event": "warning", "message": "café, no secret ☕"},
        {"event": "step_complete", "output": Path("/tmp") / TRICKY_SECRETS[4], "outputs": [TRICKY_SECRETS[4]]},
        {"event": "step_log", "fields": {"API_KEY": "not-a-known-value", "x-api-key": "also-hidden",
                                         "Authorization": "Bearer abc", "token_count": 5, "password": None}},
        {"event": "step_log", "line": "the word token appears but no secret"},
        {"event": "step_log", "fields": {1: "non-str key", "when": dt.datetime(2024, 1, 2)}},
    ]


def test_fast_masking_renders_the_same_bytes_as_the_full_walk():
    from aicp._events import _redact_render, _render
    from aicp._redact import Redactor

    redactor = Redactor(TRICKY_SECRETS)
    fast = _redact_render(redactor)
    for event in tricky_events():
        expected = _render(None, "info", redactor.scrub(event))
        assert fast(None, "info", dict(event)) == expected, event
        assert _render(None, "info", redactor(None, "info", dict(event))) == expected, event


@pytest.mark.parametrize("with_observer", [False, True])
def test_tricky_secrets_never_reach_the_stream(capsys, with_observer):
    from aicp._events import EventLog

    seen: list[dict[str, Any]] = []
    log = EventLog(stream=True, secrets=TRICKY_SECRETS, observer=seen.append if with_observer else None)
    for event in tricky_events():
        fields = {k: v for k, v in event.items() if k != "event"}
        log.emit(event["event"], **fields)
    err = capsys.readouterr().err
    for secret in TRICKY_SECRETS:
        assert secret not in err
        assert json.dumps(secret)[1:-1] not in err  # nor its JSON-escaped form
    events = parse_lines(err)
    assert events[0]["line"] == "nothing to hide here" and events[0]["n"] == 1
    assert events[1]["line"] == "prefix *** suffix"
    assert events[2]["line"] == "***"
    assert events[3]["fields"]["nested"][0]["deep"] == "x***y"
    assert events[4]["message"] == "café *** ☕"
    assert events[6]["outputs"] == ["***"]
    hidden = events[7]["fields"]
    assert hidden == {"API_KEY": "***", "x-api-key": "***", "Authorization": "***", "token_count": 5,
                      "password": None}
    assert events[8]["line"] == "the word token appears but no secret"
    assert events[9]["fields"] == {"1": "non-str key", "when": "2024-01-02T00:00:00"}
    if with_observer:
        assert seen[1]["line"] == "prefix *** suffix" and seen[7]["fields"]["Authorization"] == "***"
