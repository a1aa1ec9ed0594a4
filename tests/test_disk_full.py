"""The environment fails, the contract holds (issue 11): full disks, odd or unwritable places.

Disk-full cases use a real tmpfs of 2 MiB (``mount -t tmpfs -o size=2m``), filled
to the last page when the case needs it full from the start; they are skipped,
with the reason, only where mounting is not allowed. Every mount is unmounted
in teardown. Through the real CLI, each case checks the documented exit code,
the one-line ``error:`` (or, with ``--stream``, the one result line), and that
the run record says how the run ended.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from _aicp import aicp_argv, child_env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux mounts and /proc")

CHAIN = """\
name: env
prompt: hello
output_dir: out
steps:
  - {type: command, params: {run: "echo one"}}
  - {type: command, params: {run: "echo two"}}
"""


def mount_tmpfs(path: Path, options: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}); "
                    "disk-full cases need a real small file system")


@pytest.fixture
def mounts() -> Iterator[list[Path]]:
    """Mount points to unmount at the end, whatever happened."""
    made: list[Path] = []
    yield made
    for path in reversed(made):
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def tmpfs(tmp_path: Path, mounts: list[Path]):
    """``tmpfs(name, full=False, readonly=False)``: a fresh 2 MiB tmpfs under tmp_path."""

    def make(name: str = "disk", full: bool = False, readonly: bool = False) -> Path:
        path = tmp_path / name
        mount_tmpfs(path, "size=2m" + (",ro" if readonly else ""))
        mounts.append(path)
        if full:
            fill(path)
        return path

    return make


def fill(path: Path) -> None:
    """Write zeros until the file system has no page left."""
    with open(path / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    with pytest.raises(OSError):  # really full
        (path / "probe").write_bytes(b"x" * 4096)


@pytest.fixture
def chain(tmp_path: Path) -> Path:
    path = tmp_path / "chain.yaml"
    path.write_text(CHAIN)
    return path


def aicp(cwd: Path, *args: str, stdout: object = subprocess.PIPE,
         prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*prefix, *aicp_argv(*args)], cwd=cwd, env=child_env(), stdin=subprocess.DEVNULL,
                          stdout=stdout, stderr=subprocess.PIPE, timeout=120)


def without_permission_override() -> tuple[str, ...]:
    """A command prefix under which folder permissions bind: root drops CAP_DAC_OVERRIDE (setpriv)."""
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("root ignores folder permissions, and setpriv (util-linux) is not here to drop that")
    return ("setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--")


def events_of(stderr: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.decode().splitlines() if line.strip()]


def manifests(output_dir: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted(output_dir.glob("runs/*/manifest.json"))]


def assert_refused_before_the_run(cwd: Path, chain: Path, option: str, place: Path | str,
                                  output_dir: Path, words: str, prefix: tuple[str, ...] = ()) -> None:
    """Exit 3, one positioned line naming the place and the reason, the one result line with
    --stream, nothing run and no run record left behind."""
    for mode in ([], ["--stream"], ["--json"]):
        done = aicp(cwd, "run-chain", "-c", str(chain), option, str(place), *mode, prefix=prefix)
        assert done.returncode == 3, done.stderr
        lines = done.stderr.decode().splitlines()
        if mode == ["--stream"]:  # stderr is JSON lines only: the error is an event
            errors = [str(e.get("message")) for e in map(json.loads, lines) if e["event"] == "error"]
        else:
            errors = [line for line in lines if line.startswith("error: ")]
        assert len(errors) == 1 and str(place) in errors[0] and words in errors[0], lines
        if mode == ["--stream"]:
            [result] = done.stdout.decode().splitlines()
            assert json.loads(result)["exit_code"] == 3 and json.loads(result)["success"] is False
        if mode == ["--json"]:
            assert json.loads(done.stdout)["error"]["exit_code"] == 3
        assert b"step_start" not in done.stderr
        assert manifests(output_dir) == []


# ------------------------------------------------------------------ known before the run: refused


def test_output_dir_on_a_full_disk_is_refused_before_the_run(tmp_path: Path, chain: Path, tmpfs) -> None:
    disk = tmpfs(full=True)
    assert_refused_before_the_run(tmp_path, chain, "--output-dir", disk / "out", disk / "out",
                                  "No space left on device")


def test_output_dir_on_a_read_only_file_system_is_refused(tmp_path: Path, chain: Path, tmpfs) -> None:
    disk = tmpfs(readonly=True)
    assert_refused_before_the_run(tmp_path, chain, "--output-dir", disk / "out", disk / "out",
                                  "Read-only file system")


@pytest.mark.parametrize("kind", ["regular_file", "proc", "dev_full", "under_a_file"])
def test_an_output_dir_that_is_not_a_folder_is_refused(tmp_path: Path, chain: Path, kind: str) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    place = {"regular_file": a_file, "proc": Path("/proc/1"), "dev_full": Path("/dev/full"),
             "under_a_file": a_file / "out"}[kind]
    words = {"regular_file": "not a folder", "proc": "cannot write there", "dev_full": "not a folder",
             "under_a_file": "Not a directory"}[kind]
    assert_refused_before_the_run(tmp_path, chain, "--output-dir", place, tmp_path / "out", words)


@pytest.mark.parametrize("option", ["--output-dir", "--log-file"])
def test_a_place_without_permission_is_refused(tmp_path: Path, chain: Path, option: str) -> None:
    prefix = without_permission_override()
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    locked.chmod(0o555)  # whatever the umask
    place = locked / ("out" if option == "--output-dir" else "x.log")
    assert_refused_before_the_run(tmp_path, chain, option, place, tmp_path / "out", "Permission denied",
                                  prefix=prefix)


@pytest.mark.parametrize("kind", ["directory", "proc", "missing_parent", "read_only"])
def test_a_log_file_that_cannot_be_opened_is_refused(tmp_path: Path, chain: Path, tmpfs, kind: str) -> None:
    place = {"directory": lambda: tmp_path, "proc": lambda: Path("/proc/1"),
             "missing_parent": lambda: tmp_path / "no" / "such" / "x.log",
             "read_only": lambda: tmpfs(readonly=True) / "x.log"}[kind]()
    words = {"directory": "Is a directory", "proc": "Is a directory", "missing_parent": "No such file",
             "read_only": "Read-only file system"}[kind]
    assert_refused_before_the_run(tmp_path, chain, "--log-file", place, tmp_path / "out", words)


# ------------------------------------------------------------------ failing during the run: the run goes on


def warnings_about(events: list[dict[str, object]], place: str) -> list[dict[str, object]]:
    return [e for e in events if e["event"] == "warning" and place in str(e["message"])]


def assert_succeeded_and_recorded(done: subprocess.CompletedProcess[bytes], output_dir: Path) -> None:
    assert done.returncode == 0, done.stderr[-3000:]
    [manifest] = manifests(output_dir)
    assert manifest["status"] == "succeeded", manifest
    record = next(output_dir.glob("runs/*"))
    assert sorted(p.name for p in record.iterdir() if p.name.startswith(".")) == []  # no temp, no reserve


@pytest.mark.parametrize("kind", ["full_tmpfs", "dev_full"])
def test_a_log_file_that_fills_up_does_not_stop_the_run(tmp_path: Path, chain: Path, tmpfs, kind: str,
                                                        validate_events) -> None:
    log = tmpfs(full=True) / "events.log" if kind == "full_tmpfs" else Path("/dev/full")
    done = aicp(tmp_path, "run-chain", "-c", str(chain), "--log-file", str(log), "--stream")
    events = events_of(done.stderr)
    validate_events(events)
    [warning] = warnings_about(events, str(log))
    assert "No space left on device" in str(warning["message"])
    assert [e["event"] for e in events].count("step_complete") == 2  # the run went on
    [result] = done.stdout.decode().splitlines()
    assert json.loads(result)["success"] is True
    assert_succeeded_and_recorded(done, tmp_path / "out")
    if kind == "full_tmpfs":
        assert all(json.loads(line) for line in log.read_text().splitlines())  # never half an event


def test_the_run_record_disk_filling_mid_run(tmp_path: Path, tmpfs, validate_events) -> None:
    """Step 1 fills the output disk: the record and events.jsonl cannot be written any more; the
    run goes on, says so, and the record still ends saying how the run ended."""
    disk = tmpfs()
    chain = tmp_path / "fill.yaml"
    chain.write_text(f"""\
