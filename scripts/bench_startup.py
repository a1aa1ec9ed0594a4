#!/usr/bin/env python3
"""Start-up time of the ``aicp`` command against a bare interpreter start.

Times, in one run, the installed console script (the ``aicp`` next to this
interpreter) for ``aicp --version``, ``aicp run-chain --help`` and ``aicp
validate --config <a small chain>``, against ``python -c pass`` with the same
interpreter (same site-packages, same .pth files). The commands are
interleaved round by round so drift in machine load hits them all alike; the
median of the runs is reported, with each command's ratio to the bare start,
and the median CPU time (user + system, from wait4) with its ratio: on a
loaded machine wall time waits for a core, CPU time much less so. The targets
are wall-time ratios.
Bytecode is cached as after a normal install (PYTHONDONTWRITEBYTECODE is
dropped from the commands' environment).

Targets (issue 12): ``aicp --version`` at most 1.3x a bare start, ``aicp
validate`` of the README's example chain (examples/prompt_to_video.yaml) at
most 3x, both for an unchanged chain and for a new or edited one. The
executors' checks import nothing heavy for it (hex colours without Pillow;
ffmpeg's filter list cached per binary in $XDG_CACHE_HOME/aicp). Two figures
for validate: "warm", the example as it is, which the warm-up round keeps in
the parsed-document cache ($XDG_CACHE_HOME/aicp/chains, see README
"Start-up"), as a hook or a CI loop sees an unchanged chain; and "cold", the
example with a comment line that changes every round (written before the
round, outside the timing), so that every run reads a text it never read: an
edited chain, parsed (by aicp._chain.plainyaml, or PyYAML for what that does
not read) and kept.

Usage: python scripts/bench_startup.py [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHAIN = """\
name: startup
prompt: hello
steps:
  - type: command
    params: {argv: [echo, "{input}"]}
  - type: python
    params: {function: "mod:fn"}
"""


WARM, COLD = "aicp validate (README example, warm)", "aicp validate (README example, cold)"
TARGETS = {"aicp --version": 1.3, WARM: 3.0, COLD: 3.0}

# As installed (pip compiles bytecode): a PYTHONDONTWRITEBYTECODE in our environment would make
# every start recompile aicp's modules, which no user's machine does.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def time_once(argv: list[str], cwd: str) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one run of ``argv``."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=ENV)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited with {proc.returncode}")
    return elapsed, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    aicp = str(Path(sys.executable).parent / "aicp")
    if not os.path.exists(aicp):
        raise SystemExit(f"no console script at {aicp}: install the package (pip install -e .)")
    example = Path(__file__).resolve().parent.parent / "examples" / "prompt_to_video.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "chain.yaml").write_text(CHAIN)
        edited = Path(tmp, "edited.yaml")
        # a cache of the benchmark's own (filled by the warm-up round): another aicp validating the same
        # example with other code would replace its entry, and make a warm run cold
        ENV["XDG_CACHE_HOME"] = str(Path(tmp, "cache"))
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "aicp --version": [aicp, "--version"],
            "aicp run-chain --help": [aicp, "run-chain", "--help"],
            "aicp validate --config chain.yaml": [aicp, "validate", "--config", "chain.yaml"],
            WARM: [aicp, "validate", "--config", str(example)],
            COLD: [aicp, "validate", "--config", str(edited)],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        for round_number in range(-1, args.runs):  # round -1 warms the page cache and writes the .pyc files
            # a text no run has read: the example with a comment of this round
            edited.write_text(f"{example.read_text()}# edited {time.time_ns()} {round_number}\n")
            for name, argv in commands.items():
                elapsed, used = time_once(argv, tmp)
                if round_number >= 0:
                    times[name].append(elapsed)
                    cpu[name].append(used)
    base = statistics.median(times["python -c pass"])
    cpu_base = statistics.median(cpu["python -c pass"])
    note = " (PYTHONDONTWRITEBYTECODE unset for them)" if "PYTHONDONTWRITEBYTECODE" in os.environ else ""
    print(f"{args.runs} runs each, interleaved{note}, load average {os.getloadavg()[0]:.1f}; median (min-max) "
          "wall time and ratio to a bare start; CPU time (user + system) and its ratio")
    for name, samples in times.items():
        med = statistics.median(samples)
        used = statistics.median(cpu[name])
        print(f"  {name:<38} {med * 1000:6.1f} ms ({min(samples) * 1000:.1f}-{max(samples) * 1000:.1f})"
              f" {med / base:5.2f}x   cpu {used * 1000:5.1f} ms {used / cpu_base:5.2f}x")
    for name, target in TARGETS.items():
        ratio = statistics.median(times[name]) / base
        print(f"{name} / python -c pass: {ratio:.2f}x (target <= {target}x): "
              f"{'ok' if ratio <= target else 'ABOVE TARGET'}")


if __name__ == "__main__":
    main()
