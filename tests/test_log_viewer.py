"""The event stream in a real log viewer: lnav with the format shipped in examples/."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

FORMAT = Path(__file__).resolve().parents[1] / "examples" / "log-shipping" / "aicp_log.json"

pytestmark = pytest.mark.skipif(shutil.which("lnav") is None,
                                reason="lnav is not installed (apt-get install lnav; .ci/run installs it)")


def test_lnav_reads_a_real_run_and_finds_its_failure(aicp, write_chain, write_module, tmp_path):
    write_module("boom", """
        def ok(ctx):
            print("working on", ctx.input)
            return "fine"

        def fail(ctx):
            raise RuntimeError("the render farm is on fire")
    """)
    chain = write_chain("""
        name: lnav_demo
        prompt: hello
        steps:
          - {type: python, params: {function: "boom:ok"}}
          - {type: python, params: {function: "boom:fail"}}
    """)
    log = tmp_path / "run.jsonl"
    run = aicp("run-chain", "--config", chain, "--log-file", str(log), "--quiet")
    assert run.returncode == 5

    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    installed = subprocess.run(["lnav", "-i", str(FORMAT)], env=env, cwd=tmp_path, capture_output=True,
                               text=True, timeout=60)
    assert installed.returncode == 0, installed.stderr
    query = ";SELECT log_body, step, reason, error FROM aicp_log WHERE log_level = 'error'"
    out = subprocess.run(["lnav", "-n", "-c", query, str(log)], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()[1:] if line.strip()]
    assert [r[0] for r in rows] == ["step_error", "run_end", "pipeline_complete"]  # run_end: how it ended, on stderr
    assert rows[0][1:3] == ["1", "exception"]
    assert "the render farm is on fire" in out.stdout

    every = subprocess.run(["lnav", "-n", "-c", ";SELECT count(*) FROM aicp_log", str(log)], env=env,
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    count = int(every.stdout.split()[-1])
    assert count == len(log.read_text().splitlines())  # lnav recognised every line
