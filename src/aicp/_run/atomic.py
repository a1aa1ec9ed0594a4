"""Replacing a record file so that no reader, and no killed writer, ever sees half of it.

Every record aicp keeps on disk (a run's manifest, a batch's record, reports)
is rewritten whole: a temp file beside it, then a rename onto it. What differs
is when the data reaches the disk itself, which only a power loss or a kernel
crash can tell:

* :func:`write_atomic`: the temp file is flushed (fsync) before the rename.
  Old or new, whatever happens.
* :class:`LazyFile`: as fast as the kernel allows, for a run's per-step
  updates. The new file is in place for every process when ``write``
  returns (a killed aicp leaves it, complete), and a background thread
  flushes it to the disk a moment later (at most 20 ms, plus the flush).
  Where the kernel can swap two names (``renameat2`` with
  ``RENAME_EXCHANGE``: ext4, xfs, btrfs, tmpfs), the swap is used instead of
  a rename onto the old file, because ext4 writes a file renamed onto another
  out to the disk inside ``rename()`` (``auto_da_alloc``) and frees the old
  one's blocks there: 0.3 to 4 ms per update on the machine we measure on,
  against 0.02 ms for the swap; the old version's file then takes the next
  update. The price: a power loss between the swap and the flush can leave
  the file empty or torn (the caller says who accepts that, and how it tells).

Standard library only; ``ctypes`` is loaded on the first lazy write.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

from aicp._threads import signals_to_the_main_thread

_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100
_exchange_fn: Callable[..., int] | None = None
_exchange_known = False
FLUSH_INTERVAL = 0.02  # LazyFile: at most one flush per this many seconds


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


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a reader sees the old or the new file, never a mix,
    whatever happens: the data is on the disk before the rename makes it visible (a power loss
    right after may lose this update, never half of it)."""
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _discard(tmp)  # a full disk, a signal: leave no half-written temp file behind
        raise


def _discard(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class LazyFile:
    """A file rewritten whole, often, by one writer: each :meth:`write` is in place for every
    process when it returns, and reaches the disk soon after (at most :data:`FLUSH_INTERVAL`
    seconds plus the flush itself), by a background thread.

    Where the kernel swaps names, the previous version, now under a temp name, is what the next
    write goes into: it is overwritten in place rather than a new file made and the old one
    deleted, which would cost a step an inode, and the flushing thread the freeing of a file's
    blocks (ext4 with ``discard``: 1.5 to 4 ms, what a rename onto the old file pays too). The
    flushes of writes that come quickly after one another are folded into one (a flush is a
    journal commit, which stalls every other writer of the file system for its duration).
    :meth:`close` ends the thread after a last flush and deletes the previous version.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._count = 0
        self._cond = threading.Condition()
        self._wanted = False
        self._stopping = False
        self._spare: Path | None = None  # the previous version (after a swap), to be overwritten next
        self._spare_size = 0
        self._size = 0  # of the version at ``path``
        self._thread: threading.Thread | None = None

    def write(self, data: bytes) -> None:
        spare = self._spare
        if spare is None:
            self._count += 1
            spare = temp_path(self.path.with_name(f"{self.path.name}.{self._count}"))
            self._spare_size = 0
        self._spare = None
        try:
            fd = os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if self._spare_size > len(data):
                    os.ftruncate(fd, len(data))
            finally:
                os.close(fd)
            if exchange(spare, self.path):  # (False on the first write: there is nothing to swap with)
                self._spare, self._spare_size = spare, self._size
            else:
                os.replace(spare, self.path)
            self._size = len(data)
        except BaseException:
            _discard(spare)  # a full disk, a signal: leave no half-written temp file behind
            raise
        with self._cond:
            self._wanted = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="aicp-record-flush", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        signals_to_the_main_thread()
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._wanted or self._stopping)
                if not self._wanted:
                    return
                self._wanted = False
                stopping = self._stopping
            began = time.monotonic()
            try:
                fsync_path(self.path)
                fsync_path(self.path.parent)
            except OSError:
                pass  # the disk is failing or full: the next synchronous write says so
            if stopping:
                return
            with self._cond:  # let the writes of the next moment gather into one flush
                self._cond.wait_for(lambda: self._stopping, began + FLUSH_INTERVAL - time.monotonic())

    def close(self) -> None:
        """End the thread after a last flush; delete the previous version."""
        if self._thread is not None:
            with self._cond:
                self._stopping = True
                self._cond.notify()
            self._thread.join()
            self._thread = None
            self._stopping = False
        if self._spare is not None:
            _discard(self._spare)
            self._spare = None
