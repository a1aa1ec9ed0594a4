"""--stream's contract for every invocation, through the real CLI: stderr is JSON lines and
nothing else, stdout the one result line, whatever goes wrong and whenever a signal comes.

The seed's own check (``aicp run-chain --config X --stream 2>&1 | python -c "import sys,json;
[json.loads(l) for l in sys.stdin]"``) is run verbatim through a shell for a sample of them.
"""

from __future__ import annotations

import os
import platform
import random
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _aicp import Run, aicp_argv, child_env

GOOD = "name: ok\nprompt: p\nsteps:\n  - type: command\n    params: {argv: [echo, '{input}']}\n"
INVALID = "name: bad\nprompt: p\nsteps:\n  - type: command\n    timeout: -3\n    params: {run: 'true'}\n"

# (arguments after `run-chain`, exit code, a fragment of the message)
BAD_INVOCATIONS = [
    ([], 2, "--config"),                                                 # argparse: required
    (["--config", "good.yaml", "--bogus"], 2, "unrecognized"),           # argparse: unknown flag
    (["--config", "good.yaml", "--max-cost", "lots"], 2, "must be an amount in USD"),  # argparse: a bad value
    # (--input-text with --prompt-file is no longer refused: the old tool resolved both; issue 13)
    (["--config"], 2, "expected one argument"),
    (["--config", "good.yaml", "--stream=yes"], 2, "ignored explicit argument"),
    (["--config", "invalid.yaml"], 2, "invalid.yaml:5:5: steps[0].timeout"),
    (["--config", "syntax.yaml"], 2, "invalid YAML"),
    (["--config", "missing.yaml"], 3, "missing.yaml"),
    (["--config", "."], 3, "directory"),
    (["--config", "good.yaml", "--prompt-file", "missing.txt"], 3, "missing.txt"),
    (["--config", "good.yaml", "--input", "missing.png"], 3, "missing.png"),
    (["--config", "-", "--input", "-"], 2, "stdin"),
    (["--config", "noprompt.yaml"], 2, "prompt"),
]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "invalid.yaml").write_text(INVALID)
    (tmp_path / "syntax.yaml").write_text("name: [unclosed\nsteps: []\n")
    (tmp_path / "noprompt.yaml").write_text(GOOD.replace("prompt: p\n", ""))
    return tmp_path


def run_aicp(cwd: Path, *args: str, stdin: str = "") -> Run:
    proc = subprocess.run(aicp_argv(*args), input=stdin, capture_output=True, text=True, cwd=cwd,
                          env=child_env(), timeout=60)
    return Run(proc.returncode, proc.stdout, proc.stderr)


