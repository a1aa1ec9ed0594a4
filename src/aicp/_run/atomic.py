"""Replacing a record file so that no reader, and no killed writer, ever sees half of it.

Every record aicp keeps on disk (a run's manifest, a batch's record, reports)
is rewritten whole: a temp file beside it, then a rename onto it. What differs
is when the data reaches the disk itself, which only a power loss or a kernel
crash can tell:

* :func:`write_atomic` with ``sync`` (the default): the temp file is flushed
  (fsync) before the rename, and the folder after it. Old or new, whatever
  happens, and the new one is on the disk when it returns.
* ``sync=False``: as fast as the kernel allows, for a run's per-step updates.
  The new file is in place for every process when it returns (a killed aicp
  leaves it, complete), and :class:`Flusher` flushes it in the background a
  moment later. Where the kernel can swap two names (``renameat2`` with
  ``RENAME_EXCHANGE``: ext4, xfs, btrfs, tmpfs), the swap is used instead of a
  rename onto the old file, because ext4 starts writing a file renamed onto
  another out to the disk inside ``rename()`` (``auto_da_alloc``), which cost
  0.3 to 4 ms per update on the machine we measure on (the swap and the unlink
  of the old file: 0.02 ms). The price: a power loss between the swap and the
  flush can leave the file empty (the caller documents who accepts that).

Standard library only; ``ctypes`` is loaded on the first unsynced write.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Callable

from aicp._threads import signals_to_the_main_thread

_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100
_exchange_fn: Callable[..., int] | None = None
_exchange_known = False


def _renameat2() -> Callable[..., int] | None:
    """libc's ``renameat2``, if this is Linux with a libc that has it."""
    global _exchange_fn, _exchange_known
    if not _exchange_known:
        _exchange_known = True
        try:
            import ctypes

            libc: Any = ctypes.CDLL(None, use_errno=True)
            _exchange_fn = libc.renameat2
        except (OSError, AttributeError, ImportError):
            _exchange_fn = None
    return _exchange_fn


def exchange(a: Path, b: Path) -> bool:
    """Swap the files at two existing paths in one step; False where the kernel, the file system
    or the libc cannot (the caller renames instead)."""
    fn = _renameat2()
    if fn is None:
        return False
    return fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def fsync_path(path: Path) -> None:
    """Flush a file's (or a folder's: its entries, so a rename) data to the disk."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(path: Path) -> Path:
    """The temp file a write of ``path`` goes through (a killed writer may leave it behind)."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def write_atomic(path: Path, data: bytes, sync: bool = True) -> None:
    """Replace ``path`` with ``data`` so that a reader sees the old or the new file, never a mix.

    ``sync``: the data is on disk before the rename makes it visible, and the
    rename is before this returns. Without: see the module's docstring.
    """
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        if not sync and path.exists() and exchange(tmp, path):
            os.unlink(tmp)  # (now the old file)
        else:
            os.replace(tmp, path)
        if sync:
            fsync_path(path.parent)
    except BaseException:
        try:  # a full disk, a signal: leave no half-written temp file behind
            os.unlink(tmp)
        except OSError:
            pass
        raise


class Flusher:
    """Flushes one file and its folder to the disk in a background thread, after unsynced writes:
    the writer does not wait for the disk. Requests made while it flushes are folded into one
    more flush."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._wanted = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def request(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="aicp-record-flush", daemon=True)
            self._thread.start()
        self._wanted.set()

    def _run(self) -> None:
        signals_to_the_main_thread()
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._stopping:
                return
            try:
                fsync_path(self._path)
                fsync_path(self._path.parent)
            except OSError:
                pass  # the disk is failing or full: the next synchronous write says so

    def stop(self) -> None:
        """End the thread, after the flush under way, if any (the caller's last write is synced)."""
        if self._thread is not None:
            self._stopping = True
            self._wanted.set()
            self._thread.join()
            self._thread = None
            self._stopping = False
