"""A control group per worker, where the machine lets us make one (Linux).

A worker's processes are exactly the members of its cgroup, whatever they do:
``setsid``, a double fork, an empty environment and closed descriptors do not
take a process out of the cgroup its parent was in. So the supervisor can stop
*everything* a step started (``cgroup.kill``, as systemd's
``KillMode=control-group`` does), learn that it is all gone by reading
``cgroup.events`` (``populated 0``), and read the step's memory and CPU from
counters the kernel keeps, instead of scanning ``/proc`` ten times a second.

The hierarchies are found at run time from ``/proc/self/mountinfo`` and
``/proc/self/cgroup``, never from fixed paths: a cgroup2 mount (pure or
systemd's hybrid layout, where it sits beside the v1 controllers) for
membership, killing and CPU, and for memory the v2 memory controller when the
worker's cgroup has it, else the v1 memory controller. Each run makes one
folder (``aicp-<pid>-<random>``) under aicp's own cgroup in each hierarchy it
uses and one sub-folder per worker; the worker joins before it reads its spec,
so before any step code runs. Where no hierarchy is writable, :func:`probe`
returns None and the caller keeps to the process-tree mechanism
(:mod:`aicp._process.tree`).

Killing a folder's members and removing it are :mod:`aicp._worker.reaper`'s,
shared with the worker template, the last-resort reaper when aicp dies.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass, field
from typing import Callable

from aicp._worker.reaper import is_empty, kill, kill_and_remove, kill_until_empty, members, read_file, \
    remove_folder, signal_members, write_file

OFF_VAR = "AICP_CGROUP"  # "off": never use cgroups (the process-tree mechanism only)


@dataclass(frozen=True)
class Hierarchy:
    """Where aicp's own cgroup is, in one mounted hierarchy."""

    version: int  # 2, or 1 for the v1 memory controller
    path: str     # aicp's cgroup folder in it


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040)."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _own_cgroups() -> dict[str, str]:
    """``/proc/self/cgroup`` as {"": v2 path, "memory": v1 memory path, ...}."""
    found: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            parts = line.rstrip("\n").split(":", 2)
            if len(parts) == 3:
                for controller in parts[1].split(",") if parts[1] else [""]:
                    found[controller] = parts[2]
    return found


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """(root, mount point, fstype, super options) of every cgroup mount."""
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            try:
                sep = fields.index("-")
            except ValueError:
                continue
            fstype = fields[sep + 1]
            if fstype in ("cgroup", "cgroup2") and len(fields) > sep + 3:
                mounts.append((_unescape(fields[3]), _unescape(fields[4]), fstype, set(fields[sep + 3].split(","))))
    return mounts


def _join(mount_point: str, root: str, path: str) -> str | None:
    """Our cgroup ``path`` (as /proc/self/cgroup names it) under a mount of ``root``, if it is visible."""
    if root != "/" and not (path == root or path.startswith(root.rstrip("/") + "/")):
        return None
    rest = path[len(root):] if root != "/" else path
    folder = os.path.join(mount_point, rest.lstrip("/"))
    return folder if os.path.isdir(folder) else None


def hierarchies() -> tuple[Hierarchy | None, Hierarchy | None]:
    """aicp's own cgroup in the cgroup2 hierarchy, and in the v1 memory hierarchy (either may be None)."""
    try:
        own = _own_cgroups()
        mounts = _mounts()
    except OSError:
        return None, None
    v2 = v1_memory = None
    for root, point, fstype, options in mounts:
        if fstype == "cgroup2" and v2 is None and "" in own:
            folder = _join(point, root, own[""])
            v2 = Hierarchy(2, folder) if folder else None
        elif fstype == "cgroup" and "memory" in options and v1_memory is None and "memory" in own:
            folder = _join(point, root, own["memory"])
            v1_memory = Hierarchy(1, folder) if folder else None
    return v2, v1_memory


def _make_folder(parent: str, name: str) -> str | None:
    folder = os.path.join(parent, name)
    try:
        os.mkdir(folder)
    except OSError:
        return None
    if os.access(os.path.join(folder, "cgroup.procs"), os.W_OK):
        return folder
    remove_folder(folder)
    return None


