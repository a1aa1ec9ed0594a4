"""A stop request that a sleeping monitor wakes up for at once, even from a signal handler.

Every monitor (one per running worker) and every retry backoff waits on the
run's :class:`Cancel`. Waiting must cost nothing while nothing happens and
end the moment a stop is asked for, so the request is a self-pipe: ``set``
writes one byte to it, and its read end (``fileno``) stays readable from
then on. A monitor puts that fd in its ``select`` next to the worker's pipes
and pidfd and sleeps; a backoff ``select``s on it alone. ``set`` takes no
lock, so a signal handler may call it while the main thread is anywhere.

A parallel group has a request of its own (its members stop when one of
them fails or wins) which the run's request also sets: :meth:`Cancel.linked`.
"""

from __future__ import annotations

import os
import select
import weakref


def _close_pipe(fds: tuple[int, int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class Cancel:
    """A run-wide stop request, shared by every worker monitor.

    ``set(message)`` asks running steps to stop (TERM, grace, KILL);
    ``set(message, hard=True)`` skips the grace period (a second Ctrl-C).
    ``exit_code`` is what the run exits with when it ends cancelled (130
    for SIGINT, 129 for SIGHUP, 131 for SIGQUIT, 143 for SIGTERM). Safe to
    call from a signal handler or any thread.
    """

    def __init__(self) -> None:
        self._set = False
        self.message = ""
        self.hard = False
        self.exit_code = 130
        self._linked: list[Cancel] = []
        self._parent: Cancel | None = None
        self._pipe = os.pipe()
        for fd in self._pipe:
            os.set_blocking(fd, False)
        self._closer = weakref.finalize(self, _close_pipe, self._pipe)

    def set(self, message: str, hard: bool = False, exit_code: int | None = None) -> None:
        if not self._set:
            self.message = message
            self.exit_code = exit_code or self.exit_code
        self.hard = self.hard or hard
        self._set = True
        try:
            os.write(self._pipe[1], b"!")
        except OSError:
            pass  # closed, or already full of bytes: readable either way
        for child in list(self._linked):
            child.set(message, hard, exit_code)

    def is_set(self) -> bool:
        return self._set

    def fileno(self) -> int:
        """An fd that becomes (and stays) readable when the request is set."""
        return self._pipe[0]

    def wait(self, timeout: float) -> bool:
        """Sleep until the request is set or ``timeout`` seconds pass; return whether it is set."""
        if not self._set:
            try:
                select.select([self._pipe[0]], [], [], max(0.0, timeout))
            except (OSError, ValueError):
                pass  # closed: nothing more to wait for
        return self._set

    def linked(self) -> "Cancel":
        """A request of its own that this one also sets (a parallel group's). Close it after use."""
        child = Cancel()
        child._parent = self
        self._linked.append(child)
        if self._set:
            child.set(self.message, self.hard, self.exit_code)
        return child

    def close(self) -> None:
        """Release the pipe (and the link to the parent request). The flags stay readable."""
        if self._parent is not None:
            try:
                self._parent._linked.remove(self)
            except ValueError:
                pass
            self._parent = None
        self._closer()
