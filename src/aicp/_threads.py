"""Helper threads leave signals to the main thread.

Python runs signal handlers in the main thread only, but the kernel may deliver a
process-directed signal (SIGINT, SIGTERM) to any thread that does not block it.
Delivered to a helper thread, it only sets a flag: a main thread asleep in a wait
(a retry's backoff, a lock) is not woken, and the handler runs when the wait
ends by itself. So every helper thread blocks all signals first thing.
"""

from __future__ import annotations

import signal


def signals_to_the_main_thread() -> None:
    """Call first in a helper thread: block every signal in it."""
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
