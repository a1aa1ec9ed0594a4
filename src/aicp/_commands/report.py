"""How a failed invocation is told, in every mode: each failure gets exactly one named outcome.

Without ``--stream`` a failure is one line, ``error: MESSAGE``, on stderr (and
with ``--json`` the envelope on stdout). With ``--stream`` stderr carries JSON
lines and nothing else, whatever went wrong (a usage error argparse found, an
invalid chain, a missing file, a signal during loading, a bug), so the failure
is an ``error`` event there, and stdout still gets the one result line
(``pipeline_complete``, ``batch_complete``) unless the command already wrote
it. ``--log-file`` records the result line.

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

STREAM_COMMANDS = ("run-chain", "run-batch")  # the commands that take --stream


def _is_stream_flag(arg: str) -> bool:
    """``--stream``, or an abbreviation argparse accepts for it (``--st``; ``--s`` could be ``--set``),
    or ``--stream=...``."""
    name = arg.split("=", 1)[0]
    return len(name) >= 4 and "--stream".startswith(name)


class Invocation:
    """What the command line asked for, as far as telling a failure goes."""

    def __init__(self, command: str | None = None, stream: bool = False, json: bool = False,
                 debug: bool = False) -> None:
        self.command = command
        self.stream = stream
        self.json = json
        self.debug = debug
        self.log_file: str | None = None
        self.args: Any = None  # the parsed arguments, once argparse accepted them
        self.result_written = False  # the run wrote its result line: never a second one

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
        self.args = args

    def fail(self, message: str, exit_code: int, traceback: str | None = None, reported: bool = False,
             problems: list[Any] | None = None) -> None:
        """Tell the failure: the error line (one per line: a chain's mistakes, each positioned), or the
        error event and the result line where one is owed (``reported``: the command already ended
        its stream with this failure). ``problems``: a chain's mistakes, which ``--json`` lists."""
        from aicp._commands.output import print_envelope, write_to
        from aicp._redact import Redactor

        message = printable(Redactor.from_environment().text(message))  # masked everywhere, this line too
        streamed = self.command in STREAM_COMMANDS and (self.stream or self.log_file)
        if streamed and not (reported or self.result_written):
            self.result_written = True
            self._end_stream(message, exit_code, traceback)
        if not self.stream:
            if traceback:
                write_to("stderr", traceback)
            write_to("stderr", "".join(f"error: {line}\n" for line in message.splitlines() or [""]))
            if self.json and self.command:
                data = {"valid": False, "problems": [p.as_dict() for p in problems]} if problems else None
                print_envelope(self.command, data, error={"message": message, "exit_code": exit_code})

    def _end_stream(self, message: str, exit_code: int, traceback: str | None) -> None:
        """The error event and the command's own result line (``pipeline_complete``, ``batch_complete``)."""
        from aicp._batch.job import job_context
        from aicp._errors import AicpError

        error = AicpError(message)
        error.exit_code = exit_code  # type: ignore[assignment]  # any code: a signal's too
        if self.command == "run-chain":
            from aicp._run.run import report_failed_start

            report_failed_start(error, stream=self.stream, log_file=self.log_file, context=job_context(),
                                traceback=traceback)
        elif self.args is not None or self.stream:  # run-batch; refused by argparse (args None) too
            from aicp._commands.run_batch import report_failed_batch

            report_failed_batch(error, self.args, traceback=traceback)
