"""The worker template process: imports the worker's code once, then forks one worker per step.

Runs as its own process (see :mod:`aicp._process.launch`), in its own session. It
never runs step code: each request (the worker's environment, with its four
pipe ends attached) becomes a child that starts its own session, takes the
pipes as fds 0-2 and the private channels (its environment changed only where it
differs from the template's), and enters :func:`aicp._worker.main.main` as a
freshly started interpreter would, but without a lifeline thread of its own: the
template is its lifeline (below), and the kernel kills it if the template dies
(``PR_SET_PDEATHSIG``: a killed template cannot leave a worker running unwatched). The template collects its
children's exit status and resource usage and reports them, and exits when
the supervisor's end of the socket closes.

It is also the run's last-resort reaper: a child subreaper (orphans a step
leaves come to it, not to init), told the run's cgroup folders in its argv.
When the socket closes, which happens however aicp ends (kill -9 included),
it kills those cgroups and every process left under it (its workers and
whatever they started), removes the folders, and only then exits (see
:mod:`aicp._worker.reaper`).
"""

from __future__ import annotations

import array
import errno
import os
import select
import signal
import socket
import subprocess  # noqa: F401  # a command step's: command_step imports it only when it runs
import sys

import aicp._worker.main  # the point of the template: these imports are paid once per run
from aicp._worker.reaper import enable_subreaper, kill_and_remove, kill_descendants, reap_children, signal_on_parent_death
from aicp._worker.protocol import EXIT_NOT_STARTED, TEMPLATE_FDS, exit_reply, pid_reply, read_template_request
import aicp.steps.command_step  # noqa: F401
import aicp.steps.python_step  # noqa: F401

try:  # ctx.log uses structlog; pre-import it so a step's first log line is free
    import structlog  # noqa: F401
except ImportError:  # pragma: no cover
    pass


def _fork_worker(sock: socket.socket, wake: tuple[int, int], fds: array.array[int], env: dict[str, str | None]) -> int:
    out_w, err_w, ctrl_r, res_w = fds
    try:
        pid = os.fork()
    except OSError as exc:
        return -(exc.errno or 1)
    if pid:
        return pid
    try:  # the child: become a worker
        if not signal_on_parent_death(_TEMPLATE_PID, signal.SIGKILL):
            os._exit(EXIT_NOT_STARTED)  # the template died while forking: no one would watch us
        os.setsid()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        for fd in (null, out_w, err_w, sock.fileno(), *wake):
            os.close(fd)
        _take_environment(env)
        sys.argv = ["aicp-worker", str(ctrl_r), str(res_w)]
        aicp._worker.main.main(lifeline=False)  # we are its lifeline (see _last_rites)
    finally:
        os._exit(EXIT_NOT_STARTED)


_TEMPLATE_PID = os.getpid()


def _take_environment(changes: dict[str, str | None]) -> None:
    """Make the child's environment the worker's: the template's (which it starts with) with
    ``changes`` (None: removed), each a putenv() (usually the worker's token alone)."""
    for key, value in changes.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _report_exits(sock: socket.socket, workers: set[int]) -> None:
    """Reap every ended child; report the workers' (adopted orphans are only reaped)."""
    for record in reap_children():
        if record[0] in workers:
            workers.discard(record[0])
            sock.send(exit_reply(*record))


def _last_rites(cgroup_folders: list[str]) -> None:
    """The supervisor is gone: end everything the run started, then remove its cgroups."""
    for folder in cgroup_folders:
        kill_and_remove(folder)
    kill_descendants(os.getpid())


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    cgroup_folders = sys.argv[2:]
    enable_subreaper()
    workers: set[int] = set()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    fd_space = socket.CMSG_SPACE(TEMPLATE_FDS * 4)
    sock_fd = sock.fileno()
    request = bytearray(1 << 20)  # (one buffer for every request, not a megabyte mapped for each)
    try:
        while True:
            ready, _, _ = select.select([sock_fd, wake_r], [], [])
            if wake_r in ready:  # a child ended (SIGCHLD): reap, and report the workers
                try:
                    while len(os.read(wake_r, 512)) == 512:
                        pass
                except BlockingIOError:
                    pass
                _report_exits(sock, workers)
            if sock_fd in ready:
                size, ancdata, _, _ = sock.recvmsg_into([request], fd_space)
                if not size:
                    break
                data = bytes(request[:size])
                fds = array.array("i")
                for level, kind, payload in ancdata:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
                pid = _fork_worker(sock, (wake_r, wake_w), fds, read_template_request(data)) \
                    if len(fds) == TEMPLATE_FDS else -errno.EINVAL
                for fd in fds:
                    os.close(fd)
                if pid > 0:
                    workers.add(pid)
                sock.send(pid_reply(pid))
    except OSError:
        pass  # the supervisor is gone
    _last_rites(cgroup_folders)
    os._exit(0)
