"""Signals to aicp itself, mid-run: SIGINT, SIGTERM, a second SIGINT, SIGKILL (the workers' lifeline).

aicp is started with Popen (``--stream``); the test reads its stderr event by
event and sends the signal only once the step has said "ready" (a step_log
event), so nothing here depends on sleeping long enough.
"""

from __future__ import annotations

import signal
import sys
import time

import psutil
import pytest

from _supervisor_util import env, launcher, logs, wait_gone  # noqa: F401

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux process semantics")


def tree_of(pid: int) -> list[tuple[int, float]]:
    """``(pid, create_time)`` of a process's descendants, now."""
    pairs = []
    for proc in psutil.Process(pid).children(recursive=True):
        try:
            pairs.append((proc.pid, proc.create_time()))
        except psutil.NoSuchProcess:
            continue
    return pairs


def assert_cancelled_run(run, exit_code, signame, step=0):
    assert run.returncode == exit_code, run.stderr[-3000:]
    result = run.result  # exactly one stdout line
    assert result["event"] == "pipeline_complete"
    assert result["success"] is False and result["exit_code"] == exit_code
    assert signame in result["error"], result["error"]
    errors = [e for e in run.of("step_error") if e["step"] == step and "member" not in e]
    assert len(errors) == 1, run.of("step_error")
    assert errors[0]["reason"] == "cancelled"
    assert signame in errors[0]["error"]
    return errors[0]


