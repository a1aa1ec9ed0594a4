"""``aicp worker`` and ``aicp batch status|events|cancel``: the fleet's commands (Celery on Redis).

Only these commands (and ``run-batch --engine celery``) import Celery and the
Redis client, which come with the optional extra ``aicp[celery]``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aicp._commands.output import print_envelope, write_stdout
from aicp._errors import MissingInputError, UsageError


def _fleet() -> Any:
    try:
        from aicp._batch import fleet
    except ImportError as exc:
        raise UsageError(f"the fleet needs the celery extra: pip install 'aicp[celery]' ({exc})") from None
    return fleet


def worker_command(args: Any) -> int:
    if args.concurrency is not None and args.concurrency < 1:
        raise UsageError(f"--concurrency must be 1 or more, got {args.concurrency}")
    if not args.visibility_timeout > 0:
        raise UsageError(f"--visibility-timeout must be a positive number of seconds, got {args.visibility_timeout}")
    fleet = _fleet()
    import os

    queues = [q for part in args.queues or [fleet.DEFAULT_QUEUE] for q in part.split(",") if q]
    return int(fleet.run_worker(args.broker, queues, args.concurrency or os.cpu_count() or 1,
                                args.visibility_timeout))


def batch_command(args: Any) -> int:
    fleet = _fleet()
    client = fleet.connect(args.broker)
    keys = fleet.Keys(args.batch_id)
    if not client.exists(keys.batch):
        raise MissingInputError(f"no batch '{args.batch_id}' on {args.broker}")
    if args.batch_command == "status":
        return _status(client, keys, args)
    if args.batch_command == "cancel":
        changed = fleet.cancel_batch(client, args.batch_id)
        data = {"batch_id": args.batch_id, "cancelled": True, "jobs_stopped": changed}
        if args.json:
            print_envelope("batch cancel", data)
        else:
            write_stdout(f"batch {args.batch_id}: cancelled ({changed} queued or running jobs stopped; "
                         "resume it with run-batch --resume)\n")
        return 0
    return _events(client, keys, fleet, args.follow)


def _status(client: Any, keys: Any, args: Any) -> int:
    statuses = client.hgetall(keys.status)
    entries = {job_id: json.loads(raw) for job_id, raw in client.hgetall(keys.jobs).items()}
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    jobs = {job_id: {"status": statuses.get(job_id), "attempts": e.get("attempts", 0),
                     "deliveries": e.get("deliveries", 0), "cost": e.get("cost", 0.0),
                     "exit_code": e.get("exit_code"), "error": e.get("error"), "worker": e.get("worker")}
            for job_id, e in entries.items()}
    data = {"batch_id": args.batch_id, "cancelled": client.hget(keys.batch, "cancelled") == "1",
            "counts": counts, "total_jobs": len(statuses), "jobs": jobs,
            "total_cost": round(sum(float(j["cost"] or 0) for j in jobs.values()), 6)}
    if args.json:
        print_envelope("batch status", data)
        return 0
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    lines = [f"batch {args.batch_id}: {len(statuses)} jobs ({summary}), ${data['total_cost']:.3f}"
             + (" [cancelled]" if data["cancelled"] else "")]
    for job_id, job in sorted(jobs.items()):
        error = f"  {job['error']}" if job["error"] else ""
        lines.append(f"  {job['status'] or '?':>11}  {job_id}  attempts {job['attempts']}{error}")
    write_stdout("\n".join(lines) + "\n")
    return 0


def _events(client: Any, keys: Any, fleet: Any, follow: bool) -> int:
    """Print the batch's events as JSON lines (the Redis stream's; bounded); --follow until every job ended."""
    last = "0-0"
    while True:
        answer = client.xread({keys.events: last}, block=500 if follow else None, count=1000)
        for _stream, entries in answer or ():
            for entry_id, fields in entries:
                last = entry_id
                write_stdout(fields.get("line", ""))
        if answer:
            continue
        if not follow:
            return 0
        statuses = client.hgetall(keys.status)
        cancelled = client.hget(keys.batch, "cancelled") == "1"
        if all(s in fleet.FINAL or (cancelled and s == "interrupted") for s in statuses.values()):
            time.sleep(0.2)  # the last lines may still be on their way
            if not client.xread({keys.events: last}, count=1):
                return 0
