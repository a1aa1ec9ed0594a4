"""Durable runs (issue 7): the run record, ``run-chain --resume``, ``aicp runs list/show``.

Most tests go through the real CLI in a subprocess. Every step here is a
``python`` step from ``rsteps.py`` (written next to the chain) that appends
one line to ``<output_dir>/count_<label>`` each time it really runs, so "this
step was not run again" is a fact on disk, not an inference from events. A
step holds (prints ``ready <pid>`` and sleeps, with a child process) while the
file named by ``params.hold`` exists in the chain's folder, so a test can kill
aicp in the middle of exactly that step and then let the resumed run finish.
Outputs depend on the *content* of the input, never on paths, so a resumed
run can be compared byte for byte with an uninterrupted run in another
output dir.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import psutil
import pytest
from _aicp import LiveRun, Run, aicp_argv, child_env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux process semantics")

STEPS = r'''
import hashlib
import os
import subprocess
import sys
import time


def _count(ctx):
    with open(os.path.join(str(ctx.output_dir), "count_" + ctx.params["label"]), "a") as f:
        f.write("x\n")


def _content(value):
    if isinstance(value, list):
        return b"[" + b",".join(_content(v) for v in value) + b"]"
    if isinstance(value, str) and "\n" not in value and os.path.isfile(value):
        with open(value, "rb") as f:
            return f.read()
    return str(value).encode()


def _held(ctx):
    hold = ctx.params.get("hold")
    return bool(hold) and os.path.exists(os.path.join(str(ctx.chain_dir), hold))


def _block():
    child = subprocess.Popen([sys.executable, "-I", "-S", "-c", "import time; time.sleep(60)"])
    print(f"ready {child.pid}", flush=True)
    time.sleep(60)


def produce(ctx):
    """Write sha256(input content + params.text) * lines to this step's output file."""
    _count(ctx)
    if ctx.params.get("fail"):
        raise RuntimeError("asked to fail")
    digest = hashlib.sha256(_content(ctx.input) + str(ctx.params.get("text", "")).encode()).hexdigest()
    data = ((digest + "\n") * int(ctx.params.get("lines", 2000))).encode()
    half = len(data) // 2
    ext = ctx.params.get("ext", "dat")
    if ctx.params.get("mode", "atomic") == "atomic":
        with ctx.atomic_output(ext) as tmp:
            with open(tmp, "wb") as f:
                f.write(data[:half])
                f.flush()
                if _held(ctx):
                    _block()
                f.write(data[half:])
    else:  # a plain file under its final name, written in two halves
        with open(ctx.output_path(ext), "wb") as f:
            f.write(data[:half])
            f.flush()
            if _held(ctx):
                _block()
            f.write(data[half:])
    path = str(ctx.output_path(ext))
    result = {"output": path, "cost": float(ctx.params.get("cost", 0.5))}
    if ctx.params.get("declare", True):
        result["outputs"] = [path]
    return result
