"""Last-resort cleanup: adopt orphans, and kill a whole subtree without running step code.

A process that never runs step code can still end everything a dead aicp
left behind. The worker template is that process: it is the parent of every
forked worker, a *child subreaper* (so orphans a step leaves are re-parented
to it, not to init), and it sees its socket to the supervisor close when aicp
dies, however it dies. Then it kills the run's cgroups
(:func:`kill_and_remove`) and every process left in its
own subtree (:func:`kill_descendants`), which also catches a worker stuck in C
code that holds the GIL (its own lifeline thread cannot run).

Descendants are read from ``/proc/<pid>/task/<tid>/children`` (the kernel's
list of each thread's children), so finding them costs a few small reads
rather than a scan of every process. Standard library only, on the worker
side: the template imports it, and so does the supervisor (:mod:`aicp._process.cgroup`,
:mod:`aicp._process.tree`), for the same cleanup.
"""

from __future__ import annotations

import os
import signal
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_KILL_WAIT = 2.0
_subreaper = False  # whether enable_subreaper() succeeded in this process
_libc: Any = None  # loaded once, before any fork: a forked child calls prctl without loading it


def _prctl(option: int, value: int) -> bool:
    """prctl(2) through the C library; whether it succeeded."""
    global _libc
    try:
        if _libc is None:
            import ctypes

            _libc = ctypes.CDLL(None, use_errno=True)
        return bool(_libc.prctl(option, value, 0, 0, 0) == 0)
    except (OSError, AttributeError):  # no C library to load, or no prctl in it
        return False


def enable_subreaper() -> bool:
    """Make this process adopt orphaned descendants (Linux), so none escape to init."""
    global _subreaper
    if _subreaper or not sys.platform.startswith("linux"):
        return _subreaper
    _subreaper = _prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
    return _subreaper


def signal_on_parent_death(parent: int, sig: int) -> bool:
    """Ask the kernel to send ``sig`` to this process when ``parent``, which started it, ends
    (``PR_SET_PDEATHSIG``); False when the parent is already gone (the request came too late:
    the caller acts at once). Linux only; elsewhere, or without prctl, nothing is asked (True).

    Users: a worker forked by the template (SIGKILL: the template is its lifeline, it runs no
    lifeline thread, and one stuck in C code holding the GIL could not run one anyway), and a
    batch's job (SIGTERM: a clean, resumable stop when run-batch dies)."""
    if not sys.platform.startswith("linux") or not _prctl(1, sig):  # 1: PR_SET_PDEATHSIG
        return True
    return os.getppid() == parent


def is_subreaper() -> bool:
    return _subreaper


def children(pid: int) -> list[int] | None:
    """The direct children of ``pid`` (every thread's); [] if it is gone, None if the kernel cannot tell."""
    if not _has_children_files():
        return None
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []  # gone
    for tid in tasks:
        try:
            found.extend(int(child) for child in read_file(f"/proc/{pid}/task/{tid}/children").split())
        except (OSError, ValueError):
            continue  # that thread (or the process) ended while we read
    return found


def _has_children_files() -> bool:
    global _children_files
    if _children_files is None:
        _children_files = os.path.exists(f"/proc/self/task/{os.getpid()}/children")
    return _children_files


_children_files: bool | None = None  # whether the kernel has /proc/<pid>/task/<tid>/children


def descendants(pid: int, keep: frozenset[int] = frozenset()) -> list[int] | None:
    """Every descendant of ``pid``, parents first, not entering ``keep``; None if the kernel cannot tell."""
    found: list[int] = []
    queue = [pid]
    while queue:
        kids = children(queue.pop())
        if kids is None:
            return None
        kids = [kid for kid in kids if kid not in keep]
        found.extend(kids)
        queue.extend(kids)
    return found


def kill_descendants(pid: int, keep: frozenset[int] = frozenset(), wait: float = 2.0) -> None:
    """SIGKILL every descendant of ``pid`` (sparing the subtrees of ``keep``); reap those that are ours.

    Repeats until none is left (a process may fork between the read and its
    death; its orphans come back to the subreaper), at most ``wait`` seconds.
    """
    deadline = time.monotonic() + wait
    ours = pid == os.getpid()
    while True:
        left = descendants(pid, keep) or []
        for victim in left:
            try:
                os.kill(victim, signal.SIGKILL)
            except OSError:
                pass
        if ours:
            reap_children()
        if not left or time.monotonic() >= deadline:
            return
        time.sleep(0.01)


def reap_children() -> list[tuple[int, int, float, int]]:
    """Collect every child that has ended: (pid, exit code, cpu seconds, max RSS bytes) each."""
    ended: list[tuple[int, int, float, int]] = []
    while True:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return ended
        if pid == 0:
            return ended
        ended.append((pid, os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime,
                      usage.ru_maxrss * 1024))


# --------------------------------------------------------------------------- cgroup folders


def remove_folder(folder: str) -> None:
    try:
        os.rmdir(folder)
    except OSError:
        pass


def read_file(path: str) -> str:
    """A small kernel file (cgroup, /proc): open, read, close, without open()'s buffered text
    layer (its fstat, ioctl and seeks are most of the cost of reading a cgroup file)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode()


def write_file(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def members(folder: str) -> list[int]:
    """The pids in a cgroup folder and every cgroup below it."""
    pids: list[int] = []
    for here, subfolders, _ in os.walk(folder):
        try:
            pids.extend(int(line) for line in read_file(os.path.join(here, "cgroup.procs")).split())
        except (OSError, ValueError):
            continue
    return pids


def signal_members(folder: str, sig: int) -> None:
    for pid in members(folder):
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def is_empty(folder: str) -> bool:
    """Whether no process is left in the folder or below it (v2: ``cgroup.events``; v1: the member lists)."""
    try:
        for line in read_file(os.path.join(folder, "cgroup.events")).splitlines():
            if line.startswith("populated "):
                return line.endswith(" 0")
    except OSError:
        pass
    return not members(folder)


def kill(folder: str) -> None:
    """SIGKILL every process in the folder and below (``cgroup.kill`` where the kernel has it)."""
    try:
        write_file(os.path.join(folder, "cgroup.kill"), "1")
        return
    except OSError:
        pass
    signal_members(folder, signal.SIGKILL)


def kill_until_empty(folder: str, wait: float = _KILL_WAIT) -> bool:
    """Kill everything in the folder until it is empty, at most ``wait`` seconds; whether it is."""
    deadline = time.monotonic() + wait
    pause = 0.001
    while not is_empty(folder):
        if time.monotonic() >= deadline:
            return False
        kill(folder)  # (again and again: on v1, a member may fork between our read and its death)
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
    return True


def kill_and_remove(folder: str, wait: float = _KILL_WAIT) -> bool:
    """Kill everything in the folder, wait (at most ``wait`` s) until it is empty, remove it and its sub-folders.

    Returns whether the folder is gone. A process stuck in uninterruptible
    sleep can keep it populated past ``wait``; the folder then stays.
    """
    if not os.path.isdir(folder):
        return True
    kill_until_empty(folder, wait)
    for here, _, _ in sorted(os.walk(folder), key=lambda entry: -len(entry[0])):
        remove_folder(here)
    return not os.path.isdir(folder)
