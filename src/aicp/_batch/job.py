"""One job of a batch: what it is, how its outcome is classified, and how it is started.

Every engine (local threads, Celery workers) runs a job the same way, as an
``aicp run-chain`` subprocess, and classifies how it ended with the one rule
here, so that a job means the same thing wherever it ran:

=====================  ===========================================================
child exit             what the batch does
=====================  ===========================================================
0                      ``succeeded``
2, 3, 5, 1             ``failed``, final (the chain, an input or a step is wrong;
                       running it again would fail again or pay again)
4 (provider)           retried after a growing delay, up to :data:`MAX_PROVIDER_RETRIES` times
killed by a signal     requeued (the job died with its worker, not of its own
                       fault); after :data:`MAX_DELIVERIES` deliveries ``lost``
130 / 143              ``interrupted``: the batch itself was stopped; resumable
=====================  ===========================================================

A job's run has the job's id as its run id, so running a job again (a retry, a
requeue, ``run-batch --resume``) resumes its run: finished steps are reused, not
paid again.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess

from aicp._errors import ExitCode
from aicp._worker.reaper import signal_on_parent_death


# Passed to every job's `aicp run-chain` so that each of its events carries them.
BATCH_ID_VAR = "AICP_BATCH_ID"
JOB_ID_VAR = "AICP_JOB_ID"
JOB_ATTEMPT_VAR = "AICP_JOB_ATTEMPT"
# The job's parent: the job ends itself (SIGTERM to itself) when that process dies.
PARENT_PID_VAR = "AICP_PARENT_PID"

MAX_PROVIDER_RETRIES = 3  # exit 4 (provider) is retried up to 3 times: 4 attempts in all
MAX_DELIVERIES = 3  # a job killed with its worker is requeued; the 4th delivery is refused: `lost`

Status = Literal["queued", "running", "succeeded", "failed", "lost", "skipped", "interrupted"]
FINAL: frozenset[str] = frozenset({"succeeded", "failed", "lost", "skipped"})
Verdict = Literal["succeeded", "failed", "lost", "retry", "requeue", "interrupted"]

# a job's exit status when a signal stopped it (128 + the signal): SIGHUP/INT/QUIT/KILL/TERM
_STOPPED = frozenset(128 + s for s in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGKILL, signal.SIGTERM))


@dataclass(frozen=True)
class Job:
    """One row of the inputs file, ready to run."""

    job_id: str
    row: int  # 1-based line (JSONL) or data row (CSV) number, for messages
    input_text: str | None = None
    input_file: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    estimated_cost: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "row": self.row, "input_text": self.input_text,
                "input_file": self.input_file, "overrides": self.overrides,
                "estimated_cost": self.estimated_cost}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Job":
        return cls(job_id=data["job_id"], row=data["row"], input_text=data.get("input_text"),
                   input_file=data.get("input_file"), overrides=dict(data.get("overrides") or {}),
                   estimated_cost=float(data.get("estimated_cost") or 0.0))


def derive_job_id(row: int, content: Any) -> str:
    """The row number plus a short hash of the row: stable across reruns of the same file."""
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"row{row:05d}-{digest}"


@dataclass(frozen=True)
class JobRun:
    """Where and how one job runs: everything its subprocess needs."""

    chain_path: str  # absolute
    job: Job
    job_dir: str  # absolute: the job's output_dir (its run record is under it)
    batch_id: str
    attempt: int

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "aicp", "run-chain", "--config", self.chain_path, "--stream", "--yes",
                "--run-id", self.job.job_id, "--output-dir", self.job_dir]
        if self.job.input_text is not None:
            argv += ["--input-text", self.job.input_text]
        elif self.job.input_file is not None:
            argv += ["--input", self.job.input_file]
        for key, value in self.job.overrides.items():
            argv += ["--set", f"{key}={json.dumps(value)}"]
        return argv

    def env(self, parent_pid: int | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.update({BATCH_ID_VAR: self.batch_id, JOB_ID_VAR: self.job.job_id, JOB_ATTEMPT_VAR: str(self.attempt)})
        env[PARENT_PID_VAR] = str(parent_pid if parent_pid is not None else os.getpid())
        return env


@dataclass
class JobResult:
    """How one run of a job ended, from its exit status and its one result line."""

    returncode: int
    result: dict[str, Any] | None

    @property
    def cost(self) -> float:
        value = (self.result or {}).get("total_cost")
        return float(value) if isinstance(value, (int, float)) else 0.0

    @property
    def error(self) -> str | None:
        if self.result is not None:
            error = self.result.get("error")
            return str(error) if error else None
        if self.returncode < 0:
            return f"the job's process was killed by signal {_signal_name(-self.returncode)}"
        return f"the job exited {self.returncode} without a result line" if self.returncode else None

    @property
    def exit_code(self) -> int:
        """The job's exit code; a job killed by a signal reports 128 + the signal, as a shell would."""
        return 128 - self.returncode if self.returncode < 0 else self.returncode

    def verdict(self, delivery: int, cancelled: bool) -> Verdict:
        """The one rule of the table above."""
        if self.returncode == 0:
            return "succeeded"
        if self.returncode < 0 or self.returncode in _STOPPED:
            # killed, or stopped by a signal it handled: not the job's own fault
            if cancelled:
                return "interrupted"
            return "requeue" if delivery < MAX_DELIVERIES else "lost"
        if self.returncode == ExitCode.PROVIDER:
            return "retry" if delivery <= MAX_PROVIDER_RETRIES else "failed"
        return "failed"


