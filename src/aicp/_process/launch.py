"""How a worker process comes to exist: a fresh interpreter, or a fork of a warm template.

A worker's start-up is the per-step overhead of the whole tool. Starting a new
interpreter costs a bare Python start plus our imports; forking a *template*
process that has already imported the worker's code (as multiprocessing's
forkserver does) costs a fraction of that. The template is started once per
run, never runs step code itself, and forks one clean child per step, so crash
isolation is unchanged: each step is still its own process, in its own
session, with its own pipes, and a crash kills only that child.

Both launchers give :mod:`aicp._process.monitor` the same thing: a pid whose process
group is the worker's own, the read ends of its stdout and stderr, and a way
to learn its exit status and resource usage. ``AICP_WORKER_START=spawn``
forces fresh interpreters (for debugging); the template falls back to spawning
if it cannot be started or dies.

The template is also the run's last-resort reaper (:mod:`aicp._worker.reaper`):
it is started even when workers are spawned, is told the run's cgroup folders,
and kills them, and everything else under it, when aicp dies.

Starting a worker (pipes, a cgroup, the fork, moving it into the cgroup) takes
a few milliseconds, mostly in the kernel; the :class:`Launcher` does it for the
*next* step while the current one runs, in a background thread
(:class:`Started`, "a worker started ahead" in docs/supervisor.md). A worker
started ahead is exactly what a worker started on demand is: a fresh fork that
has run no step code, already in its own cgroup, blocked reading its spec; if
aicp dies it reads end-of-file and exits, and a run that ends without using it
kills it with its cgroup.
"""

from __future__ import annotations

import array
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass

from aicp._process.cgroup import RunCgroups, WorkerCgroup, probe
from aicp._process.tree import TOKEN_VAR, CgroupMembers, Members, ProcessTree
from aicp._threads import signals_to_the_main_thread
from aicp._worker.reaper import is_subreaper, kill_descendants
from aicp._worker.protocol import read_template_reply, template_request

_BOOT = "import sys; sys.path[:0] = {path!r}; from aicp.{module} import main; main()"
PYTHON_FLAGS = ("-I", "-S", "-u", "-X", "utf8")


@dataclass(frozen=True)
class ExitStatus:
    """How a worker ended: ``code`` as subprocess reports it (negative: killed by that signal)."""

    code: int
    cpu_seconds: float
    max_rss_bytes: int


def _package_root() -> str:
    # From this file, not ``import aicp``: nothing in _process imports upward.
    # src/aicp/_process/launch.py -> src
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def interpreter_argv(module: str, *args: str, path: list[str] | None = None) -> list[str]:
    """A fresh interpreter (no site, so no .pth files) running ``aicp.<module>.main()`` with ``path`` first."""
    return [sys.executable, *PYTHON_FLAGS, "-c",
            _BOOT.format(path=path or [_package_root()], module=module), *args]


class Launched(ABC):
    """A started worker. ``stdout``/``stderr`` are read ends the caller closes.

    ``exit_fd`` (Linux pidfd; None elsewhere or if the worker is already gone)
    becomes readable when the worker ends, so a monitor can sleep in ``select``
    and still wake the moment it happens.
    """

    pid: int
    stdout: int
    stderr: int
    exit_fd: int | None = None
    reaper: int | None = None  # the subreaper its orphans are re-parented to (None: init)

    def _watch_exit(self) -> None:
        try:
            self.exit_fd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            self.exit_fd = None

    def close(self) -> None:
        for fd in (self.stdout, self.stderr, self.exit_fd):
            if fd is not None:
                os.close(fd)

    def exited(self) -> bool:
        """Whether the worker has ended (its process group may still have members)."""
        if self.exit_fd is not None and select.select([self.exit_fd], [], [], 0)[0]:
            return True
        return self._exited()

    @abstractmethod
    def _exited(self) -> bool:
        """Whether the worker has ended, asked of its parent (when no pidfd could tell)."""

    @abstractmethod
    def wait(self) -> ExitStatus:
        """Block until the worker has ended; return its status. Call once."""


