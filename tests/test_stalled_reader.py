"""Output never blocks control: a reader that stops reading aicp's stderr (or stdout).

Each test runs the real CLI with stderr (or stdout) on a pipe whose read end
the test holds open and never reads, like a log shipper that hung. A step
floods output, so the pipe fills at once. aicp must still enforce the step's
timeout and handle SIGTERM/SIGINT with the documented exit code and the one
result line on the healthy stream; the stalled pipe, read afterwards, holds
whole JSON lines only. Bounds are generous: these check that nothing hangs,
not how fast it is.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import termios
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from _aicp import aicp_argv, child_env

STEPS = '''
import sys, time

def flood(ctx):
    """Lines on stdout and stderr as fast as the pipes take them, forever."""
    print("ready", flush=True)
    i = 0
    while True:
        sys.stdout.write(f"flood line {i} " + "x" * 80 + "\\n")
        sys.stderr.write(f"flood err {i}\\n")
        i += 1

def quick(ctx):
    return "quick"
'''

BOUND = 30.0  # seconds: far above what any of this takes; only a hang exceeds it


def _chain(tmp_path: Path, body: str) -> Path:
    (tmp_path / "stall_steps.py").write_text(STEPS)
    path = tmp_path / "chain.yaml"
    path.write_text(textwrap.dedent(body).lstrip())
    return path


def _flood_chain(tmp_path: Path) -> Path:
    """One step that floods its output until it is stopped."""
    return _chain(tmp_path, """
        name: stalled
        prompt: go
        steps:
          - type: python
            params: {function: "stall_steps:flood"}
    """)


def _buffered(fd: int) -> int:
    """Bytes waiting in a pipe, unread."""
    size = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, size)
    return int.from_bytes(size, "little")


class StalledRun:
    """aicp with one stream (``stalled``: "stderr" or "stdout") on a pipe nobody reads."""

    def __init__(self, tmp_path: Path, chain: Path, *extra: str, stalled: str = "stderr") -> None:
        self.stall_r, stall_w = os.pipe()
        self.log = tmp_path / "events.log"
        healthy = subprocess.PIPE
        streams = {"stderr": stall_w, "stdout": healthy} if stalled == "stderr" else \
            {"stdout": stall_w, "stderr": healthy}
        self.proc = subprocess.Popen(aicp_argv("run-chain", "--config", str(chain), "--log-file", str(self.log),
                                               *extra),
                                     cwd=tmp_path, env=child_env(), stdin=subprocess.DEVNULL, **streams)
        os.close(stall_w)

    def events(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.endswith("}")]

    def wait_stalled(self) -> None:
        """Until the step said it is ready and the unread pipe is full (the reader has stalled)."""
        deadline = time.monotonic() + BOUND
        last = -1
        while time.monotonic() < deadline:
            ready = any(e["event"] == "step_log" and e["line"] == "ready" for e in self.events())
            now = _buffered(self.stall_r)
            if ready and now == last and now > 32768:  # full: nothing more went in for 0.5 s
                return
            last = now
            assert self.proc.poll() is None, "aicp ended before its reader stalled"
            time.sleep(0.5)
        pytest.fail(f"the stalled pipe never filled ({last} bytes in it)")

    def finish(self) -> tuple[int, bytes, float]:
        started = time.monotonic()
        try:
            out, err = self.proc.communicate(timeout=BOUND)  # reads the healthy stream only
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            pytest.fail(f"aicp did not end within {BOUND} s with its reader stalled")
        return self.proc.returncode, out if out is not None else err, time.monotonic() - started

    def stalled_content(self) -> bytes:
        os.set_blocking(self.stall_r, False)
        data = b""
        while True:
            try:
                chunk = os.read(self.stall_r, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
        return data

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.stall_r)


@pytest.fixture
def stalled(tmp_path: Path):
    runs: list[StalledRun] = []

    def start(chain: Path, *extra: str, stalled: str = "stderr") -> StalledRun:
        run = StalledRun(tmp_path, chain, *extra, stalled=stalled)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.close()


def _whole_json_lines(data: bytes) -> list[dict[str, Any]]:
    """What a reader that resumed would see: whole JSON lines only, never half of one."""
    assert data.endswith(b"\n"), data[-200:]
    return [json.loads(line) for line in data.splitlines()]


def _result(out: bytes) -> dict[str, Any]:
    lines = out.decode().splitlines()
    assert len(lines) == 1, lines
    result: dict[str, Any] = json.loads(lines[0])
    assert result["event"] == "pipeline_complete"
    return result


def test_a_step_timeout_fires_while_stderr_is_stalled(tmp_path, stalled):
    chain = _chain(tmp_path, """
        name: stalled_timeout
        prompt: go
        kill_grace: 1
        steps:
          - type: python
            timeout: 3
            params: {function: "stall_steps:flood"}
    """)
    run = stalled(chain, "--stream")
    code, out, _ = run.finish()
    assert code == 5
    result = _result(out)
    assert result["success"] is False and "timed out after 3 s" in result["error"]
    (error,) = [e for e in run.events() if e["event"] == "step_error"]
    assert error["reason"] == "timeout" and error["duration_seconds"] < BOUND
    events = _whole_json_lines(run.stalled_content())
    assert events[0]["event"] == "pipeline_start"


@pytest.mark.parametrize("sig, code, name", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")])
def test_signals_end_the_run_while_stderr_is_stalled(tmp_path, stalled, sig, code, name):
    chain = _chain(tmp_path, """
        name: stalled_signal
        prompt: go
        kill_grace: 1
        steps:
          - type: python
            params: {function: "stall_steps:flood"}
          - type: python
            params: {function: "stall_steps:quick"}
    """)
    run = stalled(chain, "--stream")
    run.wait_stalled()
    # aicp's memory stays bounded while the step is held back (the step waits, not aicp)
    assert psutil.Process(run.proc.pid).memory_info().rss < 150 * 2**20
    run.proc.send_signal(sig)
    exit_code, out, took = run.finish()
    assert exit_code == code
    result = _result(out)
    assert result["success"] is False and result["steps_completed"] == 0 and name in result["error"]
    assert took < BOUND
    (error,) = [e for e in run.events() if e["event"] == "step_error"]
    assert error["reason"] == "cancelled"
    _whole_json_lines(run.stalled_content())


def test_parallel_members_time_out_while_stderr_is_stalled(tmp_path, stalled):
    chain = _chain(tmp_path, """
        name: stalled_group
        prompt: go
        kill_grace: 1
        steps:
          - type: parallel_group
            params:
              parallel_steps:
                - {type: python, timeout: 2, params: {function: "stall_steps:flood"}}
                - {type: python, timeout: 2, params: {function: "stall_steps:flood"}}
    """)
    run = stalled(chain, "--stream")
    code, out, _ = run.finish()
    assert code == 5
    assert _result(out)["success"] is False
    reasons = sorted(e.get("reason") for e in run.events() if e["event"] == "step_error" and "member" in e)
    assert reasons[0] == "timeout", reasons
    _whole_json_lines(run.stalled_content())


def test_sigterm_ends_the_run_while_stdout_is_stalled(tmp_path, stalled):
    """The result cannot be written (nobody reads stdout): the exit code still comes, in time."""
    run = stalled(_flood_chain(tmp_path), "--stream", stalled="stdout")
    deadline = time.monotonic() + BOUND
    while not any(e["event"] == "step_log" for e in run.events()):
        assert time.monotonic() < deadline and run.proc.poll() is None
        time.sleep(0.05)
    run.proc.send_signal(signal.SIGTERM)
    code, err, _ = run.finish()
    assert code == 143
    assert err.endswith(b"\n")
    _result(run.stalled_content())


def test_sigterm_ends_a_human_view_run_while_stderr_is_stalled(tmp_path, stalled):
    """Without --stream the human view writes to stderr: a stalled terminal or pipe blocks nothing."""
    run = stalled(_flood_chain(tmp_path))
    run.wait_stalled()
    run.proc.send_signal(signal.SIGTERM)
    code, out, _ = run.finish()
    assert code == 143
    assert out.decode().startswith("failed: 0/1 steps")
