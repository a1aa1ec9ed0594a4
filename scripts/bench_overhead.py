#!/usr/bin/env python3
"""The per-step overhead of aicp's supervised execution, in one run.

Measures, N times each (default 200):

* aicp step: a no-op ``python`` step in a chain of N, run through
  ``aicp.run_chain``: the time from one step's ``step_complete`` to the next
  one's (the full cycle: spawn or fork, spec, run, result, cleanup, events),
  and from ``step_start`` to ``step_complete`` (what the step itself reports);
  once with the default launcher and once with ``AICP_WORKER_START=spawn``
  (a fresh interpreter per step); with the CPU time per step of the whole process tree (aicp,
  the template and every worker, which the template reaps and aicp reaps the template), as
  the difference between a run of N steps and one of 10 (so the run's fixed costs, the
  template's start first, drop out);
* bare interpreter: ``python -I -S -c pass`` started with subprocess and waited for;
* in-process call: the same no-op function called directly, and the in-process
  equivalent of a step (StepContext, load the target, call, JSON-encode the result).

Prints the median and p95 of each, and the ratios. Usage:
``python scripts/bench_overhead.py [--steps 200] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NOOP = "def noop(ctx):\n    return None\n"
TARGET = 0.5  # a full step cycle, as a fraction of a bare interpreter start (issue 12)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(values) * 1e3, "p95_ms": percentile(values, 0.95) * 1e3,
            "mean_ms": statistics.fmean(values) * 1e3, "n": len(values)}


def bench_chain(folder: Path, steps: int, method: str) -> dict[str, Any]:
    import aicp

    chain_file = folder / "bench.yaml"
    chain_file.write_text("name: bench\nprompt: go\nsteps:\n" + "".join(
        '  - type: python\n    params: {function: "noop_step:noop"}\n' for _ in range(steps)))
    chain = aicp.load_chain(str(chain_file), output_dir=folder / "out")
    marks: list[tuple[str, float]] = []

    def observe(event: dict) -> None:
        if event["event"] in ("pipeline_start", "step_start", "step_complete"):
            marks.append((event["event"], time.perf_counter()))

    previous = os.environ.get("AICP_WORKER_START")
    os.environ["AICP_WORKER_START"] = method
    try:
        cpu_before = _cpu()
        began = time.perf_counter()
        result = aicp.run_chain(chain, observer=observe)
        total = time.perf_counter() - began
        cpu = _cpu() - cpu_before
    finally:
        if previous is None:
            os.environ.pop("AICP_WORKER_START", None)
        else:
            os.environ["AICP_WORKER_START"] = previous
    if not result.success:
        raise SystemExit(f"the benchmark chain failed: {result.error}")
    cycle, inside = [], []
    last_end = marks[0][1]  # pipeline_start
    start = None
    for name, t in marks[1:]:
        if name == "step_start":
            start = t
        elif name == "step_complete":
            cycle.append(t - last_end)
            inside.append(t - start)
            last_end = t
    return {"cycle": summary(cycle), "start_to_complete": summary(inside),
            "total_per_step_ms": total / steps * 1e3, "cpu_seconds": cpu}


def _cpu() -> float:
    """User + system CPU seconds of this process and of its reaped descendants."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bench_bare_python(n: int) -> dict[str, float]:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-S", "-c", "pass"], check=True)
        times.append(time.perf_counter() - t)
    return summary(times)


