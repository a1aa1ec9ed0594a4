"""A dead or signalled aicp leaves nothing running; each worker's cgroup holds all it started.

Three survivors of the old mechanism, in one parallel group: a ``command``
step's double-forked daemon that closed its stdio, a python step's setsid
double-forked daemon started with ``env={}`` (no token, no pipes), and a
worker stuck in one C call that holds the GIL (its lifeline thread never runs).
aicp is then killed (SIGKILL) or sent SIGHUP / SIGQUIT, once with cgroups (the
default, where the machine allows them) and once with the process-tree
fallback (``AICP_CGROUP=off``). Two seconds later none of the three may run.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from _supervisor_util import LiveRun, child_env, env, recorded, wait_gone  # noqa: F401

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux process semantics")

SURVIVORS = """
name: survivors
kill_grace: 1
steps:
  - type: parallel_group
    params:
      max_workers: 3
      parallel_steps:
        - type: command
          params:
            run: "( setsid sh -c 'echo $$ >> {tmp}/command_daemon; exec sleep {marker} </dev/null >/dev/null 2>&1' & ); sleep 0.3; echo ready; sleep {marker}"
        - type: python
          params: {{function: "ssteps:daemon", clear_env: true, detach: true, hang: true, pidfile: "{pidfile}"}}
        - type: python
          params: {{function: "ssteps:gil_stuck", pidfile: "{pidfile}"}}
"""

MECHANISMS = {"cgroup": {}, "fallback": {"AICP_CGROUP": "off"}}


def _start(env, chain: Path, mechanism: str) -> LiveRun:  # noqa: F811
    return LiveRun(["run-chain", "-c", str(chain), "--stream"], cwd=env.dir,
                   env=child_env(**MECHANISMS[mechanism]))


def _marked(marker: str) -> list[int]:
    """Processes whose command line carries ``marker`` (the command step's sleeps)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if marker in " ".join(proc.info["cmdline"] or []) and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc.pid)
    return found


def _containment(live: LiveRun) -> str:
    start = live.wait_for(lambda e: e["event"] == "pipeline_start")
    return start["containment"]


@pytest.mark.parametrize("mechanism", list(MECHANISMS))
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP, signal.SIGQUIT], ids=lambda s: s.name)
def test_nothing_survives_aicp(env, sig, mechanism):  # noqa: F811
    marker = f"{3000 + os.getpid() % 1000}.{int(sig)}{len(mechanism)}"  # a unique sleep length
    chain = env.chain(SURVIVORS, marker=marker)
    live = _start(env, chain, mechanism)
    try:
        containment = _containment(live)
        assert (containment == "process_tree") == (mechanism == "fallback"), containment
        live.wait_ready(count=3)
        pids = [(pid, None) for pid in _marked(marker)]
        pids += recorded(env.pidfile)
        daemon_file = env.dir / "command_daemon"
        pids += [(int(p), None) for p in daemon_file.read_text().split()]
        assert len(pids) >= 5, pids  # the command's shell and sleeps, its daemon, the python daemon and worker
        live.proc.send_signal(sig)
        rc = live.proc.wait(20)
        time.sleep(2)
        left = wait_gone(pids, within=0) + _marked(marker)
    finally:
        live.kill()
    assert left == [], f"still running 2 s after aicp got {sig.name} ({mechanism}): {left}"
    if sig != signal.SIGKILL:
        run = live.finish()
        assert rc == 128 + sig, run.stderr[-3000:]
        env.check(run)  # exactly one result line, every event valid
        assert run.result["exit_code"] == 128 + sig and run.result["success"] is False
        assert sig.name in run.result["error"]


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGQUIT, signal.SIGTERM, signal.SIGINT],
                         ids=lambda s: s.name)
def test_every_stop_signal_gives_its_exit_code_and_one_result_line(env, sig):  # noqa: F811
    chain = env.chain("""
        name: stopped
        steps:
          - type: python
            params: {{function: "ssteps:hang_with_child", pidfile: "{pidfile}"}}
    """)
    live = env.start(chain)
    try:
        live.wait_ready()
        procs = env.processes()
        live.proc.send_signal(sig)
        run = live.finish()
    finally:
        live.kill()
    assert run.returncode == 128 + sig, run.stderr[-3000:]
    env.check(run)
    assert run.result["exit_code"] == 128 + sig and sig.name in run.result["error"]
    (error,) = run.of("step_error")
    assert error["reason"] == "cancelled" and sig.name in error["error"]
    assert wait_gone(procs, within=0.5) == []


