"""Helpers shared by test_supervisor.py and test_supervisor_signals.py."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import psutil
import pytest

from _aicp import LiveRun, Run, aicp_argv, child_env  # noqa: F401 - re-exported for the supervisor tests

STEPS_SOURCE = Path(__file__).resolve().parent / "supervisor_steps.py"


def recorded(pidfile: Path) -> list[tuple[int, float]]:
    """The ``pid create_time`` pairs a step recorded."""
    if not pidfile.exists():
        return []
    pairs = []
    for line in pidfile.read_text().splitlines():
        if line.strip():
            pid, created = line.split()
            pairs.append((int(pid), float(created)))
    return pairs


def running(pid: int, created: float | None = None) -> bool:
    """Whether that process (the same one, if ``created`` is given) is alive; a zombie is not."""
    try:
        proc = psutil.Process(pid)
        if created is not None and abs(proc.create_time() - created) > 0.01:
            return False  # the pid was reused by someone else
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def survivors(pairs: list[tuple[int, float | None]]) -> list[int]:
    return [pid for pid, created in pairs if running(pid, created)]


def wait_gone(pairs: list[tuple[int, float | None]], within: float) -> list[int]:
    """Poll until every recorded process is gone, at most ``within`` seconds; return the survivors."""
    deadline = time.monotonic() + within
    while True:
        alive = survivors(pairs)
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.02)


def kill_leftovers(pairs: list[tuple[int, float]]) -> None:
    """Clean up after a failed assertion, so one failure does not leave sleepers behind."""
    for pid in survivors(pairs):
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass


class Env:
    """A test's folder: chain files next to the step module, pid files, runs."""

    def __init__(self, tmp_path: Path, validate: Callable[[Any], None]) -> None:
        self.dir = tmp_path
        self.validate = validate
        shutil.copy(STEPS_SOURCE, tmp_path / "ssteps.py")
        self.pidfile = tmp_path / "pids.txt"
        self._pairs_checked: list[tuple[int, float]] = []

    def chain(self, text: str, name: str = "chain.yaml", **values: Any) -> Path:
        """Write a chain; ``{pidfile}``, ``{tmp}`` and ``values`` are substituted (use ``{{ }}`` for braces).

        A chain without a ``prompt`` gets ``prompt: go``, so it has an input.
        """
        body = textwrap.dedent(text).lstrip().format(pidfile=self.pidfile, tmp=self.dir, **values)
        if "\nprompt:" not in body:
            body = body.replace("\n", "\nprompt: go\n", 1)
        path = self.dir / name
        path.write_text(body)
        return path

    def run(self, chain: Path, *extra: str, timeout: float = 60, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> Run:
        """Run the chain with the real CLI (``--stream``) to the end; schema-check every event.

        ``env``: extra environment variables for aicp.
        """
        proc = subprocess.run(aicp_argv("run-chain", "-c", str(chain), "--stream", *extra),
                              cwd=cwd or self.dir, env=child_env(**(env or {})), stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=timeout)
        run = Run(proc.returncode, proc.stdout.decode(), proc.stderr.decode())
        self.check(run)
        return run

    def start(self, chain: Path, *extra: str) -> LiveRun:
        return LiveRun(["run-chain", "-c", str(chain), "--stream", *extra], cwd=self.dir)

    def check(self, run: Run) -> None:
        """Every stderr line is an event matching the schema, and stdout is exactly one result line."""
        events = run.events
        assert events and events[0]["event"] == "pipeline_start", run.stderr[-2000:]
        assert all(e["event"] != "pipeline_complete" for e in events), "the result leaked to stderr"
        self.validate(events + [run.result])
        assert run.result["event"] == "pipeline_complete"

    def processes(self) -> list[tuple[int, float]]:
        pairs = recorded(self.pidfile)
        self._pairs_checked = pairs
        return pairs

    def cleanup(self) -> None:
        kill_leftovers(recorded(self.pidfile))


@pytest.fixture(autouse=True, params=["fork", "spawn"])
def launcher(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each supervisor test runs under both ways a worker starts, as pebble's tests run under each
    start method: forked from the run's warm template (the default) and as a fresh interpreter.

    Autouse in the modules that import it; it sets ``AICP_WORKER_START`` for everything the test
    starts (the CLI inherits it, the Python API reads it). A test that parametrizes ``launcher``
    itself overrides this.
    """
    monkeypatch.setenv("AICP_WORKER_START", request.param)
    return str(request.param)


@pytest.fixture
def env(tmp_path: Path, validate_events: Callable[[Any], None]):
    e = Env(tmp_path, validate_events)
    yield e
    e.cleanup()


def step_errors(run: Run, step: int | None = None) -> list[dict[str, Any]]:
    return [e for e in run.of("step_error") if step is None or e["step"] == step]


def only_error(run: Run) -> dict[str, Any]:
    """The run failed with exactly one step_error; return it."""
    errors = run.of("step_error")
    assert len(errors) == 1, f"expected one step_error, got {errors}"
    return errors[0]


def logs(run: Run, stream: str | None = None, step: int | None = None) -> list[dict[str, Any]]:
    return [e for e in run.of("step_log")
            if (stream is None or e["stream"] == stream) and (step is None or e["step"] == step)]
