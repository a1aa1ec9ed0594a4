#!/usr/bin/env python3
"""Events per second through aicp's event stream vs a plain ``print(json.dumps(...))``.

Each measurement runs in a child process whose stderr (fd 2) is a pipe that
this process drains on a reader thread, as a consumer of ``--stream`` would.
The child times its own emit loop (imports and start-up excluded) and reports
it on stdout; the parent checks that exactly N whole JSON lines arrived.

* ours:  ``aicp._events.EventLog(stream=True).emit(...)``: structlog processors
  (envelope, secret masking), orjson rendering, written at once after a quiet
  moment, else queued for stderr's writer thread, which writes a burst's whole
  lines together (see aicp._sink); ``close()`` (everything written) is inside
  the timing.
* print: ``print(json.dumps(event, default=str), file=sys.stderr, flush=True)``
  of the same event: the same fields in the same order, each made per event the
  plain way (``time`` with ``strftime``, ``message`` with aicp's own wording
  function, ``source`` from a table). The target is against this one.
* envelope: the same ``print`` of the event's own fields behind the six envelope
  fields only (no ``time``, ``source``, ``message``: shorter lines and less work
  than ours), as the figures before those fields existed were measured.

The events cycle through what a real run emits most: step_log lines,
step_progress, step_start and step_complete. By default the child's
environment holds two secret-looking variables (as a user's would: FAL_KEY,
OPENAI_API_KEY), so the masking does real work; ``--no-secrets`` drops them.

Then it verifies that every write(2) of ours carries whole lines, at most
PIPE_BUF bytes of them unless the pipe was empty (or one longer line), by
wrapping ``os.write`` in the child, and counts the writes with ``strace -f -e trace=write`` when strace is
installed.

Usage: python scripts/bench_events.py [--events 100000] [--rounds 5] [--no-secrets]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading

CHILD = r'''
import json, os, sys, time
variant, n, count_writes = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
writes = 0
split = 0  # writes to fd 2 that were not whole lines (or held several lines over PIPE_BUF bytes)
if count_writes:
    import fcntl, select, termios
    real_write = os.write
    def counting_write(fd, data):
        global writes, split
        if fd == 2:
            writes += 1
            data = bytes(data)
            unread = bytearray(4)
            fcntl.ioctl(fd, termios.FIONREAD, unread)
            # over PIPE_BUF, several lines only into an empty pipe (all of it goes in at once)
            if not data.endswith(b"\n") or (len(data) > select.PIPE_BUF and data.count(b"\n") > 1
                                             and int.from_bytes(unread, sys.byteorder) != 0):
                split += 1
        return real_write(fd, data)
    os.write = counting_write

def fields(i):
    k = i % 4
    if k == 0:
        return "step_start", {"step": 1, "type": "text_to_image", "model": "title_card", "name": None,
                              "attempt": 1, "pid": 12345}
    if k == 1:
        return "step_progress", {"step": 1, "fraction": (i % 100) / 100, "message": f"frame {i}"}
    if k == 2:
        return "step_log", {"step": 1, "stream": "stdout", "line": f"rendering frame {i} of 100000 at 1920x1080"}
    return "step_complete", {"step": 1, "type": "text_to_image", "model": "title_card", "name": None,
                             "attempt": 1, "cost": 0.0, "output": f"/tmp/out/step_1_{i}.png",
                             "outputs": [f"/tmp/out/step_1_{i}.png"], "pid": 12345,
                             "duration_seconds": 0.123, "peak_rss_bytes": 31457280, "cpu_seconds": 0.1}

if variant == "ours":
    from aicp._events import EventLog
    log = EventLog(stream=True)
    emit = log.emit
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        event, data = fields(i)
        emit(event, **data)
    log.close()  # everything written: the writer thread's work is inside the timing
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
elif variant == "print":  # the same fields as ours: the envelope, then time, source, message
    from aicp._messages import message_of
    sources = {"step_log": "step.stdout", "step_progress": "step.progress"}
    run_id, started = "0123456789abcdef", time.monotonic()
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        event, data = fields(i)
        now = time.time()
        message = data.pop("message") if "message" in data else message_of(event, data)
        event = {"schema_version": "1", "event": event, "timestamp": now,
                 "elapsed_seconds": round(time.monotonic() - started, 3), "level": "info", "run_id": run_id,
                 "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z",
                 "source": sources.get(event, "aicp"), "message": message, **data}
        print(json.dumps(event, default=str), file=sys.stderr, flush=True)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
else:  # "envelope": the six envelope fields only
    run_id, started = "0123456789abcdef", time.monotonic()
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        event, data = fields(i)
        event = {"schema_version": "1", "event": event, "timestamp": time.time(),
                 "elapsed_seconds": round(time.monotonic() - started, 3), "level": "info",
                 "run_id": run_id, **data}
        print(json.dumps(event, default=str), file=sys.stderr, flush=True)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
sys.stdout.write(json.dumps({"seconds": seconds, "cpu": cpu, "writes": writes, "split": split}) + "\n")
'''

SECRETS = {"FAL_KEY": "fal-0123456789abcdef0123456789abcdef", "OPENAI_API_KEY": "sk-proj-abcdefghijklmnopqrstuvwxyz012345"}


def _env(secrets: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.upper().endswith(("_KEY", "_TOKEN", "_SECRET", "_PASSWORD"))}
    if secrets:
        env.update(SECRETS)
    return env


def _drain(pipe, counts: dict[str, int]) -> None:
    """Read everything the child writes on fd 2; count lines and keep the first and the last."""
    head = tail = b""
    first = None
    while chunk := pipe.read1(1 << 16):
        counts["bytes"] += len(chunk)
        counts["lines"] += chunk.count(b"\n")
        if first is None:
            head += chunk
            if b"\n" in head:
                first = head[: head.index(b"\n")]
        tail = (tail + chunk)[-4096:]
    counts["first"] = first
    counts["last"] = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]


def measure(variant: str, n: int, env: dict[str, str], count_writes: bool = False) -> dict[str, float]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, variant, str(n), "1" if count_writes else "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    counts = {"bytes": 0, "lines": 0}
    reader = threading.Thread(target=_drain, args=(proc.stderr, counts))
    reader.start()
    out = proc.stdout.read()
    proc.wait()
    reader.join()
    if proc.returncode != 0:
        raise SystemExit(f"{variant}: the child failed with {proc.returncode}")
    report = json.loads(out)
    if counts["lines"] != n:
        raise SystemExit(f"{variant}: {counts['lines']} lines arrived, expected {n}")
    for line in (counts["first"], counts["last"]):
        json.loads(line)  # whole JSON lines
    return {"rate": n / report["seconds"], "cpu_rate": n / report["cpu"], "bytes": counts["bytes"],
            "writes": report["writes"], "split": report["split"]}


def strace_writes(variant: str, n: int, env: dict[str, str]) -> int | None:
    """write(2) calls to fd 2 that the child made, as strace saw them; None without strace."""
    strace = shutil.which("strace")
    if strace is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        trace = os.path.join(tmp, "trace")
        proc = subprocess.run([strace, "-f", "-qq", "-e", "trace=write", "-e", "signal=none", "-o", trace,
                               sys.executable, "-c", CHILD, variant, str(n), "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        if proc.returncode != 0:
            return None
        with open(trace, encoding="utf-8", errors="replace") as fh:
            return sum(1 for line in fh if re.search(r"\bwrite\(2,", line))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; the median is reported")
    parser.add_argument("--no-secrets", action="store_true", help="no secret-looking variables in the environment")
    args = parser.parse_args()
    env = _env(not args.no_secrets)
    variants = ("ours", "print", "envelope")
    rates: dict[str, list[float]] = {v: [] for v in variants}
    cpu_rates: dict[str, list[float]] = {v: [] for v in variants}
    size: dict[str, int] = {}
    for r in range(args.rounds):
        for variant in (variants if r % 2 == 0 else variants[::-1]):
            result = measure(variant, args.events, env)
            rates[variant].append(result["rate"])
            cpu_rates[variant].append(result["cpu_rate"])
            size[variant] = result["bytes"]
    print(f"events: {args.events:,} per run, {args.rounds} alternating rounds, fd 2 a pipe drained by a reader "
          f"thread, {'no secrets' if args.no_secrets else f'{len(SECRETS)} secret env vars'}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for variant, label in (("ours", "aicp EventLog(stream=True)"), ("print", "print(json.dumps(...), flush=True)"),
                           ("envelope", "the same, envelope fields only")):
        runs = ", ".join(f"{x:,.0f}" for x in rates[variant])
        print(f"  {label:<36} median {statistics.median(rates[variant]):>8,.0f}/s, best {max(rates[variant]):>8,.0f}/s"
              f", CPU-time rate {statistics.median(cpu_rates[variant]):>8,.0f}/s  "
              f"({size[variant] / args.events:.0f} bytes/line; runs: {runs})")
    for other, target in (("print", "  -- target >= 1.5x"), ("envelope", "")):
        med = statistics.median(rates["ours"]) / statistics.median(rates[other])
        best = max(rates["ours"]) / max(rates[other])
        cpu = statistics.median(cpu_rates["ours"]) / statistics.median(cpu_rates[other])
        print(f"ratio ours/{other}: {med:.2f}x (median wall), {best:.2f}x (best wall), {cpu:.2f}x (median CPU)"
              + target)

    n = 2000
    counted = measure("ours", n, env, count_writes=True)
    print(f"os.write calls to fd 2 for {n} events (ours): {counted['writes']} ({counted['writes'] / n:.2f} per line), "
          f"{counted['split']} not whole lines that fit the pipe")
    traced = {v: strace_writes(v, n, env) for v in ("ours", "print")}
    if traced["ours"] is None:
        print("strace not available: skipped the system-call check")
    else:
        for variant, writes in traced.items():
            print(f"strace write(2, ...) calls for {n} events ({variant}): {writes} ({writes / n:.2f} per line)")
    ok = counted["split"] == 0 and counted["writes"] <= n
    print("every write whole lines (at most PIPE_BUF bytes unless the pipe was empty, or one line): "
          + ("yes" if ok else "NO"))
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
