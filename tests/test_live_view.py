"""The live view as a person sees it: the real ``aicp`` on a pseudo-terminal, its output rendered by
a terminal emulator (pyte) at 80x24 and 40x20, and the screen read back.

Also: the plain lines when stderr is not a terminal, NO_COLOR, and ``aicp view`` of a recorded or
a live stream.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from _aicp import aicp_argv, child_env
from _pty import PtyRun, find
from _shipchain import MODULE as SHIP_MODULE

MODULE = SHIP_MODULE + """
    import time

    def slow(ctx):
        for i in range(3):
            ctx.progress((i + 1) / 3, f"chunk {i}")
            time.sleep(0.3)
        return {"output": "ok", "cost": 0.04}

    def noisy(ctx):
        print("\\x1b[31mred\\x1b[0m, a carriage\\rreturn, a tab\\tand a long line " + "x" * 300)
        print("宽字符" * 40)
        time.sleep(0.5)
        return "ok"

    def fail(ctx):
        def inner():
            raise KeyError("missing thing")
        inner()

    def quiet_wait(ctx):
        print("ready", flush=True)
        time.sleep(4)  # long enough to watch it between two events, on a loaded machine too
        return "ok"
"""

SHOWCASE = """
    name: showcase_with_a_rather_long_name
    prompt: hello
    retry_delay: 0.3
    steps:
      - {type: python, name: warm_up_the_render_farm_with_a_long_step_name, params: {function: "viewmod:slow"}}
      - type: parallel_group
        params:
          parallel_steps:
            - {type: python, params: {function: "viewmod:slow"}}
            - {type: python, name: "宽字符步骤", params: {function: "viewmod:noisy"}}
      - {type: python, retry_count: 2, params: {function: "viewmod:flaky"}}
      - {type: python, params: {function: "viewmod:fail"}}
"""

WAITING = """
    name: waiting
    prompt: hello
    steps:
      - {type: python, name: patience, params: {function: "viewmod:quiet_wait"}}
