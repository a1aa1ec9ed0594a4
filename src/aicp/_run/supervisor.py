"""The supervisor: runs a validated chain, one worker process per step attempt.

It owns the order of things: which step runs next, with which input, how
often it is retried, how a parallel group's members are scheduled and merged,
and when the run stops. It turns every transition into an event. How a single
worker is spawned, watched and stopped lives in :mod:`aicp._process.monitor`.
"""

from __future__ import annotations

import os
import random
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, cast

from aicp._chain.model import Chain, Step
from aicp._errors import ExitCode
from aicp._events import EventLog
from aicp._process.launch import Launcher
from aicp._process.cancel import Cancel
from aicp._process.monitor import Limits, Outcome, WorkerEvents, run_worker
from aicp._run.record import Journal, save_intermediate
from aicp._run.results import ChainResult, OutputEntry, StepResult, output_entry
from aicp._chain.steptypes import PREVIOUS, kind_of, made_available, takes_from

if TYPE_CHECKING:
    from aicp._worker.protocol import FailureReason, WorkerSpec


class _RunStepFailed(Exception):
    """The supervisor's side of a failed step: it stops the run, which exits with ``run_exit_code``.

    (The step's own side is :class:`aicp.StepFailed`, raised in the worker; a
    worker stopped by SIGTERM sees :class:`aicp._worker.main.WorkerCancelled`.)
    """

    def __init__(self, message: str, run_exit_code: int = ExitCode.STEP_FAILED,
                 reason: FailureReason = "cancelled") -> None:
        super().__init__(message)
        self.run_exit_code = run_exit_code
        self.reason = reason