name: fill
prompt: hello
output_dir: {disk / 'out'}
steps:
  - {{type: command, params: {{run: "head -c 4000000 /dev/zero > {{output_dir}}/big || true; echo filled"}}}}
  - {{type: command, params: {{run: "echo after"}}}}
  - {{type: command, params: {{run: "echo last"}}}}
""")
    done = aicp(tmp_path, "run-chain", "-c", str(chain), "--stream")
    events = events_of(done.stderr)
    validate_events(events)
    # the manifest needs new pages; events.jsonl may still fit a few lines in its last page
    [warning] = warnings_about(events, "manifest.json")
    assert "No space left on device" in str(warning["message"]) and "the run goes on" in str(warning["message"])
    assert [e.get("output") for e in events if e["event"] == "step_complete"] == ["filled", "after", "last"]
    assert json.loads(done.stdout)["success"] is True
    assert_succeeded_and_recorded(done, disk / "out")
    shown = aicp(tmp_path, "runs", "show", "latest", "-c", str(chain), "--json")
    assert json.loads(shown.stdout)["data"]["status"] == "succeeded"
    lines = next((disk / "out").glob("runs/*/events.jsonl")).read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # cut at a line, never inside one


@pytest.mark.parametrize("mode", ["--stream", "--json", "human"])
def test_stdout_on_a_full_disk(tmp_path: Path, chain: Path, tmpfs, mode: str) -> None:
    """The result cannot be written: the run's exit code stands, stderr says so (with --stream, as
    an event), the log file and the record have the result, stdout holds no half line."""
    out = tmpfs(full=True) / "result.json"
    log = tmp_path / "events.log"
    with open(out, "wb") as target:
        done = aicp(tmp_path, "run-chain", "-c", str(chain), "--log-file", str(log),
                    *([] if mode == "human" else [mode]), stdout=target)
    assert done.returncode == 0, done.stderr[-3000:]
    assert out.read_bytes() == b""
    if mode == "--stream":
        events = events_of(done.stderr)
        [warning] = warnings_about(events, "stdout")
        assert "No space left on device" in str(warning["message"])
    else:
        assert b"error: cannot write to stdout: No space left on device" in done.stderr
    last = json.loads(log.read_text().splitlines()[-1])
    assert last["event"] == "pipeline_complete" and last["success"] is True
    assert_succeeded_and_recorded(done, tmp_path / "out")