"""


def folder(tmp_path: Path, chain: str) -> Path:
    (tmp_path / "viewmod.py").write_text(textwrap.dedent(MODULE))
    (tmp_path / "chain.yaml").write_text(textwrap.dedent(chain).lstrip())
    return tmp_path


def run_id_of(path: Path) -> str:
    (run,) = [p.name for p in (path / "output" / "runs").iterdir() if p.is_dir()]
    return run


def check_showcase_screen(lines: list[str], cols: int, run_id: str) -> None:
    """What a person must see after the showcase run, and nothing twice or garbled."""
    text = "\n".join(lines)
    assert all(len(line) <= cols for line in lines)
    assert "\x1b" not in text and "[31m" not in text  # a step's escape sequences never reach the terminal raw
    # each step's row is there exactly once, with its mark
    for mark, label in (("✓", "1 "), ("✓", "2 "), ("✓", "2.1 "), ("✓", "2.2 "), ("✓", "3 "), ("✗", "4 ")):
        rows = find(lines, rf"^{mark} {re.escape(label)}")
        assert len(rows) == 1, (label, rows, text)
    assert len(find(lines, r"^. 3 ")) == 1
    # no copies of the live block left behind: no status line, no running/retrying rows
    assert not find(lines, r"steps done"), text
    assert not find(lines, r"^[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏↻] "), text
    assert len(find(lines, r"^running 'showcase")) == 1
    # attempts, retries, costs
    (third,) = find(lines, r"^✓ 3 ")
    if cols >= 80:
        assert "try 2/3" in third and "1 retry" in third
        assert "$0.040" in find(lines, r"^✓ 1 ")[0]
    # the failure section: the step's error and traceback (no --debug), the outcome, how to resume
    joined = squash(text)  # these lines may wrap at 40 columns
    assert "failures" in lines
    for expected in ("KeyError: 'missing thing'", "Traceback (most recent call last):",
                     'raise KeyError("missing thing")', "failed (exit 5): 3/4 steps, $0.080",
                     f"resume with: aicp run-chain --config chain.yaml --resume {run_id}"):
        assert squash(expected) in joined, expected


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize("cols, rows", [(80, 24), (40, 20)])
def test_live_view_on_a_terminal(tmp_path, cols, rows):
    where = folder(tmp_path, SHOWCASE)
    run = PtyRun(aicp_argv("run-chain", "--config", "chain.yaml"), cols, rows, where, child_env())
    code = run.finish()
    assert code == 5
    check_showcase_screen(run.transcript(), cols, run_id_of(where))
    assert run.stdout.decode().startswith("failed: 3/4 steps")


def test_the_clock_moves_between_events(tmp_path):
    where = folder(tmp_path, WAITING)
    run = PtyRun(aicp_argv("run-chain", "--config", "chain.yaml"), 80, 24, where, child_env())
    try:
        row = r"^\S 1 patience .*ready\s+(\d+\.\d)s"
        first = run.wait_for(lambda screen: bool(find(screen, row)))
        before = float(re.search(row, find(first, row)[0]).group(1))
        time.sleep(1.0)  # the step writes nothing now: only the ticker can move the clock
        later = run.wait_for(lambda screen: bool(find(screen, row))
                             and float(re.search(row, find(screen, row)[0]).group(1)) >= before + 0.5)
        assert later
        status = find(run.display(), r"^waiting: 0/1 steps done, \$0\.000, \d+\.\ds, 1 running$")
        assert len(status) == 1
    finally:
        code = run.finish()
    assert code == 0
    lines = run.transcript()
    assert len(find(lines, r"^✓ 1 patience")) == 1 and not find(lines, "steps done")


def test_a_resize_leaves_no_stale_rows(tmp_path):
    where = folder(tmp_path, WAITING)
    run = PtyRun(aicp_argv("run-chain", "--config", "chain.yaml"), 80, 24, where, child_env())
    try:
        run.wait_for(lambda screen: bool(find(screen, r"^\S 1 patience .*ready")))
        run.resize(40, 12)
        shrunk = run.wait_for(lambda screen: any(re.search(r"\d\.\ds$", line) for line in screen)
                              and all(len(line) <= 39 for line in screen if line))
        assert len(find(shrunk, r"patience")) == 1
        run.resize(60, 16)
        grown = run.wait_for(lambda screen: bool(find(screen, r"^waiting: 0/1 steps done")))
        assert len(find(grown, r"patience")) == 1
    finally:
        code = run.finish()
    assert code == 0
    lines = [line for line in run.display() if line]
    assert len(find(lines, r"^✓ 1 patience")) == 1 and not find(lines, "steps done")


def test_colour_and_no_color(tmp_path):
    where = folder(tmp_path, WAITING.replace("quiet_wait", "noisy"))
    coloured = PtyRun(aicp_argv("run-chain", "--config", "chain.yaml"), 80, 24, where, child_env())
    assert coloured.finish() == 0
    assert b"\x1b[32m" in coloured.raw  # the green mark of a finished step
    plain = PtyRun(aicp_argv("run-chain", "--config", "chain.yaml"), 80, 24, where, child_env(NO_COLOR="1"))
    assert plain.finish() == 0
    assert not re.search(rb"\x1b\[[0-9;]*m", bytes(plain.raw))
    assert find(plain.transcript(), r"^✓ 1 patience")


def test_plain_lines_when_not_a_terminal_end_with_the_failure_and_the_resume_command(tmp_path):
    where = folder(tmp_path, SHOWCASE)
    proc = subprocess.run(aicp_argv("run-chain", "--config", "chain.yaml", "--input-text", "a b"), cwd=where,
                          env=child_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 5
    lines = proc.stderr.splitlines()
    assert "\x1b[2K" not in proc.stderr and "\x1b[J" not in proc.stderr
    assert any("step 3: python retrying in" in line and "(attempt 2 next)" in line for line in lines)
    assert any(line.endswith("step 3: python started (attempt 2/3)") for line in lines)
    assert "failures" in lines and "  Traceback (most recent call last):" in lines
    run_id = run_id_of(where)
    assert f"resume with: aicp run-chain --config chain.yaml --input-text 'a b' --resume {run_id}" in lines
    assert lines[-1] == "error: Step 4 failed: KeyError: 'missing thing'"


# ------------------------------------------------------------------------------------ aicp view


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    where = folder(tmp_path_factory.mktemp("recorded"), SHOWCASE)
    proc = subprocess.run(aicp_argv("run-chain", "--config", "chain.yaml", "--stream", "--log-file", "log.jsonl"),
                          cwd=where, env=child_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 5, proc.stderr
    (where / "stderr.jsonl").write_text("error: Step 4 failed: KeyError: 'missing thing'\n" + proc.stderr)
    return where


@pytest.mark.parametrize("cols, rows", [(80, 24), (40, 20)])
def test_view_renders_a_recorded_run(recorded, cols, rows):
    record = recorded / "output" / "runs" / run_id_of(recorded) / "events.jsonl"
    run = PtyRun(aicp_argv("view", str(record)), cols, rows, recorded, child_env(), stdout_too=True)
    assert run.finish() == 5  # the run's own exit code
    check_showcase_screen(run.transcript(), cols, run_id_of(recorded))


def test_view_of_a_pipe_as_the_events_arrive(recorded, tmp_path):
    chain = folder(tmp_path, SHOWCASE)
    aicp = " ".join(aicp_argv())
    command = f"{aicp} run-chain --config chain.yaml --stream 2>&1 >/dev/null | {aicp} view"  # FILE: stdin
    run = PtyRun(["/bin/sh", "-c", command], 80, 24, chain, child_env(), stdout_too=True)
    assert run.finish() == 5
    check_showcase_screen(run.transcript(), 80, run_id_of(chain))


def test_view_without_a_terminal_prints_plain_lines_and_text_lines_as_they_are(recorded):
    proc = subprocess.run(aicp_argv("view", "-"), input=(recorded / "stderr.jsonl").read_text(), cwd=recorded,
                          env=child_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 5
    lines = proc.stdout.splitlines()
    assert lines[0] == "error: Step 4 failed: KeyError: 'missing thing'"
    assert lines[1] == "running 'showcase_with_a_rather_long_name': 4 steps"
    assert "\x1b" not in proc.stdout.replace("\x1b[31mred\x1b[0m", "")  # only the step's own bytes
    assert "failures" in lines and lines[-1].startswith("resume with: aicp run-chain --config chain.yaml")


def test_view_follows_a_file_a_run_is_writing(tmp_path):
    where = folder(tmp_path, WAITING)
    log = where / "live.jsonl"
    log.write_text("")
    viewer = subprocess.Popen(aicp_argv("view", "--follow", str(log)), cwd=where, env=child_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run = subprocess.run(aicp_argv("run-chain", "--config", "chain.yaml", "--log-file", str(log), "--quiet"),
                             cwd=where, env=child_env(), capture_output=True, text=True, timeout=60)
        assert run.returncode == 0
        out, err = viewer.communicate(timeout=30)
    finally:
        if viewer.poll() is None:
            viewer.kill()
            viewer.wait()
    assert viewer.returncode == 0, err
    lines = out.splitlines()
    assert lines[0] == "running 'waiting': 1 steps"
    assert any("step 1 patience: python | ready" in line for line in lines)
    assert lines[-1].startswith("waiting succeeded: 1/1 steps")


def test_view_of_a_missing_file_is_one_error_line(tmp_path):
    proc = subprocess.run(aicp_argv("view", "nothing.jsonl"), cwd=tmp_path, env=child_env(), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 3
    assert proc.stderr == "error: cannot read nothing.jsonl: No such file or directory\n"


LOADED = """
import atexit, sys
def dump():
    with open(sys.argv[1], "w") as out:
        out.write("\\n".join(sorted(sys.modules)))