def bench_in_process(folder: Path, n: int) -> tuple[dict[str, float], dict[str, float]]:
    from aicp._context import Channel, StepContext
    from aicp._targets import load_target

    sys.path.insert(0, str(folder))
    fn = load_target("noop_step:noop")
    calls = []
    for _ in range(n):
        t = time.perf_counter()
        fn(None)
        calls.append(time.perf_counter() - t)
    r, w = os.pipe()
    steps = []
    spec = {"input": "go", "params": {"function": "noop_step:noop"}, "output_dir": str(folder / "out"),
            "step": 0, "name": None, "type": "python"}
    try:
        for _ in range(n):
            t = time.perf_counter()
            ctx = StepContext(spec, Channel(w))
            value = load_target(spec["params"]["function"])(ctx)
            Channel(w).result(json.dumps({"output": value}))
            steps.append(time.perf_counter() - t)
            os.read(r, 65536)
    finally:
        os.close(r)
        os.close(w)
    return summary(calls), summary(steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="steps / starts / calls per measure (200, at least 20)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    if args.steps < 20:
        parser.error("--steps must be at least 20")
    with tempfile.TemporaryDirectory(prefix="aicp-bench-") as tmp:
        folder = Path(tmp)
        (folder / "noop_step.py").write_text(NOOP)
        bench_chain(folder, 10, "fork")  # warm caches (imports, page cache) before measuring
        fork = bench_chain(folder, args.steps, "fork")
        spawn = bench_chain(folder, args.steps, "spawn")
        for figures, method in ((fork, "fork"), (spawn, "spawn")):
            short = bench_chain(folder, 10, method)
            figures["cpu_per_step_ms"] = (figures["cpu_seconds"] - short["cpu_seconds"]) / (args.steps - 10) * 1e3
        bare = bench_bare_python(args.steps)
        call, in_process_step = bench_in_process(folder, args.steps)
    figures = {
        "python": sys.version.split()[0], "cpus": os.cpu_count(), "n": args.steps,
        "aicp_step_default": fork, "aicp_step_spawn": spawn, "bare_python_start": bare,
        "in_process_call": call, "in_process_step": in_process_step,
        "target_default_step_vs_bare_python": TARGET,
        "ratios": {
            "default_step_vs_bare_python": fork["cycle"]["median_ms"] / bare["median_ms"],
            "spawn_step_vs_bare_python": spawn["cycle"]["median_ms"] / bare["median_ms"],
            "default_step_vs_in_process_step": fork["cycle"]["median_ms"] / in_process_step["median_ms"],
            "default_step_vs_in_process_call": fork["cycle"]["median_ms"] / call["median_ms"],
        },
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return

    def ms(value: float) -> str:
        return f"{value:9.3f} ms" if value >= 0.1 else f"{value * 1e3:9.3f} us"

    def row(label: str, s: dict[str, float]) -> str:
        return f"  {label:<52} median {ms(s['median_ms'])}   p95 {ms(s['p95_ms'])}"

    print(f"aicp per-step overhead: Python {figures['python']}, {figures['cpus']} CPUs, n={args.steps}")
    for key, label in (("aicp_step_default", "default launcher"), ("aicp_step_spawn", "AICP_WORKER_START=spawn")):
        f = figures[key]
        print(f"  aicp no-op python step, {label}:")
        print(row("  complete -> next complete (full cycle)", f["cycle"]))
        print(row("  step_start -> step_complete", f["start_to_complete"]))
        print(f"  {'  total time / steps':<52} mean   {ms(f['total_per_step_ms'])}")
        print(f"  {'  CPU time / steps (aicp, template, workers)':<52} mean   {ms(f['cpu_per_step_ms'])}")
    print(row("bare `python -I -S -c pass` start (subprocess.run)", bare))
    print(row("in-process step (ctx, load, call, JSON)", in_process_step))
    print(row("in-process function call", call))
    ratios = figures["ratios"]
    print("ratios (medians):")
    verdict = "ok" if ratios["default_step_vs_bare_python"] <= TARGET else "OVER"
    print(f"  default step / bare python start   {ratios['default_step_vs_bare_python']:8.2f}x"
          f"   (target <= {TARGET:g}x: {verdict})")
    print(f"  spawn step / bare python start     {ratios['spawn_step_vs_bare_python']:8.2f}x")
    print(f"  default step / in-process step     {ratios['default_step_vs_in_process_step']:8.0f}x")
    print(f"  default step / in-process call     {ratios['default_step_vs_in_process_call']:8.0f}x")


if __name__ == "__main__":
    main()
