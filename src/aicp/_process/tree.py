"""The processes of one worker: who they are, how much they use, and how to stop them all.

Two mechanisms answer the same questions (:class:`Members`); docs/supervisor.md
("What a step started: containment") states what each finds and what it cannot:

* :class:`CgroupMembers`, where the run has cgroups (:mod:`aicp._process.cgroup`):
  membership is the kernel's and exact; stopping is ``cgroup.kill``; memory and
  CPU are the cgroup's counters. Nothing is scanned.
* :class:`ProcessTree`, the fallback: the worker's tree walked through
  ``/proc/<pid>/task/<tid>/children`` (no scan of every process), the
  environment token (:data:`TOKEN_VAR`) among the subreaper's children (or
  every process where orphans go to init), and the processes that still hold
  the worker's pipes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Protocol

import psutil

from aicp._process.cgroup import WorkerCgroup
from aicp._worker.reaper import descendants

TOKEN_VAR = "AICP_WORKER_TOKEN"


class Members(Protocol):
    """Everything one worker started, as the monitor sees it."""

    peak_rss: int

    def sample(self) -> int:
        """Refresh what is known; return the current resident memory of all members, in bytes."""

    def cpu_seconds(self) -> float:
        """CPU (user + system) used by the members so far, as far as is known."""

    def signal_all(self, sig: int) -> None:
        """Send ``sig`` to every member."""

    def any_left(self) -> bool:
        """Whether a member other than the (ended) worker is still running."""

    def claim_escaped(self, pipe_fds: list[int] | None = None) -> None:
        """Find members that left the worker's tree (and, given ``pipe_fds``, those holding its pipes)."""

    def release(self) -> None:
        """Kill what is left, reap what is ours, and let go of the members' bookkeeping."""


@dataclass
class CgroupMembers:
    """A worker's members are its cgroup's: exact, with the kernel's counters."""

    cgroup: WorkerCgroup
    peak_rss: int = 0
    _cpu: float = 0.0
    _released: bool = False  # the final CPU figure is known (read once, as the folder goes)

    def sample(self) -> int:
        rss = self.cgroup.resident_bytes()
        if rss is None:  # no memory controller: ask each (exactly known) member
            rss = _resident(self.cgroup.pids())
        self.peak_rss = max(self.peak_rss, rss)
        return rss

    def cpu_seconds(self) -> float:
        if not self._released:
            cpu = self.cgroup.cpu_seconds()
            self._cpu = max(self._cpu, cpu or 0.0)
        return self._cpu

    def signal_all(self, sig: int) -> None:
        self.cgroup.signal(sig)

    def any_left(self) -> bool:
        return not self.cgroup.is_empty()

    def claim_escaped(self, pipe_fds: list[int] | None = None) -> None:
        pass  # nothing escapes a cgroup

    def release(self) -> None:
        self.cgroup.empty_out()  # (nothing left running: the CPU figure read next is final)
        self.cpu_seconds()  # read once, before the folder goes
        self._released = True
        self.cgroup.release()


