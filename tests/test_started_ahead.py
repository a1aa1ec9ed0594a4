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


ENV_STEPS = """
import os

def env(ctx):
    return {"output": {k: os.environ.get(k) for k in ("AICP_T_KEEP", "AICP_T_CHANGE", "AICP_T_GONE", "AICP_T_NEW")}}
"""


def test_each_worker_has_its_steps_environment_not_the_templates(tmp_path, monkeypatch):
    """A request to the template names only what the worker's environment changes from the one the
    template started with: a variable set, changed or removed since (here by an observer of the
    Python API, between two steps) is set, changed or removed in the worker, as a fresh process
    would have it; the worker started ahead with the old environment is not used."""
    import aicp

    (tmp_path / "envsteps.py").write_text(ENV_STEPS)
    chain_file = tmp_path / "env.yaml"
    chain_file.write_text("name: env\nprompt: go\nsteps:\n"
                          + '  - {type: python, params: {function: "envsteps:env"}}\n' * 3)
    monkeypatch.setenv("AICP_T_KEEP", "kept")
    monkeypatch.setenv("AICP_T_CHANGE", "old")
    monkeypatch.setenv("AICP_T_GONE", "here")
    monkeypatch.delenv("AICP_T_NEW", raising=False)

    def observe(event):
        if event["event"] == "step_complete" and event["step"] == 0:
            os.environ["AICP_T_CHANGE"] = "new"
            del os.environ["AICP_T_GONE"]
            os.environ["AICP_T_NEW"] = "added"

    result = aicp.run_chain(aicp.load_chain(str(chain_file), output_dir=tmp_path / "out"), observer=observe)
    assert result.success, result.error
    first, second, third = (r["output"] for r in result.step_results)
    assert first == {"AICP_T_KEEP": "kept", "AICP_T_CHANGE": "old", "AICP_T_GONE": "here", "AICP_T_NEW": None}
    assert second == third == {"AICP_T_KEEP": "kept", "AICP_T_CHANGE": "new", "AICP_T_GONE": None,
                               "AICP_T_NEW": "added"}


def test_a_worker_cgroup_seen_empty_is_not_read_again_and_waited_for_once(monkeypatch):
    """Nothing enters an emptied cgroup but through cgroup.procs, so once seen empty it is not read
    again; and a cgroup that would not empty (a process stuck in the kernel) is waited for once
    (two seconds), not once more when its worker is released."""
    from aicp._process import cgroup

    reads, waits = [], []
    monkeypatch.setattr(cgroup, "is_empty", lambda folder: reads.append(folder) or len(reads) > 1)
    monkeypatch.setattr(cgroup, "kill_until_empty", lambda folder, wait=2.0: waits.append(folder) or False)
    monkeypatch.setattr(cgroup, "kill_and_remove", lambda folder, wait=2.0: True)
    monkeypatch.setattr(cgroup, "write_file", lambda path, text: None)
    retired = []
    emptied = cgroup.WorkerCgroup("/nowhere/w1", 2, None, 0, retire=retired.append)
    assert emptied.join(4242)
    assert [emptied.is_empty() for _ in range(4)] == [False, True, True, True]
    assert reads == ["/nowhere/w1"] * 2
    assert emptied.empty_out() and waits == []
    emptied.release()
    assert retired == [emptied]  # (its folder goes later, off the step's path)

    stuck = cgroup.WorkerCgroup("/nowhere/w2", 2, None, 0, retire=retired.append)
    assert stuck.join(4243)
    assert not stuck.empty_out()
    assert not stuck.empty_out()
    stuck.release()  # removed at once (killed and removed as far as it can be), not retired
    assert waits == ["/nowhere/w2"] and retired == [emptied]
