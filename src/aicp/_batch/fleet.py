"""The fleet: jobs through Celery on Redis, run by ``aicp worker`` processes on any machine.

Celery only delivers messages (as Airflow's CeleryExecutor uses it); a job is
still one ``aicp run-chain`` subprocess whose run record, on storage that every
worker shares, is the truth about its steps. What Redis holds besides the queue:

==============================  ==================================================
key                             what
==============================  ==================================================
``aicp:batches``                the ids of the batches the sweepers look after
``aicp:batch:<id>``             the batch: its chain, folder, queue, cancel flag
``aicp:status:<id>``            job id -> status (queued, running, succeeded, ...)
``aicp:jobs:<id>``              job id -> the job's entry (JSON: attempts, cost...)
``aicp:lease:<id>:<job>``       who runs the job now: ``SET NX`` with an expiry,
                                renewed while it runs
``aicp:events:<id>``            a Redis Stream of every event line (bounded)
==============================  ==================================================

Celery is configured against its measured pitfalls: ``acks_late`` with
``reject_on_worker_lost`` (a killed pool child's job is redelivered, not marked
failed), ``prefetch_multiplier=1`` (short jobs do not wait behind a long one),
results ignored (nothing fills Redis), a visibility timeout of at least twice
the longest job and a short restore sweep. Deliveries are at least once; a
duplicate is harmless: a delivery that finds a live lease or a finished job
drops itself. A job whose worker died entirely (its lease expired while its
status says running) is requeued by the sweeper that runs in every worker;
a fourth delivery is refused and the job is ``lost``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import redis

from aicp import _interrupt
from aicp._batch.job import FINAL, MAX_DELIVERIES, Job, JobResult, JobRun, relay_job, retry_delay
from aicp._batch.runner import BatchRun
from aicp._errors import ExitCode, ProviderError
from aicp._events import EventLog

TASK = "aicp.run_job"
DEFAULT_QUEUE = "aicp"
STREAM_MAXLEN = 100_000  # events kept per batch in Redis (the batch's events.jsonl keeps all)
VISIBILITY_TIMEOUT = 7200.0  # seconds; at least twice the longest job (--visibility-timeout)


# redis.Redis(decode_responses=True): str in, str out; its type hints cannot say so (bytes | str everywhere)
Client = Any


def lease_ttl() -> float:
    """Seconds a lease lives without renewal; a dead worker's job is requeued this long after it died."""
    return max(1.0, float(os.environ.get("AICP_LEASE_TTL", "30")))


# Lua, so that check-and-change is one step on the server:
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_REQUEUE = ("if redis.call('hget', KEYS[1], ARGV[1]) == 'running' and redis.call('exists', KEYS[2]) == 0 "
            "then redis.call('hset', KEYS[1], ARGV[1], 'queued') return 1 end return 0")


class Keys:
    def __init__(self, batch_id: str) -> None:
        self.batch = f"aicp:batch:{batch_id}"
        self.status = f"aicp:status:{batch_id}"
        self.jobs = f"aicp:jobs:{batch_id}"
        self.events = f"aicp:events:{batch_id}"
        self._lease = f"aicp:lease:{batch_id}:"

    def lease(self, job_id: str) -> str:
        return self._lease + job_id


BATCHES = "aicp:batches"


def connect(url: str | None) -> Client:
    """A Redis client for ``url``, checked; an unreachable broker is exit 4 with the reason."""
    if not url:
        from aicp._errors import UsageError

        raise UsageError("the celery engine needs --broker redis://HOST:PORT/DB (or AICP_BROKER_URL)")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        from aicp._errors import UsageError

        raise UsageError(f"--broker {url!r}: only Redis URLs (redis://HOST:PORT/DB) are supported")
    try:
        client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=30, socket_connect_timeout=5)
        client.ping()
    except (redis.RedisError, OSError, ValueError) as exc:
        raise ProviderError(f"the broker {url} cannot be reached: {exc}") from None
    return client


