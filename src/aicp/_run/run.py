"""One run of a chain, assembled in one place: ``aicp.run_chain`` and ``aicp run-chain`` both use it.

Building a run is a fixed sequence: load the chain, check its credentials,
resolve the input, open the run record, build the event log and the
supervisor, run, emit the result, close. It used to be written twice (the
Python API and the CLI), and the copies drifted. Here it is written once;
what differs between callers is passed in: where the input comes from, who
watches the events, a confirmation before anything is written, whether this
process reaps stray descendants (the CLI is a subreaper), and what the caller
holds while the steps run (the CLI's signal handlers wrap :meth:`Run.execute`).

A run that fails before it starts (an invalid chain, a missing input or
credential) still ends the event stream and the log file with one
``pipeline_complete`` line, so whoever reads them can always parse a result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from aicp import _interrupt
from aicp._chain.inputs import resolve_input
from aicp._chain.load import load_chain
from aicp._chain.model import Chain
from aicp._chain.steptypes import path_like
from aicp._errors import AicpError, UsageError, printable
from aicp._events import EventLog, Observer
from aicp._process.cancel import Cancel
from aicp._record import replace
from aicp._redact import Redactor
from aicp._run.record import Journal, RunRecord, open_record
from aicp._run.results import ChainResult
from aicp._run.supervisor import Supervisor
from aicp._tracing import with_tracing
from aicp._run.writable import check_log_file, check_output_dir
from aicp.providers.credentials import check_credentials


@dataclass(frozen=True)
class InputSource:
    """Where the chain's input comes from: at most one of these; none means the chain's own."""

    text: str | None = None
    prompt_file: str | None = None
    file: str | None = None  # '-' reads text from stdin

    @classmethod
    def of(cls, value: Any) -> InputSource:
        """The Python API's one ``input``: a file when it is a Path or names an existing file, else text."""
        if value is None:
            return cls()
        if isinstance(value, Path) or (path_like(value) and Path(value).is_file()):
            return cls(file=str(value))
        return cls(text=value)


class Run:
    """A run whose chain, input and record are ready; :meth:`execute` runs it to its result."""

    def __init__(self, chain: Chain, chain_input: Any, record: RunRecord, resuming: bool, events: EventLog,
                 cancel: Cancel | None, reap_strays: bool, end_trace: Callable[[], None] = lambda: None) -> None:
        self.chain = chain
        self.events = events
        self.run_id = record.run_id
        self._end_trace = end_trace
        self._input = chain_input
        self._journal = Journal(record, resume=resuming,
                                warn=lambda message: events.emit("warning", message=message))
        self._supervisor = Supervisor(chain, events, cancel, reap_strays=reap_strays, journal=self._journal)

    @property
    def cancel(self) -> Cancel:
        return self._supervisor.cancel

    @property
    def redactor(self) -> Redactor:
        """Masks this run's secrets in whatever the caller prints about it."""
        return self.events.redactor

    def execute(self, resume_command: str | None = None) -> ChainResult:
        """Run every step, emit ``run_end`` (with ``resume_command``, the way to continue a failed
        run) and the terminal ``pipeline_complete``, close the event log and end the trace."""
        try:
            result = self._supervisor.run(self._input)
            self.events.result(**result.event_fields(), resume_command=resume_command)
        except BaseException as exc:  # a bug, or KeyboardInterrupt outside the handlers: the record says so
            self._journal.abandon(f"aicp stopped: {type(exc).__name__}: {exc}")
            raise
        finally:
            self.events.close()
            self._end_trace()
        return result


