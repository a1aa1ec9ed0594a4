"""Output that never blocks control: every output is written by a thread of its own.

A reader of stderr may stop reading (a log shipper that hangs, ``2> >(sleep
3600)``, a terminal on XOFF). If the supervisor wrote its events itself, the
first full pipe would stop its loop, and with it timeouts, memory limits and
signal handling. So the supervisor only *queues* bytes (:meth:`Sink.put`, a
list append) and a writer thread per output does the blocking ``write(2)``.

When nothing is queued, nothing was written in the last :data:`COALESCE`
seconds, and the write cannot block (a regular file; a pipe with a free page,
for at most ``PIPE_BUF`` bytes), the caller writes at once: the line is out
when the event returns, as a reader following the run expects, and survives a
``kill -9`` right after. Lines that come sooner after a write are a burst (a
chatty step, a group's members finishing together): they are queued, and as
soon as the queue holds a pipe buffer's worth (``PIPE_BUF``) the caller
writes those whole lines in one write, which cannot block; the burst's last
lines are written by the writer thread once no line came for
:data:`COALESCE` (plus however long it waits for the interpreter's lock). A
write per pipe buffer instead of one per line is what lets the stream outrun
``print``, and a burst never piles up in memory (piled-up lines, freed
together, made the allocator hand pages back and fault them in again); the
price is that a ``kill -9`` in the middle of a burst loses at most a pipe
buffer of lines, or the last millisecond's.

The queue is bounded in bytes, and the bound is enforced where it belongs:

* Above :data:`SOFT_LIMIT` queued bytes an output is *congested*: the relay
  stops reading steps' pipes (:mod:`aicp._process.monitor`), so the steps
  block on their own writes, and the supervisor keeps running. This is the
  backpressure path; normally nothing is lost.
* Relayed step output beyond :data:`RELAY_LIMIT` queued bytes (only reachable
  when a step's pipes are drained after it ended, with the reader still
  stalled) is dropped and counted; any other event beyond
  :data:`QUEUE_LIMIT` too. A dropped event is dropped whole.

Lines are never split by a write: a batch is written in pieces of whole lines.
On a pipe whose reader keeps up (the pipe is empty), a piece may fill the
whole pipe (64 KiB), which then takes it at once; while the reader is behind,
pieces are at most ``PIPE_BUF`` (4096) bytes, which the kernel writes
atomically, so a reader that stalls for good is left whole lines only. A
single line longer than that is a write of its own. Terminals and sockets get
``PIPE_BUF`` pieces; regular files (``--log-file``, ``events.jsonl``, opened
``O_APPEND``) each batch in one write, as does ``/dev/null``.

At exit :meth:`Sink.flush` waits while the output makes progress, and gives up
after :data:`FLUSH_STALL` seconds without any: a stalled reader delays aicp's
exit by that much, never forever.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import os
import select
import stat
import sys
import termios
import time
from _thread import allocate_lock


TYPE_CHECKING = False  # typing costs ~5 ms at start-up: for the type checker only
if TYPE_CHECKING:
    import threading
    from typing import Any, Callable, Iterator

PIPE_BUF = getattr(select, "PIPE_BUF", 4096)
SOFT_LIMIT = 1 << 20
RELAY_LIMIT = 8 << 20
QUEUE_LIMIT = 64 << 20
FLUSH_STALL = 2.0
_RECHECK = 0.25
PIECE = 1 << 16  # bytes joined for one write (the default pipe's whole capacity)
COALESCE = 0.001  # seconds: a line that comes this soon after a write waits (at most this long) to share the next
_FLUSH_POLL = 0.005  # a second flush of an output that stalled waits this long for it to move

_GONE = (errno.EPIPE, errno.EBADF, errno.EINVAL)
_monotonic, _sleep = time.monotonic, time.sleep


class Sink:
    """One output (a file descriptor), written by a daemon thread from a bounded queue.

    ``on_error(sink, exc)`` is called once (from the writer thread) when a write
    fails for a reason other than the reader being gone (ENOSPC, EIO...); the
    output is then given up, the run goes on. ``on_recover(sink, lines)`` is
    called when the output caught up after dropping ``lines`` lines.
    """

    def __init__(self, fd: int, name: str, *, owned: bool = False) -> None:
        self.fd = fd
        self.name = name
        self._owned = owned
        try:
            st: os.stat_result | None = os.fstat(fd)
        except OSError:
            st = None
        mode = st.st_mode if st is not None else 0
        # a regular file, or the null device (`>/dev/null`, which never blocks: no writer thread)
        self._whole = stat.S_ISREG(mode) or (stat.S_ISCHR(mode) and st is not None and _is_null_device(st))
        self._capacity = _pipe_capacity(fd) if stat.S_ISFIFO(mode) else 0
        self._poll = select.poll()
        self._poll.register(fd, select.POLLOUT)
        # threading's Lock is _thread's: threading itself (and signal, for the writer) is imported
        # when a writer thread is first needed, which a short command that never blocks never does
        self._lock = allocate_lock()  # guards the queue and the counters
        self._wake = allocate_lock()  # held while the writer has nothing to do; released once per wake-up
        self._wake.acquire()
        self._signalled = False  # a wake-up is pending (so _wake is never released twice)
        self._queue: list[bytes] = []
        self._queued = 0  # bytes queued or being written
        self._progress = 0  # bytes written so far (flush() watches it move)
        self._thread: threading.Thread | None = None
        self._closing = False
        self._stalled_at: int | None = None  # progress when a flush last gave up
        self._quiet_until = 0.0  # (monotonic) before this, a line waits to share the next write (a burst)
        self._writing = False  # the writer thread has taken the queue and is writing it
        self._last_put = 0.0  # (monotonic) when a line last came
        self.broken = False
        self.error: OSError | None = None
        self.dropped = 0  # lines dropped and not yet reported
        self.dropped_total = 0
        self.on_error: Callable[[Sink, OSError], None] | None = None
        self.on_recover: Callable[[Sink, int], None] | None = None

    # ------------------------------------------------------------------ the producers' side

    def put(self, data: bytes, relay: bool = False) -> bool:
        """Queue ``data`` (whole lines); False if it was dropped (over the bound, or the output is gone)."""
        failed = None
        with self._lock:
            if self.broken or self._closing:
                return False
            now = self._last_put = _monotonic()
            if not self._queued and len(data) <= PIPE_BUF and now >= self._quiet_until and self._room_now():
                try:  # nothing queued, no write a moment ago, room for it: written at once, without the thread
                    self._write_all(data)
                    self._quiet_until = now + COALESCE
                    return True
                except OSError as exc:
                    self.broken, failed = True, exc
            elif self._queued and self._queued + len(data) > (RELAY_LIMIT if relay else QUEUE_LIMIT):
                lines = data.count(b"\n") or 1
                self.dropped += lines
                self.dropped_total += lines
                return False
            else:
                if self._queue and not self._writing and self._queued + len(data) > PIPE_BUF \
                        and len(self._queue[0]) <= PIPE_BUF and self._room_now():
                    try:  # a burst has gathered a pipe buffer's worth: the caller writes it (it cannot block)
                        self._write_front()
                        self._quiet_until = now + COALESCE
                    except OSError as exc:
                        self.broken, failed = True, exc
                if failed is None:
                    self._queue.append(data)
                    self._queued += len(data)
                    if not self._signalled:
                        self._wake_writer()
                    return True
        self._failed(failed)
        return False

    def _write_front(self) -> None:
        """(With the lock held, room for PIPE_BUF bytes.) Write the queue's first lines, as many
        whole ones as make at most PIPE_BUF bytes: a write that cannot block, nor be split."""
        end = _run_of(self._queue, 0, PIPE_BUF)
        data = _joined(self._queue[:end])
        self._write_all(data)
        del self._queue[:end]
        self._queued -= len(data)

    def _room_now(self) -> bool:
        """Whether a write of at most PIPE_BUF bytes cannot block now: a regular file, or a pipe
        with a free page (POLLOUT). Terminals and sockets always go through the thread."""
        if self._whole:
            return True
        if not self._capacity:
            return False
        try:
            return bool(self._poll.poll(0))
        except OSError:
            return False

    def _failed(self, exc: OSError) -> None:
        """A write failed: the reader is gone (quietly), or the output is given up and reported."""
        if exc.errno not in _GONE:
            self.error = exc
            if self.on_error is not None:
                self.on_error(self, exc)

    def _wake_writer(self) -> None:
        """(With the lock held.) Release the writer once; start it the first time."""
        self._signalled = True
        self._wake.release()
        if self._thread is None:
            import threading

            self._thread = threading.Thread(target=self._run, name=f"aicp-out-{self.name}", daemon=True)
            self._thread.start()

    def congested(self) -> bool:
        """Whether producers of step output should pause (the reader is behind)."""
        return self._queued > SOFT_LIMIT and not self.broken

    def flush(self, stall: float = FLUSH_STALL) -> bool:
        """Wait until everything queued is written; give up after ``stall`` seconds without progress.

        An output that already stalled, and has not moved since, gets a short look only.
        """
        if self._stalled_at is not None and self._stalled_at == self._progress:
            stall = min(stall, _RECHECK)
        seen, since = self._progress, time.monotonic()
        while self._queued and not self.broken:
            time.sleep(_FLUSH_POLL)
            now = time.monotonic()
            if self._progress != seen:
                seen, since = self._progress, now
            elif now - since >= stall:
                self._stalled_at = seen
                return False
        return True

    def close(self, stall: float = FLUSH_STALL) -> None:
        """Flush, stop the thread, and close the descriptor if it is ours (and no write hangs on it)."""
        flushed = self.flush(stall)
        with self._lock:
            self._closing = True
            if not self._signalled and self._thread is not None:
                self._wake_writer()
        if self._owned and (flushed or self.broken):
            thread = self._thread
            if thread is not None:
                thread.join(stall)
            if thread is None or not thread.is_alive():
                try:
                    os.close(self.fd)
                except OSError:
                    pass

    # ------------------------------------------------------------------ the writer thread

    def _run(self) -> None:
        from aicp._threads import signals_to_the_main_thread

        signals_to_the_main_thread()
        while True:
            self._wake.acquire()
            with self._lock:
                self._signalled = False
                if not self._queue:
                    if self._closing:
                        return
                    continue
            batch = self._take()
            failed = None
            for data in _pieces(batch):
                try:
                    self._write(data)
                except OSError as exc:
                    failed = exc
                    break
                with self._lock:
                    self._queued -= len(data)
            report = 0
            with self._lock:
                self._writing = False
                self._quiet_until = _monotonic() + COALESCE
                if failed is not None:
                    self.broken = True
                    self._queue.clear()
                    self._queued = 0
                if self.dropped and self._queued <= SOFT_LIMIT:
                    report, self.dropped = self.dropped, 0
            if failed is not None:
                self._failed(failed)
                return
            if report and self.on_recover is not None:
                self.on_recover(self, report)

    def _take(self) -> list[bytes]:
        """The queue, once it is the writer's to write: at once if it holds more than a piece
        (the reader is behind, or relayed batches pile up), or the output is closing; else once
        no line came for :data:`COALESCE` (a burst's tail: while lines keep coming, the caller
        writes them a pipe buffer at a time, without waiting for this thread)."""
        while True:
            with self._lock:
                wait = self._last_put + COALESCE - _monotonic()
                if wait <= 0 or self._queued > PIECE or self._closing:
                    batch, self._queue = self._queue, []
                    self._writing = True
                    return batch
            _sleep(wait)

    def _write(self, data: bytes) -> None:
        if self._whole or len(data) <= PIPE_BUF:
            self._write_all(data)
            return
        view, pos, end_all = memoryview(data), 0, len(data)
        while pos < end_all:
            end = pos + self._room()
            if end >= end_all:
                end = end_all
            else:
                cut = data.rfind(b"\n", pos, end)
                if cut >= pos:
                    end = cut + 1
                else:  # one line longer than the room: a write of its own
                    nl = data.find(b"\n", end)
                    end = end_all if nl < 0 else nl + 1
            self._write_all(view[pos:end])
            pos = end

    def _room(self) -> int:
        """How many bytes the next write may hold and still never stop inside a line: a whole
        empty pipe (the reader keeps up: nothing but us writes, so it all goes in at once), else
        PIPE_BUF, which the kernel writes atomically or not at all (if the reader then stalls
        for good, the pipe holds whole lines only)."""
        if self._capacity:
            unread = bytearray(4)
            try:
                fcntl.ioctl(self.fd, termios.FIONREAD, unread)
            except OSError:
                return PIPE_BUF
            if not int.from_bytes(unread, sys.byteorder):
                return self._capacity
        return PIPE_BUF

    def _write_all(self, data: bytes | memoryview) -> None:
        """Write all of ``data`` (one write(2) unless the kernel takes less); if that fails half
        way (a disk that filled), a regular file is cut back to where this write began, so that
        it never ends in half an event."""
        size, done = len(data), 0
        try:
            done = os.write(self.fd, data)
            self._progress += done
            if done < size:
                view = memoryview(data)
                while done < size:
                    written = os.write(self.fd, view[done:])
                    self._progress += written
                    done += written
        except OSError:
            if self._whole and done:
                try:
                    os.ftruncate(self.fd, os.lseek(self.fd, 0, os.SEEK_CUR) - done)
                except OSError:
                    pass
            raise


def _pieces(batch: list[bytes]) -> Iterator[bytes]:
    """The queued lines joined into pieces of about :data:`PIECE` bytes (whole queued items): one
    piece is one write to a file or an empty pipe, and joining a whole burst at once would make
    and free a buffer too big for the allocator to keep, whose pages are faulted in anew each time."""
    start = 0
    while start < len(batch):
        end = _run_of(batch, start, PIECE)
        yield _joined(batch[start:end])
        start = end


def _run_of(items: list[bytes], start: int, limit: int) -> int:
    """Where the run of whole items from ``start`` ends that makes at most ``limit`` bytes; one
    item at least, whatever its size (a line is never cut)."""
    size, end = len(items[start]), start + 1
    while end < len(items) and size + len(items[end]) <= limit:
        size += len(items[end])
        end += 1
    return end


def _joined(items: list[bytes]) -> bytes:
    """One write's bytes: the item itself when there is one (no copy)."""
    return items[0] if len(items) == 1 else b"".join(items)


