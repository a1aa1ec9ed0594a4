"""The documented jq recipes, run exactly as written, through a shell, with the real jq and the installed ``aicp``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

needs_jq = pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed (apt-get install jq)")

BIN = Path(sys.executable).parent
DOCS = Path(__file__).resolve().parent.parent / "docs" / "events.md"
# Exactly as documented (docs/events.md, "jq recipes"), the seed's four; pipeline.yaml is the test's chain.
RECIPES = [
    """aicp run-chain --config pipeline.yaml --stream 2>/dev/null | jq '.outputs'""",
    """aicp run-chain --config pipeline.yaml --stream 2>progress.jsonl | jq -r '.outputs.final.path'""",
    """aicp run-chain --config pipeline.yaml --stream 2>&1 >/dev/null | jq -r '"[\\(.elapsed_seconds)s] \\(.event): step \\(.step // "N/A")"'""",
    """aicp run-chain --config pipeline.yaml --stream 2>&1 >/dev/null | jq -r 'select(.event == "step_complete") | "Step \\(.step): $\\(.cost)"'""",
]
CHAIN = """
    name: jq demo
    prompt: hello
    steps:
      - type: command
        params: {argv: [echo, "first {input}"]}
      - type: python
        params: {function: "jqmod:shout"}
      - type: python
        params: {function: "jqmod:picture"}
"""
MODULE = """
    def shout(ctx):
        ctx.progress(0.5, "halfway")
        return {"output": ctx.input.upper(), "cost": 0.25}

    def picture(ctx):
        from PIL import Image

        with ctx.atomic_output("png") as tmp:
            Image.new("RGB", (4, 4), "red").save(tmp, format="PNG")
        return str(ctx.output_path("png"))
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "pipeline.yaml").write_text(textwrap.dedent(CHAIN).lstrip())
    (tmp_path / "jqmod.py").write_text(textwrap.dedent(MODULE).lstrip())
    return tmp_path


def shell(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert (BIN / "aicp").exists(), "the aicp console script is not installed next to the interpreter"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_") and k != "CI"}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


@needs_jq
def test_outputs_of_the_result(folder):
    proc = shell(RECIPES[0], folder)
    assert proc.returncode == 0, proc.stderr
    outputs = json.loads(proc.stdout)
    assert outputs["step_1_command"]["text"] == "first hello"
    assert outputs["step_2_python"]["text"] == "FIRST HELLO"
    assert outputs["final"] == outputs["step_3_python"]


@needs_jq
def test_progress_to_a_file_final_path_to_jq(folder):
    proc = shell(RECIPES[1], folder)
    assert proc.returncode == 0, proc.stderr
    final = Path(proc.stdout.strip())
    assert final == folder / "output" / "step_3_python.png"  # the last step's file, numbered as its key
    assert final.read_bytes().startswith(b"\x89PNG")
    events = [json.loads(line) for line in (folder / "progress.jsonl").read_text().splitlines()]
    assert events[0]["event"] == "pipeline_start"
    assert "pipeline_complete" not in {e["event"] for e in events}
    assert {"step_start", "step_complete", "step_progress", "step_log"} <= {e["event"] for e in events}


@needs_jq
def test_progress_lines_from_stderr(folder):
    proc = shell(RECIPES[2], folder)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("[") and lines[0].endswith("s] pipeline_start: step N/A")
    assert any(line.endswith("] step_start: step 0") for line in lines)
    assert any(line.endswith("] step_complete: step 1") for line in lines)
    assert any(line.endswith("] step_progress: step 1") for line in lines)
    assert not any("pipeline_complete" in line for line in lines)  # the result went to /dev/null
    for line in lines:
        seconds = line[1:line.index("s]")]
        assert float(seconds) >= 0


@needs_jq
def test_cost_per_completed_step(folder):
    proc = shell(RECIPES[3], folder)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["Step 0: $0", "Step 1: $0.25", "Step 2: $0"]


def test_the_recipes_are_the_documented_ones():
    documented = [line.strip() for line in DOCS.read_text().splitlines() if line.startswith("aicp run-chain")]
    for recipe in RECIPES:
        assert recipe in documented, f"not in {DOCS.name}: {recipe}"