@pytest.mark.parametrize("sig, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
def test_signal_mid_step_stops_the_step_and_launches_nothing(env, sig, exit_code):
    chain = env.chain("""
        name: interrupted
        kill_grace: 2
        steps:
          - type: python
            params: {{function: "ssteps:hang_with_child", pidfile: "{pidfile}"}}
          - type: python
            params: {{function: "ssteps:marker", path: "{tmp}/second_ran"}}
    """)
    live = env.start(chain)
    try:
        start = live.wait_for(lambda e: e["event"] == "step_start")
        live.wait_ready()
        procs = env.processes()
        assert [p for p, _ in procs][:1] == [start["pid"]]
        sent = time.monotonic()
        live.proc.send_signal(sig)
        run = live.finish()
        took = time.monotonic() - sent
    finally:
        live.kill()
    env.check(run)
    error = assert_cancelled_run(run, exit_code, sig.name)
    assert error["pid"] == start["pid"] and "duration_seconds" in error
    # the step took SIGTERM at once (no waiting for the 2 s grace) ...
    assert took < 1.8, f"aicp took {took:.2f} s to stop"
    # ... nothing new was launched, and nothing the step started survived
    assert [e["step"] for e in run.of("step_start")] == [0]
    assert not (env.dir / "second_ran").exists()
    assert wait_gone(procs, within=0.5) == []


def test_sigint_honours_the_grace_period_then_kills(env):
    chain = env.chain("""
        name: grace
        kill_grace: 1
        steps:
          - type: python
            params: {{function: "ssteps:ignore_term", pidfile: "{pidfile}"}}
    """)
    live = env.start(chain)
    try:
        live.wait_ready()
        sent = time.monotonic()
        live.proc.send_signal(signal.SIGINT)
        live.wait_for(lambda e: e["event"] == "step_log" and e["line"] == "got TERM")
        run = live.finish()
        took = time.monotonic() - sent
    finally:
        live.kill()
    env.check(run)
    error = assert_cancelled_run(run, 130, "SIGINT")
    assert error["signal"] == "SIGKILL"
    assert 0.9 <= took < 2.5, f"expected SIGKILL when the 1 s grace ended, aicp took {took:.2f} s"
    assert wait_gone(env.processes(), within=0.5) == []


def test_second_sigint_kills_at_once(env):
    chain = env.chain("""
        name: impatient
        kill_grace: 30
        steps:
          - type: python
            params: {{function: "ssteps:ignore_term", pidfile: "{pidfile}"}}
    """)
    live = env.start(chain)
    try:
        live.wait_ready()
        live.proc.send_signal(signal.SIGINT)
        live.wait_for(lambda e: e["event"] == "step_log" and e["line"] == "got TERM")  # the grace began
        sent = time.monotonic()
        live.proc.send_signal(signal.SIGINT)
        run = live.finish(timeout=10)
        took = time.monotonic() - sent
    finally:
        live.kill()
    env.check(run)
    error = assert_cancelled_run(run, 130, "SIGINT")
    assert error["signal"] == "SIGKILL"
    assert took < 1.0, f"the second SIGINT should kill at once; aicp took {took:.2f} s"
    assert wait_gone(env.processes(), within=0.5) == []


FLAKY = '{{function: "ssteps:flaky", counter: "{tmp}/count", succeed_on: 99}}'


def _sigint_in_backoff(env, steps: str):
    """Run a chain whose flaky step waits out a 15-30 s retry delay; SIGINT it then. Return (run, took)."""
    chain = env.chain("""
        name: backoff
        retry_delay: 30
        retry_max_delay: 60
        steps:
    """ + steps)
    live = env.start(chain)
    try:
        retry = live.wait_for(lambda e: e["event"] == "step_retry")
        assert retry["delay_seconds"] >= 15
        sent = time.monotonic()
        live.proc.send_signal(signal.SIGINT)
        run = live.finish()
        took = time.monotonic() - sent
    finally:
        live.kill()
    env.check(run)
    assert (env.dir / "count").read_text() == "1", "a new attempt started after SIGINT"
    return run, took


def test_sigint_during_a_retry_delay_starts_no_new_attempt(env):
    run, took = _sigint_in_backoff(env, """
          - type: python
            retry_count: 5
            params: """ + FLAKY)
    assert_cancelled_run(run, 130, "SIGINT")
    assert took < 1.5
    assert len(run.of("step_start")) == 1, "a new attempt started after SIGINT"


def test_sigint_during_a_group_members_retry_delay_is_seen_at_once(env):
    """The group's own stop request is linked to the run's: its backoff wakes at once too."""
    run, took = _sigint_in_backoff(env, """
          - type: parallel_group
            params:
              parallel_steps:
                - type: python
                  retry_count: 5
                  params: """ + FLAKY + """
                - type: python
                  params: {{function: "ssteps:echo", value: "fine"}}
    """)
    assert run.returncode == 130 and run.result["exit_code"] == 130
    assert took < 3, f"the member's backoff hid SIGINT for {took:.1f} s"


def test_sigterm_during_a_parallel_group_stops_every_member(env):
    chain = env.chain("""
        name: group-interrupted
        kill_grace: 2
        steps:
          - type: parallel_group
            params:
              max_workers: 2
              parallel_steps:
                - type: python
                  params: {{function: "ssteps:hang_with_child", pidfile: "{pidfile}"}}
                - type: python
                  retry_count: 3
                  params: {{function: "ssteps:hang_with_child", pidfile: "{pidfile}"}}
                - type: python
                  params: {{function: "ssteps:marker", path: "{tmp}/third_member_ran"}}
    """)
    live = env.start(chain)
    try:
        live.wait_ready(count=2)
        procs = env.processes()
        assert len(procs) == 4
        live.proc.send_signal(signal.SIGTERM)
        run = live.finish()
    finally:
        live.kill()
    env.check(run)
    assert_cancelled_run(run, 143, "SIGTERM")
    members = {e["member"]: e for e in run.of("step_error") if "member" in e}
    assert members[0]["reason"] == members[1]["reason"] == "cancelled"
    assert run.of("step_retry") == [], "a cancelled member was retried"
    assert 2 not in {e.get("member") for e in run.of("step_start")}
    assert not (env.dir / "third_member_ran").exists()
    assert wait_gone(procs, within=0.5) == []


@pytest.mark.parametrize("daemon", [False, True], ids=["child", "escaped-daemon"])
def test_sigkill_of_aicp_ends_every_worker_tree_within_a_second(env, daemon):
    """aicp cannot clean up after SIGKILL: the workers see their lifeline close and end their trees."""
    params = '{function: "ssteps:daemon", hang: true' if daemon else '{function: "ssteps:hang_with_child"'
    chain = env.chain("""
        name: killed
        steps:
          - type: python
            params: {params}, pidfile: "{pidfile}"}}
    """, params=params)
    live = env.start(chain)
    try:
        live.wait_ready()
        procs = env.processes()
        everything = sorted(set(procs) | set(tree_of(live.pid)))  # worker, its child, any helper
        assert len(procs) == 2
        live.proc.kill()
        live.proc.wait()
        left = wait_gone(everything, within=2.0)
    finally:
        live.kill()
    assert left == [], f"still running 2 s after aicp was SIGKILLed: {left}"
