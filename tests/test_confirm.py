"""The cost confirmation prompt: only for a person at a terminal, only when money is at stake."""

from __future__ import annotations

import os
import select
import subprocess
import time
from pathlib import Path

import pytest
from _aicp import Run, aicp_argv, child_env

PAID_CHAIN = """\
name: paid
prompt: a lighthouse
steps:
  - {type: text_to_image, model: flux_schnell}
"""
PROMPT = b"Run it? [y/N] "


def _start_on_a_terminal(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.Popen[bytes], int]:
    """aicp with a pseudo-terminal as stdin (what a person typing has), stdout/stderr as pipes."""
    (tmp_path / "chain.yaml").write_text(PAID_CHAIN)
    master, slave = os.openpty()
    # fal is never reached in these tests: a closed port stands in for it, and aicp is
    # stopped as soon as the step has started
    full_env = child_env(FAL_KEY="test-key-123456", AICP_FAL_QUEUE_URL="http://127.0.0.1:9", **env)
    proc = subprocess.Popen(aicp_argv("run-chain", "--config", "chain.yaml", "--stream", *args), cwd=tmp_path,
                            stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env)
    os.close(slave)
    return proc, master


def _read_until(fd: int, marker: bytes, timeout: float = 30) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            pytest.fail(f"no {marker!r} within {timeout} s; got {seen!r}")
        chunk = os.read(fd, 4096)
        if not chunk:
            pytest.fail(f"the stream ended before {marker!r}; got {seen!r}")
        seen += chunk
    return seen


@pytest.mark.parametrize("answer", [b"n\n", b"\n"])
def test_declining_runs_nothing_and_exits_130(tmp_path, answer):
    proc, master = _start_on_a_terminal(tmp_path)
    try:
        assert proc.stderr is not None
        asked = _read_until(proc.stderr.fileno(), PROMPT)
        assert b"'paid' is estimated to cost $0.001" in asked
        os.write(master, answer)
        out, err = proc.communicate(timeout=30)
    finally:
        os.close(master)
    assert proc.returncode == 130
    run = Run(proc.returncode, out.decode(), (asked + err).decode())
    assert run.of("confirm")[0]["estimated_cost"] == 0.001  # --stream: the question is an event
    assert run.stream_failure.startswith("not confirmed; nothing was run")  # so is the error
    assert not (tmp_path / "output" / "runs").exists()  # no run was started


STARTED = b'"event":"step_start"'


def _stop_once_started(proc: subprocess.Popen[bytes]) -> bytes:
    """Wait until the step started (the run went ahead), then stop aicp; return what stderr said."""
    assert proc.stderr is not None
    seen = _read_until(proc.stderr.fileno(), STARTED)
    proc.terminate()
    _, rest = proc.communicate(timeout=60)
    assert proc.returncode == 143
    return seen + rest


def test_agreeing_runs_the_chain(tmp_path):
    proc, master = _start_on_a_terminal(tmp_path)
    try:
        assert proc.stderr is not None
        _read_until(proc.stderr.fileno(), PROMPT)
        os.write(master, b"y\n")
        _stop_once_started(proc)
    finally:
        proc.kill()
        os.close(master)


@pytest.mark.parametrize("how", ["--yes", "--no-confirm", "CI"])
def test_yes_or_ci_never_asks(tmp_path, how):
    args, env = ((how,), {}) if how.startswith("--") else ((), {"CI": "true"})
    proc, master = _start_on_a_terminal(tmp_path, *args, **env)
    try:
        assert PROMPT not in _stop_once_started(proc)
    finally:
        proc.kill()
        os.close(master)
