"""Reading the text files a user names (chain, --prompt-file, a text --input, stdin): bounded, never blocking.

Only regular files are read: a FIFO would block ``open`` until a writer comes
(forever, for a typo), ``/dev/zero`` or ``/dev/urandom`` never end, a
directory is not text. The file is opened with ``O_NONBLOCK`` (so a FIFO
cannot hang the open), checked with ``fstat``, and read up to the size limit.
Stdin is read up to the same limit. Text that is not UTF-8 is refused with the
line and column of the first bad byte; a NUL is refused where the text goes on
to steps and argv (it cannot be passed to a program).

File names come from argv and may hold bytes that are not UTF-8 (surrogate
escapes): they are opened as they are and shown with ``\\xNN`` escapes.
"""

from __future__ import annotations

import os
import stat
import sys

from aicp._chain.limits import MAX_FILE_BYTES
from aicp._errors import MissingInputError, UsageError, printable

_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def read_text(path: str, what: str) -> tuple[str, str]:
    """Return (text, label) of the file ``path`` (``-``: stdin), label as messages show it."""
    label = "<stdin>" if path == "-" else printable(path)
    data = _read_stdin(what) if path == "-" else _read_file(path, label, what)
    return decode(data, label, what), label


def _read_file(path: str, label: str, what: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise MissingInputError(f"{what} not found: {label}") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name (from the Python API)
        try:  # a socket cannot even be opened (ENXIO): say what it is
            _check_regular(os.stat(path).st_mode, label, what)
        except (OSError, ValueError):
            pass
        raise MissingInputError(f"cannot read {what} {label}: {_reason(exc)}") from None
    try:
        _check_regular(os.fstat(fd).st_mode, label, what)
        return _read_bounded(fd, label, what)
    except OSError as exc:
        raise MissingInputError(f"cannot read {what} {label}: {_reason(exc)}") from None
    finally:
        os.close(fd)


def _check_regular(mode: int, label: str, what: str) -> None:
    if stat.S_ISDIR(mode):
        raise MissingInputError(f"{what} is a directory: {label}")
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a file")
        raise MissingInputError(f"{what} is not a regular file ({kind}): {label}")


def _read_stdin(what: str) -> bytes:
    stream = sys.stdin
    try:
        if stream is None:
            raise OSError("stdin is closed")
        return _read_bounded(stream.fileno(), "<stdin>", what)
    except (OSError, ValueError) as exc:
        raise MissingInputError(f"cannot read {what} from stdin: {_reason(exc)}") from None


def _read_bounded(fd: int, label: str, what: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = os.read(fd, min(1 << 16, MAX_FILE_BYTES + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_FILE_BYTES:
            raise MissingInputError(f"{what} {label} is larger than {MAX_FILE_BYTES} bytes (the limit)")


def _reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def position_of(text: str, index: int) -> tuple[int, int]:
    """1-based line and column (in characters) of offset ``index`` of ``text``."""
    return text.count("\n", 0, index) + 1, index - (text.rfind("\n", 0, index) + 1) + 1


def decode(data: bytes, label: str, what: str) -> str:
    """UTF-8 (a byte-order mark is dropped); else the position of the first byte that is not."""
    try:
        text = data.decode("utf-8")  # and the mark dropped: "utf-8-sig" would load a codec module to do it
        return text[1:] if text.startswith("\ufeff") else text
    except UnicodeDecodeError as exc:
        before = data[:exc.start].decode("utf-8-sig", "replace")
        line, column = position_of(before, len(before))
        raise MissingInputError(f"{label}:{line}:{column}: cannot read {what}: not valid UTF-8 "
                                f"(byte 0x{data[exc.start]:02x}); save it as UTF-8") from None


def check_input_text(text: str, label: str) -> str:
    """Text that goes to steps (argv, environment, files) as it is: no NUL, no undecodable bytes."""
    bad = text.find("\x00")
    if bad >= 0:
        line, column = position_of(text, bad)
        raise UsageError(f"{label}:{line}:{column}: the input text contains a NUL character, "
                         "which no program can be given")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        line, column = position_of(text, exc.start)
        raise UsageError(f"{label}:{line}:{column}: the input text is not valid UTF-8") from None
    return text


def check_name(name: str, what: str) -> str:
    """A path that will be written into events and run records: it must be valid UTF-8."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{what} {printable(name)}: the name is not valid UTF-8, and the events and the run "
                         "record (JSON) carry names as UTF-8 text; rename it") from None
    return name
