"""One batch inside ``aicp run-batch``: the bookkeeping every engine shares.

An engine decides where each job's subprocess runs; this module decides what a
job's end means (:meth:`JobResult.verdict`), keeps the batch record, checks the
budget, and emits the batch events (``batch_start``, ``job_queued``,
``job_start``, ``job_retry``, ``job_complete``, ``batch_complete``). Job events
(every event of every job's run) are relayed into the same stream unchanged.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from aicp._batch.job import Job, JobResult, JobRun, Verdict, retry_delay
from aicp._batch.record import BatchRecord
from aicp._errors import ExitCode
from aicp._events import EventLog


class BatchRun:
    """The shared state of one batch while its jobs run (thread-safe)."""

    def __init__(self, record: BatchRecord, chain_path: str, events: EventLog,
                 max_cost: float | None, cancel: threading.Event) -> None:
        self.record = record
        self.chain_path = chain_path
        self.events = events
        self.max_cost = max_cost
        self.cancel = cancel
        self.cancel_code = ExitCode.INTERRUPTED
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._reserved: dict[str, float] = {}  # estimates of the jobs running now

    # -------------------------------------------------------------- a job's life

    def queued(self, job: Job) -> None:
        self.events.emit("job_queued", job_id=job.job_id, row=job.row, estimated_cost=job.estimated_cost)

    def admit(self, job: Job) -> bool:
        """Start ``job`` only if its estimate keeps the batch within ``--max-cost`` (with real spend so far)."""
        with self._lock:
            if self.max_cost is not None:
                committed = self.record.spent() + sum(self._reserved.values())
                if committed + job.estimated_cost > self.max_cost + 1e-9:
                    error = (f"budget: starting it (estimated ${job.estimated_cost:.4f}) would take the batch "
                             f"past --max-cost ${self.max_cost:.4f} (${committed:.4f} spent or committed)")
                    self._final(job, "skipped", None, 0.0, error, reason="budget")
                    return False
            self._reserved[job.job_id] = job.estimated_cost
            return True

    def start(self, job: Job) -> JobRun:
        entry = self.record.jobs[job.job_id]
        attempt = int(entry.get("attempts") or 0) + 1
        self.record.update(job.job_id, status="running", attempts=attempt,
                           deliveries=int(entry.get("deliveries") or 0) + 1, started=time.time())
        run = JobRun(chain_path=self.chain_path, job=job, job_dir=str(self.record.job_dir(job.job_id)),
                     batch_id=self.record.batch_id, attempt=attempt)
        self.events.emit("job_start", job_id=job.job_id, attempt=attempt, run_id=job.job_id)
        return run

    def ended(self, run: JobRun, result: JobResult) -> tuple[Verdict, float]:
        """Record how this run of the job ended; returns the verdict and, for a retry, its delay."""
        job = run.job
        with self._lock:
            self._reserved.pop(job.job_id, None)
        entry = self.record.jobs[job.job_id]
        cost = round(float(entry.get("cost") or 0.0) + result.cost, 6)
        verdict = result.verdict(int(entry.get("deliveries") or 1), self.cancel.is_set())
        if verdict in ("retry", "requeue"):
            delay = retry_delay(run.attempt) if verdict == "retry" else 0.0
            self.record.update(job.job_id, status="queued", cost=cost, exit_code=result.exit_code,
                               error=result.error)
            self.events.emit("job_retry", job_id=job.job_id, attempt=run.attempt, exit_code=result.exit_code,
                             error=result.error, delay_seconds=delay,
                             reason="provider" if verdict == "retry" else "requeued")
            return verdict, delay
        status = "succeeded" if verdict == "succeeded" else verdict
        self._final(job, status, result.exit_code, cost, result.error, attempt=run.attempt)
        return verdict, 0.0

    def _final(self, job: Job, status: str, exit_code: int | None, cost: float, error: str | None,
               attempt: int | None = None, reason: str | None = None) -> None:
        self.record.update(job.job_id, status=status, exit_code=exit_code, cost=cost, error=error,
                           finished=time.time())
        fields: dict[str, Any] = {"job_id": job.job_id, "success": status == "succeeded", "status": status,
                                  "exit_code": exit_code, "cost": cost, "error": error, "run_id": job.job_id}
        if attempt is not None:
            fields["attempt"] = attempt
        if reason is not None:
            fields["reason"] = reason
        self.events.emit("job_complete", **fields)

    def relay(self, job: Job, line: bytes) -> None:
        """One line of a job's own event stream, into the batch's."""
        if line.startswith(b"{") and line.endswith(b"\n"):
            self.events.relay(line)
        elif line.strip():  # not an event (a crash before its stream began): said, not lost
            self.events.emit("warning", job_id=job.job_id,
                             message=line.decode("utf-8", "replace").rstrip("\n")[:8192])

    # -------------------------------------------------------------- the end

    def result(self) -> dict[str, Any]:
        """The ``batch_complete`` fields, from the record."""
        counts = self.record.counts()
        jobs = self.record.jobs
        failures = [{"job_id": job_id, "row": e.get("row"), "status": e.get("status"),
                     "exit_code": e.get("exit_code"), "error": e.get("error")}
                    for job_id, e in jobs.items() if e.get("status") not in ("succeeded",)]
        if self.cancel.is_set() and any(e.get("status") not in ("succeeded", "failed", "lost", "skipped")
                                        for e in jobs.values()):
            exit_code = int(self.cancel_code)
        else:
            exit_code = int(ExitCode.OK if not failures else ExitCode.STEP_FAILED)
        return {"batch_id": self.record.batch_id, "success": exit_code == 0, "exit_code": exit_code,
                "total_jobs": len(jobs), "succeeded": counts.get("succeeded", 0),
                "failed": counts.get("failed", 0), "lost": counts.get("lost", 0),
                "skipped": counts.get("skipped", 0),
                "interrupted": counts.get("interrupted", 0) + counts.get("queued", 0) + counts.get("running", 0),
                "total_cost": self.record.spent(), "total_time": round(time.monotonic() - self.started, 3),
                "failures": failures, "record": str(self.record.root)}

    def interrupt_unfinished(self) -> None:
        """After a stop: every job that did not end is ``interrupted`` (resumable)."""
        for job_id, entry in list(self.record.jobs.items()):
            if entry.get("status") in ("queued", "running"):
                self.record.update(job_id, status="interrupted")
