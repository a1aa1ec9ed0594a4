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


def lnav_with_our_format(tmp_path: Path) -> dict[str, str]:
    """An environment whose lnav (a private HOME) has examples/log-shipping/aicp_log.json installed."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    installed = subprocess.run(["lnav", "-i", str(FORMAT)], env=env, cwd=tmp_path, capture_output=True,
                               text=True, timeout=60)
    assert installed.returncode == 0, installed.stderr
    return env


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

    env = lnav_with_our_format(tmp_path)
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


def _lnav(env: dict[str, str], cwd: Path, query: str, log: Path) -> list[list[str]]:
    out = subprocess.run(["lnav", "-n", "-c", query, str(log)], env=env, cwd=cwd, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "error" not in out.stderr.lower(), out.stderr
    return [line.split() for line in out.stdout.splitlines()[1:] if line.strip()]


def test_lnav_queries_by_event_name_by_run_and_by_the_declared_fields(aicp, write_chain, write_module, tmp_path):
    import json

    write_module("boom", """
        def ok(ctx):
            print("working on", ctx.input)
            ctx.log.warning("careful now")
            return {"output": "fine", "cost": 0.25}

        def fail(ctx):
            raise RuntimeError("the render farm is on fire")
    """)
    write_chain("""
        name: lnav_demo
        prompt: hello
        steps:
          - {type: python, name: first, params: {function: "boom:ok"}}
          - {type: python, name: second, retry_count: 1, params: {function: "boom:fail"}}
    """)
    write_chain("""
        name: lnav_ok
        prompt: hello
        steps:
          - {type: python, name: only, params: {function: "boom:ok"}}
    """, name="ok.yaml")
    log = tmp_path / "run.jsonl"
    assert aicp("run-chain", "--config", "chain.yaml", "--log-file", str(log), "--quiet").returncode == 5
    assert aicp("run-chain", "--config", "ok.yaml", "--log-file", str(log), "--quiet").returncode == 0
    events = [json.loads(line) for line in log.read_text().splitlines()]
    failed_run, ok_run = events[0]["run_id"], events[-1]["run_id"]
    assert failed_run != ok_run

    env = lnav_with_our_format(tmp_path)

    # by event name: the body is the bare name (no padding)
    (count,) = _lnav(env, tmp_path, ";SELECT count(*) FROM aicp_log WHERE log_body = 'step_log'", log)
    assert int(count[0]) == sum(e["event"] == "step_log" for e in events) > 0
    # by run: the run id is the operation id
    rows = _lnav(env, tmp_path, ";SELECT log_opid, count(*) FROM aicp_log GROUP BY log_opid ORDER BY log_opid", log)
    expected = sorted((run, sum(e["run_id"] == run for e in events)) for run in (failed_run, ok_run))
    assert [(r[0], int(r[1])) for r in rows] == expected
    for where in (f"run_id = '{ok_run}'", f"log_opid LIKE '{ok_run}'"):  # lnav 0.11: log_opid = '...' never matches
        rows = _lnav(env, tmp_path, f";SELECT log_body FROM aicp_log WHERE {where}", log)
        assert [r[0] for r in rows] == [e["event"] for e in events if e["run_id"] == ok_run]
    # the declared fields, typed
    rows = _lnav(env, tmp_path, ";SELECT log_opid, success, exit_code, total_cost FROM aicp_log "
                                "WHERE log_body = 'run_end' ORDER BY log_opid", log)
    by_run = {r[0]: r[1:] for r in rows}
    assert by_run[failed_run] == ["0", "5", "0.25"] and by_run[ok_run] == ["1", "0", "0.25"]
    rows = _lnav(env, tmp_path, ";SELECT name, attempt FROM aicp_log WHERE log_body = 'step_start' "
                                f"AND run_id = '{failed_run}'", log)
    assert rows == [["first", "1"], ["second", "1"], ["second", "2"]]
    rows = _lnav(env, tmp_path, ";SELECT log_level, message FROM aicp_log WHERE log_body = 'step_log' "
                                "AND log_level = 'warning'", log)
    assert [r[0] for r in rows] == ["warning", "warning"] and all(r[1:] == ["careful", "now"] for r in rows)
