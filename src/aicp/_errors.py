"""Exit codes and the user-facing errors that map onto them.

Scripts branch on the exit code, so the numbers are a public contract: they are
listed once here, and every error that reaches the CLI carries its own code.
An error that is the user's (a bad chain, a missing file) is printed as one
line with no traceback; anything else is an internal error (exit 1).

Two numbers are both called "exit code", so the names say which: on a run
(``ChainResult``, ``Cancel``, ``pipeline_complete``) ``exit_code`` is the run's,
one of :class:`ExitCode`; on a step (``step_error``, ``Outcome``, ``StepFailed``)
``exit_code`` is the status its program or the step itself exited with, and
``run_exit_code`` is the run's exit code that the step asks for (a provider
failure: 4).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1
    INVALID = 2
    MISSING = 3
    PROVIDER = 4
    STEP_FAILED = 5
    HANGUP = 129
    INTERRUPTED = 130
    QUIT = 131
    TERMINATED = 143


EXIT_CODE_HELP = """\
exit codes:
  0    success
  1    unexpected internal error (a bug; run with --debug for the traceback)
  2    invalid arguments or invalid chain (YAML syntax, schema, type flow)
  3    a file you named is missing or unreadable, a place aicp must write (output_dir,
       --log-file) is not writable or its disk is full, or required credentials are missing
  4    a provider failed (authentication, quota, network)
  5    a step failed (the event stream says which and why)
  129  hung up (SIGHUP: the terminal closed)
  130  interrupted by SIGINT (Ctrl-C), or declined at the cost confirmation prompt
  131  quit (SIGQUIT, Ctrl-\\)
  143  terminated by SIGTERM"""


class AicpError(Exception):
    """An error meant for the user: one line, a stable exit code, no traceback."""

    exit_code: ExitCode = ExitCode.INTERNAL
    # set once the failure ended the event stream (the error event and the result line), so that
    # the CLI does not tell it a second time
    reported: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(AicpError):
    """Bad command-line arguments."""

    exit_code = ExitCode.INVALID


class Problem:
    """One finding about a chain, positioned: ``chain.yaml:7:5: steps[2].timeout: message``.

    ``severity`` is ``error`` (the chain will not run) or ``warning``. A plain
    class, not a dataclass: this module is imported by ``aicp --version``.
    """

    __slots__ = ("file", "line", "column", "path", "message", "severity")

    def __init__(self, file: str, line: int | None, column: int | None, path: str, message: str,
                 severity: str = "error") -> None:
        self.file, self.line, self.column, self.path = file, line, column, path
        self.message, self.severity = message, severity

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line is not None else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"

    def __repr__(self) -> str:
        return f"Problem({str(self)!r}, {self.severity!r})"

    def sort_key(self) -> tuple[int, int, str]:
        return (self.line or 0, self.column or 0, self.path)

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}


MAX_SHOWN = 50  # errors printed; the rest are counted


class ChainError(AicpError):
    """The chain file is not valid: syntax, schema or type flow.

    The message already names the file, the position and the field, in the
    form editors and CI annotations understand: ``chain.yaml:7:5: steps[2].timeout: ...``.
    A chain with several mistakes carries them all in ``problems`` (sorted by
    position); the message then has one line per error, at most
    :data:`MAX_SHOWN`, and a count of the rest.
    """

    exit_code = ExitCode.INVALID

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.problems = problems if problems is not None else []

    @classmethod
    def of(cls, problems: list[Problem]) -> "ChainError":
        """The error for every ``error`` among ``problems`` (there must be at least one)."""
        errors = sorted((p for p in problems if p.severity == "error"), key=Problem.sort_key)
        lines = [str(p) for p in errors[:MAX_SHOWN]]
        if len(errors) > MAX_SHOWN:
            rest = len(errors) - MAX_SHOWN
            lines.append(f"... and {rest} more error{'s' if rest > 1 else ''} ({len(errors)} in all)")
        return cls("\n".join(lines), sorted(problems, key=Problem.sort_key))


class MissingInputError(AicpError):
    """A file the user named does not exist or cannot be read."""

    exit_code = ExitCode.MISSING


class OutputError(AicpError):
    """A place the run must write (its output_dir and run record, the --log-file) cannot be written:
    not a folder, no permission, a read-only or full file system. Found before anything runs."""

    exit_code = ExitCode.MISSING


class NotConfirmed(AicpError):
    """The person at the terminal declined to spend the estimated cost: nothing ran."""

    exit_code = ExitCode.INTERRUPTED


class CredentialsError(AicpError):
    """A credential the chain needs is not set."""

    exit_code = ExitCode.MISSING


class ProviderError(AicpError):
    """A remote provider refused or could not be reached."""

    exit_code = ExitCode.PROVIDER


def printable(text: str) -> str:
    """``text`` as a terminal and a JSON encoder take it: bytes that were not UTF-8 (surrogate
    escapes of a file name) and lone surrogates become backslash escapes (``\\xff``, ``\\ud800``)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogateescape") if _only_escapes(text) else \
            text.encode("utf-8", "backslashreplace")
        return raw.decode("utf-8", "backslashreplace")


def _only_escapes(text: str) -> bool:
    """Whether every surrogate in ``text`` is a surrogate escape (U+DC80..U+DCFF) of a byte."""
    return all(not 0xD800 <= ord(c) <= 0xDFFF or 0xDC80 <= ord(c) <= 0xDCFF for c in text)