def _resident(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.Error:
            continue
    return total


@dataclass
class ProcessTree:
    """The processes of one worker, as far as walking its tree and the token can tell.

    ``reaper`` is the subreaper that orphans of this worker are re-parented to
    (None: they go to init, so the token is looked for in every process).
    """

    pgid: int
    root: psutil.Process | None  # None: the worker was already gone when we looked
    token: str
    reaper: int | None = None
    seen: dict[int, psutil.Process] = field(default_factory=dict)
    cpu: dict[int, float] = field(default_factory=dict)
    peak_rss: int = 0

    @classmethod
    def of(cls, pid: int, token: str, reaper: int | None = None) -> "ProcessTree":
        """The tree of worker ``pid`` (its process group has the same id)."""
        try:
            root: psutil.Process | None = psutil.Process(pid)
        except psutil.Error:
            root = None  # the worker was already gone when we looked
        return cls(pid, root, token, reaper)

    def _find_descendants(self) -> None:
        if self.root is None:
            return
        pids = descendants(self.root.pid)
        try:
            if pids is None:  # no children files in /proc: psutil's scan of every process
                procs = self.root.children(recursive=True)
                pids = [p.pid for p in procs]
                known = {p.pid: p for p in procs}
            else:
                known = {}
            for pid in pids:
                if pid not in self.seen:
                    self.seen[pid] = known.get(pid) or psutil.Process(pid)
        except psutil.Error:
            pass

    def sample(self) -> int:
        """Refresh the member list; return the tree's total RSS in bytes."""
        self._find_descendants()
        members = list(self.seen.items())
        if self.root is not None:
            members.append((self.root.pid, self.root))
        total = 0
        for pid, proc in members:
            try:
                with proc.oneshot():
                    total += proc.memory_info().rss
                    times = proc.cpu_times()
                    self.cpu[pid] = times.user + times.system
            except psutil.Error:
                continue
        self.peak_rss = max(self.peak_rss, total)
        return total

    def cpu_seconds(self) -> float:
        return sum(self.cpu.values())

    def claim_escaped(self, pipe_fds: list[int] | None = None) -> None:
        self._find_descendants()
        self._adopt_orphans()
        if pipe_fds:
            self._adopt_pipe_holders(pipe_fds)

    def _adopt_orphans(self) -> None:
        """Claim processes re-parented to the subreaper that carry this worker's token.

        Without a subreaper (the Python API in someone's process, spawned
        workers), escaped descendants went to init: look for the token in every
        process instead.
        """
        if self.reaper is None:
            self._adopt_by_token()
            return
        try:
            children = psutil.Process(self.reaper).children()
        except psutil.Error:
            return
        for child in children:
            if child.pid in self.seen or child.pid == self.pgid:
                continue
            try:
                if child.environ().get(TOKEN_VAR) == self.token:
                    self.seen[child.pid] = child
            except psutil.Error:
                continue

    def _adopt_by_token(self) -> None:
        needle = f"{TOKEN_VAR}={self.token}".encode()
        try:
            names = os.listdir("/proc")
        except OSError:
            return
        for name in names:
            if not name.isdigit() or int(name) in self.seen or int(name) == self.pgid:
                continue
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    if needle in f.read():
                        self.seen[int(name)] = psutil.Process(int(name))
            except (OSError, psutil.Error):
                continue

    def _adopt_pipe_holders(self, fds: list[int]) -> None:
        """Claim every process that holds one of these pipes (the worker's stdout, stderr, result).

        Only the step's own processes can hold them, token or not: this finds an
        escaped daemon that was started with an environment of its own.
        """
        try:
            links = {f"pipe:[{os.fstat(fd).st_ino}]" for fd in fds}
            names = os.listdir("/proc")
        except OSError:
            return
        me = os.getpid()
        for name in names:
            if not name.isdigit() or int(name) in (me, self.pgid) or int(name) in self.seen:
                continue
            try:
                for fd in os.listdir(f"/proc/{name}/fd"):
                    if os.readlink(f"/proc/{name}/fd/{fd}") in links:
                        self.seen[int(name)] = psutil.Process(int(name))
                        break
            except (OSError, psutil.Error):
                continue

    def signal_all(self, sig: int) -> None:
        try:
            os.killpg(self.pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        for proc in list(self.seen.values()):
            try:
                proc.send_signal(sig)  # psutil checks the pid was not reused
            except psutil.Error:
                pass

    def any_left(self) -> bool:
        for proc in self.seen.values():
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    return True
            except psutil.Error:
                continue
        return False

    def release(self) -> None:
        """Collect the exit status of orphans that were re-parented to us, so no zombie stays."""
        me = os.getpid()
        for proc in self.seen.values():
            try:
                if proc.ppid() == me:
                    os.waitpid(proc.pid, os.WNOHANG)
            except (psutil.Error, ChildProcessError, OSError):
                continue
