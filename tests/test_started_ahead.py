"""A worker started ahead (while the previous step runs) is exactly a worker started on demand.

The launcher starts the next step's worker in the background: its pipes, its
cgroup, the fork, the move into the cgroup (docs/supervisor.md, "A worker
started ahead"). These tests hold it to the same guarantees, through the real
CLI, with both launchers (the ``launcher`` fixture) and both containment
mechanisms: one fresh process per step that has run no other step, a cgroup of
its own, nothing of a step alive when the next one runs (the sweep between
steps spares only the worker started ahead), and nothing left once the run
ends, the unused worker started ahead included.
"""

from __future__ import annotations

import os
import sys
import time
import uuid

import pytest

from _supervisor_util import env, launcher, wait_gone  # noqa: F401

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux process semantics")

MECHANISMS = {"cgroup": {}, "process-tree": {"AICP_CGROUP": "off"}}


def _carrying(marker: str) -> list[int]:
    """Processes whose environment carries ``marker`` (everything a run started inherits aicp's)."""
    needle = f"AICP_TEST_MARK={marker}".encode()
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    if needle in f.read().split(b"\0"):
                        found.append(int(name))
            except OSError:
                continue
    return found


def _wait_none_carrying(marker: str, within: float = 3.0) -> list[int]:
    deadline = time.monotonic() + within
    while (left := _carrying(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.mark.parametrize("mechanism", list(MECHANISMS))
def test_every_step_gets_a_fresh_worker_and_cgroup_and_the_unused_one_is_stopped(env, mechanism):  # noqa: F811
    chain = env.chain("""
        name: ahead
        steps:
""" + "".join('''          - type: python
            params: {{function: "ssteps:whoami"}}
''' for _ in range(5)))
    marker = uuid.uuid4().hex
    run = env.run(chain, env={**MECHANISMS[mechanism], "AICP_TEST_MARK": marker})
    assert run.returncode == 0, run.stderr[-3000:]
    seen = [e["output"] for e in run.of("step_complete")]
    assert len(seen) == 5
    assert [s["steps_run_here"] for s in seen] == [1] * 5  # never a process that ran another step
    assert [s["warm_up_left"] for s in seen] == [[]] * 5  # its warm-up before the spec kept nothing
    assert len({s["pid"] for s in seen}) == 5
    assert [s["pid"] for s in seen] == [e["pid"] for e in run.of("step_start")]
    containment = run.events[0]["containment"]
    if containment != "process_tree":
        groups = [next(line for line in s["cgroup"].splitlines() if "/aicp-" in line) for s in seen]
        assert len(set(groups)) == 5, groups  # a cgroup of its own each
        mounts = _cgroup_mounts()
        for line in groups:  # and every one removed by the end of the run
            relative = line.split(":", 2)[2]
            assert not any(os.path.exists(point + relative) for point in mounts), relative
    # the run ended: no worker of it is left, the one started ahead for a sixth step included
    assert _wait_none_carrying(marker) == []


@pytest.mark.parametrize("mechanism", list(MECHANISMS))
def test_a_step_leaving_an_orphan_is_swept_but_the_worker_started_ahead_is_not(env, mechanism):  # noqa: F811
    """Between steps, aicp kills what a step left behind (orphans re-parented to the template or to
    aicp); the worker already started for the next step must survive that sweep."""
    chain = env.chain("""
        name: orphans
        steps:
          - type: python
            params: {{function: "ssteps:daemon", clear_env: true, detach: true, pidfile: "{pidfile}"}}
          - type: python
            params: {{function: "ssteps:check_dead", pidfile: "{pidfile}"}}
          - type: python
            params: {{function: "ssteps:daemon", clear_env: false, pidfile: "{pidfile}"}}
          - type: python
            params: {{function: "ssteps:check_dead", pidfile: "{pidfile}"}}
    """)
    run = env.run(chain, env=MECHANISMS[mechanism])
    assert run.returncode == 0, run.stderr[-3000:]
    done = run.of("step_complete")
    assert [e["output"] for e in done] == ["daemon started", [], "daemon started", []]
    assert wait_gone(env.processes(), within=0.5) == []


def test_a_worker_started_ahead_that_died_is_replaced(env, monkeypatch):  # noqa: F811
    """Killed while it waited for its spec (by someone else: the OOM killer, a stray kill), the worker
    started ahead is not used: the step gets a new one and runs."""
    chain = env.chain("""
        name: replaced
        steps:
          - type: python
            params: {{function: "ssteps:kill_the_next_worker"}}
          - type: python
            params: {{function: "ssteps:whoami"}}
    """)
    run = env.run(chain)
    assert run.returncode == 0, run.stderr[-3000:]
    first, second = run.of("step_complete")
    assert first["output"]["killed"] != second["output"]["pid"]
    assert second["output"]["steps_run_here"] == 1


def _cgroup_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if " - cgroup" in line]
