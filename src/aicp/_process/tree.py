"""The processes of one worker: who they are, how much they use, and how to stop them all.

A step may start programs that leave the worker's process group (``setsid``,
a double fork), drop its environment, or outlive it. docs/supervisor.md ("The
cancellation contract") lists the ways they are found; each is done here:
:meth:`ProcessTree.sample` (the tree, with memory and CPU), the environment
token (:data:`TOKEN_VAR`, looked for by :meth:`ProcessTree.adopt_orphans` among
the re-parented children in the CLI, and in every process through the Python
API), :meth:`ProcessTree.adopt_pipe_holders`, and :func:`enable_subreaper`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

import psutil

TOKEN_VAR = "AICP_WORKER_TOKEN"


def enable_subreaper() -> bool:
    """Make this process adopt orphaned descendants (Linux), so none escape to init."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    global _subreaper
    PR_SET_CHILD_SUBREAPER = 36
    libc = ctypes.CDLL(None, use_errno=True)
    _subreaper = _subreaper or libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    return _subreaper


_subreaper = False  # whether enable_subreaper() succeeded in this process


@dataclass
class ProcessTree:
    """The processes of one worker, as far as sampling and the token can tell."""

    pgid: int
    root: psutil.Process | None  # None: the worker was already gone when we looked
    token: str
    seen: dict[int, psutil.Process] = field(default_factory=dict)
    cpu: dict[int, float] = field(default_factory=dict)
    peak_rss: int = 0

    @classmethod
    def of(cls, pid: int, token: str) -> "ProcessTree":
        """The tree of worker ``pid`` (its process group has the same id)."""
        try:
            root: psutil.Process | None = psutil.Process(pid)
        except psutil.Error:
            root = None  # the worker was already gone when we looked
        return cls(pid, root, token)

    def sample(self) -> int:
        """Refresh the member list; return the tree's total RSS in bytes."""
        members = list(self.seen.items())
        if self.root is not None:
            try:
                for child in self.root.children(recursive=True):
                    self.seen.setdefault(child.pid, child)
            except psutil.Error:
                pass
            members = list(self.seen.items()) + [(self.root.pid, self.root)]
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

    def adopt_orphans(self) -> None:
        """Claim processes re-parented to us (as subreaper) that carry this worker's token.

        Without the subreaper (the Python API in someone's process), escaped
        descendants went to init: look for the token in every process instead.
        """
        if not _subreaper:
            self._adopt_by_token()
            return
        try:
            children = psutil.Process().children()
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

    def adopt_pipe_holders(self, fds: list[int]) -> None:
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

    def survivors(self) -> list[psutil.Process]:
        """The processes of the tree that are still running."""
        alive = []
        for proc in self.seen.values():
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.Error:
                continue
        return alive

    def reap_adopted(self) -> None:
        """Collect the exit status of orphans that were re-parented to us, so no zombie stays."""
        me = os.getpid()
        for proc in self.seen.values():
            try:
                if proc.ppid() == me:
                    os.waitpid(proc.pid, os.WNOHANG)
            except (psutil.Error, ChildProcessError, OSError):
                continue
