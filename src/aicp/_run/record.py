"""Durable runs: what a run keeps on disk so that a crashed, killed or cancelled run can resume.

Every run writes ``output_dir/runs/<run_id>/``:

* ``chain.json``: the chain as it was run;
* ``manifest.json``: the run's state, rewritten atomically (temp file, then
  rename) after every step: each step's status, its output files with size
  and SHA-256, cost, timings, and the hashes of the step's definition and of
  its input; sealed with a digest of its own content, so an edited or
  truncated record is refused instead of half-used;
* ``events.jsonl``: the run's event stream.

A step that sends a paid request to a provider records the request's id the
moment it is submitted (``requests`` in the manifest, with the step's
definition and input hashes); a resumed run hands it back to the same step,
which polls that request instead of submitting, and paying for, another.

Resuming reuses a step only if its definition and input are unchanged and
every output file it recorded still exists with the recorded hash; the first
step that differs, and every step after it, runs again.

How durable each write is (docs/supervisor.md, "How durable the record is"):
every update is in place before the run goes on, so a killed aicp (SIGKILL,
a crash, the OOM killer) always leaves the state as of its last update.
Flushing to the disk itself (fsync), which only a power loss or a kernel
crash needs, is done before the rename for the writes that matter: the
record's creation, its end, and every write of a run that has paid for
something (a paid request's id, before the run goes on, so that a resumed run
polls it rather than paying again; a step that cost money). A free run's
per-step updates are flushed by a background thread instead
(:class:`aicp._run.atomic.LazyFile`), off the per-step path.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Literal, TypedDict, cast

from aicp._chain.model import Chain, Step
from aicp._errors import ChainError, MissingInputError, OutputError, UsageError
from aicp._redact import Redactor, secret_param_values
from aicp._run.atomic import LazyFile, write_atomic
from aicp._run.manifest_bytes import ManifestBytes, canonical, indented
from aicp._run.writable import reason
from aicp._chain.steptypes import path_like
from aicp._run.results import StepResult

MANIFEST = "manifest.json"
CHAIN_FILE = "chain.json"
EVENTS_FILE = "events.jsonl"
RESERVE_FILE = ".reserve"  # space kept for the final manifest (see RunRecord.reserve)
RESERVE_MIN = 64 * 1024
RESERVE_MAX = 8 * 1024 * 1024
LOCK_FILE = "lock"  # flock()ed by the process running the run; the kernel releases it when that process dies
RECORD_VERSION = 1
# What an interrupted run leaves behind: a temp file of write_atomic() in the record
# (``.manifest.json.tmp<pid>``), and a step's unfinished atomic output in output_dir
# (``.step_2_python.part<worker pid>.mp4``, see aicp._context.AtomicOutput).
_RECORD_TEMP = re.compile(r"^\..+\.tmp\d+$")
_STEP_PART = re.compile(r"^\.step_.*\.part(\d+)")


class FileEntry(TypedDict):
    """An output file as recorded: resuming reuses a step only while its files still match."""

    path: str
    size: int
    sha256: str


class _ManifestEntryFields(TypedDict):
    status: Literal["completed", "failed"]
    definition: str  # definition_hash() of the step
    input: str  # input_hash() of what it was given
    recorded: float  # time.time()


class ManifestEntry(_ManifestEntryFields, total=False):
    """One step's (or group member's) entry in ``manifest.json``'s ``steps``, keyed ``"3"`` or ``"3.1"``."""

    output: Any
    cost: float
    files: list[FileEntry]
    result: dict[str, Any]  # the step's result, less its group members'
    error: str
    duration_seconds: float
    masked: bool  # the output held a secret and is stored masked: a resumed run runs the step again


class RunRecordError(ChainError):
    """A run record that cannot be trusted (edited, truncated, or of another chain): exit 2."""


def canonical_hash(value: Any) -> str:
    return hashlib.sha256(canonical(value)).hexdigest()


def file_hash(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_intermediate(chain: Chain, run_id: str | None, step_number: int, outputs: dict[str, Any],
                      total_cost: float) -> Path:
    """``save_intermediates: true``: the old tool's report after each step, where it wrote it
    (``output_dir/reports/<name>_step<N>_intermediate_<unix time>.json``)."""
    import re

    name = re.sub(r"[^\w.-]+", "_", chain.name).strip("._") or "chain"
    path = chain.output_dir / "reports" / f"{name}_step{step_number}_intermediate_{int(time.time())}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "report_type": "intermediate",
        "execution_summary": {
            "chain_name": chain.name, "run_id": run_id, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "status": "in_progress", "input_type": chain.input_type, "total_steps": len(chain.steps),
            "completed_steps": step_number, "current_step": step_number, "total_cost_usd": round(total_cost, 6),
        },
        "intermediate_outputs": outputs,
    }
    write_atomic(path, indented(Redactor.from_environment(extra=chain.secrets).scrub(report)))
    return path


