"""``aicp run-chain``: load, check, confirm, supervise, report.

In ``--stream`` mode stdout carries exactly one line for every invocation,
the terminal ``pipeline_complete`` event, even when the chain never started
(invalid chain, missing input): scripts can always parse it.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import replace
from typing import Any

from aicp._batch.job import PARENT_PID_VAR, follow_parent, job_context
from aicp._chain.load import Chain, load_chain
from aicp._errors import AicpError, ExitCode, NotConfirmed, UsageError
from aicp._events import EventLog
from aicp._commands.human import HumanView, summary
from aicp._chain.inputs import resolve_input
from aicp._commands.output import print_envelope, write_stdout, write_to
from aicp._process.monitor import Cancel
from aicp._process.tree import enable_subreaper
from aicp._run.record import Journal, open_record
from aicp._run.supervisor import Supervisor
from aicp._commands.dirs import apply_directories
from aicp.providers.credentials import check_credentials


def _ensure_std_fds() -> None:
    """Give closed stdin/stdout/stderr a /dev/null, so no pipe we open lands on fd 0-2."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            else:  # os.open makes it close-on-exec: the worker template would start without it
                os.set_inheritable(fd, True)


def _confirm(chain: Chain, skip: bool) -> None:
    """Ask before spending money, but only a person at a terminal, and never in CI."""
    cost = chain.estimated_cost
    if skip or cost <= 0 or os.environ.get("CI") or sys.stdin is None or not sys.stdin.isatty():
        return
    sys.stderr.write(f"'{chain.name}' is estimated to cost ${cost:.3f}. Run it? [y/N] ")
    sys.stderr.flush()
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise NotConfirmed("not confirmed; nothing was run (use --yes to skip this question)")


class _Signals:
    """SIGINT/SIGTERM stop the run cleanly; a second SIGINT kills the steps at once."""

    def __init__(self, cancel: Cancel) -> None:
        self.cancel = cancel
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> "_Signals":
        self.previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_int)
        self.previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._on_term)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _on_int(self, signum: int, frame: Any) -> None:
        self.cancel.set("interrupted by SIGINT", hard=self.cancel.is_set(), exit_code=ExitCode.INTERRUPTED)

    def _on_term(self, signum: int, frame: Any) -> None:
        self.cancel.set("terminated by SIGTERM", exit_code=ExitCode.TERMINATED)


SAVED_FIELDS = ("success", "steps_completed", "total_steps", "total_cost", "total_time", "outputs", "error")


def _deprecated(message: str, events: EventLog | None) -> None:
    """A warning that must not break the stream: an event with --stream, else a line on stderr."""
    if events is not None:
        events.emit("warning", message=message)
    else:
        write_to("stderr", f"warning: {message}\n")


def _save_json(args: Any, result: dict[str, Any]) -> None:
    """--save-json FILE: the result, where the old tool put it (FILE under <base dir>/output/)."""
    import json
    from pathlib import Path

    path = Path(args.base_dir or ".") / "output" / args.save_json
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    except OSError as exc:
        write_to("stderr", f"error: cannot save the result to {path}: {exc}\n")


def _failed_before_start(error: AicpError, args: Any) -> None:
    if args.stream or args.log_file:  # the log file records every invocation, in any mode
        events = EventLog(stream=args.stream, log_file=args.log_file, context=job_context())
        events.result(success=False, steps_completed=0, total_steps=0, total_cost=0.0, total_time=0.0,
                      outputs={}, error=error.message, exit_code=int(error.exit_code))
        events.close()


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """``--set KEY=VALUE`` pairs: VALUE is YAML (``--set timeout=30`` is a number), KEY a top-level key."""
    overrides: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {pair!r}: expected KEY=VALUE (a top-level chain key and a YAML value)")
        import yaml

        try:
            overrides[key.strip()] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as exc:
            raise UsageError(f"--set {key}: the value is not valid YAML: {exc}") from None
    return overrides


def run_chain_command(args: Any) -> int:
    _ensure_std_fds()
    if os.environ.get(PARENT_PID_VAR):
        follow_parent()
    try:
        apply_directories(args)
        if args.config == "-" and args.input == "-":
            raise UsageError("--config - and --input - cannot both read stdin; give one of them a file")
        chain = load_chain(args.config, output_dir=args.output_dir, overrides=parse_overrides(args.set),
                           work_dir=args.base_dir)
        if args.max_cost is not None:
            chain = replace(chain, max_cost=args.max_cost)
        check_credentials(chain)
        chain_input = resolve_input(chain, input_text=args.input_text, prompt_file=args.prompt_file,
                                    input_file=args.input)
        _confirm(chain, args.no_confirm)
        record, resuming = open_record(chain, args.resume, args.run_id)
    except AicpError as exc:
        _failed_before_start(exc, args)
        raise
    quiet = args.stream or args.json or args.quiet
    log_files = [str(record.events_path), *([args.log_file] if args.log_file else [])]
    events = EventLog(stream=args.stream, log_file=log_files, run_id=record.run_id, context=job_context(),
                      observer=None if quiet else HumanView(), secrets=chain.secrets)
    cancel = Cancel()
    reaper = enable_subreaper()
    try:
        if args.save_json:
            _deprecated("--save-json is deprecated (as in the AI Content Pipeline tool): use --json and "
                        "redirect stdout; the result is still saved", events if args.stream else None)
        with _Signals(cancel):
            result = Supervisor(chain, events, cancel, reap_strays=reaper,
                                journal=Journal(record, resume=resuming)).run(chain_input)
            fields = result.event_fields()
            events.result(**fields)
    finally:
        events.close()
    if args.save_json:
        _save_json(args, {k: fields[k] for k in SAVED_FIELDS})
    if not args.stream:
        if args.json:
            print_envelope("run-chain", events.redactor.scrub(fields))
        else:
            write_stdout(summary(fields))
        if result.error:
            write_to("stderr", f"error: {events.redactor.text(result.error)}\n")
    return int(result.exit_code)
