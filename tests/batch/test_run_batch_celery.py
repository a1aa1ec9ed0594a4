"""The fleet: ``run-batch --engine celery`` with two real ``aicp worker`` processes on a real
``redis-server`` that the tests start on a free loopback port and end by pid.

What is checked is what the design promises against Celery's measured pitfalls: a batch completes;
a worker SIGKILLed with its whole process group mid-step loses nothing (the job completes on the
other worker, its finished steps reused, nothing left running); a visibility timeout shorter than a
job does not run it twice; exit 5 is final.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import psutil
import pytest
from _aicp import LiveRun, aicp_argv, child_env
from _jobs import batch_dir, counts  # noqa: F401  (batch_dir: a fixture)

pytest.importorskip("celery", reason="the fleet tests need the celery extra (pip install 'aicp[celery]')")
REDIS = shutil.which("redis-server")
pytestmark = [
    pytest.mark.skipif(REDIS is None, reason="redis-server is not installed (apt-get install redis-server)"),
    pytest.mark.slow,
]

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen([str(REDIS), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                time.sleep(0.05)
        else:
            pytest.fail("redis-server did not start")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def fleet_env(batch_dir: Path, **extra: str) -> dict[str, str]:
    return child_env(COUNTS_DIR=str(batch_dir / "counts"), AICP_LEASE_TTL="2", **extra)


class Workers:
    """``aicp worker`` processes, each the leader of its own process group."""

    def __init__(self, url: str, cwd: Path, env: dict[str, str], count: int, *extra: str) -> None:
        self.procs = [subprocess.Popen(aicp_argv("worker", "--broker", url, "--concurrency", "1", *extra),
                                       cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                       stdout=open(cwd / f"worker{n}.log", "ab"), stderr=subprocess.STDOUT,
                                       start_new_session=True)
                      for n in range(count)]

    def tree(self) -> list[psutil.Process]:
        found = []
        for proc in self.procs:
            try:
                found += [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        return found

    def stop(self) -> None:
        everything = self.tree()
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        _, alive = psutil.wait_procs(everything, timeout=15)
        for p in alive:
            p.kill()
        for proc in self.procs:
            proc.wait(5)


@pytest.fixture
def workers(redis_url: str, batch_dir: Path) -> Iterator[Any]:
    started: list[Workers] = []

    def start(count: int = 2, *extra: str, **env: str) -> Workers:
        w = Workers(redis_url, batch_dir, fleet_env(batch_dir, **env), count, *extra)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def run_batch(batch_dir: Path, redis_url: str, rows: str, **env: str) -> LiveRun:
    (batch_dir / "rows.csv").write_text(rows)
    return LiveRun(["run-batch", "--config", "chain.yaml", "--inputs", "rows.csv", "--engine", "celery",
                    "--broker", redis_url, "--stream"], batch_dir, env=fleet_env(batch_dir, **env))


def test_a_batch_completes_on_two_workers(batch_dir, redis_url, workers, validate_events):
    workers(2)
    rows = "id,prompt\n" + "".join(f"clip{n},prompt {n}\n" for n in range(4))
    run = run_batch(batch_dir, redis_url, rows).finish(timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    result = run.result
    assert (result["event"], result["succeeded"], result["total_jobs"]) == ("batch_complete", 4, 4)
    validate_events(run)
    assert sorted(e["job_id"] for e in run.of("pipeline_start")) == [f"clip{n}" for n in range(4)]
    assert counts(batch_dir) == {f"clip{n}.{s}": 1 for n in range(4) for s in ("write", "finish")}
    record = json.loads((Path(result["record"]) / "batch.json").read_text())
    assert {e["status"] for e in record["jobs"].values()} == {"succeeded"}
    merged = (Path(result["record"]) / "events.jsonl").read_text()
    assert merged.count('"event":"job_complete"') == 4
    # the fleet's view of the same batch
    status = subprocess.run(aicp_argv("batch", "status", result["batch_id"], "--broker", redis_url, "--json"),
                            capture_output=True, text=True, cwd=batch_dir, env=child_env(), timeout=60)
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)["data"]
    assert data["counts"] == {"succeeded": 4}
    events = subprocess.run(aicp_argv("batch", "events", result["batch_id"], "--broker", redis_url),
                            capture_output=True, text=True, cwd=batch_dir, env=child_env(), timeout=60)
    assert events.returncode == 0
    assert sum(json.loads(line)["event"] == "job_complete" for line in events.stdout.splitlines()) == 4
    missing = subprocess.run(aicp_argv("batch", "status", "no-such-batch", "--broker", redis_url),
                             capture_output=True, text=True, cwd=batch_dir, env=child_env(), timeout=60)
    assert missing.returncode == 3 and "no batch 'no-such-batch'" in missing.stderr


def test_a_failing_job_is_final_exit_5_and_not_retried(batch_dir, redis_url, workers):
    workers(2)
    run = run_batch(batch_dir, redis_url, "id,prompt\nok,fine\nbad,fail here\n").finish(timeout=180)
    assert run.returncode == 5, run.stderr[-3000:]
    assert run.result["failed"] == 1 and run.result["failures"][0]["job_id"] == "bad"
    assert not run.of("job_retry")
    assert counts(batch_dir)["bad.write"] == 1


def test_sigkill_of_a_worker_process_group_mid_step_loses_nothing(batch_dir, redis_url, workers):
    fleet = workers(2)
    live = run_batch(batch_dir, redis_url, "id,prompt\nvictim,slow victim\n")
    try:
        ready = live.wait_for(lambda e: e["event"] == "step_log" and e.get("line") == "ready", timeout=120)
        [start] = [e for e in live.seen if e["event"] == "job_start"]
        pool_pid = int(start["worker"].split(":")[1])
        group = os.getpgid(pool_pid)
        doomed = [p for p in fleet.tree() if _in_group(p, group)]
        doomed += [p for p in psutil.process_iter() if _runs_step_of(p, batch_dir)]
        os.killpg(group, signal.SIGKILL)
        gone, alive = psutil.wait_procs(doomed, timeout=10)
        assert not alive, f"still running after SIGKILL of the worker's group: {alive}"
        run = live.finish(timeout=180)
    finally:
        live.kill()
    assert ready
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.result["succeeded"] == 1
    [retry] = run.of("job_retry")
    assert retry["reason"] == "requeued"
    assert [e["attempt"] for e in run.of("job_start")] == [1, 2]
    assert counts(batch_dir) == {"victim.write": 1, "victim.finish": 2}, "finished steps must be reused"


def _in_group(proc: psutil.Process, group: int) -> bool:
    try:
        return os.getpgid(proc.pid) == group
    except (ProcessLookupError, psutil.Error):
        return False


def _runs_step_of(proc: psutil.Process, batch_dir: Path) -> bool:
    try:
        return str(batch_dir) in " ".join(proc.cmdline()) and "aicp worker" not in " ".join(proc.cmdline())
    except psutil.Error:
        return False


def test_a_visibility_timeout_shorter_than_a_job_does_not_run_it_twice(batch_dir, redis_url, workers):
    workers(2, "--visibility-timeout", "1")
    run = run_batch(batch_dir, redis_url, "id,prompt\nlong,slow job\n", SLOW_SECONDS="8").finish(timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    assert counts(batch_dir) == {"long.write": 1, "long.finish": 1}
    assert len(run.of("job_start")) == 1, "a second delivery started the job again"
    logs = "".join(p.read_text(errors="replace") for p in batch_dir.glob("worker*.log"))
    assert "duplicate delivery is dropped" in logs, "Redis never redelivered the job: the case was not exercised"
