"""Driving the real ``aicp`` CLI from tests: run it to the end, or start it and await its events.

A module with a name of its own (not ``conftest``), so every test file can
import it unambiguously.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import psutil
import pytest


def aicp_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "aicp", *args]


def child_env(**extra: str) -> dict[str, str]:
    """Our environment, minus pytest's and CI's (aicp must not think it runs in CI unless told)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.pop("CI", None)
    env.update(extra)
    return env


class Run:
    """A finished ``aicp`` invocation: its exit code and what it wrote."""

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
        """The one JSON line on stdout (``--stream``) or the ``--json`` envelope."""
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        assert len(lines) == 1, f"expected exactly one stdout line, got {lines!r}"
        return json.loads(lines[0])

    def of(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event]

    @property
    def stream_failure(self) -> str:
        """With ``--stream``, how a failure is told: stderr holds JSON lines only, among them
        exactly one ``error`` event, and stdout the one result line with the same message
        and exit code. Returns the message (what the ``error:`` line says without --stream)."""
        assert "Traceback" not in self.stderr, self.stderr
        errors = self.of("error")
        assert len(errors) == 1, f"expected one error event, got {self.events!r}"
        result = self.result
        assert result["event"] == "pipeline_complete" and result["success"] is False
        assert result["error"] == errors[0]["message"]
        assert result["exit_code"] == errors[0]["exit_code"] == self.returncode
        return errors[0]["message"]


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

    def finish(self, timeout: float = 20) -> "Run":
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"aicp did not exit within {timeout} s; events: {self._dump()}")
        self._err_thread.join(5)
        self._out_thread.join(5)
        return Run(rc, self._stdout.decode(), b"".join(self.stderr_lines).decode())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def descendants(self) -> list[tuple[int, float]]:
        """Every process below aicp (template, workers, what the steps started), with start times."""
        pairs = []
        for p in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                pairs.append((p.pid, p.create_time()))
            except psutil.Error:
                pass
        return pairs