def relay_job(proc: subprocess.Popen[bytes], relay: Callable[[bytes], None]) -> JobResult:
    """Relay a job's events (its stderr lines as they come, then its stdout: the result line, the
    job's last event) until it ends, and return how it ended. Its stdout is read on a thread
    meanwhile, so that neither pipe can fill and stall the job."""
    import threading

    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read() if proc.stdout else b""), daemon=True)
    reader.start()
    assert proc.stderr is not None
    for line in proc.stderr:
        relay(line)
    reader.join()
    returncode = proc.wait()
    stdout = b"".join(out)
    for line in stdout.splitlines(keepends=True):
        relay(line)
    return JobResult(returncode, parse_result_line(stdout))


def parse_result_line(stdout: bytes) -> dict[str, Any] | None:
    """The job's result: the last JSON object line of its stdout (there is exactly one)."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith(b"{"):
            try:
                value = json.loads(line)
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def retry_delay(attempt: int) -> float:
    """Seconds before attempt ``attempt + 1`` of a job that a provider failed: 2, 4, 8 ... (at most 60).

    ``AICP_BATCH_RETRY_DELAY`` changes the base (tests set it small)."""
    base = float(os.environ.get("AICP_BATCH_RETRY_DELAY", "2"))
    return min(60.0, base * (2 ** (attempt - 1)))


def job_context() -> dict[str, Any]:
    """The batch fields every event of a batch job carries (empty outside a batch)."""
    context: dict[str, Any] = {}
    if os.environ.get(BATCH_ID_VAR):
        context["batch_id"] = os.environ[BATCH_ID_VAR]
    if os.environ.get(JOB_ID_VAR):
        context["job_id"] = os.environ[JOB_ID_VAR]
    attempt = os.environ.get(JOB_ATTEMPT_VAR, "")
    if attempt.isdigit():
        context["job_attempt"] = int(attempt)
    return context


def follow_parent() -> None:
    """End this job (SIGTERM to itself: a clean, resumable stop) when the process that started it dies.

    Linux's PR_SET_PDEATHSIG does it in the kernel; it is asked for only when the
    parent said who it is (:data:`PARENT_PID_VAR`), and if that parent is already
    gone the job stops at once. Elsewhere this does nothing.
    """
    expected = os.environ.get(PARENT_PID_VAR, "")
    if expected.isdigit() and not signal_on_parent_death(int(expected), signal.SIGTERM):
        os.kill(os.getpid(), signal.SIGTERM)
