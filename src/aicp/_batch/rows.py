"""The inputs file of a batch: CSV or JSONL rows into jobs, every row checked before any runs.

* CSV: a header row; the input is the ``prompt`` column (or ``--column NAME``);
  an optional ``id`` column names the job.
* JSONL: one object per line: ``input`` or ``prompt``, an optional ``id``, and
  any other keys override the chain's top-level keys for that row (``timeout``,
  ``output_dir`` is not one of them: each job has its own folder).

Errors name the file and the line (``inputs.jsonl:7: ...``), and all of them
are reported at once, like a chain's: a batch either starts whole or not at all.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from aicp._batch.job import Job, derive_job_id
from aicp._run.record import valid_run_id as valid_id
from aicp._errors import ChainError, MissingInputError

MAX_INPUTS_BYTES = 256 * 1024 * 1024
MAX_ERRORS = 50
RESERVED_KEYS = ("id", "input", "prompt")
NOT_OVERRIDABLE = ("output_dir",)  # each job writes under the batch's folder


def read_inputs(path: str, column: str | None = None) -> tuple[list[Job], list[tuple[int, str]]]:
    """The good rows' jobs, and every bad row as (line, message); an unreadable file raises (exit 3)."""
    text = _read(path)
    is_csv = not path.endswith((".jsonl", ".ndjson", ".json")) and (path.endswith(".csv") or not _looks_jsonl(text))
    jobs, errors = (_csv_jobs(text, path, column) if is_csv else _jsonl_jobs(text, path, column))
    seen: dict[str, int] = {}
    for job in jobs:
        if job.job_id in seen:
            errors.append((job.row, f"{path}:{job.row}: id '{job.job_id}' is also the id of row {seen[job.job_id]}; "
                                    "job ids must be unique"))
        seen.setdefault(job.job_id, job.row)
    if not jobs and not errors:
        errors.append((0, f"{path}: no rows: nothing to run"))
    return jobs, errors


def rows_error(errors: list[tuple[int, str]]) -> ChainError:
    """Every bad row in one error (exit 2), in line order, at most :data:`MAX_ERRORS` of them."""
    errors = sorted(errors, key=lambda e: e[0])
    shown = [message for _, message in errors[:MAX_ERRORS]]
    more = len(errors) - MAX_ERRORS
    return ChainError("\n".join(shown + ([f"... and {more} more errors"] if more > 0 else [])))


def _read(path: str) -> str:
    p = Path(path)
    try:
        if not p.is_file():
            raise MissingInputError(f"inputs file not found or not a regular file: {path}")
        if p.stat().st_size > MAX_INPUTS_BYTES:
            raise ChainError(f"{path}: inputs file larger than {MAX_INPUTS_BYTES >> 20} MiB")
        return p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ChainError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise MissingInputError(f"cannot read inputs file {path}: {exc.strerror or exc}") from None


def _looks_jsonl(text: str) -> bool:
    first = next((line for line in text.splitlines() if line.strip()), "")
    return first.lstrip().startswith("{")


def _csv_jobs(text: str, path: str, column: str | None) -> tuple[list[Job], list[tuple[int, str]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    wanted = column or "prompt"
    if reader.fieldnames is None or wanted not in reader.fieldnames:
        found = ", ".join(reader.fieldnames or []) or "none"
        return [], [(1, f"{path}:1: no '{wanted}' column (columns: {found})"
                        + ("" if column else "; name the input column with --column NAME"))]
    jobs: list[Job] = []
    errors: list[tuple[int, str]] = []
    for number, row in enumerate(reader, start=1):
        line = reader.line_num
        if None in row:
            errors.append((line, f"{path}:{line}: more fields than the header has"))
            continue
        value = row.get(wanted) or ""
        if not value.strip():
            errors.append((line, f"{path}:{line}: empty '{wanted}'"))
            continue
        job_id = (row.get("id") or "").strip() or derive_job_id(number, row)
        if not valid_id(job_id):
            errors.append((line, f"{path}:{line}: id {job_id!r} is not a valid job id "
                                 "(letters, digits, '.', '_', '-'; at most 128)"))
            continue
        jobs.append(Job(job_id=job_id, row=line, input_text=value))
    return jobs, errors


def _jsonl_jobs(text: str, path: str, column: str | None) -> tuple[list[Job], list[tuple[int, str]]]:
    jobs: list[Job] = []
    errors: list[tuple[int, str]] = []
    number = 0
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        number += 1
        try:
            data: Any = json.loads(raw, parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            errors.append((line, f"{path}:{line}: not a JSON object: {exc}"))
            continue
        problem = _row_problem(data, column)
        if problem:
            errors.append((line, f"{path}:{line}: {problem}"))
            continue
        jobs.append(_jsonl_job(data, number, line, column))
    return jobs, errors


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _row_problem(data: Any, column: str | None) -> str | None:
    if not isinstance(data, dict):
        return f"each line must be a JSON object, got {type(data).__name__}"
    keys = (column,) if column else ("input", "prompt")
    present = [k for k in keys if data.get(k) is not None]
    if not present:
        return f"no {' or '.join(repr(k) for k in keys)}"
    if len(present) > 1:
        return "give 'input' or 'prompt', not both"
    if not isinstance(data[present[0]], str) or not data[present[0]].strip():
        return f"'{present[0]}' must be a non-empty string"
    job_id = data.get("id")
    if job_id is not None and (not isinstance(job_id, (str, int)) or isinstance(job_id, bool)
                               or not valid_id(str(job_id))):
        return f"id {job_id!r} is not a valid job id (letters, digits, '.', '_', '-'; at most 128)"
    bad = [k for k in data if k in NOT_OVERRIDABLE]
    if bad:
        return f"'{bad[0]}' cannot be set per row: each job writes under the batch's folder"
    return None


def _jsonl_job(data: dict[str, Any], number: int, line: int, column: str | None) -> Job:
    key = column if column else ("input" if data.get("input") is not None else "prompt")
    value = data[key]
    job_id = str(data["id"]) if data.get("id") is not None else derive_job_id(number, data)
    overrides = {k: v for k, v in data.items() if k not in RESERVED_KEYS and k != key}
    if key == "input" and Path(value).is_file():
        return Job(job_id=job_id, row=line, input_file=str(Path(value).resolve()), overrides=overrides)
    return Job(job_id=job_id, row=line, input_text=value, overrides=overrides)
