"""``aicp run-batch`` with the local engine, through the real CLI: rows in, one result line out,
a batch record that resumes, budgets, failures and signals."""

from __future__ import annotations

import http.server
import json
import signal
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from _aicp import LiveRun, Run, child_env
from _jobs import batch_dir, batch_json, counts  # noqa: F401  (batch_dir: a fixture)


def env(batch_dir: Path, **extra: str) -> dict[str, str]:
    return child_env(COUNTS_DIR=str(batch_dir / "counts"), **extra)


def test_a_csv_of_six_rows_runs_every_job_and_prints_one_result_line(aicp, batch_dir, validate_events):
    rows = ["id,prompt"] + [f"clip{n},prompt number {n}" for n in range(6)]
    (batch_dir / "rows.csv").write_text("\n".join(rows) + "\n")
    run = aicp("run-batch", "--config", "chain.yaml", "--inputs", "rows.csv", "--jobs", "3", "--stream",
               env=env(batch_dir))
    assert run.returncode == 0, run.stderr[-3000:]
    result = run.result
    assert result["event"] == "batch_complete"
    assert (result["success"], result["total_jobs"], result["succeeded"], result["failed"]) == (True, 6, 6, 0)
    validate_events(run)
    record = batch_json(batch_dir)
    assert {job_id: e["status"] for job_id, e in record["jobs"].items()} == {f"clip{n}": "succeeded" for n in range(6)}
    root = Path(result["record"])
    for n in range(6):
        outputs = list((root / "jobs" / f"clip{n}").glob("*.txt"))
        assert [p.read_text() for p in outputs] == [f"PROMPT NUMBER {n}"]
        assert (root / "jobs" / f"clip{n}" / "runs" / f"clip{n}" / "manifest.json").is_file()
    # every job's own events are in the merged stream and carry the batch fields
    starts = run.of("pipeline_start")
    assert sorted(e["job_id"] for e in starts) == [f"clip{n}" for n in range(6)]
    assert all(e["batch_id"] == result["batch_id"] and e["job_attempt"] == 1 for e in starts)
    assert len(run.of("job_complete")) == 6 and len(run.of("job_queued")) == 6
    merged = [json.loads(line) for line in (root / "events.jsonl").read_text().splitlines()]
    assert {e["event"] for e in merged} >= {"batch_start", "job_start", "step_complete", "pipeline_complete",
                                             "job_complete", "batch_complete"}
    assert counts(batch_dir) == {f"clip{n}.{s}": 1 for n in range(6) for s in ("write", "finish")}


def test_csv_without_ids_gets_stable_row_ids_and_a_named_column(aicp, batch_dir):
    (batch_dir / "rows.csv").write_text("title,other\nalpha,x\nbeta,y\n")
    run = aicp("run-batch", "--config", "chain.yaml", "--inputs", "rows.csv", "--column", "title", "--stream",
               env=env(batch_dir))
    assert run.returncode == 0, run.stderr[-3000:]
    ids = sorted(batch_json(batch_dir)["jobs"])
    assert len(ids) == 2 and all(i.startswith("row0000") for i in ids)
    again = aicp("run-batch", "--config", "chain.yaml", "--inputs", "rows.csv", "--column", "title", "--stream",
                 env=env(batch_dir))
    assert again.returncode == 0 and sorted(batch_json(batch_dir)["jobs"]) == ids
    assert all(v == 1 for v in counts(batch_dir).values()), "the same command again reran finished jobs"


