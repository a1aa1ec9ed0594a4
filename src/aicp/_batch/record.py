"""The batch record: ``output_dir/batches/<batch_id>/``, what a batch keeps so that it can resume.

* ``batch.json``: per job its status, run id, attempts, deliveries, cost, exit
  code and error; rewritten atomically after every change (temp file, fsync,
  rename: a reader sees the old or the new file, never a mix), with secrets
  masked as in a run record (the environment's, the chain's, and secret-named
  values in a row's overrides: the record keeps the masked row, the process
  the real one, and a resume reads the rows file again);
* ``events.jsonl``: the batch's events and every job's events, merged in
  arrival order;
* ``jobs/<job_id>/``: each job's output folder, with its ordinary run record
  under ``runs/<job_id>/`` (the job id is its run id).

A batch resumes from this record: succeeded and skipped jobs are kept, every
other job runs again and resumes its own run (finished steps are reused).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, TypedDict

from aicp._batch.job import FINAL, Job
from aicp._errors import ChainError, MissingInputError
from aicp._redact import Redactor
from aicp._run.atomic import write_atomic
from aicp._run.manifest_bytes import indented

BATCH_FILE = "batch.json"
EVENTS_FILE = "events.jsonl"
BATCH_VERSION = 1


class JobEntry(TypedDict, total=False):
    """One job in ``batch.json``."""

    row: int
    status: str
    run_id: str
    attempts: int
    deliveries: int
    cost: float
    exit_code: int | None
    error: str | None
    started: float | None
    finished: float | None
    job: dict[str, Any]


def batches_dir(output_dir: Path) -> Path:
    return output_dir / "batches"


class BatchRecord:
    """One batch's record. Thread-safe: the engines' threads update jobs concurrently."""

    def __init__(self, root: Path, data: dict[str, Any], redactor: Redactor) -> None:
        self.root = root
        self.data = data
        self.redactor = redactor
        self._lock = threading.Lock()

    @property
    def batch_id(self) -> str:
        return str(self.data["batch_id"])

    @property
    def events_path(self) -> Path:
        return self.root / EVENTS_FILE

    def job_dir(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id

    @property
    def jobs(self) -> dict[str, JobEntry]:
        jobs: dict[str, JobEntry] = self.data["jobs"]
        return jobs

    @classmethod
    def open(cls, output_dir: Path, batch_id: str, header: dict[str, Any], jobs: list[Job],
             resume: bool, redactor: Redactor) -> tuple["BatchRecord", bool]:
        """The record of ``batch_id``: created, or (it exists) continued. Returns (record, resumed).

        ``redactor`` masks what the record writes (it learns the rows' secret-named values)."""
        root = batches_dir(output_dir) / batch_id
        path = root / BATCH_FILE
        if path.is_file():
            record = cls(root, cls._read(path), redactor)
            record._continue(header, jobs)
            return record, True
        if resume:
            raise MissingInputError(f"no batch '{batch_id}' in {batches_dir(output_dir)} to resume")
        root.mkdir(parents=True, exist_ok=True)
        now = time.time()
        data = {"batch_version": BATCH_VERSION, "batch_id": batch_id, **header, "created": now, "updated": now,
                "status": "running", "resumed": 0,
                "jobs": {job.job_id: _new_entry(job) for job in jobs}}
        record = cls(root, data, redactor)
        record.save()
        return record, False

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise ChainError(f"batch record {path} is damaged ({exc}); refusing to resume it") from None
        if not isinstance(data, dict) or data.get("batch_version") != BATCH_VERSION \
                or not isinstance(data.get("jobs"), dict):
            raise ChainError(f"batch record {path} is not a version-{BATCH_VERSION} aicp batch record")
        return data

    def _continue(self, header: dict[str, Any], jobs: list[Job]) -> None:
        """Resume: the same chain and inputs; finished jobs stay, the others run again."""
        if self.data.get("chain_name") != header.get("chain_name"):
            raise ChainError(f"batch {self.batch_id} ran chain '{self.data.get('chain_name')}', "
                             f"not '{header.get('chain_name')}'; give another --batch-id")
        known = self.jobs
        for job in jobs:
            entry = known.get(job.job_id)
            if entry is None:
                known[job.job_id] = _new_entry(job)
            elif entry.get("status") != "succeeded":
                entry.update({"status": "queued", "job": job.to_json(), "deliveries": 0, "error": None})
        self.data.update({k: v for k, v in header.items() if k not in ("created",)})
        self.data["status"] = "running"
        self.data["resumed"] = int(self.data.get("resumed", 0)) + 1
        self.save()

    def pending(self) -> list[Job]:
        """The jobs still to run, in row order."""
        return [Job.from_json(e["job"]) for e in sorted(self.jobs.values(), key=lambda e: e.get("row", 0))
                if e.get("status") not in FINAL]

    def update(self, job_id: str, **fields: Any) -> JobEntry:
        with self._lock:
            entry = self.jobs[job_id]
            entry.update(fields)  # type: ignore[typeddict-item]
            self.save()
            return JobEntry(**entry)

    def finish(self, status: str, result: dict[str, Any]) -> None:
        with self._lock:
            self.data["status"] = status
            self.data["result"] = result
            self.save()

    def save(self) -> None:
        self.data["updated"] = time.time()
        write_atomic(self.root / BATCH_FILE, indented(self.redactor.scrub(self.data)))

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for entry in self.jobs.values():
            counts[entry.get("status", "queued")] = counts.get(entry.get("status", "queued"), 0) + 1
        return counts

    def spent(self) -> float:
        return round(sum(float(e.get("cost") or 0.0) for e in self.jobs.values()), 6)


def _new_entry(job: Job) -> JobEntry:
    return JobEntry(row=job.row, status="queued", run_id=job.job_id, attempts=0, deliveries=0, cost=0.0,
                    exit_code=None, error=None, started=None, finished=None, job=job.to_json())


def default_batch_id(chain_path: str, inputs_path: str) -> str:
    """The same chain over the same inputs file is the same batch, so running the command again continues it."""
    import hashlib

    digest = hashlib.sha256()
    for path in (chain_path, inputs_path):
        digest.update(os.path.abspath(path).encode("utf-8", "surrogateescape") + b"\0")
        try:
            digest.update(Path(path).read_bytes())
        except OSError:
            pass
        digest.update(b"\0")
    stem = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(chain_path).stem)[:40] or "batch"
    return f"{stem}-{digest.hexdigest()[:10]}"
