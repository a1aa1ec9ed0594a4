"""``aicp view FILE|-``: a recorded or live events JSONL shown in the view for people.

Like gotestsum for ``go test -json``: ``aicp run-chain --stream 2>&1 >/dev/null |
aicp view`` shows a live run, ``aicp view output/runs/<id>/events.jsonl`` a
recorded one (``--follow`` keeps reading a file that a run is still writing,
until the run ends). On a terminal it is the live view, elsewhere plain lines.
Lines that are not events (an ``error:`` line mixed in by ``2>&1``) are shown as
they are. The exit code is the run's own, when the stream says how it ended.
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any, Callable, Iterator

from aicp._commands.human import HumanView
from aicp._errors import MissingInputError

_POLL = 0.2


def _lines(source: IO[str], follow: bool, ended: Any) -> Iterator[str]:
    """Every line of ``source``; following, wait at the end for more until ``ended()``."""
    pending = ""
    while True:
        chunk = source.readline()
        if chunk:
            pending += chunk
            if pending.endswith("\n"):
                yield pending.rstrip("\n")
                pending = ""
            continue
        if not follow or ended():
            break
        time.sleep(_POLL)
    if pending:
        yield pending


def _event(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) and isinstance(value.get("event"), str) else None


def _open(path: str) -> IO[str]:
    if path == "-":
        return sys.stdin
    try:
        return open(path, encoding="utf-8", errors="replace")
    except OSError as exc:
        raise MissingInputError(f"cannot read {path}: {exc.strerror or exc}") from None


def _feed(make_view: Callable[[], HumanView], source: IO[str], follow: bool) -> None:
    """Every line to a view; a file that holds several runs (an appended --log-file) gets one view
    per run. A followed file is read until its run has ended."""
    view = make_view()
    for line in _lines(source, follow=follow, ended=lambda: view.finished):
        event = _event(line)
        if event is not None:
            if view.finished and event["event"] == "pipeline_start":
                view = make_view()
            view(event)
        elif line.strip():
            view.text(line)
        if follow and view.finished:
            return


def view_command(args: Any) -> int:
    stdin = args.file == "-"
    source = _open(args.file)
    live_input = stdin or args.follow  # events arrive as they happen: running steps tick

    views: list[HumanView] = []

    def make_view() -> HumanView:
        if views:
            views[-1].close()
        view = HumanView(stream="stdout", tick=live_input,
                         clock=time.time if live_input else (lambda: view.model.last_time))
        views.append(view)
        return view

    try:
        _feed(make_view, source, follow=bool(args.follow) and not stdin)
    finally:
        if views:
            views[-1].close()  # the last run's end (or 'did not finish'), even after Ctrl-C
        if not stdin:
            source.close()
    code = (views[-1].model.end or {}).get("exit_code")
    return code if isinstance(code, int) else 0