def celery_app(url: str, visibility_timeout: float = VISIBILITY_TIMEOUT) -> Any:
    """The Celery app of workers and producers alike (only these two commands import Celery)."""
    from celery import Celery  # type: ignore[import-untyped]  # Celery ships no type hints

    app = Celery("aicp", broker=url, set_as_current=False)
    app.conf.update(
        task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
        task_ignore_result=True, result_backend=None, task_default_queue=DEFAULT_QUEUE,
        task_serializer="json", accept_content=["json"], broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False, worker_send_task_events=False,
        broker_transport_options={"visibility_timeout": visibility_timeout,
                                  "unacked_restore_interval": 2, "unacked_restore_throttle": 1},
    )
    return app


class StreamSink:
    """An EventLog writer: every line into the batch's Redis Stream (a failing Redis loses the line, not the job)."""

    def __init__(self, client: Client, keys: Keys) -> None:
        self.client = client
        self.key = keys.events

    def write(self, line: bytes) -> None:
        try:
            self.client.xadd(self.key, {"line": line.decode("utf-8", "replace")}, maxlen=STREAM_MAXLEN,
                             approximate=True)
        except redis.RedisError:
            pass

    def close(self) -> None:
        pass


# ------------------------------------------------------------------ producer side (run-batch)


def register(client: Client, app: Any, batch: BatchRun, jobs: list[Job], queue: str) -> None:
    """Put the batch in Redis and queue every job that has not succeeded there already."""
    record = batch.record
    keys = Keys(record.batch_id)
    client.hset(keys.batch, mapping={"chain": batch.chain_path, "root": str(record.root), "queue": queue,
                                     "cancelled": "0", "created": str(time.time()),
                                     "max_cost": "" if batch.max_cost is None else str(batch.max_cost)})
    client.sadd(BATCHES, record.batch_id)
    for job in jobs:
        if client.hget(keys.status, job.job_id) in ("succeeded", "running"):
            continue  # done, or still running on the fleet (a follower restarted): its delivery goes on
        entry = record.jobs[job.job_id]
        client.hset(keys.jobs, job.job_id, json.dumps({"attempts": entry.get("attempts", 0), "deliveries": 0,
                                                       "cost": entry.get("cost", 0.0), "job": job.to_json()}))
        client.hset(keys.status, job.job_id, "queued")
        enqueue(app, record.batch_id, job, queue)


def enqueue(app: Any, batch_id: str, job: Job, queue: str, delay: float = 0.0) -> None:
    app.send_task(TASK, kwargs={"batch_id": batch_id, "job": job.to_json()}, queue=queue,
                  countdown=delay or None)


def run_on_fleet(batch: BatchRun, jobs: list[Job], broker: str | None, queue: str = DEFAULT_QUEUE) -> None:
    """Queue ``jobs`` and follow the batch until every job has ended (or a signal cancels it)."""
    client = connect(broker)
    app = celery_app(str(broker))
    keys = Keys(batch.record.batch_id)
    last = client.xinfo_stream(keys.events)["last-generated-id"] if client.exists(keys.events) else "0-0"
    register(client, app, batch, jobs, queue)

    def on_signal(signum: int, _frame: Any) -> None:
        batch.cancel_code = ExitCode.TERMINATED if signum == signal.SIGTERM else ExitCode.INTERRUPTED
        batch.cancel.set()
        cancel_batch(client, batch.record.batch_id)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        _follow(client, batch, keys, last)
    finally:
        _interrupt.hold()  # the jobs have ended: the batch's result stands
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _follow(client: Client, batch: BatchRun, keys: Keys, last: str) -> None:
    wanted = {job_id for job_id, e in batch.record.jobs.items() if e.get("status") not in FINAL}
    while True:
        try:
            answer = client.xread({keys.events: last}, block=500, count=1000)
        except redis.RedisError as exc:
            raise ProviderError(f"lost the broker while following batch {batch.record.batch_id}: {exc}") from None
        for _stream, entries in answer or ():
            for entry_id, fields in entries:
                last = entry_id
                line = fields.get("line", "")
                batch.events.relay(line.encode("utf-8"))
                _note(batch, line)
        if not answer:
            if client.hget(keys.batch, "cancelled") == "1":
                batch.cancel.set()  # by us, or by `aicp batch cancel` from anywhere
            statuses = client.hgetall(keys.status)
            ended = {j for j in wanted if statuses.get(j) in FINAL or
                     (batch.cancel.is_set() and statuses.get(j) in ("interrupted", "queued", None))}
            if ended == wanted:
                for job_id in wanted:  # the record as the fleet left it
                    if statuses.get(job_id) in FINAL or statuses.get(job_id) == "interrupted":
                        batch.record.update(job_id, status=statuses[job_id])
                return