def test_jsonl_rows_override_top_level_keys(aicp, batch_dir):
    rows = [{"id": "plain", "prompt": "hello"},
            {"id": "renamed", "prompt": "world", "name": "other_name", "retry_count": 1},
            {"id": "one_step", "input": "short", "steps": [{"type": "python", "params": {"function": "jobs:write"}}]}]
    (batch_dir / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = aicp("run-batch", "--config", "chain.yaml", "--inputs", "rows.jsonl", "--stream", env=env(batch_dir))
    assert run.returncode == 0, run.stderr[-3000:]
    names = {e["job_id"]: e["name"] for e in run.of("pipeline_start")}
    assert names == {"plain": "batch_chain", "renamed": "other_name", "one_step": "batch_chain"}
    totals = {e["job_id"]: e["total_steps"] for e in run.of("pipeline_start")}
    assert totals == {"plain": 2, "renamed": 2, "one_step": 1}
    assert "one_step.finish" not in counts(batch_dir)


def test_no_secret_reaches_the_batch_record_or_any_file_it_writes(aicp, batch_dir):
    """The environment's secrets, a chain's and a row's secret-named params are masked in
    batch.json, the merged events and the jobs' run records; the steps got the real values."""
    env_secret, row_secret = "fal-env-secret-0123456789", "row-param-secret-9876543210"
    (batch_dir / "check.py").write_text(textwrap.dedent(f'''
        def key(ctx):
            assert ctx.params["api_key"] == {row_secret!r}, "the step did not get the real value"
            return "checked " + ctx.input
    '''))
    rows = [{"id": "in_text", "prompt": f"a prompt naming {env_secret}"},
            {"id": "in_params", "prompt": "p", "steps": [
                {"type": "python", "params": {"function": "check:key", "api_key": row_secret}}]}]
    (batch_dir / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = aicp("run-batch", "--config", "chain.yaml", "--inputs", "rows.jsonl", "--stream",
               env=env(batch_dir, FAL_KEY=env_secret))
    assert run.returncode == 0, run.stderr[-3000:]
    assert batch_json(batch_dir)["jobs"]["in_params"]["status"] == "succeeded"
    written = [p for p in (batch_dir / "out").rglob("*") if p.is_file()]
    assert any(p.name == "batch.json" for p in written)
    for path in written:
        data = path.read_bytes()
        assert env_secret.encode() not in data and row_secret.encode() not in data, path
    assert env_secret not in run.stdout + run.stderr and row_secret not in run.stdout + run.stderr


@pytest.mark.parametrize("rows, message", [
    ("prompt\nfine\n\n", None),  # blank lines are not rows
    ("nope\nx\n", "no 'prompt' column"),
    ("prompt\n\"\"\n", "empty 'prompt'"),
    ("id,prompt\na b,x\n", "not a valid job id"),
    ("id,prompt\na,x\na,y\n", "job ids must be unique"),
])
def test_csv_rows_are_all_checked_before_anything_runs(aicp, batch_dir, rows, message):
    (batch_dir / "rows.csv").write_text(rows)
    run = aicp("run-batch", "--config", "chain.yaml", "--inputs", "rows.csv", "--stream", env=env(batch_dir))
    if message is None:
        assert run.returncode == 0, run.stderr[-2000:]
        return
    assert run.returncode == 2, run.stderr[-2000:]
    assert message in run.stderr
    assert "Traceback" not in run.stderr
    assert not (batch_dir / "out" / "batches").exists(), "a batch started although a row was bad"
    assert not list((batch_dir / "counts").iterdir())


def test_every_bad_jsonl_row_is_listed_with_its_line(aicp, batch_dir):
    lines = ['{"prompt": "ok"}', "not json", "[1, 2]", '{"id": "x"}', '{"prompt": "a", "input": "b"}',
             '{"prompt": "x", "output_dir": "/tmp"}', '{"prompt": "x", "timeout": -3}', '{"prompt": NaN}']
    (batch_dir / "rows.jsonl").write_text("\n".join(lines) + "\n")
    run = aicp("run-batch", "--config", "chain.yaml", "--inputs", "rows.jsonl", env=env(batch_dir))
    assert run.returncode == 2
    for line in range(2, 9):
        assert f"rows.jsonl:{line}:" in run.stderr, (line, run.stderr)
    assert "rows.jsonl:1:" not in run.stderr
    assert not (batch_dir / "out" / "batches").exists()


@pytest.mark.parametrize("args, code", [
    (["--inputs", "missing.csv"], 3),
    (["--inputs", "rows.csv", "--jobs", "0"], 2),
    (["--inputs", "rows.csv", "--max-cost", "-1"], 2),
    (["--inputs", "rows.csv", "--batch-id", "../escape"], 2),
    (["--inputs", "rows.csv", "--resume", "--batch-id", "never-ran"], 3),
])
def test_bad_arguments_have_named_outcomes_and_one_result_line(aicp, batch_dir, args, code):
    (batch_dir / "rows.csv").write_text("prompt\nx\n")
    run = aicp("run-batch", "--config", "chain.yaml", *args, "--stream", env=env(batch_dir))
    assert run.returncode == code, run.stderr
    assert "Traceback" not in run.stderr
    assert run.result["exit_code"] == code


@pytest.mark.parametrize("argv", [["--nope"], ["--config", "chain.yaml"], ["--config", "chain.yaml", "--inputs", "x",
                                                                            "--jobs", "many"]])
def test_a_command_line_argparse_refuses_still_ends_with_one_result_line(aicp, batch_dir, argv):
    run = aicp("run-batch", "--stream", *argv, env=env(batch_dir))
    assert run.returncode == 2
    assert run.result["event"] == "batch_complete" and run.result["exit_code"] == 2
    assert [e["event"] for e in run.events] == ["error"]


def test_a_failing_row_fails_the_batch_with_exit_5_and_is_listed_not_retried(aicp, batch_dir, validate_events):
    (batch_dir / "rows.csv").write_text("id,prompt\ngood,fine\nbad,fail here\nalso,fine too\n")
    run = aicp("run-batch", "--config", "chain.yaml", "--inputs", "rows.csv", "--stream", env=env(batch_dir))
    assert run.returncode == 5, run.stderr[-3000:]
    result = run.result
    validate_events(run)
    assert (result["success"], result["succeeded"], result["failed"]) == (False, 2, 1)
    [failure] = result["failures"]
    assert failure["job_id"] == "bad" and failure["exit_code"] == 5 and "row says fail here" in failure["error"]
    assert counts(batch_dir)["bad.write"] == 1, "exit 5 is final: it must not be retried"
    assert not run.of("job_retry")
    plain = Run(0, "", "")
    del plain


def test_plain_mode_prints_a_summary_and_json_mode_one_envelope(aicp, batch_dir):
    (batch_dir / "rows.csv").write_text("id,prompt\ngood,fine\nbad,fail now\n")
    plain = aicp("run-batch", "--config", "chain.yaml", "--inputs", "rows.csv", env=env(batch_dir))
    assert plain.returncode == 5
    assert "1/2 jobs succeeded" in plain.stdout and "job bad" in plain.stdout
    assert "failed  job bad" in plain.stderr
    as_json = aicp("run-batch", "--config", "chain.yaml", "--inputs", "rows.csv", "--json", env=env(batch_dir))
    assert as_json.returncode == 5
    assert as_json.result["command"] == "run-batch" and as_json.result["data"]["failed"] == 1


def test_max_cost_stops_before_a_job_that_would_pass_the_budget(aicp, batch_dir):
    rows = ["id,prompt"] + [f"j{n},paid {n}" for n in range(5)]
    (batch_dir / "rows.csv").write_text("\n".join(rows) + "\n")
    run = aicp("run-batch", "--config", "chain.yaml", "--inputs", "rows.csv", "--jobs", "1", "--max-cost", "1.0",
               "--stream", env=env(batch_dir, STEP_COST="0.4"))
    assert run.returncode == 5, run.stderr[-3000:]
    result = run.result
    # 0.4 + 0.4 = 0.8 spent; a third job's estimate (0) still fits, its real spend takes it to 1.2;
    # from then on real spend alone is past the budget: the last two never start
    assert (result["succeeded"], result["skipped"]) == (3, 2)
    assert result["total_cost"] == pytest.approx(1.2)
    skipped = [e for e in run.of("job_complete") if e["status"] == "skipped"]
    assert [e["job_id"] for e in skipped] == ["j3", "j4"] and all(e["reason"] == "budget" for e in skipped)
    assert "j3.write" not in counts(batch_dir) and "j4.write" not in counts(batch_dir)


def _wait_job_ready(live: LiveRun, job_id: str) -> None:
    live.wait_for(lambda e: e["event"] == "step_log" and e.get("job_id") == job_id and e["line"] == "ready",
                  timeout=60)


def test_kill_9_mid_batch_then_resume_keeps_finished_jobs_and_resumes_the_interrupted_run(batch_dir):
    (batch_dir / "rows.csv").write_text("id,prompt\nfirst,quick\nsecond,slow one\nthird,quick too\n")
    args = ["run-batch", "--config", "chain.yaml", "--inputs", "rows.csv", "--jobs", "1", "--stream"]
    live = LiveRun(args, batch_dir, env=env(batch_dir))
    try:
        _wait_job_ready(live, "second")
        job_procs = [p for p in psutil.Process(live.pid).children(recursive=True)]
        live.proc.send_signal(signal.SIGKILL)
        live.proc.wait(10)
        gone, alive = psutil.wait_procs(job_procs, timeout=10)
        assert not alive, f"processes outlived the killed run-batch: {alive}"
    finally:
        live.kill()
    assert counts(batch_dir) == {"first.write": 1, "first.finish": 1, "second.write": 1, "second.finish": 1}
    resumed = LiveRun(args, batch_dir, env=env(batch_dir, SLOW_SECONDS="0"))
    run = resumed.finish(timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.result["succeeded"] == 3
    [start] = run.of("batch_start")
    assert start["resumed"] is True and start["pending_jobs"] == 2
    assert counts(batch_dir) == {"first.write": 1, "first.finish": 1, "second.write": 1, "second.finish": 2,
                                 "third.write": 1, "third.finish": 1}
    record = batch_json(batch_dir)
    assert record["jobs"]["second"]["attempts"] == 2
    manifest = json.loads((Path(run.result["record"]) / "jobs" / "second" / "runs" / "second"
                           / "manifest.json").read_text())
    assert manifest["resumed"] == 1 and manifest["status"] == "succeeded"


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_the_batch_resumably_with_its_exit_code(batch_dir, sig, code):
    (batch_dir / "rows.csv").write_text("id,prompt\nslow,slow job\nnext,quick\n")
    args = ["run-batch", "--config", "chain.yaml", "--inputs", "rows.csv", "--jobs", "1", "--stream"]
    live = LiveRun(args, batch_dir, env=env(batch_dir))
    try:
        _wait_job_ready(live, "slow")
        children = psutil.Process(live.pid).children(recursive=True)
        live.proc.send_signal(sig)
        run = live.finish(timeout=60)
    finally:
        live.kill()
    assert run.returncode == code, run.stderr[-3000:]
    result = run.result
    assert result["exit_code"] == code and result["interrupted"] == 2
    assert not psutil.wait_procs(children, timeout=10)[1]
    statuses = {k: v["status"] for k, v in batch_json(batch_dir)["jobs"].items()}
    assert statuses == {"slow": "interrupted", "next": "interrupted"}
    again = LiveRun(args, batch_dir, env=env(batch_dir, SLOW_SECONDS="0")).finish(timeout=120)
    assert again.returncode == 0 and again.result["succeeded"] == 2


def test_a_job_killed_from_outside_is_requeued_and_its_run_resumed(batch_dir):
    (batch_dir / "rows.csv").write_text("id,prompt\nvictim,slow victim\n")
    args = ["run-batch", "--config", "chain.yaml", "--inputs", "rows.csv", "--stream"]
    live = LiveRun(args, batch_dir, env=env(batch_dir, SLOW_SECONDS="3"))
    try:
        _wait_job_ready(live, "victim")
        [job] = [p for p in psutil.Process(live.pid).children() if "run-chain" in p.cmdline()]
        job.kill()  # the job's own aicp dies; its worker follows it
        run = live.finish(timeout=120)
    finally:
        live.kill()
    assert run.returncode == 0, run.stderr[-3000:]
    [retry] = run.of("job_retry")
    assert retry["reason"] == "requeued" and retry["exit_code"] == 137
    assert [e["attempt"] for e in run.of("job_start")] == [1, 2]
    assert counts(batch_dir)["victim.write"] == 1, "the finished first step ran again"
    assert counts(batch_dir)["victim.finish"] == 2


def test_run_chain_run_id_creates_then_resumes_the_named_run(aicp, batch_dir):
    one = aicp("run-chain", "--config", "chain.yaml", "--run-id", "named-1", "--input-text", "fail first",
               "--stream", env=env(batch_dir))
    assert one.returncode == 5 and one.result["run_id"] == "named-1"
    two = aicp("run-chain", "--config", "chain.yaml", "--run-id", "named-1", "--input-text", "fine now",
               "--stream", env=env(batch_dir))
    assert two.returncode == 0 and two.result["run_id"] == "named-1"
    manifest = json.loads((batch_dir / "out" / "runs" / "named-1" / "manifest.json").read_text())
    assert manifest["resumed"] == 1
    for bad in ("../x", "a b", "", "-flag"):
        run = aicp("run-chain", "--config", "chain.yaml", f"--run-id={bad}", "--stream", env=env(batch_dir))
        assert run.returncode == 2 and run.result["exit_code"] == 2, (bad, run.stderr)


FAL_CHAIN = """
name: remote
prompt: a lighthouse
output_dir: out
steps:
  - type: text_to_image
    model: flux_dev
"""


class _Refusing(http.server.BaseHTTPRequestHandler):
    """fal's queue answering every submit with 401 (a rejected key): the job exits 4."""

    submits: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        type(self).submits.append(self.path)
        body = b'{"detail": "Invalid API key"}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_provider_failure_is_retried_with_a_growing_delay_up_to_three_times(aicp, tmp_path):
    (tmp_path / "remote.yaml").write_text(textwrap.dedent(FAL_CHAIN).lstrip())
    (tmp_path / "rows.csv").write_text("id,prompt\nonly,a cat\n")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    _Refusing.submits = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        run = aicp("run-batch", "--config", "remote.yaml", "--inputs", "rows.csv", "--stream",
                   env=child_env(FAL_KEY="k", AICP_FAL_QUEUE_URL=f"http://127.0.0.1:{server.server_port}",
                                 AICP_BATCH_RETRY_DELAY="0.2"))
    finally:
        server.shutdown()
    assert run.returncode == 5, run.stderr[-3000:]
    retries = run.of("job_retry")
    assert [(e["attempt"], e["exit_code"], e["reason"]) for e in retries] == [(n, 4, "provider") for n in (1, 2, 3)]
    assert [e["delay_seconds"] for e in retries] == [0.2, 0.4, 0.8]
    [done] = run.of("job_complete")
    assert (done["status"], done["attempt"], done["exit_code"]) == ("failed", 4, 4)
    assert len(_Refusing.submits) == 4
    assert run.result["failures"][0]["exit_code"] == 4


def test_max_cost_refuses_a_job_whose_estimate_alone_passes_the_budget(aicp, tmp_path):
    (tmp_path / "remote.yaml").write_text(textwrap.dedent(FAL_CHAIN).lstrip())
    (tmp_path / "rows.csv").write_text("id,prompt\na,one\nb,two\n")
    run = aicp("run-batch", "--config", "remote.yaml", "--inputs", "rows.csv", "--max-cost", "0.001", "--stream",
               env=child_env(FAL_KEY="k", AICP_FAL_QUEUE_URL="http://127.0.0.1:9"))
    assert run.returncode == 5, run.stderr[-3000:]
    assert run.result["skipped"] == 2 and run.result["total_cost"] == 0
    assert not run.of("job_start"), "a job started although its estimate passed the budget"
    assert all(e["reason"] == "budget" and "max-cost" in e["error"] for e in run.of("job_complete"))
