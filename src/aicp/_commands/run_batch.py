"""``aicp run-batch``: one chain over every row of an inputs file, locally or on a Celery fleet.

Everything is checked before anything is queued: the chain, every row's chain
(with the row's overrides), every row's input, the credentials. Then the batch
record is opened (or continued: the same command again resumes), and the engine
runs the jobs. With ``--stream`` stderr carries the merged stream (the batch's
events and every job's), stdout the one ``batch_complete`` line.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from aicp import _interrupt
from aicp._batch.job import Job
from aicp._batch.record import BatchRecord, default_batch_id
from aicp._batch.rows import read_inputs, rows_error
from aicp._batch.runner import BatchRun
from aicp._chain.inputs import resolve_input
from aicp._chain.load import load_chain
from aicp._chain.model import Chain
from aicp._commands.output import print_envelope, write_stdout, write_to
from aicp._errors import AicpError, ExitCode, UsageError, printable
from aicp._events import EventLog
from aicp._redact import Redactor
from aicp._run.record import valid_run_id
from aicp.providers.credentials import check_credentials


def prepare_jobs(chain_path: str, inputs: str, column: str | None) -> tuple[Chain, list[Job]]:
    """The chain and every row's job with its estimate, or one error listing every bad row."""
    chain = load_chain(chain_path)
    jobs, errors = read_inputs(inputs, column)
    chains: dict[str, Chain] = {"{}": chain}
    ready: list[Job] = []
    for job in jobs:
        try:
            key = json.dumps(job.overrides, sort_keys=True, default=str)
            if key not in chains:
                chains[key] = load_chain(chain_path, overrides=job.overrides)
            row_chain = chains[key]
            resolve_input(row_chain, input_text=job.input_text, input_file=job.input_file)
        except AicpError as exc:
            errors.append((job.row, f"{inputs}:{job.row}: {exc.message}"))
            continue
        ready.append(Job(job_id=job.job_id, row=job.row, input_text=job.input_text, input_file=job.input_file,
                         overrides=job.overrides, estimated_cost=round(row_chain.estimated_cost, 6)))
    if errors:
        raise rows_error(errors)
    for row_chain in chains.values():
        check_credentials(row_chain)
    return chain, ready


def _confirm(total: float, jobs: int, skip: bool) -> None:
    if skip or total <= 0 or os.environ.get("CI") or sys.stdin is None or not sys.stdin.isatty():
        return
    sys.stderr.write(f"{jobs} jobs are estimated to cost ${total:.3f} in all. Run them? [y/N] ")
    sys.stderr.flush()
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        from aicp._errors import NotConfirmed

        raise NotConfirmed("not confirmed; nothing was run (use --yes to skip this question)")


def _progress(event: dict[str, Any]) -> None:
    """The plain view without --stream: one line per job that ends or is retried."""
    name = event.get("event")
    if name == "job_complete":
        cost = f" ${event['cost']:.3f}" if event.get("cost") else ""
        error = f": {event['error']}" if event.get("error") else ""
        write_to("stderr", f"{event.get('status', ''):>11}  job {event.get('job_id')}{cost}{error}\n")
    elif name == "job_retry":
        write_to("stderr", f"{'retrying':>11}  job {event.get('job_id')} (attempt {event.get('attempt')} "
                           f"ended {event.get('exit_code')}; again in {event.get('delay_seconds', 0):.0f}s)\n")


def run_batch_command(args: Any) -> int:
    try:
        return _run_batch(args)
    except AicpError as exc:
        report_failed_batch(exc, args)
        raise


def report_failed_batch(error: AicpError, args: Any | None, traceback: str | None = None) -> None:
    """With --stream (or a log file), a batch that never started still ends with its one result line;
    with --stream the failure is first an ``error`` event (stderr carries JSON lines only).
    ``args`` None: argparse refused the command line (with --stream): no batch is named."""
    _interrupt.hold()  # this is the outcome: a signal now must not add a second one
    error.reported = True
    if args is None:
        import argparse
        import uuid

        args = argparse.Namespace(stream=True, log_file=None, batch_id=f"unstarted-{uuid.uuid4().hex[:8]}")
    if not (args.stream or args.log_file):
        return
    batch_id = args.batch_id if args.batch_id and valid_run_id(args.batch_id) \
        else default_batch_id(args.config, args.inputs)
    if args.stream:
        failed = EventLog(stream=True, run_id=batch_id, context={"batch_id": batch_id})
        failed.emit("error", message=printable(error.message), exit_code=int(error.exit_code),
                    **({"traceback": traceback} if traceback else {}))
        failed.close()
    events = EventLog(stream=args.stream, log_file=args.log_file, run_id=batch_id, context={"batch_id": batch_id})
    events.result(event="batch_complete", success=False, exit_code=int(error.exit_code), total_jobs=0,
                  succeeded=0, failed=0, total_cost=0.0, total_time=0.0, failures=[], error=printable(error.message))
    events.close()