class Supervisor:
    """Runs one chain. ``cancel`` is shared with whoever handles signals."""

    def __init__(self, chain: Chain, events: EventLog, cancel: Cancel | None = None,
                 env: dict[str, str] | None = None, reap_strays: bool = False,
                 journal: Journal | None = None) -> None:
        self.chain = chain
        self.journal = journal or Journal(None, resume=False)
        self.events = events
        self.cancel = cancel or Cancel()
        self.env = env
        self.reap_strays = reap_strays
        self.launcher = Launcher()
        self.named: dict[str, Any] = {}  # the output of every named step so far, for input_from
        self.spent = 0.0  # what this run paid so far (steps reused from an earlier run cost nothing)

    # ------------------------------------------------------------------ the run

    def run(self, chain_input: Any) -> ChainResult:
        try:
            result = self._run(chain_input)
        finally:
            self.launcher.close()
        if self.cancel.is_set() and result.exit_code != self.cancel.exit_code:
            # stopped after the last step ended (while tearing down): the run still ends as the signal says
            result.success = False
            result.error = result.error or self.cancel.message
            result.exit_code = self.cancel.exit_code
        return result

    def _run(self, chain_input: Any) -> ChainResult:
        chain = self.chain
        started = self.events.started
        self.events.emit("pipeline_start", name=chain.name, total_steps=len(chain.steps),
                         config=chain.source, description=chain.description or None,
                         estimated_cost=round(chain.estimated_cost, 6),
                         containment=self.launcher.containment)
        for warning in chain.warnings:
            self.events.emit("warning", message=warning)
        for step in chain.disabled_steps:
            self.events.emit("step_skipped", type=step.type, name=step.name, location=step.location,
                             reason="disabled")
        chain.output_dir.mkdir(parents=True, exist_ok=True)
        latest: dict[str, Any] = {"text": chain_input if kind_of(chain_input) == "text" else chain.prompt}
        latest[kind_of(chain_input)] = chain_input
        current = chain_input
        outputs: dict[str, OutputEntry] = {}
        results: list[StepResult] = []
        total_cost = 0.0
        error: str | None = None
        run_exit_code: int = ExitCode.OK
        completed = 0
        for index, step in enumerate(chain.steps):
            step_input = self._input_for(step, current, latest)
            try:
                if self.cancel.is_set():
                    raise _RunStepFailed(self.cancel.message, self.cancel.exit_code)
                result = self._run_step(index, step, step_input, latest)
            except _RunStepFailed as exc:
                error, run_exit_code = f"Step {index + 1} failed: {exc}", exc.run_exit_code
                self.journal.failed(str(index), step, step_input, str(exc))
                break
            finally:
                self.launcher.sweep(own_children=self.reap_strays)
            completed += 1
            total_cost += result["cost"]
            results.append(result)
            current = result["output"]
            self.named.update(result.get("named") or {})
            if step.name:
                self.named[step.name] = current
            kind = kind_of(current)
            for available in made_available(kind):
                latest[available] = current if available == kind else current[0]
            outputs[f"step_{index + 1}_{step.type}"] = output_entry(step, result)
            if chain.save_intermediates:
                save_intermediate(chain, self.events.run_id, index + 1, outputs, total_cost)
        if error is None and outputs:  # the last step's entry, for scripts: jq -r '.outputs.final.path'
            outputs["final"] = outputs[next(reversed(outputs))]
        chain_result = ChainResult(
            success=error is None, steps_completed=completed, total_steps=len(chain.steps),
            total_cost=total_cost, total_time=_elapsed(started), outputs=outputs, error=error,
            exit_code=run_exit_code, run_id=self.events.run_id, step_results=results,
        )
        status = "succeeded" if error is None else ("cancelled" if self.cancel.is_set() else "failed")
        self.journal.finish(status, chain_result.event_fields())
        return chain_result

    def _run_step(self, index: int, step: Step, step_input: Any, latest: dict[str, Any]) -> StepResult:
        """Run (or, resuming, reuse) one top-level step and remember its result."""
        key = _key(index, None)
        reused = self.journal.reuse(key, step, step_input)
        if reused is not None:
            self._skipped_as_reused({"step": index}, step, reused)
            return reused
        self._within_budget(index, step)
        if step.is_group:
            result = self._run_group(index, step, step_input, latest)
        else:
            self.journal.stop_reusing()
            result = self._run_attempts(index, step, None, step_input, latest, self.cancel)
        self.journal.stop_reusing()
        self.journal.done(key, step, step_input, result)
        self._spend(result["cost"])
        return result

    def _within_budget(self, index: int, step: Step) -> None:
        """Refuse to start a step whose estimate would take the run past ``max_cost`` (what was
        really paid so far, plus the estimate): exit 5, reason ``budget``."""
        budget = self.chain.max_cost
        estimate = step.estimated_cost
        if budget is None or self.spent + estimate <= budget + 1e-9:
            return
        if self.spent > budget:
            message = f"not started: the run has spent ${self.spent:.3f}, past max_cost ${budget:.3f}"
        else:
            message = (f"not started: its estimated cost ${estimate:.3f} would take the run to "
                       f"${self.spent + estimate:.3f}, past max_cost ${budget:.3f} (spent so far ${self.spent:.3f})")
        self.events.emit("step_error", step=index, type=step.type, model=step.model, name=step.name,
                         error=message, reason="budget", cost=0.0)
        raise _RunStepFailed(message, ExitCode.STEP_FAILED, "budget")

    def _spend(self, cost: float) -> None:
        before, self.spent = self.spent, self.spent + cost
        budget = self.chain.max_cost
        if budget is not None and before <= budget < self.spent:
            self.events.emit("warning", message=f"the run has spent ${self.spent:.3f}, past max_cost "
                             f"${budget:.3f} (the last step cost more than its estimate); no further "
                             "step will start")

    def _skipped_as_reused(self, base: dict[str, Any], step: Step, reused: StepResult) -> None:
        record = self.journal.record
        self.events.emit("step_skipped", **base, type=step.type, name=step.name, reason="reused",
                         from_run=record.run_id if record else None, output=reused["output"],
                         outputs=reused["outputs"])

    def _input_for(self, step: Step, current: Any, latest: dict[str, Any]) -> Any:
        """The output of the step named by ``input_from``; else the previous output if this step can
        take it, else the latest output of the kind it needs."""
        if step.input_from is not None:
            return self.named[step.input_from]
        source = None if step.is_group else takes_from(step.consumes, kind_of(current), latest)
        return latest[source] if source is not None and source != PREVIOUS else current

    def _spec(self, index: int, step: Step, member: int | None, step_input: Any,
              latest: dict[str, Any]) -> WorkerSpec:
        assert step.executor is not None
        chain = self.chain
        return {
            "target": step.executor.target, "input": step_input, "params": step.params,
            "output_dir": str(chain.output_dir), "step": index, "member": member,
            "name": step.name, "type": step.type, "model": step.model, "latest": latest,
            "remote": self.journal.pending_requests(_key(index, member), step, step_input),
            # The worker starts without site (-S) for speed; it gets our import path instead,
            # with the chain's folder first so its modules are importable.
            "chain_dir": str(chain.base_dir), "path": [str(chain.base_dir), *filter(None, sys.path)],
        }

    # ------------------------------------------------------------------ one step, with retries

    def _run_attempts(self, index: int, step: Step, member: int | None, step_input: Any,
                      latest: dict[str, Any], cancel: Cancel) -> StepResult:
        chain = self.chain
        retries = step.retry_count if step.retry_count is not None else chain.retry_count
        limits = Limits(timeout=step.timeout or chain.timeout, max_memory_mb=step.max_memory_mb,
                        kill_grace=chain.kill_grace)
        base = {"step": index, **({"member": member} if member is not None else {})}
        spec = self._spec(index, step, member, step_input, latest)
        # Another worker will be wanted after this one (a later step, the group's other members):
        # the launcher starts it while this one runs.
        ahead = member is not None or index < len(chain.steps) - 1
        attempt = 0
        while True:
            attempt += 1
            events = self._worker_events(step, base, attempt, retries + 1)
            events.remote = lambda request: self.journal.submitted(_key(index, member), step, step_input, request)
            outcome = run_worker(spec, limits, cancel, events, self.env, self.launcher, ahead)
            if outcome.ok:
                return self._complete(step, base, attempt, outcome)
            retryable = outcome.reason != "cancelled" and not cancel.is_set()
            if retryable and attempt <= retries:
                delay = min(chain.retry_max_delay, chain.retry_delay * 2 ** (attempt - 1))
                delay = round(delay * random.uniform(0.5, 1.0), 3)
                self.events.emit("step_retry", **base, type=step.type, attempt=attempt + 1,
                                 delay_seconds=delay, reason=outcome.reason, error=outcome.error)
                if cancel.wait(delay):
                    outcome = Outcome(ok=False, reason="cancelled", error=cancel.message)
                else:
                    continue
            self.events.emit("step_error", **base, type=step.type, model=step.model, name=step.name,
                             attempt=attempt, **outcome.failure_fields(), **outcome.resource_fields())
            run_exit_code = self.cancel.exit_code if self.cancel.is_set() else (
                outcome.run_exit_code or ExitCode.STEP_FAILED)
            raise _RunStepFailed(outcome.error or outcome.reason or "failed", run_exit_code,
                                 outcome.reason or "exception")

    def _worker_events(self, step: Step, base: dict[str, Any], attempt: int, max_attempts: int) -> WorkerEvents:
        emit = self.events.emit

        def started(pid: int) -> None:
            emit("step_start", **base, type=step.type, model=step.model, name=step.name,
                 attempt=attempt, pid=pid, max_attempts=max_attempts)

        return WorkerEvents(
            started=started,
            output=lambda stream, lines, cut: self.events.step_output(base, stream, lines, cut),
            progress=lambda fraction, message: emit("step_progress", **base, fraction=fraction,
                                                    message=message),
            log=lambda level, fields: emit("step_log", **base, stream="log",
                                           line=str(fields.pop("event", "")), log_level=level,
                                           fields=fields),
            congested=self.events.congested,
        )

    def _complete(self, step: Step, base: dict[str, Any], attempt: int, outcome: Outcome) -> StepResult:
        value = outcome.result or {}
        cost = value.get("cost")
        if not isinstance(cost, (int, float)) or isinstance(cost, bool):
            cost = step.estimated_cost
        files = value.get("outputs") or ([value["output"]] if kind_of(value.get("output")) not in ("text", "any") else [])
        # the step's own value (JSON from the worker) becomes the named record here
        result = cast(StepResult, {**value, "cost": float(cost), "outputs": files})
        self.events.emit("step_complete", **base, type=step.type, model=step.model, name=step.name,
                         attempt=attempt, cost=float(cost), output=value.get("output"), outputs=files,
                         **outcome.resource_fields())
        return result

    # ------------------------------------------------------------------ parallel groups

    def _run_group(self, index: int, group: Step, step_input: Any, latest: dict[str, Any]) -> StepResult:
        members = [(j, m) for j, m in enumerate(group.members) if m.enabled]
        self.events.emit("step_start", step=index, type=group.type, model=None, name=group.name,
                         members=len(members), max_workers=group.max_workers,
                         merge_strategy=group.merge_strategy)
        cancel = self.cancel.linked()  # the group's own stop request; the run's also sets it
        try:
            return self._run_members(index, group, members, step_input, latest, cancel)
        finally:
            cancel.close()

    def _run_members(self, index: int, group: Step, members: list[tuple[int, Step]], step_input: Any,
                     latest: dict[str, Any], cancel: Cancel) -> StepResult:
        started = time.monotonic()
        # Fan-out: a list with one item per member (the tiles of split_image) gives member i item i.
        fan_out = isinstance(step_input, list) and len(step_input) == len(members)
        member_inputs = {j: self._input_for(m, step_input[k] if fan_out else step_input, latest)
                         for k, (j, m) in enumerate(members)}
        results: dict[int, StepResult] = {}
        failures: list[tuple[int, _RunStepFailed]] = []  # in the order they ended: the first is the cause
        # Resuming: members an earlier attempt finished are reused before anything starts, so
        # a first_success group with a reusable winner starts no member at all.
        for j, member in members:
            reused = self.journal.reuse(_key(index, j), member, member_inputs[j])
            if reused is not None:
                self._skipped_as_reused({"step": index, "member": j}, member, reused)
                results[j] = reused
        if results and group.merge_strategy == "first_success":
            cancel.set("cancelled: a member of the group was reused from the earlier run")

        def run_member(j: int, member: Step) -> StepResult | None:
            if cancel.is_set():
                self.events.emit("step_skipped", step=index, member=j, type=member.type,
                                 reason="the group finished before this member started")
                return None
            key = _key(index, j)
            try:
                value = self._run_attempts(index, member, j, member_inputs[j], latest, cancel)
            except _RunStepFailed as exc:
                self.journal.failed(key, member, member_inputs[j], str(exc))
                # Stop the group here, in the member's own thread: once it returns, its pool
                # slot starts the next queued member, before the loop below sees the failure.
                if group.merge_strategy == "collect_all":
                    cancel.set("cancelled: another member of the group failed")
                raise
            self.journal.done(key, member, member_inputs[j], value)
            if group.merge_strategy == "first_success":
                cancel.set("cancelled: another member of the group succeeded first")
            return value

        with ThreadPoolExecutor(max_workers=group.max_workers, thread_name_prefix="aicp-member") as pool:
            futures: dict[Future[StepResult | None], int] = {
                pool.submit(run_member, j, m): j for j, m in members if j not in results
            }
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)  # (signals still run their handlers)
                for future in done:
                    j = futures[future]
                    try:
                        value = future.result()
                    except _RunStepFailed as exc:
                        failures.append((j, exc))
                        if group.merge_strategy == "collect_all":
                            cancel.set("cancelled: another member of the group failed")
                        continue
                    if value is not None:
                        results[j] = value
                        if group.merge_strategy == "first_success":
                            cancel.set("cancelled: another member of the group succeeded first")
        return self._merge_group(index, group, members, results, failures, started)

    def _merge_group(self, index: int, group: Step, members: list[tuple[int, Step]],
                     results: dict[int, StepResult],
                     failures: list[tuple[int, _RunStepFailed]], started: float) -> StepResult:
        ok = bool(results) if group.merge_strategy == "first_success" else len(results) == len(members)
        if self.cancel.is_set():
            ok = False
        cost = sum(r["cost"] for r in results.values())
        if not ok:
            reason: FailureReason
            if self.cancel.is_set():
                message, run_exit_code, reason = self.cancel.message, self.cancel.exit_code, "cancelled"
            else:
                # the cause is the first real failure, not a member cancelled because of it
                member, cause = next(((j, c) for j, c in failures if c.reason != "cancelled"), failures[0])
                message, run_exit_code, reason = (f"member {member} failed: {cause}", cause.run_exit_code,
                                                  cause.reason)
            self.events.emit("step_error", step=index, type=group.type, name=group.name, error=message,
                             reason=reason, cost=cost, duration_seconds=round(_elapsed(started), 3))
            raise _RunStepFailed(message, run_exit_code, reason)
        ordered = [results[j] for j, _ in members if j in results]
        if group.merge_strategy == "first_success":
            output: Any = ordered[0]["output"]
        else:
            output = [r["output"] for r in ordered]
        files = [f for r in ordered for f in r["outputs"]]
        self.events.emit("step_complete", step=index, type=group.type, name=group.name, cost=cost,
                         output=output, outputs=files, members_completed=len(results),
                         duration_seconds=round(_elapsed(started), 3))
        named = {m.name: results[j]["output"] for j, m in members if m.name and j in results}
        return {"output": output, "outputs": files, "cost": cost, "members": ordered, "named": named}


def _key(index: int, member: int | None) -> str:
    """A step's key in the run record: ``"2"``, or ``"2.1"`` for a group's member."""
    return str(index) if member is None else f"{index}.{member}"


def _elapsed(started: float) -> float:
    return time.monotonic() - started