def _note(batch: BatchRun, line: str) -> None:
    """Keep the batch record in step with the fleet's job events."""
    if '"event":"job_' not in line:
        return
    event = json.loads(line)
    job_id = event.get("job_id")
    if job_id not in batch.record.jobs:
        return
    name = event["event"]
    if name == "job_start":
        batch.record.update(job_id, status="running", attempts=event.get("attempt", 1))
    elif name == "job_retry":
        batch.record.update(job_id, status="queued", exit_code=event.get("exit_code"), error=event.get("error"))
    elif name == "job_complete":
        batch.record.update(job_id, status=event["status"], exit_code=event.get("exit_code"),
                            cost=event.get("cost", 0.0), error=event.get("error"), finished=event.get("timestamp"))


def cancel_batch(client: Client, batch_id: str) -> int:
    """Stop a batch: queued jobs will not start, running ones are stopped (resumably). Returns how many."""
    keys = Keys(batch_id)
    client.hset(keys.batch, "cancelled", "1")
    changed = 0
    for job_id, status in client.hgetall(keys.status).items():
        if status == "queued":
            client.hset(keys.status, job_id, "interrupted")
            changed += 1
        elif status == "running":
            changed += 1
    return changed


# ------------------------------------------------------------------ worker side (aicp worker)