def open_run(chain: Chain | str | Path, source: InputSource = InputSource(), *, output_dir: str | None = None,
             overrides: dict[str, Any] | None = None, run_id: str | None = None, stream: bool = False,
             log_file: str | None = None, context: dict[str, Any] | None = None,
             observer: Observer | None = None, cancel: Cancel | None = None, resume: str | None = None,
             confirm: Callable[[Chain], None] | None = None, reap_strays: bool = False,
             log_format: str = "json", work_dir: str | None = None,
             max_cost: float | None = None) -> Run:
    """Load and check everything a run needs, open its record and event log; nothing runs yet.

    ``chain`` is a loaded :class:`Chain` or a path / YAML text (``'-'``: stdin),
    loaded with ``output_dir`` and ``overrides`` (top-level keys). ``run_id``
    names the run (created, or resumed if it exists); ``context`` holds fields
    every event carries (a batch job's ids); ``log_format`` shapes stderr and
    ``log_file`` (``json``, ``ecs``, ``otel``; the result and the run record stay v1).
    With the ``otel`` extra and ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, the run is
    also exported as a trace. A relative output folder resolves against
    ``work_dir`` (``--base-dir``); ``max_cost`` replaces the chain's budget.
    ``confirm`` is called once the chain and its input are known good, before
    the record is written; it may raise (the CLI's cost question). Any
    :class:`AicpError` is raised after the failure was reported as the
    stream's and the log file's terminal line.
    """
    try:
        if chain == "-" and source.file == "-":
            raise UsageError("--config - and --input - cannot both read stdin; give one of them a file")
        if not isinstance(chain, Chain):
            chain = load_chain(chain, output_dir=output_dir, overrides=overrides, work_dir=work_dir, here="params")
        if max_cost is not None:
            chain = replace(chain, max_cost=max_cost)
        check_credentials(chain)
        chain_input = resolve_input(chain, input_text=source.text, prompt_file=source.prompt_file,
                                    input_file=source.file)
        check_output_dir(chain.output_dir)  # before the question: a run that cannot be kept is not asked for
        if log_file:
            check_log_file(log_file)
        if confirm is not None:
            confirm(chain)
        record, resuming = open_record(chain, resume, run_id)
    except AicpError as exc:
        report_failed_start(exc, stream=stream, log_file=log_file, context=context, log_format=log_format)
        raise
    chain, observer, end_trace = with_tracing(chain, record.run_id, observer)
    events = EventLog(stream=stream, log_file=log_file, record_file=str(record.events_path), log_format=log_format,
                      observer=observer, redactor=record.redactor, run_id=record.run_id, context=context)
    return Run(chain, chain_input, record, resuming, events, cancel, reap_strays, end_trace)


def report_failed_start(error: AicpError, *, stream: bool, log_file: str | None,
                        context: dict[str, Any] | None = None, log_format: str = "json",
                        traceback: str | None = None) -> None:
    """End the stream (and the log file, which records every invocation) with a result that says why.

    With ``stream``, stderr carries JSON lines only: the failure is first an ``error`` event there
    (with ``traceback`` under ``--debug``), then the result line on stdout. From here a signal
    changes nothing (:func:`aicp._interrupt.hold`): this is the outcome."""
    _interrupt.hold()
    error.reported = True
    if not (stream or log_file):
        return
    message = printable(error.message)  # a file name from argv may not be UTF-8
    failed = EventLog(stream=stream, context=context, log_format=log_format)
    if stream:
        failed.emit("error", message=message, exit_code=int(error.exit_code),
                    **({"traceback": traceback} if traceback else {}))
    failed.close()
    try:  # the log file gets the result line, as ever
        events = EventLog(stream=stream, log_file=log_file, context=context, run_id=failed.run_id,
                          log_format=log_format)
    except OSError:  # it cannot be opened: the stream still tells
        events = EventLog(stream=stream, context=context, run_id=failed.run_id, log_format=log_format)
    events.result(**ChainResult.not_started(message, int(error.exit_code)).event_fields())
    events.close()


def run_chain(chain: Chain | str | Path, input: Any = None, *, stream: bool = False,
              log_file: str | None = None, observer: Observer | None = None,
              cancel: Cancel | None = None, resume: str | None = None, log_format: str = "json") -> ChainResult:
    """Run a chain (a loaded :class:`Chain`, or a path / YAML text) and return its result.

    Every step runs in its own worker process, exactly as from the CLI.
    ``input`` is the chain's input (text or a file path); by default the
    chain's own ``prompt`` / ``input_image`` / ``input_video``. ``stream``
    writes the JSON event stream (stderr, result on stdout); ``observer``
    receives each event as a dict. Step failures do not raise: they are in
    the result (``success``, ``error``, ``exit_code``). A chain that cannot
    start raises its :class:`aicp.AicpError` (after ending the stream and
    ``log_file`` with a failed result, as the CLI does). The run is recorded
    under ``output_dir/runs/<run_id>/``; ``resume`` (a run id or ``"latest"``)
    continues an earlier run, reusing its unchanged completed steps. ``log_format``
    shapes stderr and ``log_file`` (``json``, ``ecs``, ``otel``). With the ``otel``
    extra and ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, the run is exported as a trace.
    """
    return open_run(chain, InputSource.of(input), stream=stream, log_file=log_file, observer=observer,
                    cancel=cancel, resume=resume, log_format=log_format).execute()
