"""The wire between the supervisor and a worker, written once and read and written through here.

Two conversations, both private to aicp:

* **Supervisor <-> worker.** The supervisor writes the step's spec
  (:class:`WorkerSpec`) as one JSON line on the worker's control pipe; the
  worker answers on its result pipe with JSON lines, each an object whose
  ``"k"`` says its kind: ``progress``, ``log``, ``remote`` (a paid request
  went out to a provider: the run record keeps its id), then one ``result``
  or one ``error``. :class:`Channel` is the worker's writer, :func:`read_message`
  the supervisor's reader.
* **Supervisor <-> worker template.** A request is the worker's environment
  (marshal; what differs from the template's own) with the worker's four pipe ends attached (SCM_RIGHTS, in
  :data:`TEMPLATE_FDS` order); the template replies ``P`` + the child's pid
  (or minus an errno), and later ``X`` + (pid, exit code, CPU seconds, peak
  RSS bytes) when the child ends.

It also holds the closed set of :data:`FAILURE_REASONS`, the ``reason`` of
every ``step_error`` and ``step_retry`` event: the worker sends some, the
supervisor decides the rest.

The worker imports this module before every step, so it lives on the
import-light side and imports nothing but json, marshal and os at run time
(``typing`` only for the type checker).
"""

from __future__ import annotations

import json
import marshal
import os

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs every worker ~10 ms
if TYPE_CHECKING:
    from typing import Any, Final, Literal, TypedDict, Union

    FailureReason = Literal["exception", "exit", "signal", "timeout", "memory_limit", "cancelled",
                            "invalid_result", "spawn_failed", "budget"]

    class WorkerSpec(TypedDict):
        """What a worker needs to run one step: the control pipe's one line."""

        target: str  # "module:function" of the executor
        input: Any
        params: dict[str, Any]
        output_dir: str
        step: int  # index among the chain's top-level steps
        member: int | None  # index inside a parallel group
        name: str | None
        type: str
        model: str | None
        latest: dict[str, Any]  # the most recent output of each kind
        remote: list[dict[str, Any]]  # requests an interrupted run of this step submitted (resume polls them)
        chain_dir: str
        path: list[str]  # sys.path entries to prepend (the worker starts with -I -S)

    class ProgressMessage(TypedDict):
        k: Literal["progress"]
        fraction: float
        message: str | None

    class LogMessage(TypedDict):
        k: Literal["log"]
        level: str
        fields: dict[str, Any]

    class RemoteMessage(TypedDict):
        k: Literal["remote"]
        provider: str
        endpoint: str
        request_id: str
        index: int  # which of the step's requests (a list input sends one per item)

    class ResultMessage(TypedDict):
        k: Literal["result"]
        value: dict[str, Any]  # the step's return value: "output" plus whatever else it returned

    class ErrorMessage(TypedDict, total=False):
        k: Literal["error"]
        reason: FailureReason
        error: str
        exit_code: int | None  # the status the program or the step exited with
        signal: str | None
        traceback: str
        run_exit_code: int | None  # what the run should exit with, if the step said

    Message = Union[ProgressMessage, LogMessage, RemoteMessage, ResultMessage, ErrorMessage]

# Every step_error / step_retry reason; the events' JSON Schema has the same enum (a test checks).
FAILURE_REASONS: tuple[FailureReason, ...] = (
    "exception", "exit", "signal", "timeout", "memory_limit", "cancelled", "invalid_result", "spawn_failed",
    "budget")  # budget: the supervisor did not start the step, its estimate would pass max_cost

KIND: Final = "k"
PROGRESS: Final = "progress"
LOG: Final = "log"
REMOTE: Final = "remote"
RESULT: Final = "result"
ERROR: Final = "error"

# A worker's own exit statuses, beside the step's: it could not start (no spec arrived, or a
# forked child failed before running the step), or it killed itself after the lifeline broke.
EXIT_NOT_STARTED = 70  # EX_SOFTWARE
EXIT_LIFELINE_CUT = 128 + 9  # as if killed by SIGKILL, which it sends its own process group

TEMPLATE_FDS = 4  # stdout, stderr, control (lifeline), result: the order of a template request's fds
_REPLY_PID, _REPLY_EXIT = b"P", b"X"


# ---------------------------------------------------------------- supervisor <-> worker


def encode_spec(spec: WorkerSpec) -> bytes:
    return (json.dumps(spec, default=str) + "\n").encode()


def decode_spec(line: bytes) -> WorkerSpec:
    spec: WorkerSpec = json.loads(line)
    return spec


def read_message(line: str) -> Message:
    """One line from the result pipe; ValueError if it is not a message of a known kind."""
    message = json.loads(line)
    if not isinstance(message, dict) or message.get(KIND) not in (PROGRESS, LOG, REMOTE, RESULT, ERROR):
        raise ValueError("not a worker message")
    checked: Message = message  # type: ignore[assignment]  # its kind was checked above
    return checked


class Channel:
    """The worker's side of the result pipe: one JSON object per line.

    The pipe is a file descriptor of its own, so nothing the step prints on
    stdout or stderr can corrupt what travels here.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def progress(self, fraction: float, message: str | None) -> None:
        self._send({KIND: PROGRESS, "fraction": fraction, "message": message})

    def log(self, level: str, fields: Any) -> None:
        self._send({KIND: LOG, "level": level, "fields": fields})

    def remote(self, provider: str, endpoint: str, request_id: str, index: int) -> None:
        self._send({KIND: REMOTE, "provider": provider, "endpoint": endpoint, "request_id": request_id,
                    "index": index})

    def error(self, reason: FailureReason, error: str, **details: Any) -> None:
        """Report the step's failure: ``details`` are the other :class:`ErrorMessage` fields."""
        self._send({KIND: ERROR, "reason": reason, "error": error, **details})

    def result(self, value_json: str) -> None:
        """Report the step's result, ``value_json`` being its value already serialised."""
        self._write_line('{"' + KIND + '": "' + RESULT + '", "value": ' + value_json + "}")

    def _send(self, message: dict[str, Any]) -> None:
        self._write_line(json.dumps(message, default=str))

    def _write_line(self, line: str) -> None:
        view = memoryview((line + "\n").encode())
        while view:
            view = view[os.write(self._fd, view):]


# ---------------------------------------------------------------- supervisor <-> template


def template_request(changes: dict[str, str | None]) -> bytes:
    """The worker's environment, as its changes to the template's own: a value to set, or None to
    remove (usually only the worker's token: the template was started with the supervisor's)."""
    return marshal.dumps(changes)


def read_template_request(data: bytes) -> dict[str, str | None]:
    changes: dict[str, str | None] = marshal.loads(data)
    return changes


def pid_reply(pid: int) -> bytes:
    """The template started a worker (``pid``), or could not (minus the errno)."""
    return _REPLY_PID + marshal.dumps(pid)


def exit_reply(pid: int, code: int, cpu_seconds: float, max_rss_bytes: int) -> bytes:
    """A worker ended: its exit code (negative: killed by that signal) and resource usage."""
    return _REPLY_EXIT + marshal.dumps((pid, code, cpu_seconds, max_rss_bytes))


def read_template_reply(data: bytes) -> tuple[int, None] | tuple[int, tuple[int, float, int]]:
    """``(pid, None)`` for a pid reply; ``(pid, (code, cpu_seconds, max_rss_bytes))`` for an exit."""
    payload = marshal.loads(data[1:])
    if data[:1] == _REPLY_PID:
        return payload, None
    pid, code, cpu, rss = payload
    return pid, (code, cpu, rss)