@dataclass
class WorkerCgroup:
    """One worker's cgroup folder(s): ``main`` for membership and killing, ``memory`` for memory counters."""

    main: str
    main_version: int
    memory: str | None
    memory_version: int
    retire: Callable[["WorkerCgroup"], None] | None = field(default=None, repr=False)  # see release()
    # Seen empty once the worker is in: nothing can enter an empty cgroup but through cgroup.procs
    # (join), so it stays empty and is not read again.
    _emptied: bool = field(default=False, repr=False)
    _gave_up: bool = field(default=False, repr=False)  # empty_out() waited its two seconds in vain

    def join(self, pid: int) -> bool:
        """Move a (not yet running step code) worker in; False if it could not be moved."""
        self._emptied = self._gave_up = False
        try:
            for folder in filter(None, (self.main, self.memory)):
                write_file(os.path.join(folder, "cgroup.procs"), str(pid))
        except OSError:
            return False
        return True

    def pids(self) -> list[int]:
        return members(self.main)

    def is_empty(self) -> bool:
        if not self._emptied:
            self._emptied = is_empty(self.main)
        return self._emptied

    def empty_out(self) -> bool:
        """Kill what is left and wait until nothing is (at most two seconds, once); whether nothing is."""
        if not self._emptied and not self._gave_up:
            self._emptied = kill_until_empty(self.main)
            self._gave_up = not self._emptied
        return self._emptied

    def signal(self, sig: int) -> None:
        if sig == signal.SIGKILL:
            if self.main_version != 2 or not self.is_empty():  # (cgroup2: a read, cheaper than a kill)
                kill(self.main)
        else:
            signal_members(self.main, sig)

    def resident_bytes(self) -> int | None:
        """Resident memory of all members: anonymous plus mapped file pages (page cache not counted)."""
        if self.memory is None:
            return None
        try:
            stat = dict(line.split() for line in read_file(os.path.join(self.memory, "memory.stat")).splitlines())
        except (OSError, ValueError):
            return None
        if self.memory_version == 2:
            return int(stat.get("anon", 0)) + int(stat.get("file_mapped", 0))
        return int(stat.get("total_rss", 0)) + int(stat.get("total_mapped_file", 0))

    def cpu_seconds(self) -> float | None:
        """User + system CPU of every process that was ever a member (cgroup2's ``cpu.stat``)."""
        if self.main_version != 2:
            return None
        try:
            for line in read_file(os.path.join(self.main, "cpu.stat")).splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
        except (OSError, ValueError):
            pass
        return None

    def remove(self) -> bool:
        """Kill what is left, then remove the folders; False if one had to stay."""
        gone = kill_and_remove(self.main)
        if self.memory is not None:
            gone = kill_and_remove(self.memory) and gone
        return gone

    def release(self) -> None:
        """Kill what is left and wait until nothing is (as :meth:`remove` does, at most two
        seconds); the empty folders are then removed by the run, off the step's
        path (:meth:`RunCgroups.worker`, :meth:`RunCgroups.close`), or here if it cannot."""
        if self.retire is None or not self.empty_out():
            self.remove()
        else:
            self.retire(self)

    def remove_folders(self) -> None:
        """Remove the (empty) folders; one that is not empty after all is killed first."""
        for folder in filter(None, (self.main, self.memory)):
            remove_folder(folder)
            if os.path.isdir(folder):
                kill_and_remove(folder)


class RunCgroups:
    """The run's cgroup folders, one per hierarchy used; each worker gets a sub-folder."""

    def __init__(self, main: Hierarchy, main_folder: str, memory: Hierarchy | None, memory_folder: str | None) -> None:
        self.mechanism = f"cgroup{main.version}"
        self._main, self._main_version = main_folder, main.version
        self._memory, self._memory_version = memory_folder, (memory.version if memory else 0)
        self._count = 0
        self._retired: list[WorkerCgroup] = []  # emptied, their folders not yet removed
        self._retired_lock = threading.Lock()

    @property
    def folders(self) -> list[str]:
        """Every folder the run made (what the last-resort reaper kills and removes)."""
        return [f for f in (self._main, self._memory) if f is not None]

    def worker(self) -> WorkerCgroup | None:
        """A new worker's folders, or None if they could not be made. (Removes the retired ones first.)"""
        self.remove_retired()
        self._count += 1
        name = f"w{self._count}"
        main = _make_folder(self._main, name)
        if main is None:
            return None
        memory: str | None = None
        memory_version = 0
        if self._main_version == 1:  # the v1 memory hierarchy is the main one
            memory, memory_version = main, 1
        elif "memory" in _read_or_empty(os.path.join(main, "cgroup.controllers")).split():
            memory, memory_version = main, 2
        elif self._memory is not None:
            memory = _make_folder(self._memory, name)
            memory_version = self._memory_version if memory else 0
        return WorkerCgroup(main, self._main_version, memory, memory_version, self._retire)

    def _retire(self, cgroup: WorkerCgroup) -> None:
        with self._retired_lock:
            self._retired.append(cgroup)

    def remove_retired(self) -> None:
        """Remove the folders of the workers that ended (emptied by :meth:`WorkerCgroup.release`)."""
        with self._retired_lock:
            retired, self._retired = self._retired, []
        for cgroup in retired:
            cgroup.remove_folders()

    def close(self) -> None:
        self.remove_retired()
        for folder in self.folders:
            kill_and_remove(folder)


def _read_or_empty(path: str) -> str:
    try:
        return read_file(path)
    except OSError:
        return ""


def probe() -> RunCgroups | None:
    """Make this run's cgroup folders, or None where cgroups are off or nothing is writable."""
    if os.environ.get(OFF_VAR, "").lower() in ("off", "0", "no", "false") or not os.path.isfile("/proc/self/cgroup"):
        return None
    v2, v1_memory = hierarchies()
    name = f"aicp-{os.getpid()}-{os.urandom(4).hex()}"
    main = main_folder = None
    for candidate in (v2, v1_memory):  # membership: cgroup2 if writable, else the v1 memory hierarchy
        if candidate is not None:
            main_folder = _make_folder(candidate.path, name)
            if main_folder is not None:
                main = candidate
                break
    if main is None or main_folder is None:
        return None
    memory, memory_folder = None, None
    if main.version == 2 and v1_memory is not None and \
            "memory" not in _read_or_empty(os.path.join(main_folder, "cgroup.controllers")).split():
        memory_folder = _make_folder(v1_memory.path, name)
        memory = v1_memory if memory_folder else None
    return RunCgroups(main, main_folder, memory, memory_folder)
