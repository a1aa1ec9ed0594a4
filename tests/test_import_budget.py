"""The worker path keeps the import promises its comments make.

A worker's start-up is the per-step overhead of the whole tool, so the code a
worker imports (``_worker/``, ``_context``, ``_targets`` and the built-in
``python`` and ``command`` steps, which the template pre-imports) avoids
``typing`` (~10 ms) and structlog (loaded only when a step uses ``ctx.log``).
The warm template, on the other hand, promises to pre-import structlog so a
forked step's first log line is free: that must work under an editable
install too, where structlog does not sit next to the aicp package.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from _aicp import Run, aicp_argv, child_env
from aicp._process.launch import PYTHON_FLAGS, _package_root

WORKER_MODULES = ("aicp._worker.main", "aicp._worker.protocol", "aicp.steps.python_step", "aicp.steps.command_step")
NOT_ON_THE_WORKER_PATH = ("typing", "structlog")


def _imported(code: str) -> list[str]:
    """Every module a worker-like interpreter (same flags, same path) imports running ``code``."""
    boot = f"import sys; sys.path[:0] = [{_package_root()!r}]; {code}"
    done = subprocess.run([sys.executable, *PYTHON_FLAGS, "-X", "importtime", "-c", boot],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return [line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines()
            if line.startswith("import time:") and "|" in line]


def test_the_modules_a_worker_imports_are_measured() -> None:
    modules = _imported("import " + ", ".join(WORKER_MODULES))
    for name in WORKER_MODULES:  # the measurement sees them, so it would see typing too
        assert name in modules


@pytest.mark.parametrize("module", WORKER_MODULES)
def test_no_worker_module_imports_typing_or_structlog(module: str) -> None:
    modules = _imported(f"import {module}")
    for name in NOT_ON_THE_WORKER_PATH:
        pulled = [m for m in modules if m == name or m.startswith(name + ".")]
        assert not pulled, f"importing {module} imports {pulled}"


def test_a_step_sees_what_each_launcher_promised(tmp_path: Path) -> None:
    # Through the real CLI: a spawned worker has imported neither; a worker forked from the
    # template finds structlog already imported (the template's pre-import worked).
    (tmp_path / "probe.py").write_text(textwrap.dedent("""
        import sys

        def loaded(ctx):
            return {"output": "ok", "typing": "typing" in sys.modules, "structlog": "structlog" in sys.modules}
    """))
    chain = tmp_path / "chain.yaml"
    chain.write_text("name: probe\nprompt: go\nsteps:\n  - {type: python, params: {function: 'probe:loaded'}}\n")
    seen = {}
    for launcher in ("spawn", "fork"):
        done = subprocess.run(aicp_argv("run-chain", "-c", str(chain), "--stream"), cwd=tmp_path,
                              env=child_env(AICP_WORKER_START=launcher), capture_output=True, timeout=120)
        run = Run(done.returncode, done.stdout.decode(), done.stderr.decode())
        assert run.returncode == 0, run.stderr[-2000:]
        seen[launcher] = run.result["outputs"]["step_1_python"]["metadata"]
    assert seen["spawn"] == {"typing": False, "structlog": False}
    assert seen["fork"]["structlog"] is True
