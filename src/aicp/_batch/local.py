"""The local engine: N job subprocesses at a time on this machine, each supervised by a thread.

No server. A job is an ``aicp run-chain`` subprocess in its own session (so a
terminal's Ctrl-C reaches it once, forwarded by us); it ends itself if this
process dies (it follows its parent: :func:`aicp._batch.job.follow_parent`).
A crashed child is one job's outcome, never a broken pool: every thread keeps
taking jobs until the queue is empty or the batch is stopped.
"""

from __future__ import annotations

import heapq
import os
import signal
import subprocess
import threading
import time

from aicp._batch.job import Job, JobResult, JobRun, relay_job
from aicp._batch.runner import BatchRun


class _Queue:
    """Jobs ready at a time (a retry waits out its delay); ``get`` wakes at once on a stop."""

    def __init__(self, jobs: list[Job], cancel: threading.Event) -> None:
        self._heap = [(0.0, n, job) for n, job in enumerate(jobs)]
        self._seq = len(jobs)
        self._busy = 0
        self._cond = threading.Condition()
        self._cancel = cancel

    def put(self, job: Job, delay: float) -> None:
        with self._cond:
            self._seq += 1
            heapq.heappush(self._heap, (time.monotonic() + delay, self._seq, job))
            self._cond.notify_all()

    def get(self) -> Job | None:
        """The next ready job, or None when there is none left (or the batch stopped)."""
        with self._cond:
            while not self._cancel.is_set():
                if self._heap:
                    ready_at = self._heap[0][0]
                    wait = ready_at - time.monotonic()
                    if wait <= 0:
                        self._busy += 1
                        return heapq.heappop(self._heap)[2]
                    self._cond.wait(wait)
                elif self._busy:
                    self._cond.wait()  # a running job may come back (retry, requeue)
                else:
                    return None
            return None

    def done(self) -> None:
        with self._cond:
            self._busy -= 1
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


class LocalEngine:
    def __init__(self, batch: BatchRun, concurrency: int) -> None:
        self.batch = batch
        self.concurrency = max(1, concurrency)
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._procs_lock = threading.Lock()
        self._queue: _Queue | None = None

    def run(self, jobs: list[Job]) -> None:
        """Run ``jobs`` to their end (or until the batch is stopped); returns when every thread is done."""
        self._queue = _Queue(jobs, self.batch.cancel)
        threads = [threading.Thread(target=self._work, name=f"aicp-job-{n}", daemon=True)
                   for n in range(min(self.concurrency, len(jobs)) or 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.5)  # short joins: the main thread must stay free for signal handlers

    def stop(self, signum: int) -> None:
        """Forward a stop to every running job (each ends its run cleanly and resumably)."""
        self.batch.cancel.set()
        if self._queue is not None:
            self._queue.wake()
        with self._procs_lock:
            procs = list(self._procs.values())
        for proc in procs:
            try:
                os.killpg(proc.pid, signum)
            except (ProcessLookupError, PermissionError):
                pass

    def _work(self) -> None:
        assert self._queue is not None
        while (job := self._queue.get()) is not None:
            try:
                if not self.batch.admit(job):
                    continue
                run = self.batch.start(job)
                verdict, delay = self.batch.ended(run, self._run(run))
                if verdict in ("retry", "requeue"):
                    self._queue.put(job, delay)
            finally:
                self._queue.done()

    def _run(self, run: JobRun) -> JobResult:
        proc = subprocess.Popen(run.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=run.env(), start_new_session=True)
        with self._procs_lock:
            self._procs[proc.pid] = proc
        if self.batch.cancel.is_set():  # stopped while it started: it never got the forwarded signal
            os.killpg(proc.pid, signal.SIGTERM)
        result = relay_job(proc, lambda line: self.batch.relay(run.job, line))
        with self._procs_lock:
            self._procs.pop(proc.pid, None)
        return result