class TestEveryFailureIsAnEvent:
    """Usage errors, invalid chains, missing files: an error event, then the result line."""

    @pytest.mark.parametrize("args,code,fragment", BAD_INVOCATIONS)
    @pytest.mark.parametrize("stream_flag", ["--stream", "--str"])  # argparse takes abbreviations
    def test_failure(self, folder, validate_events, args, code, fragment, stream_flag):
        run = run_aicp(folder, "run-chain", stream_flag, *args)
        assert run.returncode == code, run.stderr
        assert fragment in run.stream_failure
        validate_events(run)

    @pytest.mark.parametrize("args,code,fragment", [c for c in BAD_INVOCATIONS if "--stream=yes" not in c[0]])
    def test_without_stream_it_is_one_error_line(self, folder, args, code, fragment):
        run = run_aicp(folder, "run-chain", *args)
        assert run.returncode == code
        lines = run.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines
        assert run.stdout == ""

    @pytest.mark.parametrize("where", ["before", "after"])
    def test_debug_keeps_the_stream_json(self, folder, validate_events, where):
        args = ["--debug", "run-chain", "--config", "invalid.yaml", "--stream"]
        if where == "after":
            args = args[1:] + ["--debug"]
        run = run_aicp(folder, *args)
        assert run.returncode == 2
        assert "steps[0].timeout" in run.stream_failure
        validate_events(run)

    @pytest.mark.parametrize("args", [["--bogus"], ["--config", "good.yaml", "--config"]])
    def test_debug_puts_the_traceback_in_the_event(self, folder, validate_events, args):
        run = run_aicp(folder, "--debug", "run-chain", "--stream", *args)
        assert run.returncode == 2
        (error,) = run.of("error")
        assert "Traceback (most recent call last)" in error["traceback"]
        validate_events(run)

    def test_internal_error_is_an_event_and_exit_1(self, folder, validate_events):
        """A bug (here: the chain loader made to raise) is exit 1 with its event and result line."""
        (folder / "sitecustomize.py").write_text(
            "import aicp._chain.load as load\n"
            "def boom(*a, **k):\n    raise RuntimeError('a bug')\n"
            "load.load_chain = boom\n")
        proc = subprocess.run(aicp_argv("run-chain", "--config", "good.yaml", "--stream"), cwd=folder,
                              capture_output=True, text=True, timeout=60,
                              env=child_env(PYTHONPATH=str(folder)))
        run = Run(proc.returncode, proc.stdout, proc.stderr)
        assert run.returncode == 1
        assert "internal error: RuntimeError: a bug" in run.stream_failure
        validate_events(run)
        proc = subprocess.run(aicp_argv("run-chain", "--config", "good.yaml", "--stream", "--debug"), cwd=folder,
                              capture_output=True, text=True, timeout=60,
                              env=child_env(PYTHONPATH=str(folder)))
        (error,) = Run(proc.returncode, proc.stdout, proc.stderr).of("error")
        assert "RuntimeError: a bug" in error["traceback"]

    @pytest.mark.parametrize("args", [["--config", "invalid.yaml"], ["--config", "missing.yaml"],
                                      ["--bogus"], [], ["--config", "good.yaml", "--input", "missing.png"]])
    def test_the_seed_check_holds(self, folder, args):
        """The check from the seed, verbatim, through a shell."""
        cmd = " ".join(shlex.quote(a) for a in aicp_argv("run-chain", *args, "--stream"))
        check = f'{cmd} 2>&1 | {shlex.quote(sys.executable)} -c "import sys,json;[json.loads(l) for l in sys.stdin]"'
        proc = subprocess.run(["sh", "-c", check], cwd=folder, env=child_env(), capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr

    def test_a_good_run_still_streams(self, folder, validate_events):
        run = run_aicp(folder, "run-chain", "--config", "good.yaml", "--stream")
        assert run.returncode == 0 and run.result["success"] is True
        assert not run.of("error")
        validate_events(run)


# ----------------------------------------------------------------------------- signals while loading


_READ_SYSCALL = {"x86_64": "0", "aarch64": "63"}.get(platform.machine())


def _wait_until_reading_stdin(pid: int, timeout: float = 30) -> None:
    """Until the process sits in read(0, ...): it is in main, loading the chain from stdin."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            fields = Path(f"/proc/{pid}/syscall").read_text().split()
        except OSError:
            fields = []
        if _READ_SYSCALL is None and time.monotonic() > deadline - timeout + 3:
            return  # no way to look: three seconds are plenty to reach main
        if fields[:2] == [_READ_SYSCALL, "0x0"]:
            return
        time.sleep(0.01)
    pytest.fail("aicp never started reading its chain from stdin")


SIGNALS = [(signal.SIGTERM, 143, "terminated by SIGTERM"), (signal.SIGINT, 130, "interrupted by SIGINT")]


class TestSignalsWhileLoading:
    """A real signal to a real aicp while it loads the chain: one result line, the signal's code."""

    @pytest.mark.parametrize("sig,code,message", SIGNALS)
    @pytest.mark.parametrize("command", [["run-chain", "--stream"], ["run-chain"], ["validate"]])
    def test_signal_while_reading_the_chain(self, tmp_path, validate_events, sig, code, message, command):
        proc = subprocess.Popen(aicp_argv(*command, "--config", "-"), cwd=tmp_path, env=child_env(),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            _wait_until_reading_stdin(proc.pid)
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
            proc.wait()
        run = Run(proc.returncode, out.decode(), err.decode())
        assert run.returncode == code, run.stderr
        if "--stream" in command:
            assert run.stream_failure == message
            validate_events(run)
        else:
            assert run.stderr == f"error: {message}\n" and run.stdout == ""

    @pytest.mark.parametrize("sig,code,message", SIGNALS)
    def test_signal_at_a_random_moment_of_loading(self, tmp_path, sig, code, message):
        """The chain arrives, then the signal after 0-30 ms: wherever it lands (parsing, validating,
        telling the error), the outcome is one result line with either the chain's error or the signal's."""
        rng = random.Random(1234)
        outcomes = set()
        for _ in range(8):
            proc = subprocess.Popen(aicp_argv("run-chain", "--stream", "--config", "-"), cwd=tmp_path,
                                    env=child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
            try:
                _wait_until_reading_stdin(proc.pid)
                assert proc.stdin is not None
                proc.stdin.write(INVALID.encode())
                proc.stdin.close()
                time.sleep(rng.uniform(0, 0.03))
                try:
                    os.kill(proc.pid, sig)
                except ProcessLookupError:
                    pass
                proc.wait(30)  # what it writes is a few lines: the pipes never fill
                assert proc.stdout is not None and proc.stderr is not None
                out, err = proc.stdout.read(), proc.stderr.read()
            finally:
                proc.kill()
                proc.wait()
            run = Run(proc.returncode, out.decode(), err.decode())
            assert run.returncode in (2, code), run.stderr
            failure = run.stream_failure
            assert failure == message if run.returncode == code else "steps[0].timeout" in failure
            outcomes.add(run.returncode)
        assert outcomes  # every case above held, whichever way each went


class TestMainFromPython:
    """``aicp.cli.main(argv)`` called in a host process (tests, programs) leaves the host's
    signal handlers and signal mask as they were: children it starts later must get SIGTERM."""

    @pytest.mark.parametrize("args", [["validate", "--config", "missing.yaml"], ["--version"], ["list-steps"],
                                      ["run-chain", "--stream", "--bogus"]])
    def test_signal_state_is_restored(self, tmp_path, monkeypatch, capsys, args):
        from aicp import cli

        monkeypatch.chdir(tmp_path)
        before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM),
                  signal.pthread_sigmask(signal.SIG_BLOCK, []))
        with pytest.raises(SystemExit):
            cli.main(args)
        after = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM),
                 signal.pthread_sigmask(signal.SIG_BLOCK, []))
        assert after == before