class _Spawned(Launched):
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        self._proc = proc
        self.pid = proc.pid
        self.stdout = os.dup(proc.stdout.fileno())
        self.stderr = os.dup(proc.stderr.fileno())
        proc.stdout.close()
        proc.stderr.close()
        self.reaper = os.getpid() if is_subreaper() else None
        self._watch_exit()

    def _exited(self) -> bool:
        # WNOWAIT: look without reaping, so the pid (and its group) cannot be reused
        # before the supervisor has killed whatever the worker left behind.
        try:
            return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def wait(self) -> ExitStatus:
        try:
            _, status, usage = os.wait4(self.pid, 0)
        except ChildProcessError:  # reaped by a sweep of our children (a worker started ahead that died)
            self._proc.returncode = -signal.SIGKILL
            return ExitStatus(-signal.SIGKILL, 0.0, 0)
        self._proc.returncode = code = os.waitstatus_to_exitcode(status)
        return ExitStatus(code, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024)


def _members(worker: Launched, cgroup: WorkerCgroup | None, token: str) -> Members:
    """The worker's cgroup, joined before it reads its spec; else its process tree."""
    if cgroup is not None:
        if cgroup.join(worker.pid):
            return CgroupMembers(cgroup)
        cgroup.remove()
    return ProcessTree.of(worker.pid, token, worker.reaper)


def spawn(ctrl_r: int, res_w: int, env: dict[str, str]) -> Launched:
    """Start a fresh interpreter running the worker on the pipe ends ``ctrl_r`` and ``res_w``."""
    proc = subprocess.Popen(interpreter_argv("_worker.main", str(ctrl_r), str(res_w)),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            pass_fds=(ctrl_r, res_w), start_new_session=True, env=env)
    return _Spawned(proc)


class _Forked(Launched):
    def __init__(self, template: "Template", pid: int, stdout: int, stderr: int) -> None:
        self._template = template
        self.pid, self.stdout, self.stderr = pid, stdout, stderr
        self.reaper = template.pid  # the template is a child subreaper
        self._watch_exit()

    def _exited(self) -> bool:
        return self._template.status_of(self.pid, block=False) is not None

    def wait(self) -> ExitStatus:
        status = self._template.status_of(self.pid, block=True)
        assert status is not None
        return status