def _check_arguments(args: Any) -> None:
    """What argparse cannot check about run-batch's arguments."""
    if args.config == "-":
        raise UsageError("run-batch needs the chain as a file (its jobs read it), not '-'")
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be 1 or more, got {args.jobs}")
    if args.max_cost is not None and not (args.max_cost >= 0 and args.max_cost != float("inf")):
        raise UsageError(f"--max-cost must be a finite number >= 0, got {args.max_cost}")
    if args.batch_id is not None and not valid_run_id(args.batch_id):
        raise UsageError(f"--batch-id {args.batch_id!r}: use letters, digits, '.', '_' and '-' (at most 128)")


def _run_batch(args: Any) -> int:
    _check_arguments(args)
    chain_path = str(Path(args.config).resolve())
    chain, jobs = prepare_jobs(args.config, args.inputs, args.column)
    output_dir = Path(args.output_dir).resolve() if args.output_dir else chain.output_dir.resolve()
    batch_id = args.batch_id or default_batch_id(args.config, args.inputs)
    header = {"chain_name": chain.name, "chain": chain_path, "inputs": str(Path(args.inputs).resolve()),
              "engine": args.engine, "max_cost": args.max_cost}
    _confirm(sum(j.estimated_cost for j in jobs), len(jobs), args.no_confirm)
    record, resumed = BatchRecord.open(output_dir, batch_id, header, jobs, args.resume,
                                       Redactor.from_environment(extra=chain.secrets))
    quiet = args.stream or args.json or args.quiet
    events = EventLog(stream=args.stream, log_file=[str(record.events_path), *([args.log_file] if args.log_file else [])],
                      run_id=batch_id, context={"batch_id": batch_id}, observer=None if quiet else _progress)
    cancel = threading.Event()
    batch = BatchRun(record, chain_path, events, args.max_cost, cancel)
    pending = record.pending()
    try:
        events.emit("batch_start", name=chain.name, config=chain_path, inputs=header["inputs"], engine=args.engine,
                    total_jobs=len(record.jobs), pending_jobs=len(pending), resumed=resumed,
                    concurrency=args.jobs or os.cpu_count() or 1, max_cost=args.max_cost,
                    estimated_cost=round(sum(j.estimated_cost for j in pending), 6))
        for job in pending:
            batch.queued(job)
        if args.engine == "celery":
            from aicp._batch.fleet import run_on_fleet

            run_on_fleet(batch, pending, broker=args.broker, queue=args.queue)
        else:
            _run_local(batch, pending, args.jobs or os.cpu_count() or 1)
        if cancel.is_set():
            batch.interrupt_unfinished()
        result = batch.result()
        record.finish("completed" if result["success"] else ("interrupted" if cancel.is_set() else "failed"),
                      result)
        events.result(event="batch_complete", **result)
    finally:
        events.close()
    if not args.stream:
        if args.json:
            print_envelope("run-batch", result)
        else:
            write_stdout(_summary(result))
    return int(result["exit_code"])


def _run_local(batch: BatchRun, jobs: list[Job], concurrency: int) -> None:
    from aicp._batch.local import LocalEngine

    engine = LocalEngine(batch, concurrency)

    def on_signal(signum: int, _frame: Any) -> None:
        batch.cancel_code = ExitCode.TERMINATED if signum == signal.SIGTERM else ExitCode.INTERRUPTED
        engine.stop(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        engine.run(jobs)
    finally:
        _interrupt.hold()  # the jobs have ended: the batch's result stands
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _summary(result: dict[str, Any]) -> str:
    state = "succeeded" if result["success"] else "failed"
    lines = [f"batch {result['batch_id']} {state}: {result['succeeded']}/{result['total_jobs']} jobs succeeded, "
             f"${result['total_cost']:.3f}, {result['total_time']:.1f}s"]
    for failure in result["failures"]:
        lines.append(f"  {failure['status']}: job {failure['job_id']} (row {failure['row']}): {failure['error']}")
    lines.append(f"  record: {result['record']}")
    return "\n".join(lines) + "\n"
