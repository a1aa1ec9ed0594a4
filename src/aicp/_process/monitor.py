"""One supervised worker: spawn it, watch it, stop it, and say exactly how it ended.

This module keeps the cancellation contract, which is stated once, in
docs/supervisor.md ("The cancellation contract"): :meth:`_Monitor._stop`
begins it (SIGTERM to everything the worker started, or SIGKILL at once for a
memory-limit breach or a second Ctrl-C), :meth:`_Monitor._watch` relays output
through the ``kill_grace`` period and sends the final SIGKILL, and, however the
worker ended, kills what it left before the step is reported.

Who "everything it started" is, is :mod:`aicp._process.tree`'s job; how a
worker comes to exist is :mod:`aicp._process.launch`'s; what travels on its
pipes is :mod:`aicp._worker.protocol`'s.
"""

from __future__ import annotations

import os
import select
import selectors
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from aicp._process.cancel import Cancel
from aicp._process.launch import ExitStatus, Launched, Launcher
from aicp._process.lines import LineSplitter
from aicp._process.tree import Members
from aicp._worker.protocol import ERROR, LOG, PROGRESS, REMOTE, RESULT, encode_spec, read_message

if TYPE_CHECKING:
    from aicp._worker.protocol import ErrorMessage, FailureReason, WorkerSpec

SAMPLE_INTERVAL = 0.1  # with a memory limit: a spike of a quarter second is seen
IDLE_SAMPLE_INTERVAL = 2.0  # without one: only for the reported peak, and (process tree) to know descendants
_STOP_POLL = 0.05  # while stopping: how soon a second Ctrl-C is seen
_NEVER = float("inf")  # kill_at when SIGKILL is not due: not stopping, or already sent
MAX_LINE = 8 * 1024
MAX_RESULT = 64 * 1024 * 1024
_DRAIN_SECONDS = 2.0
_CHUNK = 65536
_GATHER = 0.002  # after a read that emptied a pipe, seconds before the next
_PAUSE_POLL = 0.02  # while output is paused, how often to look whether the reader caught up


@dataclass(frozen=True)
class Limits:
    timeout: float | None = None
    max_memory_mb: float | None = None
    kill_grace: float = 5.0


@dataclass
class Outcome:
    """How one attempt of one step ended, with the resources its tree used."""

    ok: bool
    pid: int | None = None
    result: dict[str, Any] | None = None
    reason: FailureReason | None = None
    error: str | None = None
    exit_code: int | None = None  # the status the worker, its program or the step exited with
    signal: str | None = None
    traceback: str | None = None
    duration_seconds: float = 0.0
    peak_rss_bytes: int = 0
    cpu_seconds: float = 0.0
    run_exit_code: int | None = None  # what the run should exit with, if the step said (provider errors: 4)

    def failure_fields(self) -> dict[str, Any]:
        """The ``step_error`` fields that describe this failure (None values left out)."""
        fields = {"error": self.error, "reason": self.reason, "exit_code": self.exit_code,
                  "signal": self.signal, "traceback": self.traceback}
        return {k: v for k, v in fields.items() if v is not None}

    def resource_fields(self) -> dict[str, Any]:
        return {"pid": self.pid, "duration_seconds": round(self.duration_seconds, 3),
                "peak_rss_bytes": self.peak_rss_bytes, "cpu_seconds": round(self.cpu_seconds, 3)}


@dataclass
class WorkerEvents:
    """Where a worker's traffic goes: each callback turns into an event."""

    started: Callable[[int], None]
    output: Callable[[str, list[str], bool], None]  # stream, lines (in order), truncated
    progress: Callable[[float, str | None], None]
    log: Callable[[str, dict[str, Any]], None]  # level, fields
    congested: Callable[[], bool] = lambda: False  # the outputs' readers are behind: stop reading the step
    remote: Callable[[dict[str, Any]], None] = lambda request: None  # a paid request went out (to the run record)


