"""SIGINT and SIGTERM before (and after) the run: an exception, so the CLI reports them like any failure.

A signal can arrive at any instruction: while the chain is read or validated,
while argparse runs, or after the run's own handlers (which cancel the steps)
are gone again. Python's defaults would print a ``KeyboardInterrupt``
traceback or end the process with no result line at all. ``install()`` is the
first instruction of ``aicp``'s ``main``: from then on such a signal raises
:class:`Signalled`, which the CLI turns into its one error line (or, with
``--stream``, the error event and the result line) and the signal's exit code
(130 for SIGINT, 143 for SIGTERM). Once the outcome is decided, ``hold()``
makes a further signal change nothing instead of cutting the report short or
overriding the exit code the result line already gave, and ``release()`` keeps
it so until the process is gone.

Only the C module ``_signal`` is used: ``signal`` imports ``enum``, and
``aicp --version`` must stay as cheap as a bare interpreter start.
"""

import _signal  # type: ignore[import-not-found]  # the C module: no stubs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_NAMES = {_signal.SIGINT: "interrupted by SIGINT", _signal.SIGTERM: "terminated by SIGTERM"}
_held = False
_previous: "dict[int, Any]" = {}  # what install() replaced, for release()


class Signalled(BaseException):
    """A signal arrived outside the run. A BaseException, like KeyboardInterrupt, so that no
    ``except Exception`` on the way (a loader, a validator) can swallow it."""

    def __init__(self, signum: int) -> None:
        super().__init__(_NAMES.get(signum, f"stopped by signal {signum}"))
        self.signum = signum
        self.message = str(self)
        self.exit_code = 128 + signum


def _handler(signum: int, _frame: "Any") -> None:
    global _held
    if not _held:  # the first one decides the outcome; later ones must not cut its report short
        _held = True
        raise Signalled(signum)


def install() -> None:
    """Route SIGINT and SIGTERM to :class:`Signalled` (where the default disposition applies)."""
    global _held
    _held = False  # a new invocation: nothing is decided yet
    for signum in _NAMES:
        previous = _signal.getsignal(signum)
        if previous in (_signal.SIG_DFL, _signal.default_int_handler):
            _previous[signum] = previous
            _signal.signal(signum, _handler)


def hold() -> None:
    """From now on a signal changes nothing: the outcome is decided and being reported.

    Called before the first byte of an outcome is written (a failed start's error event, a run's
    or a batch's end), so that a signal landing in the middle cannot add a second outcome."""
    global _held
    _held = True


def release(process_ends: bool) -> None:
    """``main`` is returning. When the process ends with it, SIGINT and SIGTERM are ignored from
    here on: the interpreter resets Python-level handlers to the default while it shuts down (a
    SIGTERM then would kill the process after its result line said otherwise), but it leaves
    ignored signals ignored. When ``main`` was called from Python (a test, a host program),
    the host's handlers come back instead: nothing of this may outlive the call."""
    global _held
    if process_ends:
        for signum in _NAMES:
            _signal.signal(signum, _signal.SIG_IGN)
        return
    for signum, previous in _previous.items():
        if _signal.getsignal(signum) is _handler:
            _signal.signal(signum, previous)
    _previous.clear()
    _held = False
