"""The worker: the child process that runs exactly one step, then exits.

Started by the supervisor as ``python -I -S -X utf8 -c <boot> CTRL_FD RESULT_FD``
in a session of its own. Its contract with the supervisor:

* It reads the step's spec (one JSON line) from ``CTRL_FD``, then keeps that
  pipe open as a *lifeline*: when it closes (POLLHUP), the supervisor is gone, and the
  worker kills its own process tree and exits. (A worker forked by the template
  leaves that to the template, see :func:`main`.)
* It reports progress, log events and finally the result (or the error) as JSON
  lines on ``RESULT_FD``. Whatever the step prints goes to stdout/stderr, which
  the supervisor relays; it cannot corrupt the result. Both pipes speak
  :mod:`aicp._worker.protocol`.
* SIGTERM raises :class:`WorkerCancelled` in the step, so ``finally`` blocks (a
  remote cancel request, a temp file removal) run within the grace period.

Start-up cost is the per-step overhead of the tool, so this module imports
only what every step needs; everything else is imported lazily.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import _thread

TYPE_CHECKING = False  # importing typing would add ~10 ms to every step
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from aicp._worker.protocol import WorkerSpec

from aicp._context import StepContext, StepFailed
from aicp._targets import load_target
from aicp._worker.protocol import EXIT_LIFELINE_CUT, EXIT_NOT_STARTED, Channel, decode_spec


class WorkerCancelled(BaseException):
    """Raised in the step, inside the worker, when the supervisor asks it to stop (SIGTERM)."""


def _on_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise WorkerCancelled("the supervisor stopped this step")


def _read_spec(fd: int) -> WorkerSpec:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = os.read(fd, 65536)
        if not chunk:
            raise SystemExit(EXIT_NOT_STARTED)  # the supervisor went away before sending the spec
        buf += chunk
    return decode_spec(buf)


def _kill_own_tree(token: str | None) -> NoReturn:
    """The supervisor died: end everything this step started, then ourselves.

    Descendants that left our tree (setsid, double fork) still carry the
    worker's token in their environment: the dead supervisor cannot kill them,
    so we look for them among all processes.
    """
    try:
        import psutil

        for child in psutil.Process().children(recursive=True):
            try:
                child.kill()
            except psutil.Error:
                pass
        if token:
            me = os.getpid()
            for proc in psutil.process_iter():
                try:
                    if proc.pid != me and proc.environ().get("AICP_WORKER_TOKEN") == token:
                        proc.kill()
                except psutil.Error:
                    continue
    finally:
        os.killpg(os.getpgrp(), signal.SIGKILL)
        os._exit(EXIT_LIFELINE_CUT)


def _watch_lifeline(fd: int, token: str | None) -> None:
    """Wait until the supervisor's end of the control pipe closes, then end the tree. It only polls,
    never reads: it starts before the spec arrives on that pipe (off the step's path when the
    worker is started ahead), and the spec is the main thread's to read."""
    import select

    watch = select.poll()
    watch.register(fd, 0)  # no event asked for: poll() returns on POLLHUP (or an error) alone
    while True:
        try:
            if watch.poll():
                break
        except InterruptedError:
            continue
    _kill_own_tree(token)


def _normalise(value: Any) -> dict[str, Any]:
    """A step's return value as the result dict: ``output`` plus any other keys."""
    if isinstance(value, dict) and "output" in value:
        result = dict(value)
    elif isinstance(value, dict):
        result = {"output": None, **value}
    else:
        result = {"output": value}
    if hasattr(result["output"], "__fspath__"):
        result["output"] = os.fspath(result["output"])
    return result


def run(spec: WorkerSpec, channel: Channel) -> int:
    """Run the step described by ``spec`` and report its result; return the exit status."""
    try:
        ctx = StepContext(spec, channel)
        fn = load_target(spec["target"])
        value = fn(ctx)
    except WorkerCancelled:
        raise
    except StepFailed as exc:
        channel.error(exc.reason, str(exc), exit_code=exc.exit_code, signal=exc.signal,
                      run_exit_code=exc.run_exit_code)
        return 1
    except BaseException as exc:  # noqa: BLE001 - every failure of the step is reported
        import traceback

        if isinstance(exc, SystemExit) and exc.code in (0, None):
            channel.error("exit", "the step called sys.exit(0) before returning a result")
            return 1
        if isinstance(exc, SystemExit) and isinstance(exc.code, int) and not isinstance(exc.code, bool):
            channel.error("exit", f"the step called sys.exit({exc.code}) before returning a result",
                          exit_code=exc.code)
            return exc.code if 0 < exc.code < 256 else 1
        channel.error("exception", f"{type(exc).__name__}: {exc}",
                      traceback="".join(traceback.format_exception(exc)))
        return 1
    try:
        payload = json.dumps(_normalise(value), allow_nan=False)
    except (TypeError, ValueError) as exc:
        channel.error("invalid_result", f"the step returned a value that is not JSON-serialisable: {exc}")
        return 1
    channel.result(payload)
    return 0


def _warm_up() -> None:
    """Go once through what every step's start goes through, without a step, before the spec comes.

    A worker forked from the template shares the template's memory until it writes to it: its first
    step start would copy a few hundred pages (the import system's, the JSON codec's, a context's;
    about 0.6 ms on the machine we measure on, mostly page faults) after the spec arrived, on the
    step's path. A worker started ahead pays them here, while the previous step runs. Nothing is
    kept: a spec that names no step, a context whose output folder is ``/`` (no folder is made), an
    import of a name that cannot be a module (``import`` cannot spell it), a result not sent.
    """
    spec = decode_spec(b'{"target": "", "params": {}, "output_dir": "/", "step": 0, "latest": {}}\n')
    StepContext(spec, Channel(-1))
    try:
        __import__("aicp-warm-up")
    except ImportError:
        pass
    json.dumps(_normalise(None), allow_nan=False)


def _line_buffered() -> None:
    """The step's stdout/stderr: one write per line, as on a terminal. The interpreter starts
    unbuffered (-u: text reaches the pipe at once), which costs print() two writes per line
    (the text, then the newline); a step printing a million lines would pay them twice."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=True, write_through=False)


def main(lifeline: bool = True) -> NoReturn:
    """Run one step. ``lifeline=False``: a worker forked by the template, whose lifeline is the
    template itself (its parent and subreaper: when aicp dies, it kills the worker's cgroup and
    every process under it, see :mod:`aicp._worker.template`). It has no watcher thread, which
    costs a worker's exit about 0.7 ms (the kernel stops the thread and unmaps its stack)."""
    ctrl_fd, result_fd = int(sys.argv[1]), int(sys.argv[2])
    # Programs the step starts must not inherit our private pipes: a grandchild
    # holding the lifeline open would hide the supervisor's death from us.
    os.set_inheritable(ctrl_fd, False)
    os.set_inheritable(result_fd, False)
    signal.signal(signal.SIGTERM, _on_sigterm)
    _line_buffered()
    token = os.environ.get("AICP_WORKER_TOKEN")  # read now: the step may change os.environ
    if lifeline:  # a bare thread: threading.Thread's start() handshake costs about 0.3 ms of CPU
        _thread.start_new_thread(_watch_lifeline, (ctrl_fd, token))
    _warm_up()
    spec = _read_spec(ctrl_fd)
    sys.path[:0] = spec.get("path", [])
    try:
        status = run(spec, Channel(result_fd))
    except WorkerCancelled:
        status = 128 + signal.SIGTERM
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)
