"""The Python entry point for running a chain: ``aicp.run_chain``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aicp._chain.load import Chain, load_chain
from aicp._events import EventLog, Observer
from aicp._chain.inputs import resolve_input
from aicp._process.cancel import Cancel
from aicp._run.record import Journal, open_record
from aicp._chain.steptypes import path_like
from aicp._run.supervisor import ChainResult, Supervisor
from aicp.providers.credentials import check_credentials


def run_chain(chain: Chain | str | Path, input: Any = None, *, stream: bool = False,
              log_file: str | None = None, observer: Observer | None = None,
              cancel: Cancel | None = None, resume: str | None = None) -> ChainResult:
    """Run a chain (a loaded :class:`Chain`, or a path / YAML text) and return its result.

    Every step runs in its own worker process, exactly as from the CLI.
    ``input`` is the chain's input (text or a file path); by default the
    chain's own ``prompt`` / ``input_image`` / ``input_video``. ``stream``
    writes the JSON event stream (stderr, result on stdout); ``observer``
    receives each event as a dict. Step failures do not raise: they are in
    the result (``success``, ``error``, ``exit_code``). The run is recorded
    under ``output_dir/runs/<run_id>/``; ``resume`` (a run id or ``"latest"``)
    continues an earlier run, reusing its unchanged completed steps.
    """
    if not isinstance(chain, Chain):
        chain = load_chain(chain)
    check_credentials(chain)
    value = resolve_input(chain, input_text=input) if input is not None and not _is_file(input) \
        else resolve_input(chain, input_file=str(input) if input is not None else None)
    record, resuming = open_record(chain, resume)
    events = EventLog(stream=stream, log_file=[str(record.events_path), *([log_file] if log_file else [])],
                      observer=observer, secrets=chain.secrets, run_id=record.run_id)
    try:
        result = Supervisor(chain, events, cancel, journal=Journal(record, resume=resuming)).run(value)
        events.result(**result.event_fields())
    finally:
        events.close()
    return result


def _is_file(value: Any) -> bool:
    return isinstance(value, Path) or (path_like(value) and Path(value).is_file())