def _is_null_device(st: os.stat_result) -> bool:
    try:
        null = os.stat(os.devnull)
    except OSError:
        return False
    return (st.st_rdev, st.st_dev, st.st_ino) == (null.st_rdev, null.st_dev, null.st_ino)


def _pipe_capacity(fd: int) -> int:
    """A pipe's size in bytes (F_GETPIPE_SZ), 0 if unknown."""
    try:
        return max(0, fcntl.fcntl(fd, getattr(fcntl, "F_GETPIPE_SZ", 1032)))
    except OSError:
        return 0


_STDIO: dict[int, Sink] = {}
_STDIO_LOCK = allocate_lock()


def stdio_sink(name: str) -> Sink | None:
    """The process-wide sink of ``sys.stdout``/``sys.stderr`` when it is the interpreter's own
    stream (a real descriptor), else None: a replaced stream (capsys, redirect_stderr) is
    written to directly by the caller."""
    stream: Any = getattr(sys, name, None)
    real: Any = getattr(sys, f"__{name}__", None)
    if stream is None or stream is not real:
        return None
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):
        return None
    sink = _STDIO.get(fd)
    if sink is None:
        with _STDIO_LOCK:
            sink = _STDIO.get(fd)
            if sink is None:
                try:
                    stream.flush()  # text written before us goes first
                except (OSError, ValueError):
                    pass
                sink = _STDIO[fd] = Sink(fd, name)
    return sink


def same_file(a: int, b: int) -> bool:
    """Whether two descriptors are one file (``2>&1``): then their order matters to a reader."""
    try:
        sa, sb = os.fstat(a), os.fstat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def flush_stdio(stall: float = FLUSH_STALL) -> None:
    for sink in list(_STDIO.values()):
        sink.flush(stall)


atexit.register(flush_stdio)