class Template:
    """The supervisor's side of a worker template process (see :mod:`aicp._worker.template`).

    Requests go over a Unix socket with the worker's pipe ends attached
    (SCM_RIGHTS); the template answers with the child's pid, and later reports
    each child's exit status, which it alone can collect, being the parent.
    """

    def __init__(self, cgroup_folders: list[str]) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            # Our whole import path, not only the package's folder: the template pre-imports
            # structlog, which lives in site-packages, not next to aicp under an editable install.
            path = [_package_root(), *filter(None, sys.path)]
            self._proc = subprocess.Popen(interpreter_argv("_worker.template", str(theirs.fileno()), *cgroup_folders,
                                                           path=path),
                                          stdin=subprocess.DEVNULL, pass_fds=(theirs.fileno(),),
                                          start_new_session=True)
        finally:
            theirs.close()
        self._sock = ours
        self._lock = threading.Lock()  # one request at a time
        self._cond = threading.Condition()
        self._replies: list[int] = []
        self._exits: dict[int, ExitStatus] = {}
        self._alive = True
        self._reader = threading.Thread(target=self._read, name="aicp-template", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _read(self) -> None:
        signals_to_the_main_thread()
        while True:
            try:
                data = self._sock.recv(4096)
            except OSError:
                data = b""
            with self._cond:
                if not data:
                    self._alive = False
                    self._cond.notify_all()
                    return
                pid, ended = read_template_reply(data)
                if ended is None:
                    self._replies.append(pid)
                else:
                    self._exits[pid] = ExitStatus(*ended)
                self._cond.notify_all()

    def launch(self, ctrl_r: int, res_w: int, env: dict[str, str]) -> Launched:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            with self._lock:
                fds = array.array("i", [out_w, err_w, ctrl_r, res_w])
                self._sock.sendmsg([template_request(env)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
                with self._cond:
                    self._cond.wait_for(lambda: self._replies or not self._alive)
                    if not self._replies:
                        raise OSError("the worker template exited")
                    pid = self._replies.pop(0)
            if pid < 0:
                raise OSError(-pid, os.strerror(-pid))
        except BaseException:
            os.close(out_r)
            os.close(err_r)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        return _Forked(self, pid, out_r, err_r)

    def status_of(self, pid: int, block: bool) -> ExitStatus | None:
        with self._cond:
            if block:
                self._cond.wait_for(lambda: pid in self._exits or not self._alive)
            if pid in self._exits:
                return self._exits.pop(pid) if block else self._exits[pid]
            if not self._alive:
                # The template died: its children were re-parented; the worker is
                # treated as ended once its pid is gone.
                if block or not _pid_alive(pid):
                    return ExitStatus(-signal.SIGKILL, 0.0, 0)
            return None

    @property
    def alive(self) -> bool:
        return self._alive

    def close(self) -> None:
        # shutdown, not just close: our reader thread is blocked in recv on this socket,
        # and a plain close would leave the file open (and the template waiting) until it returns.
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._reader.join(5)  # it ends on the shutdown; no helper thread outlives the run
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


@dataclass
class Started:
    """A worker that is running, contained and blocked reading its spec: no step code has run.

    ``ctrl_w`` is the control pipe (the spec goes there; closing it is the
    worker's lifeline cut), ``res_r`` its result pipe; the caller closes both,
    and the worker's own fds, and releases ``members``. ``env`` is what it was
    started with (its token aside): a worker started ahead serves only a
    request for the same environment.
    """

    worker: Launched
    ctrl_w: int
    res_r: int
    members: Members
    env: dict[str, str]

    def discard(self) -> None:
        """Stop it unused: kill it (and its cgroup), collect its status, close everything."""
        os.close(self.ctrl_w)
        os.close(self.res_r)
        self.members.signal_all(signal.SIGKILL)
        self.worker.wait()
        self.worker.close()
        self.members.release()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Launcher:
    """Starts workers: by forking the template when possible, else fresh interpreters.

    It also owns the run's cgroups (made on first use; see :attr:`containment`)
    and the template, which stays the last-resort reaper in both modes.
    """

    def __init__(self, method: str | None = None) -> None:
        self.method = method or os.environ.get("AICP_WORKER_START", "fork")
        self._template: Template | None = None
        self._lock = threading.Lock()
        self._cgroups: RunCgroups | None = None
        self._probed = False
        # The worker started ahead (see start_ahead()), and the thread that starts it.
        self._ahead = threading.Condition()
        self._spare: Started | None = None
        self._wanted: dict[str, str] | None = None  # the environment of the next worker to start ahead
        self._preparing = False
        self._awaited = False  # a start() is waiting for the worker being started ahead
        self._closing = False
        self._thread: threading.Thread | None = None

    @property
    def containment(self) -> str:
        """How workers are contained and killed: ``cgroup2``, ``cgroup1`` or ``process_tree``."""
        cgroups = self._run_cgroups()
        return cgroups.mechanism if cgroups is not None else "process_tree"

    def _run_cgroups(self) -> RunCgroups | None:
        with self._lock:
            if not self._probed:
                self._probed = True
                self._cgroups = probe() if sys.platform.startswith("linux") else None
            return self._cgroups

    def new_cgroup(self) -> WorkerCgroup | None:
        """A cgroup for the next worker, or None (the process-tree mechanism then)."""
        cgroups = self._run_cgroups()
        with self._lock:
            return cgroups.worker() if cgroups is not None else None

    def start(self, env: dict[str, str]) -> Started:
        """A worker for the next step, with ``env`` (plus its own token): the one started ahead if
        there is one for this environment (waiting for it if it is being started), else a new one.
        Raises OSError if no worker can be started.
        """
        with self._ahead:
            if self._preparing and not self._awaited:  # (one caller waits; others start their own)
                self._awaited = True
                self._ahead.wait_for(lambda: not self._preparing)
                self._awaited = False
            spare, self._spare = self._spare, None
            if self._wanted is not None:
                self._wanted = None  # not yet begun: this call starts its own
        if spare is not None and (spare.env != env or spare.worker.exited()):
            spare.discard()
            spare = None
        return spare if spare is not None else self._start_now(env)

    def _start_now(self, env: dict[str, str]) -> Started:
        ctrl_r, ctrl_w = os.pipe()
        res_r, res_w = os.pipe()
        token = uuid.uuid4().hex
        cgroup = self.new_cgroup()
        try:
            worker = self.launch(ctrl_r, res_w, {**env, TOKEN_VAR: token})
        except BaseException:
            os.close(ctrl_w)
            os.close(res_r)
            if cgroup is not None:
                cgroup.remove()
            raise
        return Started(worker, ctrl_w, res_r, _members(worker, cgroup, token), env)

    def start_ahead(self, env: dict[str, str]) -> None:
        """Another worker will be wanted (a later step, a group's member): start one with ``env``
        now, in the background, unless one is there or under way. (Called once the step that
        runs meanwhile has its spec: its worker comes first for the processors.)"""
        with self._ahead:
            if self._closing or self._spare is not None or self._preparing:
                return
            self._wanted = env
            if self._thread is None:
                self._thread = threading.Thread(target=self._starter, name="aicp-start-ahead", daemon=True)
                self._thread.start()
            self._ahead.notify_all()

    def _starter(self) -> None:
        """The background thread: starts each worker wanted ahead (see start_ahead())."""
        signals_to_the_main_thread()
        while True:
            with self._ahead:
                self._ahead.wait_for(lambda: self._wanted is not None or self._closing)
                if self._closing:
                    return
                env, self._wanted = self._wanted, None
                self._preparing = True
            spare: Started | None = None
            try:
                assert env is not None
                spare = self._start_now(env)
            except Exception:  # noqa: BLE001 - no spare then: the step starts its own and reports why not
                spare = None
            finally:
                with self._ahead:
                    self._preparing = False
                    self._spare = spare
                    self._ahead.notify_all()

    def launch(self, ctrl_r: int, res_w: int, env: dict[str, str]) -> Launched:
        """Start a worker on the pipe ends ``ctrl_r`` and ``res_w`` (closed here, in any case)."""
        try:
            template = self._warm_template()
            if template is not None and self.method == "fork":
                try:
                    return template.launch(ctrl_r, res_w, env)
                except OSError:
                    pass  # the template is gone, or the request too large: a fresh interpreter
            return spawn(ctrl_r, res_w, env)
        finally:
            os.close(ctrl_r)
            os.close(res_w)

    def _warm_template(self) -> Template | None:
        if self.method not in ("fork", "spawn") or not sys.platform.startswith("linux"):
            return None
        cgroups = self._run_cgroups()
        with self._lock:
            if self._template is None or not self._template.alive:
                try:
                    self._template = Template(cgroups.folders if cgroups is not None else [])
                except OSError:
                    self.method = "spawn"
                    return None
            return self._template

    def sweep(self, own_children: bool) -> None:
        """Between steps (no worker running): kill what steps left behind.

        That is everything under the template (orphans it adopted as subreaper;
        it reaps them) and, with ``own_children`` (the CLI, a subreaper too),
        our own children other than the template, sparing the worker started ahead.
        """
        with self._ahead:  # (held throughout: no worker is started ahead meanwhile)
            self._ahead.wait_for(lambda: not self._preparing)
            spare = frozenset({self._spare.worker.pid} if self._spare is not None else ())
            template = self._template.pid if self._template is not None else None
            if template is not None:
                kill_descendants(template, keep=spare)
            if own_children:
                kill_descendants(os.getpid(), keep=spare | frozenset({template} if template else ()))

    def close(self) -> None:
        with self._ahead:
            self._closing = True
            self._ahead.notify_all()
        if self._thread is not None:
            self._thread.join()  # (after the start under way, if any)
            self._thread = None
        if self._spare is not None:
            self._spare.discard()
            self._spare = None
        if self._template is not None:
            self._template.close()  # (the template kills and removes the run's cgroups as it exits)
            self._template = None
        if self._cgroups is not None:
            self._cgroups.close()  # in case there was no template to do it
            self._cgroups = None