def test_a_scrubbed_setsid_double_forked_daemon_stays_in_the_workers_cgroup(env):  # noqa: F811
    chain = env.chain("""
        name: membership
        steps:
          - type: python
            params: {{function: "ssteps:cgroup_of_daemon", pidfile: "{pidfile}"}}
    """)
    run = env.run(chain)
    assert run.returncode == 0, run.stderr[-3000:]
    containment = run.events[0]["containment"]
    if containment == "process_tree":
        pytest.skip("no writable cgroup hierarchy on this machine")
    (done,) = run.of("step_complete")
    daemon, worker = done["output"]["daemon"], done["output"]["worker"]
    assert daemon == worker, (daemon, worker)
    line = [entry for entry in worker.splitlines() if entry.startswith("0::" if containment == "cgroup2" else "")]
    assert "/aicp-" in line[0], worker
    # the daemon was killed with its step, and the run's cgroup folders were removed
    assert wait_gone([(done["output"]["pid"], None)], within=0.5) == []
    relative = line[0].split(":", 2)[2]
    assert not any(os.path.exists(point + relative) for point in _cgroup_mounts()), relative


def _cgroup_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if " - cgroup" in line]


@pytest.mark.parametrize("mechanism", list(MECHANISMS))
def test_sigkill_of_aicp_removes_the_runs_cgroups(env, mechanism):  # noqa: F811
    chain = env.chain("""
        name: killed
        steps:
          - type: python
            params: {{function: "ssteps:hang_with_child", pidfile: "{pidfile}"}}
    """)
    live = _start(env, chain, mechanism)
    try:
        containment = _containment(live)
        live.wait_ready()
        procs = env.processes()
        folders = _run_folders(procs[0][0])
        assert bool(folders) == (containment != "process_tree"), (containment, folders)
        live.proc.kill()
        live.proc.wait()
        assert wait_gone(procs, within=2.0) == []
        deadline = time.monotonic() + 2.0
        while any(os.path.exists(f) for f in folders) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        live.kill()
    assert not [f for f in folders if os.path.exists(f)]


def _run_folders(pid: int) -> list[str]:
    """The run's cgroup folders (``.../aicp-<pid>-<random>``) that worker ``pid`` is in, in every hierarchy."""
    folders = []
    with open(f"/proc/{pid}/cgroup") as f:
        paths = {line.rstrip("\n").split(":", 2)[2] for line in f}
    for path in paths:
        if "/aicp-" in path:
            run = path[: path.index("/", path.index("/aicp-") + 1)]
            folders += [point + run for point in _cgroup_mounts() if os.path.isdir(point + run)]
    return folders


def test_a_killed_template_takes_its_workers_with_it(env):  # noqa: F811
    """The worker template is its forked workers' lifeline: if it is SIGKILLed, each of them dies at
    once (the kernel's parent-death signal), the one stuck in C code holding the GIL included, and
    aicp, seeing its steps end, kills what they started. The run ends with its one result line."""
    marker = f"{4000 + os.getpid() % 1000}.9"
    chain = env.chain(SURVIVORS, marker=marker)
    live = LiveRun(["run-chain", "-c", str(chain), "--stream"], cwd=env.dir,
                   env=child_env(AICP_WORKER_START="fork"))
    try:
        live.wait_ready(count=3)
        workers = [e["pid"] for e in live.seen if e["event"] == "step_start" and "member" in e]
        assert len(workers) == 3, live.seen
        [template] = {psutil.Process(pid).ppid() for pid in workers}
        assert template != live.pid
        pids = [(pid, None) for pid in _marked(marker)] + recorded(env.pidfile)
        pids += [(int(p), None) for p in (env.dir / "command_daemon").read_text().split()]
        os.kill(template, signal.SIGKILL)
        assert wait_gone([(pid, None) for pid in workers], within=2) == [], "a worker outlived its template"
        run = live.finish(timeout=30)
        left = wait_gone(pids, within=2) + _marked(marker)
    finally:
        live.kill()
    assert left == [], f"still running after the template was killed: {left}"
    env.check(run)  # exactly one result line, every event valid
    assert run.returncode == 5 and run.result["success"] is False, run.stderr[-3000:]
