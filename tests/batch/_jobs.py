"""What both engines' tests run: a two-step chain whose steps count their executions.

Each execution of a step writes one file ``counts/<job>.<step>.<pid>``, so executions are
counted across every process that ran them (local jobs, fleet workers on other hosts' pids):
``counts()`` says how often each job's step ran, which is how the tests see that a finished
step was reused and that no job ran twice.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

CHAIN = """
name: batch_chain
prompt: unused
output_dir: out
steps:
  - type: python
    name: write
    params: {function: "jobs:write"}
  - type: python
    name: finish
    params: {function: "jobs:finish"}
"""

# write: fails for an input starting with "fail", costs STEP_COST; finish: for a row whose text
# starts with "slow", prints "ready" and sleeps SLOW_SECONDS, only on its first execution (the
# resumed run of a killed job finishes at once)
MODULE = '''
import os, time
from pathlib import Path

COUNTS = Path(os.environ["COUNTS_DIR"])

def _count(name):
    (COUNTS / f"{name}.{os.getpid()}").write_text("1")
    return len(list(COUNTS.glob(f"{name}.*")))

def write(ctx):
    _count(f"{os.environ.get('AICP_JOB_ID', 'solo')}.write")
    if ctx.input.startswith("fail"):
        raise RuntimeError(f"row says {ctx.input}")
    path = ctx.output_path(".txt")
    path.write_text(ctx.input.upper())
    return {"output": str(path), "cost": float(os.environ.get("STEP_COST", "0"))}

def finish(ctx):
    n = _count(f"{os.environ.get('AICP_JOB_ID', 'solo')}.finish")
    if ctx.input and Path(ctx.input).read_text().startswith("SLOW") and n == 1:
        print("ready", flush=True)
        time.sleep(float(os.environ.get("SLOW_SECONDS", "30")))
    return ctx.input
'''


@pytest.fixture
def batch_dir(tmp_path: Path) -> Path:
    """A folder with chain.yaml, its steps' module jobs.py and an empty counts/."""
    (tmp_path / "chain.yaml").write_text(textwrap.dedent(CHAIN).lstrip())
    (tmp_path / "jobs.py").write_text(textwrap.dedent(MODULE).lstrip())
    (tmp_path / "counts").mkdir()
    return tmp_path


def counts(batch_dir: Path) -> dict[str, int]:
    """How many times each ``<job>.<step>`` ran."""
    found: dict[str, int] = {}
    for path in (batch_dir / "counts").iterdir():
        name = path.name.rsplit(".", 1)[0]
        found[name] = found.get(name, 0) + 1
    return found


def batch_json(batch_dir: Path) -> dict[str, Any]:
    """The batch record of the only batch run in ``batch_dir``."""
    [path] = (batch_dir / "out" / "batches").glob("*/batch.json")
    return json.loads(path.read_text())
