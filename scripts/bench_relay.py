#!/usr/bin/env python3
"""Relaying step output: N short lines through ``aicp run-chain --stream`` vs the same lines into a pipe.

* pipe:   ``python -c "for i in range(N): print(...)"`` with stdout a pipe that this
          process drains (what the printing costs by itself).
* stream: a chain of one ``python`` step running the same loop, through
          ``aicp run-chain --stream``; stderr is a pipe drained the same way, and every
          line must arrive as its own ``step_log`` event, in order (checked).
* quiet:  the same run with ``--quiet`` (the events go to the run's events.jsonl only).

Times are wall-clock end to end (aicp's start-up and the worker's included), median of
alternating rounds; CPU is user + system of the child and everything it waited for.

Usage: python scripts/bench_relay.py [--lines 500000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

LOOP = 'for i in range({n}):\n    print(f"line {{i}} of the relay benchmark")\n'
STEP = "def many(ctx):\n" + "".join(f"    {line}\n" for line in LOOP.splitlines()) + '    return "done"\n'
CHAIN = """name: relay
prompt: go
output_dir: {out}
steps:
  - type: python
    params: {{function: "relay_step:many"}}
"""
TARGET = 2.0
_SEQ = re.compile(rb'"line":"line (\d+) of the relay benchmark"')


class Drain(threading.Thread):
    """Reads a pipe to its end; counts lines, checks the relayed ones came whole and in order."""

    def __init__(self, pipe, check: bool) -> None:
        super().__init__(daemon=True)
        self.pipe, self.check = pipe, check
        self.lines = self.relayed = 0
        self.in_order = True
        self.tail = b""

    def run(self) -> None:
        expected = 0
        while chunk := self.pipe.read1(1 << 16):
            data = self.tail + chunk
            cut = data.rfind(b"\n") + 1
            whole, self.tail = data[:cut], data[cut:]
            self.lines += whole.count(b"\n")
            if self.check:
                for match in _SEQ.finditer(whole):
                    if int(match.group(1)) != expected:
                        self.in_order = False
                    expected += 1
                self.relayed = expected


def timed(argv: list[str], cwd: Path, drain_stream: str, check: bool) -> tuple[float, float, Drain, bytes]:
    started = time.perf_counter()
    before = os.times()
    proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    drain = Drain(proc.stderr if drain_stream == "stderr" else proc.stdout, check)
    other = proc.stdout if drain_stream == "stderr" else proc.stderr
    drain.start()
    rest = other.read()
    proc.wait()
    drain.join()
    wall = time.perf_counter() - started
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:4]}... failed ({proc.returncode}): {rest[-2000:]!r}")
    return wall, cpu, drain, rest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n = args.lines
    aicp = [sys.executable, "-m", "aicp", "run-chain", "--config", "chain.yaml"]
    variants = {
        "pipe": ([sys.executable, "-c", LOOP.format(n=n)], "stdout", False),
        "stream": (aicp + ["--stream"], "stderr", True),
        "quiet": (aicp + ["--quiet"], "stderr", False),
    }
    walls: dict[str, list[float]] = {k: [] for k in variants}
    cpus: dict[str, list[float]] = {k: [] for k in variants}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "relay_step.py").write_text(STEP.format(n=n))
        (folder / "chain.yaml").write_text(CHAIN.format(out=folder / "out"))
        for r in range(args.rounds):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for name in order:
                argv, stream, check = variants[name]
                wall, cpu, drain, rest = timed(argv, folder, stream, check)
                if name == "pipe" and drain.lines != n:
                    raise SystemExit(f"pipe: {drain.lines} lines, expected {n}")
                if name == "stream":
                    if drain.relayed != n or not drain.in_order:
                        raise SystemExit(f"stream: {drain.relayed} lines relayed (expected {n}), "
                                         f"in order: {drain.in_order}")
                    result = json.loads(rest)
                    assert result["success"], result
                walls[name].append(wall)
                cpus[name].append(cpu)
    print(f"relay: {n:,} lines of ~35 bytes, {args.rounds} alternating rounds (median; wall end to end, "
          "CPU = user+system of the process tree)")
    for name, label in (("pipe", "python printing into a pipe"), ("stream", "aicp run-chain --stream"),
                        ("quiet", "aicp run-chain --quiet")):
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        print(f"  {label:<30} {wall:6.2f} s wall ({n / wall:>9,.0f} lines/s), {cpu:6.2f} s CPU"
              f"   runs: {', '.join(f'{w:.2f}' for w in walls[name])}")
    ratio = statistics.median(walls["stream"]) / statistics.median(walls["pipe"])
    quiet = statistics.median(walls["quiet"]) / statistics.median(walls["pipe"])
    cpu_ratio = statistics.median(cpus["stream"]) / statistics.median(cpus["pipe"])
    print(f"ratio --stream/pipe: {ratio:.2f}x wall, {cpu_ratio:.2f}x CPU; --quiet/pipe: {quiet:.2f}x wall"
          f"  -- target <= {TARGET:.1f}x")


if __name__ == "__main__":
    main()
