#!/usr/bin/env python3
"""Batches on one machine, in one run: ``run-batch --engine local`` against ``xargs -P N aicp run-chain``.

Two figures, each a ratio or a rate measured within this one run (these machines are noisy):

* throughput: J one-step no-op chains (default 200) through ``aicp run-batch --engine local
  --jobs N`` against the same J rows through ``xargs -P N aicp run-chain`` (the way people
  batch without aicp's help). The ratio is run-batch's wall time over xargs'; what run-batch
  adds (a batch record, merged events, retries, budget) should cost close to nothing;
* idle cost: W jobs (default 8) that each wait S seconds (default 5) in a ``command`` step,
  all at once: run-batch's own CPU time (its process only, not the jobs') per waiting job
  per second, as a percentage of one core.

Usage: ``python scripts/bench_batch.py [--jobs-count 200] [--parallel N] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

NOOP_CHAIN = 'name: bench_batch\nprompt: go\nsteps:\n  - type: python\n    params: {function: "noop_step:noop"}\n'
WAIT_CHAIN = ("name: bench_wait\nprompt: go\nsteps:\n  - type: command\n"
              "    params: {argv: [sleep, \"{seconds}\"]}\n")


def aicp(*args: str) -> list[str]:
    return [sys.executable, "-m", "aicp", *args]


def throughput(folder: Path, count: int, parallel: int) -> dict[str, float]:
    (folder / "noop_step.py").write_text("def noop(ctx):\n    return None\n")
    (folder / "noop.yaml").write_text(NOOP_CHAIN)
    (folder / "rows.csv").write_text("prompt\n" + "".join(f"row {n}\n" for n in range(count)))
    started = time.perf_counter()
    subprocess.run(aicp("run-batch", "--config", "noop.yaml", "--inputs", "rows.csv", "--jobs", str(parallel),
                        "--output-dir", "batch_out", "--stream"),
                   cwd=folder, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    batch = time.perf_counter() - started
    rows = "".join(f"row {n}\n" for n in range(count)).encode()
    started = time.perf_counter()
    subprocess.run(["xargs", "-P", str(parallel), "-I{}", *aicp("run-chain", "--config", "noop.yaml",
                                                                    "--input-text", "{}", "--output-dir", "xargs_out",
                                                                    "--stream")],
                   input=rows, cwd=folder, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    xargs = time.perf_counter() - started
    return {"jobs": count, "parallel": parallel, "run_batch_s": round(batch, 2), "xargs_s": round(xargs, 2),
            "ratio": round(batch / xargs, 3)}


def idle_cost(folder: Path, waiting: int, seconds: float) -> dict[str, float]:
    (folder / "wait.yaml").write_text(WAIT_CHAIN.replace("{seconds}", str(seconds)))
    (folder / "wait.csv").write_text("prompt\n" + "".join(f"wait {n}\n" for n in range(waiting)))
    proc = psutil.Popen(aicp("run-batch", "--config", "wait.yaml", "--inputs", "wait.csv", "--jobs",
                             str(waiting), "--output-dir", "wait_out", "--stream"),
                        cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(min(2.0, seconds / 2))  # past start-up: every job is waiting now
    before = proc.cpu_times()
    window = max(1.0, seconds - 3.0)
    time.sleep(window)
    after = proc.cpu_times()
    proc.wait()
    cpu = (after.user - before.user) + (after.system - before.system)
    return {"waiting_jobs": waiting, "window_s": window, "run_batch_cpu_s": round(cpu, 4),
            "cpu_percent_per_waiting_job": round(100 * cpu / window / waiting, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs-count", type=int, default=200)
    parser.add_argument("--parallel", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--waiting", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        report = {"throughput": throughput(folder, args.jobs_count, args.parallel),
                  "idle": idle_cost(folder, args.waiting, args.seconds)}
    if args.json:
        print(json.dumps(report))
        return
    t, i = report["throughput"], report["idle"]
    print(f"{t['jobs']} no-op jobs, {t['parallel']} at a time: run-batch {t['run_batch_s']} s, "
          f"xargs -P {t['parallel']} aicp run-chain {t['xargs_s']} s -> ratio {t['ratio']} (target <= 1.1)")
    print(f"{i['waiting_jobs']} waiting jobs: run-batch used {i['run_batch_cpu_s']} s CPU in {i['window_s']} s -> "
          f"{i['cpu_percent_per_waiting_job']} % of a core per waiting job (target <= 0.1 %)")


if __name__ == "__main__":
    main()
