#!/usr/bin/env python3
"""What supervising costs while steps only wait: aicp's own CPU, in % of one core.

Runs ``aicp run-chain --stream`` (the real CLI) on two chains whose steps sleep:

* one ``command`` step running ``sleep``;
* a parallel group of 16 ``command`` members running ``sleep`` (max_workers 16).

Once every worker has started (its ``step_start`` event) and a settling second
has passed, it reads the CPU time (user + system) of the aicp process with
psutil at the start and end of a window (default 5 s) and prints it as a
share of one core, with the target. Each case runs with the default
containment (a cgroup per worker where the machine allows it) and with the
process-tree fallback (``AICP_CGROUP=off``). The worker template (a separate
process, idle in ``select``) is measured too.

Usage: ``python scripts/bench_idle.py [--window 5] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

TARGETS = {1: 0.2, 16: 2.0}  # % of one core (issue 12)


def chain_text(members: int, seconds: float) -> str:
    step = f'{{type: command, params: {{argv: ["sleep", "{seconds:g}"]}}}}'
    if members == 1:
        return f"name: idle-1\nprompt: go\nsteps:\n  - {step}\n"
    group = ", ".join([step] * members)
    return (f"name: idle-{members}\nprompt: go\nsteps:\n  - {{type: parallel_group, params: "
            f"{{max_workers: {members}, parallel_steps: [{group}]}}}}\n")


def measure(folder: Path, members: int, window: float, cgroup: bool) -> dict[str, Any]:
    chain = folder / f"idle{members}.yaml"
    chain.write_text(chain_text(members, window + 6))
    env = dict(os.environ)
    if not cgroup:
        env["AICP_CGROUP"] = "off"
    proc = subprocess.Popen([sys.executable, "-m", "aicp", "run-chain", "-c", str(chain), "--stream"],
                            cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    started = threading.Event()
    containment: list[str] = []

    def read_events() -> None:
        assert proc.stderr is not None
        count = 0
        for line in proc.stderr:
            event = json.loads(line)
            if event["event"] == "pipeline_start":
                containment.append(event.get("containment", "?"))
            if event["event"] == "step_start" and "pid" in event:
                count += 1
                if count == members:
                    started.set()

    reader = threading.Thread(target=read_events, daemon=True)
    reader.start()
    try:
        if not started.wait(30):
            raise SystemExit("the workers did not start within 30 s")
        time.sleep(1.0)  # let start-up settle
        me = psutil.Process(proc.pid)
        template = [c for c in me.children() if "_worker.template" in " ".join(c.cmdline())]
        before = me.cpu_times()
        t_before = [t.cpu_times() for t in template]
        t0 = time.monotonic()
        time.sleep(window)
        after = me.cpu_times()
        t_after = [t.cpu_times() for t in template]
        elapsed = time.monotonic() - t0
    finally:
        proc.kill()
        proc.wait()
        reader.join(5)
    cpu = (after.user + after.system) - (before.user + before.system)
    template_cpu = sum((a.user + a.system) - (b.user + b.system) for a, b in zip(t_after, t_before))
    return {"members": members, "containment": containment[0] if containment else "?",
            "aicp_percent": 100 * cpu / elapsed, "template_percent": 100 * template_cpu / elapsed,
            "window_s": elapsed, "target_percent": TARGETS[members]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=float, default=5.0, help="seconds of measuring per case (5)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="aicp-bench-idle-") as tmp:
        for cgroup in (True, False):
            for members in (1, 16):
                results.append(measure(Path(tmp), members, args.window, cgroup))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"aicp CPU while its steps sleep ({os.cpu_count()} CPUs, {args.window:g} s windows)")
    for r in results:
        verdict = "ok" if r["aicp_percent"] <= r["target_percent"] else "OVER"
        print(f"  {r['members']:>2} sleeping step(s), {r['containment']:<12}  aicp {r['aicp_percent']:6.2f} % of a core"
              f"  (target <= {r['target_percent']:g} %: {verdict})   template {r['template_percent']:.2f} %")


if __name__ == "__main__":
    main()