atexit.register(dump)
from aicp.cli import main
main(sys.argv[2:])
"""


def loaded_modules(where: Path, *args: str) -> set[str]:
    """The modules an ``aicp`` invocation really loaded (-X importtime also lists failed attempts)."""
    out = where / "modules.txt"
    proc = subprocess.run([sys.executable, "-c", LOADED, str(out), *args], cwd=where, env=child_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return set(out.read_text().split())


def test_version_and_plain_runs_do_not_import_the_live_view(tmp_path):
    where = folder(tmp_path, WAITING.replace("quiet_wait", "noisy"))
    heavy = ("aicp._view", "aicp._logformats", "opentelemetry", "rich", "structlog")
    assert not {m for m in loaded_modules(where, "--version") if m.startswith(heavy)}
    plain = loaded_modules(where, "run-chain", "--config", "chain.yaml")
    assert "aicp._view.model" in plain  # the plain view
    assert "aicp._view.live" not in plain and not {m for m in plain if m.startswith(("rich", "opentelemetry"))}


def test_view_of_a_stream_that_stops_early_says_so(recorded):
    record = recorded / "output" / "runs" / run_id_of(recorded) / "events.jsonl"
    half = record.read_text().splitlines()[:8]
    proc = subprocess.run(aicp_argv("view", "-"), input="\n".join(half) + "\n", cwd=recorded, env=child_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0  # the run's exit code is not known
    assert proc.stdout.splitlines()[-1].startswith("showcase_with_a_rather_long_name did not finish: ")


def test_view_of_a_log_file_with_two_runs_shows_both(tmp_path):
    where = folder(tmp_path, WAITING.replace("quiet_wait", "noisy"))
    (where / "bad.yaml").write_text(textwrap.dedent(SHOWCASE).lstrip())
    for config, code in (("chain.yaml", 0), ("bad.yaml", 5)):
        run = subprocess.run(aicp_argv("run-chain", "--config", config, "--log-file", "both.jsonl", "--quiet"),
                             cwd=where, env=child_env(), capture_output=True, text=True, timeout=120)
        assert run.returncode == code, run.stderr
    proc = subprocess.run(aicp_argv("view", "both.jsonl"), cwd=where, env=child_env(), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 5  # the last run's
    lines = proc.stdout.splitlines()
    assert lines[0] == "running 'waiting': 1 steps"
    assert any(line.startswith("waiting succeeded: 1/1 steps") for line in lines)
    assert "running 'showcase_with_a_rather_long_name': 4 steps" in lines
    assert lines[-1].startswith("resume with: aicp run-chain --config bad.yaml --resume ")
