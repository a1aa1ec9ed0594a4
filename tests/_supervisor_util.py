"""Helpers shared by test_supervisor.py and test_supervisor_signals.py."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable

import psutil
import pytest

STEPS_SOURCE = Path(__file__).resolve().parent / "supervisor_steps.py"


def aicp_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "aicp", *args]


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.pop("CI", None)
    env.update(extra)
    return env


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


class LiveRun:
    """``aicp run-chain --stream`` started with Popen; its events can be awaited as they come."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(aicp_argv(*args), cwd=cwd, env=env or child_env(),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.pid = self.proc.pid
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self.stderr_lines: list[bytes] = []
        self.seen: list[dict[str, Any]] = []
        self._stdout = b""
        self._err_thread = threading.Thread(target=self._read_stderr, daemon=True)
        self._out_thread = threading.Thread(target=self._read_stdout, daemon=True)
        self._err_thread.start()
        self._out_thread.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        self._stdout = self.proc.stdout.read()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20) -> dict[str, Any]:
        """The next event (from those not yet consumed) that matches, or fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                pytest.fail(f"aicp ended before the awaited event; events: {self._dump()}")
            event = json.loads(line)
            self.seen.append(event)
            if predicate(event):
                return event
        pytest.fail(f"no matching event within {timeout} s; events: {self._dump()}")

    def wait_ready(self, count: int = 1, timeout: float = 20) -> list[dict[str, Any]]:
        """Wait for ``count`` steps (or members) to print "ready"."""
        return [self.wait_for(lambda e: e["event"] == "step_log" and e["line"] == "ready", timeout)
                for _ in range(count)]

    def _dump(self) -> str:
        return b"".join(self.stderr_lines).decode(errors="replace")[-4000:]

    def finish(self, timeout: float = 20) -> "Finished":
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"aicp did not exit within {timeout} s; events: {self._dump()}")
        self._err_thread.join(5)
        self._out_thread.join(5)
        return Finished(rc, self._stdout.decode(), b"".join(self.stderr_lines).decode())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Finished:
    """Like conftest.Run (returncode, stdout, stderr, events, result, of)."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every stderr line as an event; a line that is not JSON fails the test, with the line."""
        events = []
        for line in self.stderr.splitlines():
            if line.strip():
                try:
                    events.append(json.loads(line))
                except ValueError:
                    pytest.fail(f"a stderr line is not a JSON event: {line[:500]!r}")
        return events

    @property
    def result(self) -> dict[str, Any]:
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        assert len(lines) == 1, f"expected exactly one stdout line, got {lines!r}"
        return json.loads(lines[0])

    def of(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event]


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
            env: dict[str, str] | None = None) -> Finished:
        """Run the chain with the real CLI (``--stream``) to the end; schema-check every event.

        ``env``: extra environment variables for aicp.
        """
        proc = subprocess.run(aicp_argv("run-chain", "-c", str(chain), "--stream", *extra),
                              cwd=cwd or self.dir, env=child_env(**(env or {})), stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=timeout)
        run = Finished(proc.returncode, proc.stdout.decode(), proc.stderr.decode())
        self.check(run)
        return run

    def start(self, chain: Path, *extra: str) -> LiveRun:
        return LiveRun(["run-chain", "-c", str(chain), "--stream", *extra], cwd=self.dir)

    def check(self, run: Finished) -> None:
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


@pytest.fixture
def env(tmp_path: Path, validate_events: Callable[[Any], None]):
    e = Env(tmp_path, validate_events)
    yield e
    e.cleanup()


def step_errors(run: Finished, step: int | None = None) -> list[dict[str, Any]]:
    return [e for e in run.of("step_error") if step is None or e["step"] == step]


def only_error(run: Finished) -> dict[str, Any]:
    """The run failed with exactly one step_error; return it."""
    errors = run.of("step_error")
    assert len(errors) == 1, f"expected one step_error, got {errors}"
    return errors[0]


def logs(run: Finished, stream: str | None = None, step: int | None = None) -> list[dict[str, Any]]:
    return [e for e in run.of("step_log")
            if (stream is None or e["stream"] == stream) and (step is None or e["step"] == step)]