class FleetJob:
    """One delivery of a job inside a worker's pool process."""

    def __init__(self, client: Client, app: Any, batch_id: str, job: Job) -> None:
        self.client, self.app, self.batch_id, self.job = client, app, batch_id, job
        self.keys = Keys(batch_id)
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        meta = client.hgetall(self.keys.batch)
        self.meta = meta
        self.events = EventLog(run_id=batch_id, context={"batch_id": batch_id}, sinks=[StreamSink(client, self.keys)])

    def cancelled(self) -> bool:
        return self.client.hget(self.keys.batch, "cancelled") == "1"

    def run(self) -> None:
        job_id = self.job.job_id
        try:
            status = self.client.hget(self.keys.status, job_id)
            if not self.meta or status in FINAL or status == "interrupted" and self.cancelled():
                return  # a duplicate of a finished job, or a cancelled batch
            ttl_ms = int(lease_ttl() * 1000)
            if not self.client.set(self.keys.lease(job_id), self.token, nx=True, px=ttl_ms):
                holder = self.client.get(self.keys.lease(job_id))
                sys.stderr.write(f"aicp worker: job {job_id} of batch {self.batch_id} is running elsewhere "
                                 f"({holder}); this duplicate delivery is dropped\n")
                return
            try:
                self._run_leased(ttl_ms)
            finally:
                self.client.eval(_RELEASE, 1, self.keys.lease(job_id), self.token)
        finally:
            self.events.close()

    def _entry(self) -> dict[str, Any]:
        raw = self.client.hget(self.keys.jobs, self.job.job_id)
        return json.loads(raw) if raw else {"attempts": 0, "deliveries": 0, "cost": 0.0}

    def _save(self, entry: dict[str, Any], status: str) -> None:
        pipe = self.client.pipeline()
        pipe.hset(self.keys.jobs, self.job.job_id, json.dumps(entry))
        pipe.hset(self.keys.status, self.job.job_id, status)
        pipe.execute()

    def _run_leased(self, ttl_ms: int) -> None:
        job = self.job
        entry = self._entry()
        entry["deliveries"] = int(entry.get("deliveries", 0)) + 1
        if self.cancelled():
            self._save(entry, "interrupted")
            return
        if entry["deliveries"] > MAX_DELIVERIES:
            self._final(entry, "lost", None, "delivered more than 3 times without ending (its workers died)",
                        reason="lost")
            return
        if not self._within_budget(entry):
            return
        entry["attempts"] = int(entry.get("attempts", 0)) + 1
        entry["worker"] = self.token
        self._save(entry, "running")
        run = JobRun(chain_path=self.meta["chain"], job=job, job_dir=os.path.join(self.meta["root"], "jobs", job.job_id),
                     batch_id=self.batch_id, attempt=entry["attempts"])
        self.events.emit("job_start", job_id=job.job_id, attempt=run.attempt, run_id=job.job_id, worker=self.token)
        result = self._supervise(run, ttl_ms)
        entry["cost"] = round(float(entry.get("cost", 0.0)) + result.cost, 6)
        verdict = result.verdict(entry["deliveries"], self.cancelled())
        if verdict in ("retry", "requeue"):
            delay = retry_delay(run.attempt) if verdict == "retry" else 0.0
            entry.update(exit_code=result.exit_code, error=result.error)
            self._save(entry, "queued")
            self.events.emit("job_retry", job_id=job.job_id, attempt=run.attempt, exit_code=result.exit_code,
                             error=result.error, delay_seconds=delay,
                             reason="provider" if verdict == "retry" else "requeued")
            enqueue(self.app, self.batch_id, job, self.meta.get("queue", DEFAULT_QUEUE), delay)
            return
        if verdict == "interrupted":
            entry.update(exit_code=result.exit_code, error=result.error)
            self._final(entry, "interrupted", result.exit_code, result.error, attempt=run.attempt, reason="cancelled")
            return
        self._final(entry, verdict, result.exit_code, result.error, attempt=run.attempt)

    def _within_budget(self, entry: dict[str, Any]) -> bool:
        """The batch's --max-cost, checked against real spend and the estimates of running jobs, under a lock."""
        if not self.meta.get("max_cost"):
            return True
        max_cost = float(self.meta["max_cost"])
        lock = f"{self.keys.batch}:budget"
        while not self.client.set(lock, self.token, nx=True, px=5000):
            time.sleep(0.05)
        try:
            committed = 0.0
            statuses = self.client.hgetall(self.keys.status)
            for job_id, raw in self.client.hgetall(self.keys.jobs).items():
                other = json.loads(raw)
                committed += float(other.get("cost", 0.0))
                if statuses.get(job_id) == "running" and job_id != self.job.job_id:
                    committed += float(other.get("job", {}).get("estimated_cost", 0.0))
            if committed + self.job.estimated_cost <= max_cost + 1e-9:
                entry["attempts"] = int(entry.get("attempts", 0))
                self._save(entry, "running")  # counted as committed from now on
                return True
            self._final(entry, "skipped", None,
                        f"budget: starting it (estimated ${self.job.estimated_cost:.4f}) would take the batch "
                        f"past --max-cost ${max_cost:.4f} (${committed:.4f} spent or committed)", reason="budget")
            return False
        finally:
            self.client.eval(_RELEASE, 1, lock, self.token)

    def _final(self, entry: dict[str, Any], status: str, exit_code: int | None, error: str | None,
               attempt: int | None = None, reason: str | None = None) -> None:
        entry.update(status=status, exit_code=exit_code, error=error, finished=time.time())
        self._save(entry, status)
        fields: dict[str, Any] = {"job_id": self.job.job_id, "success": status == "succeeded", "status": status,
                                  "exit_code": exit_code, "cost": entry.get("cost", 0.0), "error": error,
                                  "run_id": self.job.job_id}
        if attempt is not None:
            fields["attempt"] = attempt
        if reason is not None:
            fields["reason"] = reason
        self.events.emit("job_complete", **fields)

    def _supervise(self, run: JobRun, ttl_ms: int) -> JobResult:
        """Run the job's subprocess; renew the lease while it runs; stop it if the batch is cancelled."""
        proc = subprocess.Popen(run.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=run.env())
        done = threading.Event()

        def keep_lease() -> None:
            stopped = False
            while not done.wait(ttl_ms / 3000):
                try:
                    self.client.eval(_RENEW, 1, self.keys.lease(run.job.job_id), self.token, ttl_ms)
                    if not stopped and self.cancelled():
                        proc.send_signal(signal.SIGTERM)
                        stopped = True
                except redis.RedisError:
                    pass

        renewer = threading.Thread(target=keep_lease, daemon=True)
        renewer.start()
        result = relay_job(proc, StreamSink(self.client, self.keys).write)
        done.set()
        renewer.join()
        return result


