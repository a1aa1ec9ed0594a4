"""A program on a pseudo-terminal of a given size, its output rendered by a terminal emulator (pyte).

Tests read the screen as a person would see it, scrollback included, instead of
matching escape sequences: what counts is what ends up on the glass.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import termios
import threading
import time
from pathlib import Path
from typing import Callable

import pyte
import pytest


def _set_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class PtyRun:
    """``argv`` with stderr (and, if ``stdout_too``, stdout) on a ``cols`` x ``rows`` terminal."""

    def __init__(self, argv: list[str], cols: int, rows: int, cwd: Path, env: dict[str, str],
                 stdout_too: bool = False, stdin: int | None = subprocess.DEVNULL, shell: bool = False) -> None:
        self.cols, self.rows = cols, rows
        self.screen = pyte.HistoryScreen(cols, rows, history=5000)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()
        self.lock = threading.Lock()
        master, slave = pty.openpty()
        _set_size(slave, cols, rows)
        self.master = master
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=stdin, stderr=slave, shell=shell,
                                     stdout=slave if stdout_too else subprocess.PIPE, start_new_session=True)
        os.close(slave)
        self.stdout = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._out = None if stdout_too else threading.Thread(target=self._read_stdout, daemon=True)
        if self._out is not None:
            self._out.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            with self.lock:
                self.raw += data
                self.stream.feed(data)

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        self.stdout = self.proc.stdout.read()

    def resize(self, cols: int, rows: int) -> None:
        with self.lock:
            _set_size(self.master, cols, rows)
            self.screen.resize(rows, cols)
            self.cols, self.rows = cols, rows

    def display(self) -> list[str]:
        """The visible screen, one string per row, trailing blanks removed."""
        with self.lock:
            return [line.rstrip() for line in self.screen.display]

    def transcript(self) -> list[str]:
        """Scrollback and screen, as a person scrolling up would read them."""
        with self.lock:
            history = ["".join(line[i].data for i in range(self.screen.columns)).rstrip()
                       for line in self.screen.history.top]
            return history + [line.rstrip() for line in self.screen.display]

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float = 30) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.display()
            if predicate(screen):
                return screen
            if self.proc.poll() is not None and predicate(self.display()) is False:
                time.sleep(0.2)
                if not predicate(self.display()):
                    break
            time.sleep(0.05)
        pytest.fail("the screen never showed what was awaited:\n" + "\n".join(self.transcript()))

    def finish(self, timeout: float = 60) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail("the program did not end:\n" + "\n".join(self.transcript()))
        self._reader.join(5)
        if self._out is not None:
            self._out.join(5)
        os.close(self.master)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()


def find(lines: list[str], pattern: str) -> list[str]:
    return [line for line in lines if re.search(pattern, line)]
