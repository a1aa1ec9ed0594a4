"""Shared helpers: run the real ``aicp`` CLI in a subprocess and read what it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass
class Run:
    """A finished ``aicp`` invocation."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def events(self) -> list[dict[str, Any]]:
        """The JSON events on stderr (every line must parse)."""
        return [json.loads(line) for line in self.stderr.splitlines() if line.strip()]

    @property
    def result(self) -> dict[str, Any]:
        """The one JSON line on stdout (``--stream``) or the ``--json`` envelope."""
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        assert len(lines) == 1, f"expected exactly one stdout line, got {lines!r}"
        return json.loads(lines[0])

    def of(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event]


def aicp_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "aicp", *args]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.pop("CI", None)
    env.update(extra)
    return env


@pytest.fixture
def aicp(tmp_path: Path):
    """Run ``python -m aicp ARGS`` in ``tmp_path`` and return a :class:`Run`."""

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 120, cwd: Path | None = None) -> Run:
        proc = subprocess.run(aicp_command(*args), input=input, capture_output=True, text=True,
                              cwd=cwd or tmp_path, env=env or clean_env(), timeout=timeout)
        return Run(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def write_chain(tmp_path: Path):
    """Write a chain file (dedented YAML) into ``tmp_path``; return its path as a string."""

    def write(text: str, name: str = "chain.yaml") -> str:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return str(path)

    return write


@pytest.fixture
def write_module(tmp_path: Path):
    """Write a Python module next to the chain (importable by ``python`` steps)."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / f"{name}.py"
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write