class _Clock:
    """When the monitor must next wake up: timeout, SIGKILL, memory sample (else it sleeps in select)."""

    def __init__(self, started: float, limits: Limits, polling: bool) -> None:
        self.deadline = started + limits.timeout if limits.timeout else None
        self.limit_bytes = int(limits.max_memory_mb * 1024 * 1024) if limits.max_memory_mb else None
        self.interval = SAMPLE_INTERVAL if self.limit_bytes else IDLE_SAMPLE_INTERVAL
        self.polling = polling  # no pidfd: the worker's end is only seen by asking
        # Not at once: the worker has run nothing yet (its own peak RSS comes with its exit status).
        self.next_sample = started + self.interval
        self.kill_at = _NEVER

    def sampled(self, now: float) -> None:
        self.next_sample = now + self.interval

    def wait(self, now: float, stopping: bool) -> float:
        wake = min(self.next_sample, self.kill_at)
        if not stopping and self.deadline is not None:
            wake = min(wake, self.deadline)
        wait = wake - now
        if stopping or self.polling:
            wait = min(wait, _STOP_POLL)
        return max(0.0, wait)


class _Monitor:
    """Runs one worker from spawn to report. Not reusable."""

    def __init__(self, spec: WorkerSpec, limits: Limits, cancel: Cancel,
                 events: WorkerEvents, env: dict[str, str] | None, launcher: Launcher, ahead: bool) -> None:
        self.launcher = launcher
        self.ahead = ahead
        self.spec = spec
        self.limits = limits
        self.cancel = cancel
        self.events = events
        self.env = env
        self.result: dict[str, Any] | None = None
        self.error: ErrorMessage | None = None
        self.stop_reason: FailureReason | None = None
        self.stop_detail = ""
        self.rss_at_stop = 0
        self._relayed: tuple[int, ...] = ()  # the step's stdout and stderr (read ends)

    def run(self) -> Outcome:
        started = time.monotonic()
        try:
            env = dict(os.environ if self.env is None else self.env)
            ready = self.launcher.start(env)
        except OSError as exc:
            return Outcome(ok=False, reason="spawn_failed", error=f"cannot start a worker: {exc}",
                           duration_seconds=time.monotonic() - started)
        worker, members = ready.worker, ready.members
        self.events.started(worker.pid)
        try:
            self._send_spec(ready.ctrl_w)  # (only now does the worker go on to run step code)
            if self.ahead:
                self.launcher.start_ahead(env)
            status = self._watch(worker, members, ready.res_r, time.monotonic())  # (the timeout starts now)
        finally:
            os.close(ready.ctrl_w)  # cuts the lifeline: a worker still alive would end itself
            os.close(ready.res_r)
            worker.close()
            members.release()
        outcome = self._outcome(status.code, worker.pid)
        outcome.duration_seconds = time.monotonic() - started
        outcome.peak_rss_bytes = max(members.peak_rss, status.max_rss_bytes)
        outcome.cpu_seconds = max(status.cpu_seconds, members.cpu_seconds())
        return outcome

    def _send_spec(self, fd: int) -> None:
        try:
            view = memoryview(encode_spec(self.spec))
            while view:
                view = view[os.write(fd, view):]
        except BrokenPipeError:
            pass  # the worker died before reading it; its exit status tells why

    def _watch(self, worker: Launched, members: Members, res_r: int, running: float) -> ExitStatus:
        # poll(2), not epoll: a handful of fds watched for one step; epoll would cost every step an
        # epoll instance and a system call per fd registered and unregistered.
        sel = selectors.PollSelector()
        self._relayed = (worker.stdout, worker.stderr)
        splitters = {
            worker.stdout: LineSplitter(MAX_LINE, lambda lines, cut: self.events.output("stdout", lines, cut)),
            worker.stderr: LineSplitter(MAX_LINE, lambda lines, cut: self.events.output("stderr", lines, cut)),
            res_r: LineSplitter(MAX_RESULT, self._on_messages),
        }
        for fd in splitters:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        if worker.exit_fd is not None:
            sel.register(worker.exit_fd, selectors.EVENT_READ)  # wakes us the moment it ends
        sel.register(self.cancel.fileno(), selectors.EVENT_READ)  # ... and the moment a stop is asked for
        clock = _Clock(running, self.limits, polling=worker.exit_fd is None)
        try:
            while True:
                now = time.monotonic()
                if now >= clock.next_sample:
                    self._check_memory(members, clock, now)
                if self.stop_reason is None:
                    if self.cancel.is_set():
                        clock.kill_at = self._stop("cancelled", members, now, hard=self.cancel.hard)
                    elif clock.deadline is not None and now >= clock.deadline:
                        clock.kill_at = self._stop("timeout", members, now)
                elif self.cancel.hard and now < clock.kill_at < _NEVER:
                    clock.kill_at = now
                if self.stop_reason is not None and self.cancel.fileno() in sel.get_map():
                    sel.unregister(self.cancel.fileno())  # it stays readable; a hard stop is polled for
                if now >= clock.kill_at:
                    members.signal_all(signal.SIGKILL)
                    clock.kill_at = _NEVER
                if worker.exited() and (self.stop_reason is None or clock.kill_at == _NEVER
                                        or not members.any_left()):
                    break  # (while stopping, what the worker started keeps its grace period too)
                wait = clock.wait(now, stopping=self.stop_reason is not None)
                if self.events.congested():
                    self._pause(sel, splitters, wait)
                else:
                    self._pump(sel, splitters, wait)
            # The worker is gone; nothing it started may outlive it.
            members.claim_escaped()
            members.signal_all(signal.SIGKILL)
            status = worker.wait()
            self._drain(sel, splitters, members)
        finally:
            sel.close()
        return status

    def _check_memory(self, members: Members, clock: "_Clock", now: float) -> None:
        rss = members.sample()
        clock.sampled(now)
        if clock.limit_bytes and rss > clock.limit_bytes and self.stop_reason is None:
            self._stop("memory_limit", members, now, hard=True, rss=rss)
            clock.kill_at = now

    def _stop(self, reason: FailureReason, members: Members, now: float, hard: bool = False, rss: int = 0) -> float:
        """Begin the cancellation contract; return when SIGKILL is due."""
        self.stop_reason = reason
        self.rss_at_stop = rss
        members.claim_escaped()  # every current member keeps its grace, even if the worker ends first
        if hard:
            members.signal_all(signal.SIGKILL)
            return _NEVER
        members.signal_all(signal.SIGTERM)
        return now + self.limits.kill_grace

    def _pause(self, sel: selectors.BaseSelector, splitters: dict[int, LineSplitter], timeout: float) -> None:
        """Backpressure: an output's reader is behind, so the step's output stays in its pipes (the
        step blocks on its own writes) while this loop keeps its timeouts, limits and signals."""
        others = [fd for fd in sel.get_map() if fd not in splitters]  # the exit fd, the stop request
        ready, _, _ = select.select(others, [], [], min(timeout, _PAUSE_POLL))
        for fd in ready:
            if fd != self.cancel.fileno():
                sel.unregister(fd)

    def _pump(self, sel: selectors.BaseSelector, splitters: dict[int, LineSplitter], timeout: float) -> None:
        partial = ended = False
        for key, _ in sel.select(timeout):
            fd = key.fd
            if fd not in splitters:  # the exit fd or the stop request: the loop looks at them
                if fd != self.cancel.fileno():
                    sel.unregister(fd)
                    ended = True
                continue
            try:
                chunk = os.read(fd, _CHUNK)
            except BlockingIOError:
                continue
            if chunk:
                splitters[fd].feed(chunk)
                partial = partial or (len(chunk) < _CHUNK and fd in self._relayed)
            else:
                sel.unregister(fd)
                splitters[fd].close()
        if partial and not ended:
            # A step printing line by line would otherwise be read a few lines at a time, and the
            # relay's cost is per read: let its lines gather for a moment (less than a pipeful).
            # Not for the result pipe, nor once the worker has ended: then the step is done, and
            # a pause would only delay its report (the per-step overhead).
            time.sleep(_GATHER)

    def _drain(self, sel: selectors.BaseSelector, splitters: dict[int, LineSplitter], members: Members) -> None:
        """Relay what is left in the pipes; give up if a stray writer keeps them open."""
        give_up = time.monotonic() + _DRAIN_SECONDS
        for fd in [fd for fd in sel.get_map() if fd not in splitters]:
            sel.unregister(fd)  # the exit fd and the stop request: only the pipes are left to read
        while sel.get_map() and time.monotonic() < give_up:
            self._pump(sel, splitters, 0.05)
            open_pipes = [fd for fd in sel.get_map() if fd in splitters]
            if open_pipes:
                members.claim_escaped(open_pipes)
                members.signal_all(signal.SIGKILL)
        for key in list(sel.get_map().values()):
            if key.fd in splitters:
                splitters[key.fd].close()

    def _on_messages(self, lines: list[str], truncated: bool) -> None:
        for line in lines:
            self._on_message(line, truncated)

    def _on_message(self, line: str, truncated: bool) -> None:
        if truncated:
            self.error = {"reason": "invalid_result", "error": "the step's result is larger than 64 MiB"}
            return
        try:
            message = read_message(line)
        except ValueError:
            self.error = {"reason": "invalid_result", "error": "the worker sent a malformed message"}
            return
        if message["k"] == PROGRESS:
            self.events.progress(message.get("fraction", 0.0), message.get("message"))
        elif message["k"] == LOG:
            self.events.log(message.get("level", "info"), message.get("fields") or {})
        elif message["k"] == REMOTE:
            self.events.remote(dict(message))
        elif message["k"] == RESULT:
            self.result = message.get("value")
        elif message["k"] == ERROR:
            self.error = message

    def _outcome(self, status: int, pid: int) -> Outcome:
        if self.stop_reason is not None:
            return Outcome(ok=False, pid=pid, reason=self.stop_reason, error=self._stop_message(),
                           **_status_fields(status))
        if self.error is not None:
            fields: dict[str, Any] = {k: self.error.get(k)
                      for k in ("reason", "error", "exit_code", "signal", "traceback", "run_exit_code")}
            if fields["reason"] == "exception" and fields["exit_code"] is None:
                fields["exit_code"] = status if status >= 0 else None
            return Outcome(ok=False, pid=pid, **fields)
        if status == 0 and self.result is not None:
            return Outcome(ok=True, pid=pid, result=self.result)
        if status < 0:
            name = signal.Signals(-status).name
            hint = " (possibly the kernel's out-of-memory killer)" if name == "SIGKILL" else ""
            return Outcome(ok=False, pid=pid, reason="signal", signal=name,
                           error=f"the worker was killed by {name}{hint}")
        return Outcome(ok=False, pid=pid, reason="exit", exit_code=status,
                       error=f"the worker exited with status {status} before returning a result")

    def _stop_message(self) -> str:
        if self.stop_reason == "timeout":
            return f"timed out after {self.limits.timeout:g} s"
        if self.stop_reason == "memory_limit":
            return (f"exceeded its memory limit of {self.limits.max_memory_mb:g} MB "
                    f"(the process tree reached {self.rss_at_stop / 2**20:.0f} MB)")
        return self.cancel.message or "cancelled"


def _status_fields(status: int) -> dict[str, Any]:
    if status < 0:
        return {"signal": signal.Signals(-status).name}
    return {"exit_code": status}


def run_worker(spec: WorkerSpec, limits: Limits, cancel: Cancel, events: WorkerEvents,
               env: dict[str, str] | None = None, launcher: Launcher | None = None,
               ahead: bool = False) -> Outcome:
    """Run one step in a new worker process and return how it ended.

    ``spec`` is what the worker needs (executor target, input, params, ...);
    it must be JSON-serialisable. ``launcher`` starts the process (a fork of
    the run's warm template, or a fresh interpreter); with ``ahead`` (more
    steps follow), it starts the next step's worker meanwhile. Never raises
    for anything the step does.
    """
    return _Monitor(spec, limits, cancel, events, env, launcher or Launcher("spawn"), ahead).run()