def sweep(client: Client, app: Any) -> int:
    """Requeue every job whose status says running but whose lease expired (its worker died). Returns how many."""
    requeued = 0
    for batch_id in client.smembers(BATCHES):
        keys = Keys(batch_id)
        meta = client.hgetall(keys.batch)
        if not meta:
            client.srem(BATCHES, batch_id)
            continue
        statuses = client.hgetall(keys.status)
        if statuses and all(s in FINAL or s == "interrupted" for s in statuses.values()):
            client.srem(BATCHES, batch_id)
            continue
        for job_id, status in statuses.items():
            if status != "running":
                continue
            if client.eval(_REQUEUE, 2, keys.status, keys.lease(job_id), job_id) != 1:
                continue
            raw = client.hget(keys.jobs, job_id)
            entry = json.loads(raw) if raw else {}
            job = Job.from_json(entry["job"]) if "job" in entry else None
            if job is None:
                continue
            events = EventLog(run_id=batch_id, context={"batch_id": batch_id}, sinks=[StreamSink(client, keys)])
            events.emit("job_retry", job_id=job_id, attempt=int(entry.get("attempts", 1)) or 1, exit_code=None,
                        error="its worker stopped renewing the lease (the worker died)", delay_seconds=0.0,
                        reason="requeued")
            events.close()
            enqueue(app, batch_id, job, meta.get("queue", DEFAULT_QUEUE))
            requeued += 1
    return requeued


def run_worker(broker: str, queues: list[str], concurrency: int, visibility_timeout: float) -> int:
    """``aicp worker``: a Celery worker whose task runs one job; a sweeper thread requeues dead workers' jobs."""
    client = connect(broker)
    app = celery_app(broker, visibility_timeout)

    @app.task(name=TASK, bind=True)  # type: ignore[untyped-decorator]
    def run_job(_task: Any, batch_id: str, job: dict[str, Any]) -> None:
        FleetJob(connect(broker), app, batch_id, Job.from_json(job)).run()

    from celery.signals import worker_ready  # type: ignore[import-untyped]

    def start_sweeper(**_kwargs: Any) -> None:
        def loop() -> None:
            while True:
                try:
                    sweep(client, app)
                except redis.RedisError:
                    pass
                time.sleep(lease_ttl() / 2)

        threading.Thread(target=loop, name="aicp-sweeper", daemon=True).start()

    worker_ready.connect(start_sweeper, weak=False)
    argv = ["worker", "--loglevel=WARNING", f"--concurrency={concurrency}", "-Q", ",".join(queues),
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-n", f"aicp-{os.getpid()}@{socket.gethostname()}"]
    app.worker_main(argv=argv)
    return 0
