"""Every bound aicp puts on its input, in one table: what is accepted is what runs.

A chain that validates must run: a timeout of ``1e300`` seconds overflows the
clocks it is compared with, an integer beyond 64 bits cannot be written into
the event stream, a document of nested aliases expands to gigabytes. So each
number a chain sets has a documented range, and the documents themselves have
a size, a depth and an alias-expansion budget. README's "Limits" table is
generated from nothing but this module's values (``tests/test_limits.py``
checks that they agree).
"""

from __future__ import annotations

from aicp._record import record

# -- files and documents
MAX_FILE_BYTES = 1 << 20        # a chain file, a --prompt-file, a text --input, stdin: 1 MiB
MAX_DEPTH = 64                  # nesting of mappings and lists in a chain document
MAX_VALUES = 100_000            # values in a chain document, every alias counted as what it expands to
MAX_INT = 2**64 - 1             # integers anywhere in a chain (what the JSON event stream carries)
MIN_INT = -(2**63)
MAX_DIGITS = 40                 # an integer literal longer than this is out of range whatever it says
TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels (the limit)"


class HugeInt:
    """An integer literal of more than :data:`MAX_DIGITS` digits, kept as its digits: converting it
    could only give a value out of range, and Python refuses > 4300 digits (slowly)."""

    def __init__(self, digits: str) -> None:
        self.digits = digits

    def __repr__(self) -> str:
        return f"{self.digits[:20]}...({len(self.digits)} digits)"


def number_text(value: float) -> str:
    """``2592000``, not ``2.592e+06``: limits read as people write them."""
    return str(int(value)) if float(value).is_integer() else str(value)


@record
class Range:
    """The accepted values of one numeric field (``low`` excluded when ``low_open``)."""

    low: float
    high: float
    low_open: bool
    integer: bool
    unit: str

    def describe(self) -> str:
        """The range as README's table shows it: ``> 0 .. 2592000 seconds (30 days)``."""
        low = f"> {number_text(self.low)}" if self.low_open else number_text(self.low)
        kind = "whole number " if self.integer else ""
        return f"{kind}{low} .. {number_text(self.high)} {self.unit}"


# the numeric fields of a chain (top level and steps) and of a parallel_group's params
FIELDS: dict[str, Range] = {
    "timeout": Range(0, 30 * 24 * 3600, True, False, "seconds (30 days)"),
    "retry_count": Range(0, 100, False, True, "retries"),
    "retry_delay": Range(0, 3600, True, False, "seconds"),
    "retry_max_delay": Range(0, 3600, True, False, "seconds"),
    "kill_grace": Range(0, 600, False, False, "seconds"),
    "max_memory_mb": Range(0, 1 << 20, True, False, "MB (1 TiB)"),
    "max_workers": Range(1, 64, False, True, "workers"),
}


def field_problem(key: str, value: object) -> str | None:
    """What is wrong with ``value`` for the numeric field ``key``, or None: the one range rule,
    used by the validator and by the check of every number in a document."""
    limit = FIELDS[key]
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    if limit.integer and (not isinstance(value, int) or isinstance(value, bool) or value < limit.low):
        return f"must be a whole number >= {number_text(limit.low)}, got {value!r}"
    if not number or value < limit.low or (value == limit.low and limit.low_open):  # type: ignore[operator]
        kind = "a positive number" if limit.low_open else f"a number >= {number_text(limit.low)}"
        return f"must be {kind}, got {value!r}"
    if value > limit.high:  # type: ignore[operator]
        return f"must be at most {number_text(limit.high)} {limit.unit}, got {value!r}"
    return None