def definition_hash(step: Step) -> str:
    """What the step does: its type, model, params and members (not its limits or retries)."""
    def describe(s: Step) -> dict[str, Any]:
        return {"type": s.type, "model": s.model, "params": s.params,
                "members": [describe(m) for m in s.members if m.enabled]}

    return canonical_hash(describe(step))


def _paths_in(value: Any) -> list[str]:
    if isinstance(value, list):
        return [p for item in value for p in _paths_in(item)]
    if path_like(value) and os.path.isfile(value):
        return [value]
    return []


def input_hash(value: Any) -> str:
    """The input's value and, for files it names, their content."""
    return canonical_hash({"value": value, "files": {p: file_hash(p) for p in _paths_in(value)}})


def _claimed_chain(path: Path) -> str | None:
    """The chain name a damaged manifest still shows, if it can be read at all."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    name = manifest.get("chain_name") if isinstance(manifest, dict) else None
    return name if isinstance(name, str) else None


def runs_dir(output_dir: Path) -> Path:
    return output_dir / "runs"


def new_run_id() -> str:
    """Sortable and unique: ``20261125T121630-3fa9c2``."""
    import uuid

    return f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"


_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def valid_run_id(value: str) -> bool:
    """Run (and job, and batch) ids name folders and keys: letters, digits, ``.``, ``_``, ``-``; 128 at most."""
    return bool(_RUN_ID.match(value))


def open_record(chain: Chain, resume: str | None, run_id: str | None = None) -> tuple[RunRecord, bool]:
    """The record for this run: a new one, or (``resume``: a run id or ``latest``) the one to continue.

    ``run_id`` (``run-chain --run-id``) names the run: it is created with that id, or resumed when a
    record of that id exists (a batch job run again continues its run).
    """
    try:
        return _open_record(chain, resume, run_id)
    except OSError as exc:  # the probe passed, then the disk filled or the folder changed
        raise OutputError(f"cannot write the run record under {runs_dir(chain.output_dir)}: {reason(exc)}") from None


def _open_record(chain: Chain, resume: str | None, run_id: str | None) -> tuple[RunRecord, bool]:
    redactor = Redactor.from_environment(extra=chain.secrets)
    if run_id is not None:
        if not valid_run_id(run_id):
            raise UsageError(f"--run-id {run_id!r}: use letters, digits, '.', '_' and '-' (at most 128), "
                             "starting with a letter or digit")
        if resume not in (None, "latest", run_id):
            raise UsageError(f"--run-id {run_id} and --resume {resume} name two different runs")
        if (runs_dir(chain.output_dir) / run_id / MANIFEST).is_file():
            resume = run_id
        elif resume is None or resume == "latest":
            return RunRecord.create(chain, run_id, redactor, exist_ok=True), False
    if resume is None:
        return RunRecord.create(chain, new_run_id(), redactor), False
    record = RunRecord.load(chain.output_dir, resume, chain.name, redactor)
    record.lock()
    record.remove_partials(chain.output_dir)
    record.begin_resume()
    write_chain(record.root, chain, redactor)  # the chain as run now (it may have been edited since)
    return record, True


def write_chain(root: Path, chain: Chain, redactor: Redactor) -> None:
    """Keep the chain as run, with its secrets masked as in the events (output folders get shared)."""
    write_atomic(root / CHAIN_FILE, indented(redactor.scrub({"source": chain.source, "chain": chain.raw})))


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, dead but not yet reaped, is not)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class RunRecord:
    """One run's record. Not thread-safe by itself: the supervisor serialises updates.

    Everything it writes or shows passes ``redactor`` (the run's, shared with its
    event stream): secrets are masked on disk as in the events.
    """

    def __init__(self, root: Path, manifest: dict[str, Any], redactor: Redactor | None = None) -> None:
        self.root = root
        self.manifest = manifest
        self.redactor = redactor or Redactor.from_environment()
        self._lock_fd: int | None = None
        self._reserved = 0  # the reserve's size as this process last made it (0: unknown, or given back)
        self._lazy = LazyFile(root / MANIFEST)
        # Once a run has paid for something, every write is flushed before it is renamed into place.
        self._paid = bool(manifest.get("requests")) or any(
            (entry.get("cost") or 0) > 0 for entry in manifest.get("steps", {}).values())
        # Each step's entry as last written, masked, in the steps' order: an entry is never changed
        # once recorded, so it is masked again only after the redactor learns a new secret (see
        # _masked_manifest()); the keys recorded since the last write are masked at the next.
        self._masked_steps: dict[str, Any] = {}
        self._unmasked: list[str] = list(manifest.get("steps", {}))
        self._masked_known = -1
        self._bytes = ManifestBytes()  # each entry's renderings, kept between writes

    @property
    def run_id(self) -> str:
        return self.manifest["run_id"]

    @property
    def events_path(self) -> Path:
        return self.root / EVENTS_FILE

    # -------------------------------------------------------------- create and load

    @classmethod
    def create(cls, chain: Chain, run_id: str, redactor: Redactor | None = None,
               exist_ok: bool = False) -> "RunRecord":
        redactor = redactor or Redactor.from_environment(extra=chain.secrets)
        root = runs_dir(chain.output_dir) / run_id
        existed = root.exists()
        root.mkdir(parents=True, exist_ok=exist_ok)  # a named run killed before its first write left its folder
        now = time.time()
        record = cls(root, {"record_version": RECORD_VERSION, "run_id": run_id, "chain_name": chain.name,
                            "chain_source": chain.source, "created": now, "updated": now,
                            "status": "running", "resumed": 0, "steps": {}}, redactor)
        try:
            write_chain(root, chain, redactor)
            record.lock()
            record._save(durable=True)
        except OSError:  # a full disk: no half-made record that would look like a run
            record.unlock()
            if not existed:
                shutil.rmtree(root, ignore_errors=True)
            raise
        return record

    @classmethod
    def load(cls, output_dir: Path, run_id: str, chain_name: str | None = None,
             redactor: Redactor | None = None) -> "RunRecord":
        """Load and verify a record; ``run_id`` may be ``latest`` (the newest run of ``chain_name``)."""
        base = runs_dir(output_dir)
        if run_id == "latest":
            return cls._latest(base, chain_name, redactor)
        root = base / run_id
        if "/" in run_id or not (root / MANIFEST).is_file():
            raise MissingInputError(f"no run record '{run_id}' in {base}")
        record = cls(root, cls._read_manifest(root), redactor)
        if chain_name is not None and record.manifest.get("chain_name") != chain_name:
            raise RunRecordError(f"run {run_id} is a run of chain '{record.manifest.get('chain_name')}', "
                                 f"not of '{chain_name}'; refusing to resume it")
        return record

    @classmethod
    def _latest(cls, base: Path, chain_name: str | None, redactor: Redactor | None) -> "RunRecord":
        candidates = []
        damaged: list[tuple[float, str, RunRecordError]] = []
        for root in base.iterdir() if base.is_dir() else ():
            try:
                manifest = cls._read_manifest(root)
            except RunRecordError as exc:
                # it may be this chain's newest run: refused below rather than silently passed over
                claimed = _claimed_chain(root / MANIFEST)
                if chain_name is None or claimed in (None, chain_name):
                    damaged.append(((root / MANIFEST).stat().st_mtime, root.name, exc))
                continue
            except (MissingInputError, OSError):
                continue  # not a record (a stray folder, a run killed before its first write)
            if chain_name is None or manifest.get("chain_name") == chain_name:
                candidates.append((manifest["updated"], root.name, manifest))
        if damaged and (not candidates or max(damaged)[0] > max(candidates)[0]):
            raise max(damaged)[2]
        if not candidates:
            raise MissingInputError(f"no earlier run of chain '{chain_name}' in {base}")
        _, name, manifest = max(candidates)
        return cls(base / name, manifest, redactor)

    @staticmethod
    def _read_manifest(root: Path) -> dict[str, Any]:
        path = root / MANIFEST
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise MissingInputError(f"run record {root} has no {MANIFEST}") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise RunRecordError(f"run record {path} is damaged (truncated or not JSON: {exc}); "
                                 "refusing to resume it") from None
        if not isinstance(manifest, dict) or manifest.get("record_version") != RECORD_VERSION:
            raise RunRecordError(f"run record {path} is not a version-{RECORD_VERSION} aicp run record")
        sealed = manifest.pop("digest", None)
        if sealed != canonical_hash(manifest):
            raise RunRecordError(f"run record {path} was modified after aicp wrote it (its digest does "
                                 "not match); refusing to resume it")
        if manifest.get("run_id") != root.name:
            raise RunRecordError(f"run record {path} belongs to run {manifest.get('run_id')}, not {root.name}")
        return manifest

    def _save(self, final: bool = False, durable: bool = False) -> None:
        """Write the manifest: in place before this returns; flushed to the disk before it is
        renamed into place if ``durable`` or ``final`` or the run has paid for something, else
        soon after, in the background. The ``final`` write (how the run ended) may use the
        reserve: on a full disk the reserve is given back and the write tried again."""
        self.manifest["updated"] = time.time()
        data = self._bytes.render(self._masked_manifest())  # (sealed with its digest)
        write = write_atomic if durable or final or self._paid else self._lazy_write
        try:
            write(self.root / MANIFEST, data)
        except OSError as exc:
            if not (final and exc.errno in (errno.ENOSPC, errno.EDQUOT) and self.release_reserve()):
                raise
            write(self.root / MANIFEST, data)
        self._top_up_reserve(len(data))

    def _lazy_write(self, _path: Path, data: bytes) -> None:
        self._lazy.write(data)

    def _masked_manifest(self) -> dict[str, Any]:
        """The manifest as written: ``redactor.scrub(self.manifest)``, without masking every step's
        entry again at every step (that grew with the run: quadratic in its steps)."""
        steps: dict[str, ManifestEntry] = self.manifest["steps"]
        fresh, self._unmasked = self._unmasked, []
        for key in fresh:  # learn first, as scrub() does: a secret masks everywhere
            self.redactor.learn(secret_param_values(steps[key]))
        masked_rest = self.redactor.scrub({k: v for k, v in self.manifest.items() if k != "steps"})
        if self.redactor.known != self._masked_known:  # a new secret (or the first write): all again
            self._masked_known = self.redactor.known
            self._masked_steps = {key: self.redactor.mask(entry) for key, entry in steps.items()}
        else:  # (a key recorded again keeps its place, as in ``steps``; a new one comes last, as there)
            for key in fresh:
                self._masked_steps[key] = self.redactor.mask(steps[key])
        return {k: (self._masked_steps if k == "steps" else masked_rest[k]) for k in self.manifest}

    # -------------------------------------------------------------- space for the last word

    @property
    def _reserve_path(self) -> Path:
        return self.root / RESERVE_FILE

    def _top_up_reserve(self, manifest_size: int) -> None:
        """Keep space aside for the final manifest (the new one, beside the old one until the
        rename), so that a disk that fills during the run still gets to record how the run ended.
        Best effort: on a disk already full, what is there stays reserved."""
        if self._lock_fd is None:
            return  # only the process running the run keeps a reserve
        wanted = min(RESERVE_MAX, 2 * manifest_size + RESERVE_MIN)
        if wanted <= self._reserved:
            return  # (the usual case: no system call on a step's path)
        # Grown in whole RESERVE_MIN chunks, so a manifest growing by a step's entry at a time
        # makes the file grow every few dozen steps, not at every one.
        wanted = min(RESERVE_MAX, -(-wanted // RESERVE_MIN) * RESERVE_MIN)
        try:
            fd = os.open(self._reserve_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return
        try:
            size = os.fstat(fd).st_size
            if size < wanted:
                os.posix_fallocate(fd, 0, wanted)
                size = wanted
            self._reserved = size
        except OSError:
            pass  # (tried again at the next write)
        finally:
            os.close(fd)

    def release_reserve(self) -> bool:
        """Give the reserved space back; whether there was any."""
        self._reserved = 0
        try:
            os.unlink(self._reserve_path)
        except OSError:
            return False
        return True

    # -------------------------------------------------------------- steps

    def reusable(self, key: str, definition: str, step_input: str) -> ManifestEntry | None:
        """The recorded result of step ``key`` if it can stand for running it again, else None."""
        entry: ManifestEntry | None = self.manifest["steps"].get(key)
        if not entry or entry.get("status") != "completed" or entry.get("masked"):
            return None
        if entry.get("definition") != definition or entry.get("input") != step_input:
            return None
        for f in entry.get("files", []):
            try:
                if os.path.getsize(f["path"]) != f["size"] or file_hash(f["path"]) != f["sha256"]:
                    return None
            except OSError:
                return None
        return entry

    def record(self, key: str, *, status: Literal["completed", "failed"], definition: str, step_input: str,
               result: StepResult | None = None, error: str | None = None,
               duration_seconds: float | None = None) -> None:
        entry: ManifestEntry = {"status": status, "definition": definition, "input": step_input,
                                 "recorded": time.time()}
        if result is not None:
            entry["output"] = result.get("output")
            if self.redactor.scrub(entry["output"]) != entry["output"]:
                entry["masked"] = True  # stored masked: a resumed run runs the step again
            entry["cost"] = result.get("cost", 0.0)
            if isinstance(entry["cost"], (int, float)) and entry["cost"] > 0:
                self._paid = True
            # a file the output names counts too, declared in ``outputs`` or not (``return str(path)``)
            declared = list(result.get("outputs") or [])
            paths = declared + [p for p in _paths_in(result.get("output")) if p not in declared]
            entry["files"] = [{"path": p, "size": os.path.getsize(p), "sha256": file_hash(p)}
                              for p in paths if os.path.isfile(p)]
            entry["result"] = {k: v for k, v in result.items() if k not in ("members",)}
        if error is not None:
            entry["error"] = error
        if duration_seconds is not None:
            entry["duration_seconds"] = round(duration_seconds, 3)
        self.manifest["steps"][key] = entry
        self._unmasked.append(key)
        if status == "completed":
            self.manifest.get("requests", {}).pop(key, None)
        self._save()

    def remember_request(self, key: str, definition: str, step_input: str, request: dict[str, Any]) -> None:
        """A step's remote request is out: keep its id until the step completes."""
        entry = {k: request.get(k) for k in ("provider", "endpoint", "request_id", "index")}
        entry.update(definition=definition, input=step_input, submitted=time.time())
        kept = [r for r in self.manifest.setdefault("requests", {}).get(key, [])
                if (r.get("definition"), r.get("input")) == (definition, step_input)
                and (r.get("provider"), r.get("endpoint"), r.get("index")) != (entry["provider"], entry["endpoint"],
                                                                             entry["index"])]
        self.manifest["requests"][key] = kept + [entry]
        self._paid = True
        self._save()  # on the disk before the run goes on: a resumed run must poll it

    def pending_requests(self, key: str, definition: str, step_input: str) -> list[dict[str, Any]]:
        """The requests an interrupted run of this step submitted, if the step is still the same."""
        return [r for r in self.manifest.get("requests", {}).get(key, [])
                if (r.get("definition"), r.get("input")) == (definition, step_input)]

    def lock(self) -> None:
        """Hold the run while this process runs it, so that no second aicp resumes it meanwhile."""
        import fcntl

        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunRecordError(f"run {self.run_id} is in progress in another aicp process; "
                                 "refusing to resume it") from None
        self._lock_fd = fd

    def held_elsewhere(self) -> bool:
        """Whether a live aicp process holds this run (its lock is released when that process dies)."""
        import fcntl

        if self._lock_fd is not None:
            return False
        try:
            fd = os.open(self.root / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def worker_pids(self) -> set[int]:
        """The pid of every worker this run started, from its events (``step_start``)."""
        pids: set[int] = set()
        try:
            with open(self.events_path, "rb") as f:
                for line in f:
                    if b'"step_start"' not in line:
                        continue
                    try:
                        pid = json.loads(line).get("pid")
                    except ValueError:
                        continue  # the last line of a run killed mid-write
                    if isinstance(pid, int):
                        pids.add(pid)
        except OSError:
            pass
        return pids

    def remove_partials(self, output_dir: Path) -> list[str]:
        """Delete what the interrupted run left half-written: temp files of the record's atomic
        writes, and the unfinished atomic outputs of its own workers (other runs sharing
        ``output_dir`` keep theirs: a part file names the worker that writes it). Call with the
        record locked. Returns the paths removed."""
        removed = [str(p) for p in self.root.iterdir() if _RECORD_TEMP.match(p.name)]
        pids = self.worker_pids()
        for entry in os.scandir(output_dir) if output_dir.is_dir() else ():
            match = _STEP_PART.match(entry.name)
            if match and int(match[1]) in pids and not _running(int(match[1])):
                removed.append(entry.path)
        for path in removed:
            try:
                os.unlink(path)
            except OSError:
                pass
        return removed

    def unlock(self) -> None:
        self._lazy.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def begin_resume(self) -> None:
        self.manifest["status"] = "running"
        self.manifest["resumed"] = self.manifest.get("resumed", 0) + 1
        self._save()

    def finish(self, status: str, summary: dict[str, Any]) -> None:
        self.manifest["status"] = status
        self.manifest["result"] = summary
        try:
            self._save(final=True)
        finally:
            self.release_reserve()
            self.unlock()

    def summary(self) -> dict[str, Any]:
        """What ``aicp runs list/show`` print."""
        m = self.manifest
        status = m["status"]
        if status == "running" and not self.held_elsewhere():
            status = "interrupted"  # its process died (kill -9, a crash): `--resume` continues it
        return self.redactor.scrub({"run_id": m["run_id"], "chain_name": m["chain_name"], "chain_source": m.get("chain_source"),
                "status": status, "created": m["created"], "updated": m["updated"],
                "resumed": m.get("resumed", 0), "path": str(self.root),
                "steps": {k: {kk: vv for kk, vv in v.items() if kk != "result"} for k, v in m["steps"].items()},
                "result": m.get("result")})


class Journal:
    """The supervisor's use of a run record: remember each step, and reuse what a resumed run may.

    Reuse is strictly a prefix: once one step (or group member) runs again,
    every later step runs again too. Safe to call from parallel members.
    A record that cannot be written (a full disk) does not stop the run: ``warn``
    says so once, and the final state is still tried (the record keeps space for it).
    """

    def __init__(self, record: RunRecord | None, resume: bool,
                 warn: Callable[[str], None] | None = None) -> None:
        import threading

        self.record = record
        self.reusing = resume and record is not None
        self.resumed = self.reusing
        self._lock = threading.Lock()
        self._warn = warn
        self._warned = False

    def reuse(self, key: str, step: Step, step_input: Any) -> StepResult | None:
        """The recorded result to reuse for this step, with its cost not charged again; or None."""
        if not self.reusing or self.record is None:
            return None
        with self._lock:
            entry = self.record.reusable(key, definition_hash(step), input_hash(step_input))
        if entry is None:
            return None
        recorded = entry.get("result", {})
        files = recorded.get("outputs", [f["path"] for f in entry.get("files", [])])
        return cast(StepResult, {**recorded, "output": entry.get("output"), "cost": 0.0, "outputs": files,
                                 "reused": True})

    def stop_reusing(self) -> None:
        """A step is running for real: nothing after it may be reused."""
        self.reusing = False

    def done(self, key: str, step: Step, step_input: Any, result: StepResult) -> None:
        if self.record is not None and not result.get("reused"):
            self._write(self.record.record, key, status="completed", definition=definition_hash(step),
                        step_input=input_hash(step_input), result=result)

    def pending_requests(self, key: str, step: Step, step_input: Any) -> list[dict[str, Any]]:
        """What a resumed run's step should poll rather than submit again (nothing unless resuming)."""
        if not self.resumed or self.record is None:
            return []
        with self._lock:
            return self.record.pending_requests(key, definition_hash(step), input_hash(step_input))

    def submitted(self, key: str, step: Step, step_input: Any, request: dict[str, Any]) -> None:
        if self.record is not None:
            with self._lock:
                self.record.remember_request(key, definition_hash(step), input_hash(step_input), request)

    def failed(self, key: str, step: Step, step_input: Any, error: str) -> None:
        if self.record is not None:
            self._write(self.record.record, key, status="failed", definition=definition_hash(step),
                        step_input=input_hash(step_input), error=error)

    def finish(self, status: str, summary: dict[str, Any]) -> None:
        if self.record is not None:
            self._write(self.record.finish, status, summary)

    def abandon(self, error: str) -> None:
        """aicp is stopping on an error of its own: a record still ``running`` says it failed."""
        if self.record is not None and self.record.manifest.get("status") == "running":
            self.finish("failed", {"success": False, "error": error})

    def _write(self, update: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        with self._lock:
            try:
                update(*args, **kwargs)
            except OSError as exc:
                if self._warn is not None and not self._warned:
                    self._warned = True
                    assert self.record is not None
                    self._warn(f"cannot update the run record {self.record.root / MANIFEST}: {reason(exc)}; "
                               "the run goes on, and --resume will redo the steps it could not record")