'''


# =========================================================================== helpers



def step(label: str, **params: Any) -> str:
    """A chain step (one YAML flow mapping) running rsteps:produce."""
    fields = {"function": "rsteps:produce", "label": label, **params}
    return "{type: python, params: " + json.dumps(fields) + "}"


def chain_text(name: str, steps: list[str], **top: Any) -> str:
    lines = [f"name: {name}", "prompt: go", "output_dir: out", "kill_grace: 1"]
    lines += [f"{k}: {json.dumps(v)}" for k, v in top.items()]
    lines.append("steps:")
    lines += [f"  - {s}" for s in steps]
    return "\n".join(lines) + "\n"


def group(*members: str, max_workers: int = 3) -> str:
    return ("{type: parallel_group, params: {max_workers: %d, merge_strategy: collect_all, "
            "parallel_steps: [%s]}}" % (max_workers, ", ".join(members)))


class Here:
    """A test's folder: the chain file, rsteps.py, and helpers to run aicp there."""

    def __init__(self, tmp_path: Path, validate: Callable[[Any], None]) -> None:
        self.dir = tmp_path
        self.validate = validate  # conftest's validate_events: schema-checks a list of events
        (tmp_path / "rsteps.py").write_text(STEPS.lstrip())
        self.chain = tmp_path / "chain.yaml"
        self.out = tmp_path / "out"

    def write(self, name: str, steps: list[str], path: Path | None = None, **top: Any) -> Path:
        path = path or self.chain
        path.write_text(chain_text(name, steps, **top))
        return path

    def run(self, *args: str, check_events: bool = True, timeout: float = 30) -> Run:
        """``aicp run-chain -c chain.yaml --stream ARGS`` to the end."""
        proc = subprocess.run(aicp_argv("run-chain", "-c", str(self.chain), "--stream", *args),
                              cwd=self.dir, env=child_env(), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)
        run = Run(proc.returncode, proc.stdout, proc.stderr)
        if check_events:
            self.check(run)
        return run

    def cli(self, *args: str, timeout: float = 30) -> Run:
        proc = subprocess.run(aicp_argv(*args), cwd=self.dir, env=child_env(), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def start(self, *args: str) -> "Live":
        return Live(["run-chain", "-c", str(self.chain), "--stream", *args], self.dir)

    def counts(self, out: Path | None = None) -> dict[str, int]:
        out = out or self.out
        return {p.name[len("count_"):]: len(p.read_text().splitlines())
                for p in sorted(out.glob("count_*"))}

    def runs(self) -> list[Path]:
        base = self.out / "runs"
        return sorted(base.iterdir()) if base.is_dir() else []

    def record(self, run_id: str | None = None) -> Path:
        if run_id is None:
            runs = self.runs()
            assert len(runs) == 1, runs
            return runs[0]
        return self.out / "runs" / run_id

    def manifest(self, run_id: str | None = None) -> dict[str, Any]:
        return json.loads((self.record(run_id) / "manifest.json").read_text())

    def check(self, run: Run) -> None:
        """stderr is only JSON events, stdout exactly one pipeline_complete; all match the schema."""
        events = run.events
        assert events and events[0]["event"] == "pipeline_start", run.stderr[-3000:]
        assert all(e["event"] != "pipeline_complete" for e in events)
        assert run.result["event"] == "pipeline_complete"
        self.validate(events + [run.result])
        ids = {e["run_id"] for e in events + [run.result]}
        assert len(ids) == 1, f"events carry several run ids: {ids}"

    def events_file(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """The record's events.jsonl, every line an event matching the schema."""
        lines = (self.record(run_id) / "events.jsonl").read_text().splitlines()
        events = [json.loads(line) for line in lines if line.strip()]
        self.validate(events)
        return events

    def hold(self, name: str = "hold") -> Path:
        path = self.dir / name
        path.write_text("")
        return path




def run_id_of(run: Run) -> str:
    return run.result["run_id"]


def skipped(run: Run) -> list[dict[str, Any]]:
    return [e for e in run.of("step_skipped") if e["reason"] == "reused"]


def started(run: Run) -> list[tuple[int, int | None]]:
    """(step, member) of every worker that started (not the group's own step_start)."""
    return [(e["step"], e.get("member")) for e in run.of("step_start") if "members" not in e]


def outputs_of(out: Path) -> dict[str, str]:
    """sha256 of every visible step output file in ``out``."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("step_*"))}


def wait_until(predicate: Callable[[], Any], timeout: float = 10, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def recorded_steps(here: Here, *keys: str) -> Callable[[], bool]:
    """Whether the (only) record has these step keys completed; tolerant of a manifest being replaced."""
    def check() -> bool:
        try:
            steps = here.manifest()["steps"]
        except (ValueError, OSError, AssertionError):
            return False
        return all(steps.get(k, {}).get("status") == "completed" for k in keys)
    return check


class Live(LiveRun):
    """aicp started with Popen, with a way to await a step that holds (see the step module)."""

    def wait_holding(self, step: int, member: int | None = None) -> dict[str, Any]:
        """Wait for the step (member) to hold; return its step_start with ``child`` (the pid it started)."""
        start = self.wait_for(lambda e: e["event"] == "step_start" and e["step"] == step
                              and e.get("member") == member and "pid" in e)
        ready = self.wait_for(lambda e: e["event"] == "step_log" and e["step"] == step
                              and e.get("member") == member and e["line"].startswith("ready "))
        return {**start, "child": int(ready["line"].split()[1])}


def alive(pairs: list[tuple[int, float]]) -> list[int]:
    left = []
    for pid, created in pairs:
        try:
            p = psutil.Process(pid)
            if abs(p.create_time() - created) < 0.01 and p.status() != psutil.STATUS_ZOMBIE:
                left.append(pid)
        except psutil.Error:
            pass
    return left


def assert_all_gone(pairs: list[tuple[int, float]], within: float = 5) -> None:
    deadline = time.monotonic() + within
    while (left := alive(pairs)) and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in left:  # do not leave sleepers behind a failing test
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass
    assert not left, f"processes outlived aicp: {left}"


@pytest.fixture
def here(tmp_path: Path, validate_events: Callable[[Any], None]) -> Here:
    return Here(tmp_path, validate_events)


# =========================================================================== kill -9 / SIGTERM, then --resume

LINEAR = [step("a", cost=0.5), step("b", cost=0.25), step("slow", cost=1.0, hold="hold"), step("d", cost=2.0)]


@pytest.mark.parametrize("mode", ["atomic", "plain"])
def test_sigkill_of_aicp_mid_step_then_resume(here: Here, mode: str) -> None:
    steps = [step("a", cost=0.5), step("b", cost=0.25), step("slow", cost=1.0, hold="hold", mode=mode),
             step("d", cost=2.0)]
    here.write("killed", steps)
    reference = here.run("--output-dir", "ref")  # the same chain, uninterrupted, elsewhere
    assert reference.returncode == 0, reference.stderr[-2000:]
    assert reference.result["total_cost"] == 3.75

    hold = here.hold()
    live = here.start()
    slow = live.wait_holding(2)
    wait_until(recorded_steps(here, "0", "1"), what="steps 0 and 1 in the manifest")
    processes = live.descendants()
    assert {slow["pid"], slow["child"]} <= {pid for pid, _ in processes}
    os.kill(live.proc.pid, signal.SIGKILL)
    killed = live.finish()
    assert killed.returncode == -signal.SIGKILL
    assert killed.stdout == ""
    assert_all_gone(processes)  # the worker, what it started, the template

    manifest = here.manifest()
    run_id = manifest["run_id"]
    assert manifest["status"] == "running"  # nobody could say otherwise
    assert [k for k, v in manifest["steps"].items() if v["status"] == "completed"] == ["0", "1"]
    shown = here.cli("runs", "show", run_id, "--config", str(here.chain), "--json")
    assert shown.result["data"]["status"] == "interrupted"  # its process is gone: the lock says so
    assert "2" not in manifest["steps"]
    final = here.out / "step_3_python.dat"
    part = [p.name for p in here.out.glob(".step_3_python.part*")]
    if mode == "atomic":
        assert not final.exists() and part, "an atomic output appeared under its final name"
    else:
        assert 0 < final.stat().st_size < (here.dir / "ref" / final.name).stat().st_size
    assert here.counts() == {"a": 1, "b": 1, "slow": 1}

    hold.unlink()
    resumed = here.run("--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert run_id_of(resumed) == run_id
    assert [(e["step"], e.get("from_run")) for e in skipped(resumed)] == [(0, run_id), (1, run_id)]
    assert started(resumed) == [(2, None), (3, None)]
    assert here.counts() == {"a": 1, "b": 1, "slow": 2, "d": 1}
    result = resumed.result
    assert result["success"] and result["steps_completed"] == 4
    assert result["total_cost"] == 3.0  # 0.5 + 0.25 were paid by the killed run
    assert outputs_of(here.out) == outputs_of(here.dir / "ref")
    assert len(outputs_of(here.out)) == 4
    assert set(result["outputs"]) == set(reference.result["outputs"])

    manifest = here.manifest()
    assert manifest["status"] == "succeeded" and manifest["resumed"] == 1
    for key in "0123":
        entry = manifest["steps"][key]
        assert entry["status"] == "completed"
        [f] = entry["files"]
        assert f["sha256"] == hashlib.sha256(Path(f["path"]).read_bytes()).hexdigest()
        assert f["size"] == Path(f["path"]).stat().st_size
    assert [manifest["steps"][k]["cost"] for k in "0123"] == [0.5, 0.25, 1.0, 2.0]
    events = here.events_file()
    assert [e["event"] for e in events].count("pipeline_start") == 2
    assert [e["event"] for e in events].count("pipeline_complete") == 1
    assert {e["run_id"] for e in events} == {run_id}
    # the killed worker's half-written atomic output is gone with the run it belonged to
    assert not [p.name for p in here.out.glob(".step_*.part*")]
    assert not [p.name for p in here.record().glob(".*.tmp*")]


@pytest.mark.skipif(shutil.which("strace") is None,
                    reason="strace is not installed (apt-get install strace): it kills aicp inside a write")
def test_sigkill_mid_manifest_write_then_resume_removes_the_temp_files(here: Here) -> None:
    here.write("torn", [step("a", cost=0.5), step("b", cost=0.25)])
    # strace sends aicp SIGKILL as it enters its third fsync(): chain.json, the first manifest, then
    # the manifest that records step 0, whose temp file is written but not yet renamed
    proc = subprocess.run(["strace", "-f", "-qq", "-o", os.devnull, "-e", "trace=fsync",
                           "-e", "inject=fsync:signal=SIGKILL:when=3",
                           *aicp_argv("run-chain", "-c", str(here.chain), "--stream")],
                          cwd=here.dir, env=child_env(), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout == "", proc.stderr[-2000:]
    record = here.record()
    torn = [p.name for p in record.glob(".manifest.json.tmp*")]
    assert torn, sorted(p.name for p in record.iterdir())
    assert here.manifest()["steps"] == {}  # the torn write never replaced the manifest
    # partial files of other runs sharing the folder (a live worker, a pid this run never had) stay
    foreign = [here.out / f".step_0_python.part{os.getpid()}.dat", here.out / ".step_1_python.part1.dat"]
    for path in foreign:
        path.write_text("another run's")

    resumed = here.run("--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.result["run_id"] == record.name and resumed.result["steps_completed"] == 2
    assert not [p.name for p in record.iterdir() if ".tmp" in p.name]
    assert all(path.exists() for path in foreign)
    assert here.manifest()["status"] == "succeeded"


def test_sigkill_between_free_steps_leaves_a_consistent_manifest_then_resume(here: Here) -> None:
    """Steps that cost nothing take the fast path (renamed into place, flushed in the background):
    a killed aicp still leaves a sealed manifest with every step that ended, and no temp file
    survives the resume."""
    free = [step("a", cost=0), step("b", cost=0), step("c", cost=0), step("slow", cost=0, hold="hold"),
            step("e", cost=0)]
    here.write("free", free)
    hold = here.hold()
    live = here.start()
    live.wait_holding(3)
    # no waiting for the record: each update is in place before the next step starts
    steps = here.manifest()["steps"]
    assert {k: v["status"] for k, v in steps.items()} == {"0": "completed", "1": "completed", "2": "completed"}
    os.kill(live.proc.pid, signal.SIGKILL)
    live.proc.wait(timeout=10)
    from aicp._run.record import RunRecord

    loaded = RunRecord.load(here.out, here.record().name, "free")  # the seal holds: nothing half-written
    assert sorted(loaded.manifest["steps"]) == ["0", "1", "2"] and loaded.manifest["status"] == "running"

    hold.unlink()
    resumed = here.run("--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [e["step"] for e in skipped(resumed)] == [0, 1, 2]
    assert here.counts() == {"a": 1, "b": 1, "c": 1, "slow": 2, "e": 1}
    assert here.manifest()["status"] == "succeeded"
    assert not [p.name for p in here.record().iterdir() if ".tmp" in p.name]


def test_sigterm_cancels_records_and_resumes(here: Here) -> None:
    here.write("termed", LINEAR)
    hold = here.hold()
    live = here.start()
    slow = live.wait_holding(2)
    processes = live.descendants()
    live.proc.send_signal(signal.SIGTERM)
    termed = live.finish()
    here.check(termed)
    assert termed.returncode == 143
    assert termed.result["exit_code"] == 143 and termed.result["steps_completed"] == 2
    assert_all_gone(processes)
    assert slow["pid"] in {pid for pid, _ in processes}

    manifest = here.manifest()
    assert manifest["status"] == "cancelled"
    assert manifest["steps"]["2"]["status"] == "failed" and "SIGTERM" in manifest["steps"]["2"]["error"]
    assert manifest["result"]["exit_code"] == 143

    hold.unlink()
    resumed = here.run("--resume", manifest["run_id"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert run_id_of(resumed) == manifest["run_id"]
    assert [e["step"] for e in skipped(resumed)] == [0, 1]
    assert here.counts() == {"a": 1, "b": 1, "slow": 2, "d": 1}
    assert resumed.result["total_cost"] == 3.0
    assert here.manifest()["status"] == "succeeded"
    assert not list(here.out.glob(".step_2*"))  # SIGTERM let atomic_output clean up after itself


def test_failed_step_fixed_in_the_chain_file_then_resume(here: Here) -> None:
    here.write("fixme", [step("a"), step("b", fail=True), step("c")])
    failed = here.run()
    assert failed.returncode == 5
    assert here.manifest()["status"] == "failed"
    assert here.manifest()["steps"]["1"]["status"] == "failed"
    assert "asked to fail" in here.manifest()["steps"]["1"]["error"]
    assert here.counts() == {"a": 1, "b": 1}

    # resuming the unchanged chain runs the failing step again (a failure is never reused)
    again = here.run("--resume")
    assert again.returncode == 5
    assert [e["step"] for e in skipped(again)] == [0]
    assert here.counts() == {"a": 1, "b": 2}

    here.write("fixme", [step("a"), step("b", fail=False), step("c")])
    fixed = here.run("--resume")
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert [e["step"] for e in skipped(fixed)] == [0]
    assert started(fixed) == [(1, None), (2, None)]
    assert here.counts() == {"a": 1, "b": 3, "c": 1}
    assert fixed.result["total_cost"] == 1.0
    manifest = here.manifest()
    assert manifest["status"] == "succeeded" and manifest["resumed"] == 2
    assert len(here.runs()) == 1


def test_parallel_group_reuses_the_members_that_finished(here: Here) -> None:
    members = [step("m0", cost=0.1), step("m1", cost=0.2, hold="hold"), step("m2", cost=0.4)]
    here.write("fan", [step("a"), group(*members), step("join", cost=1.0)])
    reference = here.run("--output-dir", "ref")
    assert reference.returncode == 0, reference.stderr[-2000:]

    hold = here.hold()
    live = here.start()
    live.wait_holding(1, member=1)
    wait_until(recorded_steps(here, "0", "1.0", "1.2"), what="members 0 and 2 in the manifest")
    processes = live.descendants()
    os.kill(live.proc.pid, signal.SIGKILL)
    live.finish()
    assert_all_gone(processes)
    assert here.counts() == {"a": 1, "m0": 1, "m1": 1, "m2": 1}
    assert "1" not in here.manifest()["steps"] and "1.1" not in here.manifest()["steps"]

    hold.unlink()
    resumed = here.run("--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert sorted((e["step"], e.get("member")) for e in skipped(resumed)) == [(0, None), (1, 0), (1, 2)]
    assert sorted(started(resumed)) == [(1, 1), (2, None)]
    assert here.counts() == {"a": 1, "m0": 1, "m1": 2, "m2": 1, "join": 1}
    assert resumed.result["total_cost"] == pytest.approx(1.2)
    group_done = [e for e in resumed.of("step_complete") if e["step"] == 1 and "member" not in e]
    assert group_done and group_done[0]["members_completed"] == 3
    assert outputs_of(here.out) == outputs_of(here.dir / "ref")
    assert len(outputs_of(here.out)) == 5

    # everything is recorded now: a second resume reuses the whole group at once, and charges nothing
    again = here.run("--resume")
    assert again.returncode == 0
    assert [(e["step"], e.get("member")) for e in skipped(again)] == [(0, None), (1, None), (2, None)]
    assert again.result["total_cost"] == 0
    assert here.counts()["m1"] == 2 and here.counts()["join"] == 1
    assert here.manifest()["resumed"] == 2


# =========================================================================== what invalidates a step


def test_changed_step_runs_again_with_everything_after_it(here: Here) -> None:
    here.write("edit", [step("a"), step("b", text="one"), step("c")])
    first = here.run()
    assert first.returncode == 0
    before = outputs_of(here.out)

    # a change that is not part of what the step does (its timeout) keeps it reusable
    here.write("edit", [step("a"), step("b", text="one").replace("}}", "}, timeout: 99}"), step("c")])
    same = here.run("--resume")
    assert same.returncode == 0, same.stderr[-2000:]
    assert [e["step"] for e in skipped(same)] == [0, 1, 2]
    assert here.counts() == {"a": 1, "b": 1, "c": 1}

    here.write("edit", [step("a"), step("b", text="two"), step("c")])
    changed = here.run("--resume")
    assert changed.returncode == 0
    assert [e["step"] for e in skipped(changed)] == [0]
    assert started(changed) == [(1, None), (2, None)]
    assert here.counts() == {"a": 1, "b": 2, "c": 2}
    after = outputs_of(here.out)
    assert after["step_1_python.dat"] == before["step_1_python.dat"]
    assert after["step_2_python.dat"] != before["step_2_python.dat"]
    assert after["step_3_python.dat"] != before["step_3_python.dat"]

    # a different chain input changes the first step's input: everything runs
    other = here.run("--resume", "--input-text", "something else")
    assert other.returncode == 0
    assert skipped(other) == []
    assert here.counts() == {"a": 2, "b": 3, "c": 3}


@pytest.mark.parametrize("where", ["step", "member"])
def test_everything_after_a_changed_step_runs_even_if_its_output_is_the_same(here: Here, where: str) -> None:
    """The first step that differs and everything after it run again: a step whose input looks unchanged
    (the step before made the same bytes) is not reused once an earlier one ran."""
    def chain(note: str | None) -> list[str]:
        extra = {"note": note} if note else {}
        if where == "step":
            return [step("a"), step("b", **extra), step("c")]
        return [step("a"), group(step("m0"), step("m1", **extra)), step("c")]

    here.write("same", chain(None))
    assert here.run().returncode == 0
    before = outputs_of(here.out)
    here.write("same", chain("a param the step ignores"))  # another definition, the same output
    resumed = here.run("--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert outputs_of(here.out) == before
    reran = "b" if where == "step" else "m1"
    assert here.counts()[reran] == 2
    assert here.counts()["c"] == 2, "the step after a step that ran again was reused"
    assert (2, None) in started(resumed)


@pytest.mark.parametrize("damage,victim,reused", [
    ("delete", 1, [0]),
    ("modify", 1, [0]),        # same size, one byte different
    ("modify", 2, [0, 1]),
    ("append", 0, []),
])
def test_output_deleted_or_modified_runs_that_step_again(here: Here, damage: str, victim: int,
                                                         reused: list[int]) -> None:
    here.write("damage", [step("a"), step("b"), step("c")])
    assert here.run().returncode == 0
    before = outputs_of(here.out)
    path = here.out / f"step_{victim + 1}_python.dat"
    if damage == "delete":
        path.unlink()
    elif damage == "modify":
        data = bytearray(path.read_bytes())
        data[10] ^= 1
        path.write_bytes(bytes(data))
    else:
        with open(path, "ab") as f:
            f.write(b"more")
    resumed = here.run("--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert [e["step"] for e in skipped(resumed)] == reused
    assert [s for s, _ in started(resumed)] == list(range(len(reused), 3))
    assert outputs_of(here.out) == before  # the damaged file was made again, the same


def test_a_text_output_naming_a_file_is_checked_too(here: Here) -> None:
    """A step that returns a path to a file without declaring ``outputs`` (its kind is text): the file
    still counts as the step's output, so deleting it must not let the step be reused."""
    here.write("undeclared", [step("a"), step("b", declare=False, ext="json")])
    assert here.run().returncode == 0
    output = here.out / "step_2_python.json"  # the second step's file: numbered from 1, as its output key
    output.unlink()
    resumed = here.run("--resume")
    assert resumed.returncode == 0
    assert [e["step"] for e in skipped(resumed)] == [0]
    assert output.is_file(), "the step was reused although its output file is gone"
    assert here.counts() == {"a": 1, "b": 2}
    # reused, the step reports what it reported when it ran: no declared files
    again = here.run("--resume")
    assert [e["step"] for e in skipped(again)] == [0, 1]
    assert skipped(again)[1]["outputs"] == []
    assert again.result["outputs"]["step_2_python"]["files"] == []
    assert again.result["outputs"]["step_2_python"]["text"] == str(output)


# =========================================================================== refusals


def test_refusals_leave_the_record_alone_and_print_one_line(here: Here) -> None:
    here.write("guarded", [step("a"), step("b", fail=True)])
    assert here.run().returncode == 5
    record = here.record()
    run_id = record.name
    manifest_path = record / "manifest.json"
    good = manifest_path.read_bytes()
    events_before = (record / "events.jsonl").read_bytes()

    def refused(*args: str, code: int, words: str) -> None:
        run = here.run(*args, check_events=False)
        assert run.returncode == code, (args, run.stderr)
        result = run.result  # exactly one stdout line
        assert result["event"] == "pipeline_complete" and result["exit_code"] == code
        assert result["success"] is False and words in result["error"]
        here.validate([result])
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        # --stream: stderr is JSON lines only, the refusal one error event (issue 11)
        assert len(lines) == 1 and words in json.loads(lines[0])["message"], run.stderr
        assert json.loads(lines[0])["event"] == "error"
        assert here.counts() == {"a": 1, "b": 1}, "a refused resume ran a step"
        assert [p.name for p in here.runs()] == [run_id], "a refused resume started a new run"
        assert (record / "events.jsonl").read_bytes() == events_before

    # edited: a field changed, the JSON still valid
    edited = json.loads(good)
    edited["steps"]["0"]["cost"] = 0.0
    manifest_path.write_text(json.dumps(edited, indent=2))
    refused("--resume", run_id, code=2, words="modified")
    refused("--resume", code=2, words="modified")  # 'latest' must not skip it silently
    assert json.loads(manifest_path.read_text()) == edited

    # truncated
    manifest_path.write_bytes(good[: len(good) // 2])
    refused("--resume", run_id, code=2, words="damaged")
    refused("--resume", code=2, words="damaged")
    assert manifest_path.read_bytes() == good[: len(good) // 2]

    # unknown run id, and a path instead of an id
    manifest_path.write_bytes(good)
    refused("--resume", "20990101T000000-abcdef", code=3, words="no run record")
    refused("--resume", f"../runs/{run_id}", code=3, words="no run record")

    # a folder without a manifest (a run killed before its first write) does not hide the real run
    (record.parent / "20990101T000000-000000").mkdir()
    resumed = here.run("--resume")
    assert resumed.returncode == 5 and run_id_of(resumed) == run_id, resumed.stderr[-2000:]
    assert [e["step"] for e in skipped(resumed)] == [0]


def test_a_run_of_another_chain_is_refused(here: Here) -> None:
    here.write("first", [step("a")])
    first = here.run()
    run_id = run_id_of(first)
    here.write("second", [step("a")])  # the same steps, the same output_dir, another chain
    run = here.run("--resume", run_id, check_events=False)
    assert run.returncode == 2
    assert "first" in run.result["error"] and "second" in run.result["error"]
    assert here.counts() == {"a": 1}
    # 'latest' of 'second' does not pick the run of 'first'
    latest = here.run("--resume", check_events=False)
    assert latest.returncode == 3 and "no earlier run" in latest.result["error"]
    assert here.counts() == {"a": 1}
    assert len(here.runs()) == 1


def test_resume_without_an_earlier_run_is_exit_3(here: Here) -> None:
    here.write("fresh", [step("a")])
    run = here.run("--resume", check_events=False)
    assert run.returncode == 3
    assert run.result["exit_code"] == 3 and "no earlier run" in run.result["error"]
    assert not here.out.joinpath("runs").exists() or here.runs() == []
    assert not here.out.exists() or here.counts() == {}
    # the plain (non-stream) CLI: one error line, exit 3
    plain = here.cli("run-chain", "-c", str(here.chain), "--resume")
    assert plain.returncode == 3 and plain.stdout == ""
    assert plain.stderr.count("\n") == 1 and plain.stderr.startswith("error: no earlier run")


# =========================================================================== runs list / runs show


def test_runs_list_and_show(here: Here) -> None:
    here.write("listed", [step("a", cost=0.5), step("b", fail=True)])
    failed = here.run()
    first_id = run_id_of(failed)
    here.write("listed", [step("a", cost=0.5), step("b")])
    assert here.run("--resume").returncode == 0
    second = here.run()  # a new run, not resumed
    second_id = run_id_of(second)
    assert second_id != first_id

    listed = here.cli("runs", "list", "--config", str(here.chain), "--json")
    assert listed.returncode == 0, listed.stderr
    envelope = listed.result
    assert envelope["command"] == "runs list" and envelope["schema_version"] == "1"
    rows = envelope["data"]
    assert [r["run_id"] for r in rows] == [second_id, first_id]  # newest first
    assert [(r["status"], r["resumed"], r["steps_completed"]) for r in rows] == [
        ("succeeded", 0, 2), ("succeeded", 1, 2)]
    assert all(r["chain_name"] == "listed" and Path(r["path"]).is_dir() for r in rows)

    text = here.cli("runs", "list", "--output-dir", str(here.out))
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert lines[0].split()[:3] == ["RUN", "ID", "STATUS"]
    assert lines[1].startswith(second_id) and "succeeded" in lines[1]
    assert lines[2].startswith(first_id) and "resumed 1x" in lines[2]

    shown = here.cli("runs", "show", first_id, "--config", str(here.chain), "--json")
    assert shown.returncode == 0
    data = shown.result["data"]
    assert shown.result["command"] == "runs show"
    assert data["run_id"] == first_id and data["status"] == "succeeded" and data["resumed"] == 1
    assert set(data["steps"]) == {"0", "1"}
    for entry in data["steps"].values():
        assert entry["status"] == "completed"
        assert len(entry["definition"]) == 64 and len(entry["input"]) == 64
        [f] = entry["files"]
        assert f["sha256"] == hashlib.sha256(Path(f["path"]).read_bytes()).hexdigest()
    assert data["result"]["exit_code"] == 0 and data["result"]["total_cost"] == 0.5

    show_text = here.cli("runs", "show", "latest", "--output-dir", str(here.out))
    assert show_text.returncode == 0
    assert show_text.stdout.startswith(f"run {second_id}: succeeded (listed, ")
    assert "step 0: completed, $0.500" in show_text.stdout

    missing = here.cli("runs", "show", "nope", "--output-dir", str(here.out))
    assert missing.returncode == 3 and missing.stderr.startswith("error: no run record 'nope'")
    empty = here.cli("runs", "list", "--output-dir", str(here.dir / "nowhere"), "--json")
    assert empty.returncode == 0 and empty.result["data"] == []


def test_runs_list_shows_damaged_records_and_only_the_chain_asked_for(here: Here) -> None:
    here.write("mine", [step("a")])
    mine = run_id_of(here.run())
    other_chain = here.write("theirs", [step("t")], path=here.dir / "theirs.yaml")
    theirs = json.loads(subprocess.run(
        aicp_argv("run-chain", "-c", str(other_chain), "--stream"), cwd=here.dir, env=child_env(),
        capture_output=True, text=True, timeout=30).stdout)["run_id"]
    broken = here.run()
    broken_id = run_id_of(broken)
    path = here.record(broken_id) / "manifest.json"
    path.write_text(path.read_text()[:50])

    everything = here.cli("runs", "list", "--output-dir", str(here.out), "--json").result["data"]
    assert {r["run_id"]: r["status"] for r in everything} == {
        mine: "succeeded", theirs: "succeeded", broken_id: "unreadable"}
    assert "damaged" in next(r for r in everything if r["run_id"] == broken_id)["error"]

    only_mine = here.cli("runs", "list", "--config", str(here.chain), "--json").result["data"]
    assert theirs not in [r["run_id"] for r in only_mine], "a run of another chain is listed for this chain"
    assert mine in [r["run_id"] for r in only_mine]

    shown = here.cli("runs", "show", broken_id, "--output-dir", str(here.out))
    assert shown.returncode == 2 and shown.stderr.startswith("error: run record ")
    assert shown.stderr.count("\n") == 1


def test_status_values_in_the_record(here: Here) -> None:
    here.write("states", [step("a"), step("b", fail=True)])
    here.run()
    assert here.manifest()["status"] == "failed"
    assert here.manifest()["result"]["exit_code"] == 5
    here.write("states", [step("a"), step("b")])
    here.run("--resume")
    manifest = here.manifest()
    assert manifest["status"] == "succeeded" and manifest["resumed"] == 1
    assert manifest["created"] <= manifest["updated"]
    chain_json = json.loads((here.record() / "chain.json").read_text())
    assert chain_json["chain"]["name"] == "states"
    # the chain as run: after a resume with an edited chain, the record holds the edited one
    assert "fail" not in json.dumps(chain_json["chain"]["steps"][1]), "chain.json still shows the old chain"


# =========================================================================== RunRecord and Journal directly


def _chain(tmp_path: Path, *steps: str, name: str = "direct") -> Any:
    from aicp._chain.load import load_chain

    (tmp_path / "rsteps.py").write_text(STEPS.lstrip())
    path = tmp_path / "direct.yaml"
    path.write_text(chain_text(name, list(steps)))
    return load_chain(str(path), output_dir=tmp_path / "out")  # output_dir is relative to the cwd


def test_the_seal_catches_any_edit(tmp_path: Path) -> None:
    from aicp._run.record import RunRecord, RunRecordError

    chain = _chain(tmp_path, step("a"))
    record = RunRecord.create(chain, "20260101T000000-aaaaaa")
    out = tmp_path / "x.dat"
    out.write_bytes(b"hello")
    record.record("0", status="completed", definition="d", step_input="i",
                  result={"output": str(out), "outputs": [str(out)], "cost": 1.5})
    loaded = RunRecord.load(chain.output_dir, record.run_id, "direct")
    assert loaded.manifest["steps"]["0"]["files"] == [
        {"path": str(out), "size": 5, "sha256": hashlib.sha256(b"hello").hexdigest()}]
    assert not [p for p in record.root.iterdir() if ".tmp" in p.name], "a temp file was left behind"

    path = record.root / "manifest.json"
    good = json.loads(path.read_text())
    for edit in (lambda m: m.update(status="succeeded"),
                 lambda m: m["steps"]["0"].update(cost=0.0),
                 lambda m: m["steps"]["0"]["files"][0].update(sha256="0" * 64),
                 lambda m: m.pop("digest"),
                 lambda m: m.update(extra=1)):
        changed = json.loads(json.dumps(good))
        edit(changed)
        path.write_text(json.dumps(changed))
        with pytest.raises(RunRecordError, match="modified"):
            RunRecord.load(chain.output_dir, record.run_id)
    # a record copied under another run id is not that run
    path.write_text(json.dumps(good))
    (record.root.parent / "20260101T000000-bbbbbb").mkdir()
    (record.root.parent / "20260101T000000-bbbbbb" / "manifest.json").write_text(json.dumps(good))
    with pytest.raises(RunRecordError, match="belongs to run"):
        RunRecord.load(chain.output_dir, "20260101T000000-bbbbbb")


def test_a_secret_learned_later_masks_the_entries_written_before(tmp_path: Path) -> None:
    """Entries are masked once and kept masked, until a later step teaches the record a new secret:
    then every entry is masked again (the file never shows a value that is known to be secret)."""
    from aicp._run.record import RunRecord

    chain = _chain(tmp_path, step("a"))
    record = RunRecord.create(chain, "20260101T000000-ffffff")
    secret = "sk-later-learned-0042"
    record.record("0", status="completed", definition="d", step_input="i",
                  result={"output": f"made with {secret}", "outputs": [], "cost": 0})
    assert secret in (record.root / "manifest.json").read_text()  # not known to be secret yet
    record.record("1", status="completed", definition="d", step_input="i",
                  result={"output": "ok", "outputs": [], "cost": 0, "auth": {"api_key": secret}})
    text = (record.root / "manifest.json").read_text()
    assert secret not in text
    assert json.loads(text)["steps"]["0"]["output"] == "made with ***"
    record.record("2", status="completed", definition="d", step_input="i",
                  result={"output": f"again {secret}", "outputs": [], "cost": 0})
    manifest = RunRecord.load(chain.output_dir, record.run_id).manifest
    assert secret not in json.dumps(manifest)
    assert [manifest["steps"][k]["output"] for k in "012"] == ["made with ***", "ok", "again ***"]
    record.finish("succeeded", {})


def test_when_the_manifest_is_flushed_to_the_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Synchronously (fsync before the rename) for the creation, the end and every write of a run that
    paid for something; in the background for a free run's per-step updates."""
    import threading

    import aicp._run.atomic as atomic
    from aicp._run.record import RunRecord

    synced: list[str] = []  # what the calling thread flushed (the background thread's are not counted)
    real = os.fsync

    def fsync(fd: int) -> None:
        if threading.current_thread() is threading.main_thread():
            synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    chain = _chain(tmp_path, step("a"))
    record = RunRecord.create(chain, "20260101T000000-999999")
    assert any(p.endswith(".manifest.json.tmp%d" % os.getpid()) for p in synced)  # the creation
    synced.clear()
    for key in "01":
        record.record(key, status="completed", definition="d", step_input="i",
                      result={"output": "free", "outputs": [], "cost": 0})
    assert synced == []  # free steps: in place at once, flushed later
    record.remember_request("2", "d", "i", {"provider": "fal", "endpoint": "x", "request_id": "r-1", "index": 0})
    assert any(".manifest.json.tmp" in p for p in synced)  # the paid request's id: before the run goes on
    synced.clear()
    record.record("2", status="completed", definition="d", step_input="i",
                  result={"output": "paid", "outputs": [], "cost": 0})
    assert any(".manifest.json.tmp" in p for p in synced)  # a run that paid: every write
    synced.clear()
    record.finish("succeeded", {})
    assert any(".manifest.json.tmp" in p for p in synced)
    assert not [p.name for p in record.root.iterdir() if ".tmp" in p.name]
    assert RunRecord.load(chain.output_dir, record.run_id).manifest["status"] == "succeeded"

    free = RunRecord.create(chain, "20260101T000000-888888")
    synced.clear()
    free.record("0", status="completed", definition="d", step_input="i",
                result={"output": "x", "outputs": [], "cost": 0})
    assert synced == []
    free.record("1", status="completed", definition="d", step_input="i",
                result={"output": "y", "outputs": [], "cost": 0.25})
    assert synced, "the step that cost money is flushed before the run goes on"
    free.finish("succeeded", {})


def test_reusable_checks_definition_input_and_every_file(tmp_path: Path) -> None:
    from aicp._run.record import RunRecord

    chain = _chain(tmp_path, step("a"))
    record = RunRecord.create(chain, "20260101T000000-cccccc")
    files = [tmp_path / "one.dat", tmp_path / "two.dat"]
    for f in files:
        f.write_bytes(b"12345")
    record.record("0", status="completed", definition="d", step_input="i",
                  result={"output": [str(f) for f in files], "outputs": [str(f) for f in files], "cost": 1})
    record.record("1", status="failed", definition="d", step_input="i", error="boom")
    assert record.reusable("0", "d", "i") is not None
    assert record.reusable("0", "other", "i") is None
    assert record.reusable("0", "d", "other") is None
    assert record.reusable("1", "d", "i") is None  # a failure is never reused
    assert record.reusable("9", "d", "i") is None
    files[1].write_bytes(b"12346")  # same size, other content
    assert record.reusable("0", "d", "i") is None
    files[1].write_bytes(b"12345")
    assert record.reusable("0", "d", "i") is not None
    files[0].unlink()
    assert record.reusable("0", "d", "i") is None


def test_definition_and_input_hashes(tmp_path: Path) -> None:
    from aicp._run.record import definition_hash, input_hash

    base = _chain(tmp_path, step("a", text="x")).steps[0]
    same = _chain(tmp_path, step("a", text="x").replace("}}", "}, timeout: 5, retry_count: 2}")).steps[0]
    other = _chain(tmp_path, step("a", text="y")).steps[0]
    assert definition_hash(base) == definition_hash(same)
    assert definition_hash(base) != definition_hash(other)

    g1 = _chain(tmp_path, group(step("m0"), step("m1"))).steps[0]
    g2 = _chain(tmp_path, group(step("m0"), step("m1", text="z"))).steps[0]
    assert definition_hash(g1) != definition_hash(g2)

    f = tmp_path / "in.dat"
    f.write_bytes(b"a")
    before = input_hash(str(f))
    assert input_hash(str(f)) == before
    f.write_bytes(b"b")
    assert input_hash(str(f)) != before
    assert input_hash("text") != input_hash("other text")
    assert input_hash([str(f)]) != input_hash([str(f), str(f)])


def test_journal_reuse_is_a_prefix(tmp_path: Path) -> None:
    from aicp._run.record import Journal, RunRecord

    chain = _chain(tmp_path, step("a"), step("b"), step("c"))
    record = RunRecord.create(chain, "20260101T000000-dddddd")
    first = Journal(record, resume=False)
    for i, s in enumerate(chain.steps):
        assert first.reuse(str(i), s, "in") is None  # a fresh run reuses nothing
        first.done(str(i), s, "in", {"output": f"out{i}", "outputs": [], "cost": 2.0})

    again = Journal(RunRecord.load(chain.output_dir, record.run_id, "direct"), resume=True)
    reused = again.reuse("0", chain.steps[0], "in")
    assert reused is not None and reused["cost"] == 0.0 and reused["output"] == "out0" and reused["reused"]
    assert again.reuse("1", chain.steps[1], "changed input") is None
    again.stop_reusing()
    assert again.reuse("2", chain.steps[2], "in") is None, "a step after one that ran again was reused"
    # done() of a reused result does not overwrite what the record says the step cost
    again.done("0", chain.steps[0], "in", reused)
    assert RunRecord.load(chain.output_dir, record.run_id).manifest["steps"]["0"]["cost"] == 2.0


def test_latest_is_the_most_recently_updated_run_of_that_chain(tmp_path: Path) -> None:
    from aicp._errors import MissingInputError
    from aicp._run.record import RunRecord

    chain = _chain(tmp_path, step("a"))
    other = _chain(tmp_path, step("a"), name="other")
    old = RunRecord.create(chain, "20260101T000000-000001")
    new = RunRecord.create(chain, "20260101T000000-000002")
    RunRecord.create(other, "20260101T000000-000003")
    assert RunRecord.load(chain.output_dir, "latest", "direct").run_id == new.run_id
    old.finish("failed", {})  # updated later: resuming it made it the latest
    assert RunRecord.load(chain.output_dir, "latest", "direct").run_id == old.run_id
    assert RunRecord.load(chain.output_dir, "latest", "other").run_id == "20260101T000000-000003"
    with pytest.raises(MissingInputError):
        RunRecord.load(chain.output_dir, "latest", "nobody")


def test_latest_never_passes_over_a_damaged_newer_run(tmp_path: Path) -> None:
    from aicp._run.record import RunRecord, RunRecordError

    chain = _chain(tmp_path, step("a"))
    other = _chain(tmp_path, step("a"), name="other")
    older = RunRecord.create(chain, "20260101T000000-000001")
    newer = RunRecord.create(chain, "20260101T000000-000002")
    path = newer.root / "manifest.json"
    edited = json.loads(path.read_text())
    edited["status"] = "succeeded"
    path.write_text(json.dumps(edited))
    os.utime(path, (time.time() + 5, time.time() + 5))
    with pytest.raises(RunRecordError, match="modified"):
        RunRecord.load(chain.output_dir, "latest", "direct")
    # a damaged run of another chain (its name still readable) is not this chain's business
    edited["chain_name"] = "other"
    path.write_text(json.dumps(edited))
    os.utime(path, (time.time() + 5, time.time() + 5))
    assert RunRecord.load(chain.output_dir, "latest", "direct").run_id == older.run_id
    with pytest.raises(RunRecordError):
        RunRecord.load(other.output_dir, "latest", "other")
    # once the good run is newer again (resumed since), it is the latest
    older.finish("failed", {})
    path.write_text(json.dumps({**edited, "chain_name": "direct"}))
    os.utime(path, (time.time() - 60, time.time() - 60))
    assert RunRecord.load(chain.output_dir, "latest", "direct").run_id == older.run_id


def test_the_human_view_says_which_steps_were_reused(here: Here) -> None:
    # one member at a time: m0 has finished before m1's failure cancels the group
    here.write("people", [step("a"), group(step("m0"), step("m1", fail=True), max_workers=1), step("c")])
    assert here.run().returncode == 5
    here.write("people", [step("a"), group(step("m0"), step("m1"), max_workers=1), step("c")])
    run = here.cli("run-chain", "-c", str(here.chain), "--resume")  # no --stream: the view for people
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    assert any(line.endswith("step 1: python reused") for line in lines), run.stderr
    assert any(line.endswith("step 2.1: python reused") for line in lines), run.stderr
    assert any(line.endswith("step 2.2: python started") for line in lines), run.stderr
    assert not any("step 1: python started" in line for line in lines)


def test_a_run_still_in_progress_is_not_resumed_twice(here: Here) -> None:
    here.write("busy", LINEAR)
    hold = here.hold()
    live = here.start()
    try:
        live.wait_holding(2)
        run_id = here.manifest()["run_id"]
        second = here.run("--resume", check_events=False, timeout=10)
        assert second.returncode == 2, second.stderr[-2000:]
        assert run_id in second.result["error"] and "in progress" in second.result["error"]
        assert here.counts() == {"a": 1, "b": 1, "slow": 1}
        assert here.manifest()["resumed"] == 0
    finally:
        hold.unlink()
        live.proc.send_signal(signal.SIGTERM)
        live.finish()
    # once it has ended (here: cancelled), it can be resumed
    resumed = here.run("--resume")
    assert resumed.returncode == 0 and run_id_of(resumed) == run_id


def test_the_run_lock_is_held_until_the_run_finishes(tmp_path: Path) -> None:
    from aicp._run.record import RunRecord, RunRecordError, open_record

    chain = _chain(tmp_path, step("a"))
    running, resuming = open_record(chain, None)
    assert not resuming
    with pytest.raises(RunRecordError, match="in progress"):
        open_record(chain, running.run_id)
    assert RunRecord.load(chain.output_dir, running.run_id).manifest["resumed"] == 0  # nothing half-done
    running.finish("failed", {})
    again, resuming = open_record(chain, "latest")
    assert resuming and again.run_id == running.run_id and again.manifest["resumed"] == 1
    again.finish("succeeded", {})


def test_a_run_is_running_while_its_process_holds_it_and_interrupted_once_that_dies(tmp_path: Path) -> None:
    from aicp._run.record import RunRecord

    chain = _chain(tmp_path, step("a"))
    live = RunRecord.create(chain, "20260101T000000-eeeeee")  # holds the lock, as a running aicp does
    seen = RunRecord.load(chain.output_dir, live.run_id, chain.name)
    assert seen.summary()["status"] == "running"
    live.unlock()  # what the kernel does when the running process dies
    assert RunRecord.load(chain.output_dir, live.run_id, chain.name).summary()["status"] == "interrupted"


def test_first_success_group_with_a_reusable_member_starts_no_member(tmp_path: Path, aicp) -> None:
    from aicp._chain.load import load_chain
    from aicp._run.record import RunRecord, definition_hash, input_hash

    (tmp_path / "race.py").write_text("def never(ctx):\n    raise AssertionError('this member must not run')\n")
    (tmp_path / "chain.yaml").write_text(
        "name: race\nprompt: hello\nsteps:\n"
        "  - type: parallel_group\n"
        "    params:\n"
        "      merge_strategy: first_success\n"
        "      parallel_steps:\n"
        "        - {type: python, params: {function: 'race:never'}}\n"
        "        - {type: python, params: {function: 'race:never', n: 2}}\n")
    chain = load_chain(str(tmp_path / "chain.yaml"), output_dir=tmp_path / "output")  # where aicp will look
    member = chain.steps[0].members[1]
    # an earlier attempt finished member 1, then died before recording the group
    earlier = RunRecord.create(chain, "20260101T000000-ffffff")
    earlier.record("0.1", status="completed", definition=definition_hash(member), step_input=input_hash("hello"),
                   result={"output": "won before", "outputs": [], "cost": 0.3})
    earlier.unlock()

    run = aicp("run-chain", "--config", "chain.yaml", "--resume", earlier.run_id, "--stream")
    assert run.returncode == 0, run.stderr
    assert not [e for e in run.of("step_start") if "member" in e]  # no member started
    skipped = {e["member"]: e["reason"] for e in run.of("step_skipped")}
    assert skipped == {1: "reused", 0: "the group finished before this member started"}
    assert run.result["outputs"]["step_1_parallel_group"]["text"] == "won before"
    assert run.result["total_cost"] == 0.0  # paid by the earlier attempt


def test_the_recorded_chain_has_its_secrets_masked(tmp_path: Path, aicp) -> None:
    # a python step's params are the function's own (open), so any param name may carry a secret
    (tmp_path / "secretmod.py").write_text("def run(ctx):\n    return 'ok'\n")
    (tmp_path / "chain.yaml").write_text(
        "name: secretive\nprompt: hi\nsteps:\n"
        "  - {type: python, params: {function: 'secretmod:run', api_key: sk-live-abcdef123456}}\n")
    run = aicp("run-chain", "--config", "chain.yaml", "--stream")
    assert run.returncode == 0, run.stderr
    record = next((tmp_path / "output" / "runs").iterdir())
    recorded = (record / "chain.json").read_text()
    assert "sk-live-abcdef123456" not in recorded and "***" in recorded
    assert "sk-live-abcdef123456" not in (record / "events.jsonl").read_text()


# --------------------------------------------------------------------------- the manifest's bytes, kept per step

def _whole(body: dict[str, Any]) -> bytes:
    """What the manifest's bytes must be: orjson over the whole document, digest last."""
    from aicp._run.manifest_bytes import canonical, indented

    sealed = dict(body)
    sealed["digest"] = hashlib.sha256(canonical(body)).hexdigest()
    return indented(sealed)


ENTRIES: list[Any] = [
    {"status": "completed", "output": None, "files": [], "result": {"output": None, "cost": 0.0, "outputs": []}},
    {"status": "completed", "output": "naïve ✓ \"quoted\"\nnewline", "files": [{"path": "/x y/ü.mp4", "size": 1}]},
    {"status": "failed", "error": "boom", "nested": {"b": {}, "a": [[], {}], 3: "non-string key"}},
    {"status": "completed", "output": {"z": 1, "a": [1.5, True, None]}, "cost": 2.25},
    {},
]


@pytest.mark.parametrize("keys", [
    ["0", "1", "2", "3", "4"],  # a chain's steps
    ["2", "10", "1", "3.1", "3.0", "11"],  # keys that sort otherwise than they come (groups' members)
    ["a", "é", "Z", "ß"],  # (not what a record holds: the order rule, on any text)
])
def test_the_manifest_bytes_are_orjsons_for_the_whole_document(keys: list[str]) -> None:
    """Each step's entry is rendered once and kept: after every change (an entry added, one
    replaced as a resumed run records a step again, one removed, all re-masked), the file's bytes
    are exactly what serialising the whole document gives."""
    from aicp._run.manifest_bytes import ManifestBytes

    rendered = ManifestBytes()
    body: dict[str, Any] = {"record_version": 1, "run_id": "r", "chain_name": "c", "created": 1.0,
                            "updated": 2.0, "status": "running", "resumed": 0, "steps": {}}
    assert rendered.render(body) == _whole(body)  # no step yet
    for n, key in enumerate(keys):
        body["steps"][key] = json.loads(json.dumps(ENTRIES[n % len(ENTRIES)], default=str))
        body["updated"] = 3.0 + n
        assert rendered.render(body) == _whole(body)
    body["requests"] = {keys[0]: [{"request_id": "q-1", "index": 0}]}  # a field after "steps" and before
    assert rendered.render(body) == _whole(body)
    body["steps"][keys[1]] = {"status": "completed", "output": "again"}  # recorded again: keeps its place
    assert rendered.render(body) == _whole(body)
    body["steps"] = {k: dict(v, masked=True) for k, v in body["steps"].items()}  # every entry anew
    assert rendered.render(body) == _whole(body)
    del body["steps"][keys[0]]
    assert rendered.render(body) == _whole(body)
    json.loads(rendered.render(body))


def test_every_manifest_write_of_a_run_reads_back_sealed(tmp_path: Path) -> None:
    """Through the record itself: after each free step's update (in place at once, the old version
    kept as the next update's file), the manifest on disk is complete and its digest holds; the
    run ends with no temp file left."""
    from aicp._run.record import RunRecord

    chain = _chain(tmp_path, step("a"))
    record = RunRecord.create(chain, "20260101T000000-777777")
    for i in range(12):
        output = "x" * (300 - 20 * i)  # shrinking entries too: a version written over a longer one
        record.record(str(i), status="completed", definition="d", step_input="i",
                      result={"output": output, "outputs": [], "cost": 0})
        loaded = RunRecord.load(chain.output_dir, record.run_id)
        assert list(loaded.manifest["steps"]) == [str(k) for k in range(i + 1)]
        assert loaded.manifest["steps"][str(i)]["output"] == output
        temps = [p.name for p in record.root.iterdir() if ".tmp" in p.name]
        assert len(temps) <= 1, temps  # at most the previous version, which takes the next update
    record.finish("succeeded", {})
    assert not [p.name for p in record.root.iterdir() if ".tmp" in p.name]
    assert RunRecord.load(chain.output_dir, record.run_id).manifest["status"] == "succeeded"


def test_the_reserve_keeps_up_with_the_manifest(tmp_path: Path) -> None:
    """The reserve is at least twice the manifest plus 64 KiB after every write, grown in 64 KiB
    steps (not touched at every step), and made again after it was given back."""
    from aicp._run.record import RESERVE_FILE, RESERVE_MIN, RunRecord

    chain = _chain(tmp_path, step("a"))
    record = RunRecord.create(chain, "20260101T000000-666666")
    reserve = record.root / RESERVE_FILE
    sizes = set()
    for i in range(40):
        record.record(str(i), status="completed", definition="d", step_input="i",
                      result={"output": "y" * 2000, "outputs": [], "cost": 0})
        size = reserve.stat().st_size
        assert size >= 2 * (record.root / "manifest.json").stat().st_size + RESERVE_MIN
        assert size % RESERVE_MIN == 0
        sizes.add(size)
    assert 1 < len(sizes) < 40
    assert record.release_reserve()
    record.record("40", status="completed", definition="d", step_input="i",
                  result={"output": "z", "outputs": [], "cost": 0})
    assert reserve.stat().st_size >= 2 * (record.root / "manifest.json").stat().st_size + RESERVE_MIN
    record.finish("succeeded", {})
