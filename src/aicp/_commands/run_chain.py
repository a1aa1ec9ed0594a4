"""``aicp run-chain``: what the command adds to a run (:mod:`aicp._run.run` builds and runs it).

The command's own part: the arguments, the cost confirmation at a terminal,
the signal handlers (SIGINT/SIGTERM stop the run cleanly), the subreaper that
keeps stray descendants from escaping, the live view, and what it prints when
the run ends. In ``--stream`` mode stdout carries exactly one line for every
invocation, the terminal ``pipeline_complete`` event, even when the chain
never started (invalid chain, missing input): scripts can always parse it.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from aicp import _interrupt
from aicp._batch.job import PARENT_PID_VAR, follow_parent, job_context
from aicp._chain.model import Chain
from aicp._chain.source import check_name
from aicp._commands.human import HumanView, summary
from aicp._commands.output import print_envelope, write_stdout, write_to
from aicp._commands.dirs import apply_directories
from aicp._errors import AicpError, ExitCode, NotConfirmed, UsageError
from aicp._events import EventLog
from aicp._logformats import FORMATS
from aicp._process.cancel import Cancel
from aicp._worker.reaper import enable_subreaper
from aicp._run.run import InputSource, open_run, report_failed_start


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


def _confirm(chain: Chain, stream: bool) -> None:
    """Ask before spending money, but only a person at a terminal, and never in CI.

    With ``--stream`` stderr carries JSON lines only, so the question is a ``confirm`` event."""
    cost = chain.estimated_cost
    if cost <= 0 or os.environ.get("CI") or sys.stdin is None or not sys.stdin.isatty():
        return
    question = f"'{chain.name}' is estimated to cost ${cost:.3f}. Run it? [y/N] "
    if stream:
        asking = EventLog(stream=True)
        asking.emit("confirm", message=question, estimated_cost=cost)
        asking.close()
    else:
        write_to("stderr", question)
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise NotConfirmed("not confirmed; nothing was run (use --yes to skip this question)")


class _Signals:
    """SIGINT, SIGTERM, SIGHUP and SIGQUIT stop the run cleanly; a second SIGINT kills the steps at once.

    Each ends the run with its own exit code (128 + the signal's number) and
    the one result line; the handlers stay until that line is written.
    """

    EXITS = {signal.SIGINT: ExitCode.INTERRUPTED, signal.SIGTERM: ExitCode.TERMINATED,
             signal.SIGHUP: ExitCode.HANGUP, signal.SIGQUIT: ExitCode.QUIT}

    def __init__(self, cancel: Cancel) -> None:
        self.cancel = cancel
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> "_Signals":
        for sig in self.EXITS:
            self.previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc: Any) -> None:
        _interrupt.hold()  # the run has ended: its result stands, a signal from now on changes nothing
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        sig = signal.Signals(signum)
        hard = sig == signal.SIGINT and self.cancel.is_set()
        verb = {signal.SIGINT: "interrupted", signal.SIGHUP: "hung up", signal.SIGQUIT: "quit"}.get(sig, "terminated")
        self.cancel.set(f"{verb} by {sig.name}", hard=hard, exit_code=self.EXITS[sig])


def resume_command(args: Any, run_id: str) -> str:
    """The exact command that continues this run: same chain, same input, same output folder."""
    import shlex

    argv = ["aicp", "run-chain", "--config", args.config]
    for flag, value in (("--input-text", args.input_text), ("--prompt-file", args.prompt_file),
                        ("--input", args.input), ("--output-dir", args.output_dir)):
        if value is not None:
            argv += [flag, value]
    for pair in getattr(args, "set", None) or ():  # the same chain definition, or nothing is reused
        argv += ["--set", pair]
    return shlex.join([*argv, "--resume", run_id])


def log_format(args: Any) -> str:
    """``--log-format``, else ``AICP_LOG_FORMAT``, else ``json``."""
    chosen = getattr(args, "log_format", None) or os.environ.get("AICP_LOG_FORMAT") or "json"
    if chosen not in FORMATS:
        raise UsageError(f"AICP_LOG_FORMAT must be one of {', '.join(FORMATS)}, got {chosen!r}")
    return chosen


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


SAVED_FIELDS = ("success", "steps_completed", "total_steps", "total_cost", "total_time", "outputs", "error")
DEPRECATED_SAVE_JSON = ("--save-json is deprecated (as in the AI Content Pipeline tool): use --json and redirect "
                        "stdout; the result is still saved")


def _save_json(args: Any, result: dict[str, Any]) -> None:
    """--save-json FILE (the old tool's, deprecated there): the result where it put it, FILE under
    ``<base dir>/output/``."""
    import json
    from pathlib import Path

    path = Path(args.base_dir or ".") / "output" / args.save_json
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({k: result[k] for k in SAVED_FIELDS}, indent=2, default=str) + "\n",
                        encoding="utf-8")
    except OSError as exc:
        write_to("stderr", f"error: cannot save the result to {path}: {exc}\n")


def run_chain_command(args: Any) -> int:
    """Run the chain. A failure before the run starts ends the stream with its result line and
    propagates to the CLI, which tells it (marked ``reported``: not a second time)."""
    _ensure_std_fds()
    if os.environ.get(PARENT_PID_VAR):
        follow_parent()
    quiet = args.stream or args.json or args.quiet
    cancel = Cancel()
    try:
        for flag, value in (("--output-dir", args.output_dir), ("--log-file", args.log_file)):
            if value is not None:
                check_name(value, flag)
        apply_directories(args)
        overrides = parse_overrides(args.set)
        shape = log_format(args)
    except AicpError as exc:
        report_failed_start(exc, stream=args.stream, log_file=args.log_file, context=job_context())
        raise
    view = None if quiet else HumanView()
    run = open_run(args.config, InputSource(text=args.input_text, prompt_file=args.prompt_file, file=args.input),
                   output_dir=args.output_dir, overrides=overrides, run_id=args.run_id, stream=args.stream,
                   log_file=args.log_file, context=job_context(), observer=view, cancel=cancel,
                   resume=args.resume, confirm=None if args.no_confirm else lambda chain: _confirm(chain, args.stream),
                   reap_strays=enable_subreaper(), log_format=shape, work_dir=args.base_dir, max_cost=args.max_cost)
    if args.save_json:  # a warning must not break the stream: there, an event
        run.events.emit("warning", message=DEPRECATED_SAVE_JSON) if args.stream else \
            write_to("stderr", f"warning: {DEPRECATED_SAVE_JSON}\n")
    try:
        with _Signals(cancel):
            result = run.execute(resume_command=resume_command(args, run.run_id))
            args.invocation.result_written = True
    finally:
        if view is not None:  # the view ends itself at run_end; this is for a run that broke off
            view.close()
    fields = run.redactor.scrub(result.event_fields())  # the summary and the saved result too: masked
    if args.save_json:
        _save_json(args, fields)
    if not args.stream:
        if args.json:
            print_envelope("run-chain", fields)
        else:
            write_stdout(summary(fields))
        if result.error:
            write_to("stderr", f"error: {run.redactor.text(result.error)}\n")
    return int(result.exit_code)
