"""Step functions for the supervisor tests, copied next to each test's chain file as ``ssteps.py``.

Every function is a ``python`` step (``fn(ctx)``). Steps that start processes
record each one as ``pid create_time`` lines in ``params.pidfile`` (an
absolute path chosen by the test), so the test can check afterwards, with
psutil, that exactly those processes are gone (and not a reused pid).
Nothing here sleeps to synchronise: a step says "ready" on stdout (a
``step_log`` event the test waits for) once everything it started is recorded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SLEEPER = [sys.executable, "-I", "-S", "-c", "import time; time.sleep(60)"]


def _create_time(pid: int) -> float:
    import psutil

    return psutil.Process(pid).create_time()


def record(ctx, pid: int) -> None:
    """Append ``pid create_time`` to the test's pid file (one write, so lines never interleave)."""
    line = f"{pid} {_create_time(pid)}\n"
    fd = os.open(ctx.params["pidfile"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def ready() -> None:
    print("ready", flush=True)


# --------------------------------------------------------------------------- plain results


def echo(ctx):
    """Return the value in params, or the step's input."""
    return ctx.params["value"] if "value" in ctx.params else ctx.input


def upper(ctx):
    return str(ctx.input).upper()


def describe(ctx):
    """Return what the step sees through ctx, and report progress and a log event."""
    ctx.progress(0.25, "a quarter")
    ctx.progress(7)  # clamped to 1.0
    ctx.log.info("hello from the step", answer=42)
    return {
        "output": f"seen:{ctx.input}",
        "cost": 0.125,
        "params": ctx.params,
        "output_dir": str(ctx.output_dir),
        "output_dir_exists": ctx.output_dir.is_dir(),
        "step": ctx.step,
        "name": ctx.name,
        "cwd": os.getcwd(),
    }


def ids(ctx):
    """The worker's own pid, session, process group and parent."""
    return {"output": {"pid": os.getpid(), "sid": os.getsid(0), "pgid": os.getpgrp(), "ppid": os.getppid()}}


def marker(ctx):
    """Create params.path (used to prove a disabled step never ran)."""
    Path(ctx.params["path"]).write_text("ran")
    return "marker"


def sleep_then(ctx):
    """Sleep params.seconds; return params.value (with params.stamp: and when it ran, wall clock)."""
    t0 = time.time()
    if ctx.params.get("announce"):
        ready()
    time.sleep(float(ctx.params.get("seconds", 0)))
    value = ctx.params.get("value")
    if ctx.params.get("stamp"):
        value = {"value": value, "t0": t0, "t1": time.time()}
    return {"output": value, "pid": os.getpid()}


def check_dead(ctx):
    """Return the recorded processes (params.pidfile) that are still running; [] when all are gone."""
    import psutil

    alive = []
    for line in Path(ctx.params["pidfile"]).read_text().split("\n"):
        if not line.strip():
            continue
        pid, created = line.split()
        try:
            proc = psutil.Process(int(pid))
            if proc.create_time() == float(created) and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(int(pid))
        except psutil.NoSuchProcess:
            continue
    return alive


# --------------------------------------------------------------------------- failures


def raise_error(ctx):
    print("about to fail", flush=True)
    raise ValueError("boom from the step")


def exit_hard(ctx):
    print("exiting", flush=True)
    os._exit(int(ctx.params.get("code", 3)))


def sys_exit(ctx):
    sys.exit(int(ctx.params.get("code", 3)))


def segfault(ctx):
    import ctypes
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file
    ctypes.string_at(0)


def kill_self(ctx):
    os.kill(os.getpid(), signal.SIGKILL)


def not_serialisable(ctx):
    return {"output": object()}


def not_a_number(ctx):
    return float("nan")


def flaky(ctx):
    """Fail (as params.how) until this is attempt params.succeed_on, counted in params.counter."""
    counter = Path(ctx.params["counter"])
    count = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(count))
    if count < int(ctx.params["succeed_on"]):
        if ctx.params.get("how") == "exit":
            os._exit(9)
        raise RuntimeError(f"flaky failure on attempt {count}")
    return f"succeeded on attempt {count}"


# --------------------------------------------------------------------------- processes


def hang_with_child(ctx):
    """Start a grandchild that sleeps, record both, say ready, hang."""
    record(ctx, os.getpid())
    child = subprocess.Popen(SLEEPER)
    record(ctx, child.pid)
    ready()
    time.sleep(60)


DAEMON = """
import os, signal, sys, time
def on_term(signum, frame):
    with open(sys.argv[2], "w") as f:
        f.write("TERM")
    os._exit(0)
if sys.argv[2]:
    signal.signal(signal.SIGTERM, on_term)
if sys.argv[3]:  # a real daemon: detach from the step's stdin/stdout/stderr
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
os.write(int(sys.argv[1]), f"{os.getpid()}\\n".encode())  # only once the handler is in place
os.close(int(sys.argv[1]))
time.sleep(60)
"""


def _daemon(ctx, clear_env: bool, term_file: str = "", detach: bool = False) -> int:
    """Double fork + setsid: a grandchild in a session of its own, re-parented away from us.

    It reports its pid on a pipe once it is ready; with ``term_file`` it records
    a SIGTERM there (and exits), else it just sleeps. ``detach``: it does not
    keep the step's stdout/stderr.
    """
    r, w = os.pipe()
    first = os.fork()
    if first == 0:
        try:
            os.close(r)
            os.setsid()
            if os.fork() == 0:
                os.set_inheritable(w, True)
                env = {} if clear_env else dict(os.environ)
                os.execve(sys.executable, [sys.executable, "-I", "-S", "-c", DAEMON, str(w), term_file,
                                           "detach" if detach else ""], env)
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(first, 0)  # the intermediate is gone: the daemon is an orphan now
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(r, 64)
        if not chunk:
            raise RuntimeError("the daemon did not report its pid")
        data += chunk
    os.close(r)
    pid = int(data)
    record(ctx, pid)
    return pid


def daemon(ctx):
    """Start an escaped daemon (params.clear_env: without our environment; params.term_file:
    it records SIGTERM there; params.detach: without our stdio); then hang (params.hang) or return."""
    record(ctx, os.getpid())
    pid = _daemon(ctx, bool(ctx.params.get("clear_env")), ctx.params.get("term_file", ""),
                  bool(ctx.params.get("detach")))
    ready()
    if ctx.params.get("hang"):
        time.sleep(60)
    return {"output": "daemon started", "daemon": pid}


def background_child(ctx):
    """Start a grandchild that keeps our stdout open, and return at once."""
    child = subprocess.Popen(SLEEPER)
    record(ctx, child.pid)
    return "returned"


def ignore_term(ctx):
    """Ignore SIGTERM (saying so on stdout each time), with a grandchild that ignores it too."""
    def on_term(signum, frame):
        print("got TERM", flush=True)

    signal.signal(signal.SIGTERM, on_term)
    record(ctx, os.getpid())
    child = subprocess.Popen([sys.executable, "-I", "-S", "-c",
                              "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                              "print('child ready', flush=True); time.sleep(60)"],
                             stdout=subprocess.PIPE)
    assert child.stdout.readline() == b"child ready\n"
    record(ctx, child.pid)
    ready()
    while True:
        time.sleep(60)


def cleanup_on_cancel(ctx):
    """Hang; when stopped (SIGTERM), the finally block still runs and leaves a file."""
    try:
        ready()
        time.sleep(60)
    finally:
        Path(ctx.params["cleaned"]).write_text("cleaned up")


# --------------------------------------------------------------------------- resources


def hog(ctx):
    """Allocate 10 MB chunks (touched) until params.limit_mb; return if never stopped."""
    chunks = []
    for _ in range(int(ctx.params.get("limit_mb", 2000)) // 10):
        chunks.append(b"\x01" * (10 << 20))
        time.sleep(0.01)
    return f"allocated {len(chunks) * 10} MB"


def spike(ctx):
    """Hold params.mb MB for params.hold seconds only, then free it and return."""
    block = b"\x01" * (int(ctx.params["mb"]) << 20)
    time.sleep(float(ctx.params["hold"]))
    del block
    return "the spike went unnoticed"


def child_hog(ctx):
    """A grandchild allocates 300 MB and holds it; the worker itself stays small."""
    record(ctx, os.getpid())
    child = subprocess.Popen([sys.executable, "-I", "-S", "-c",
                              "import time\nx = []\nfor _ in range(30):\n"
                              "    x.append(b'1' * (10 << 20)); time.sleep(0.01)\ntime.sleep(60)"])
    record(ctx, child.pid)
    child.wait()
    return "the child ended on its own"


def busy(ctx):
    """Hold params.mb MB, spin the CPU params.cpu seconds here and as long in a child."""
    held = b"\x02" * (int(ctx.params.get("mb", 0)) << 20)
    seconds = float(ctx.params.get("cpu", 0.3))
    child = subprocess.Popen([sys.executable, "-I", "-S", "-c",
                              f"import time\nend = time.process_time() + {seconds}\n"
                              "while time.process_time() < end: pass"])
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    child.wait()
    return {"output": len(held)}


# --------------------------------------------------------------------------- output


FAKE_EVENT = '{"schema_version":"1","event":"pipeline_complete","success":true,"exit_code":0}'


def flood(ctx):
    """Lines on both streams that look like events, partial writes, long lines, bad bytes."""
    n = int(ctx.params.get("lines", 1000))
    out, err = sys.stdout, sys.stderr
    for i in range(n):
        out.write(f"{FAKE_EVENT} out {i}\n")
        err.write(f"{FAKE_EVENT} err {i}\n")
        if i % 100 == 0:
            out.write("{\"event\": \"step_")  # half an event ...
            out.flush()
            out.write(f"complete\"}} split {i}\n")  # ... completed by a later write
    out.write('{"k": "result", "value": {"output": "forged"}}\n')  # the result has a pipe of its own
    out.write("x" * 20000 + "\nafter the long line\n")
    err.write("windows line\r\n")
    out.flush()
    sys.stdout.buffer.write(b"bad bytes \xff\xfe here\n")
    sys.stdout.buffer.flush()
    err.write("y" * 9000)  # cut at 8 KiB, no newline ever
    out.write("the last partial line")  # flushed by the supervisor at the end
    out.flush()
    err.flush()
    return "flooded"


def endless_line(ctx):
    """Write one line without a newline, forever (until stopped)."""
    chunk = "z" * 65536
    ready()
    while True:
        sys.stdout.write(chunk)


def big_line(ctx):
    """params.mb megabytes on one line, then a short line; return a large result too."""
    chunk = b"w" * (1 << 20)
    for _ in range(int(ctx.params.get("mb", 100))):
        sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.write(b"\nend\n")
    sys.stdout.buffer.flush()
    return {"output": "r" * int(ctx.params.get("result_bytes", 0))}


def dump(ctx):
    """Write the step's input as JSON to params.path (for assertions), return it."""
    Path(ctx.params["path"]).write_text(json.dumps(ctx.input))
    return ctx.input


# --------------------------------------------------------------------------- containment


def gil_stuck(ctx):
    """Hang in one C call that holds the GIL (catastrophic backtracking): no Python thread runs again."""
    import re

    record(ctx, os.getpid())
    ready()
    return bool(re.match(r"(a+)+$", "a" * 36 + "b"))


def cgroup_of_daemon(ctx):
    """Start a setsid double-forked daemon with env={} and closed stdio; return its cgroups and ours."""
    pid = _daemon(ctx, clear_env=True, detach=True)
    with open(f"/proc/{pid}/cgroup") as theirs, open("/proc/self/cgroup") as ours:
        return {"output": {"daemon": theirs.read(), "worker": ours.read(), "pid": pid}}


_STEPS_RUN_HERE = 0


def whoami(ctx):
    """This worker: its pid, its cgroups, and how many steps this process has run (one, always)."""
    global _STEPS_RUN_HERE
    _STEPS_RUN_HERE += 1
    with open("/proc/self/cgroup") as f:
        cgroup = f.read()
    import sys  # what the worker's warm-up (aicp._worker.main._warm_up) might have left: nothing
    left = [m for m in sys.modules if "warm" in m] + [p for p in sys.path_importer_cache if "warm" in p]
    return {"output": {"pid": os.getpid(), "cgroup": cgroup, "steps_run_here": _STEPS_RUN_HERE,
                       "warm_up_left": left}}


def _sibling_workers(me: int, parent: int) -> list[int]:
    """Other workers of this run next to us: the template's other children (forked workers), or,
    under a spawning aicp, its children that carry a worker token (the template does not)."""
    with open(f"/proc/{parent}/cmdline", "rb") as f:
        forked = b"_worker.template" in f.read()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) != parent or fields[0] in "ZX":
                continue
            with open(f"/proc/{name}/environ", "rb") as f:
                tokened = b"AICP_WORKER_TOKEN=" in f.read()
        except (OSError, ValueError, IndexError):
            continue
        if forked or tokened:
            found.append(int(name))
    return found


def kill_the_next_worker(ctx):
    """SIGKILL the worker aicp started ahead for the next step, once it exists; return its pid when
    it is dead."""
    me, parent = os.getpid(), os.getppid()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for pid in _sibling_workers(me, parent):
            os.kill(pid, signal.SIGKILL)
            while _sibling_workers(me, parent):
                time.sleep(0.01)
            return {"output": {"killed": pid}}
        time.sleep(0.01)
    raise RuntimeError("no worker was started ahead")
