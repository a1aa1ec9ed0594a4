"""How a failed invocation is told, in every mode: each failure gets exactly one named outcome.

Without ``--stream`` a failure is one line, ``error: MESSAGE``, on stderr (and
with ``--json`` the envelope on stdout). With ``--stream`` stderr carries JSON
lines and nothing else, whatever went wrong (a usage error argparse found, an
invalid chain, a missing file, a signal during loading, a bug), so the failure
is an ``error`` event there, and stdout still gets the one ``pipeline_complete``
line unless the run already wrote it. ``--log-file`` records the result line.

Whether ``--stream`` was asked for is known before argparse has accepted the
command line (:meth:`Invocation.guess`), so that its refusal is told in the
right form too. Messages are made printable first: a file name from the
command line may hold bytes that are not UTF-8 (surrogate escapes), which
neither a terminal nor a JSON encoder takes as they are.
"""

from __future__ import annotations

from aicp._errors import printable

TYPE_CHECKING = False  # cli imports this module before it knows the command: keep it light
if TYPE_CHECKING:
    from typing import Any, Sequence

STREAM_COMMANDS = ("run-chain",)  # the commands that take --stream


def _is_stream_flag(arg: str) -> bool:
    """``--stream``, or an abbreviation argparse accepts for it (``--str``), or ``--stream=...``."""
    name = arg.split("=", 1)[0]
    return len(name) >= 3 and "--stream".startswith(name)


class Invocation:
    """What the command line asked for, as far as telling a failure goes."""

    def __init__(self, command: str | None = None, stream: bool = False, json: bool = False,
                 debug: bool = False) -> None:
        self.command = command
        self.stream = stream
        self.json = json
        self.debug = debug
        self.log_file: str | None = None
        self.result_written = False  # the run wrote its pipeline_complete: never a second one

    @classmethod
    def guess(cls, argv: Sequence[str]) -> "Invocation":
        """From the raw arguments, for when argparse refuses them (or has not run yet)."""
        options = list(argv[:argv.index("--")] if "--" in argv else argv)
        command = next((a for a in options if a in STREAM_COMMANDS), None)
        return cls(command=command, stream=command is not None and any(map(_is_stream_flag, options)),
                   json="--json" in options, debug="--debug" in options)

    def update(self, args: Any) -> None:
        """From the parsed arguments."""
        self.command = args.command
        self.stream = bool(getattr(args, "stream", False))
        self.json = bool(args.json)
        self.debug = bool(args.debug)
        self.log_file = getattr(args, "log_file", None)

    def fail(self, message: str, exit_code: int, traceback: str | None = None) -> None:
        """Tell the failure: the error line or event, and the result line where one is owed."""
        from aicp._commands.output import print_envelope, write_to

        message = printable(message)
        if self.stream or (self.log_file and self.command in STREAM_COMMANDS):
            self._events(message, exit_code, traceback)
        if not self.stream:
            if traceback:
                write_to("stderr", traceback)
            write_to("stderr", f"error: {message}\n")
            if self.json and self.command:
                print_envelope(self.command, None, error={"message": message, "exit_code": exit_code})

    def _events(self, message: str, exit_code: int, traceback: str | None) -> None:
        from aicp._events import EventLog

        run_id = None  # one for both lines
        if self.stream:  # the error event is for the stream; the log file gets the result, as ever
            events = EventLog(stream=True)
            run_id = events.run_id
            events.emit("error", message=message, exit_code=exit_code,
                        **({"traceback": traceback} if traceback else {}))
            events.close()
        if self.result_written:
            return
        self.result_written = True
        try:
            events = EventLog(stream=self.stream, run_id=run_id,
                              log_file=[self.log_file] if self.log_file else [])
        except OSError:  # the log file cannot be opened: the stream still tells
            events = EventLog(stream=self.stream, run_id=run_id)
        events.result(success=False, steps_completed=0, total_steps=0, total_cost=0.0, total_time=0.0,
                      outputs={}, error=message, exit_code=exit_code)
        events.close()
