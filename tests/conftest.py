"""Shared helpers: run the real ``aicp`` CLI in a subprocess and read what it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
from _aicp import Run, aicp_argv, child_env

try:  # the fuzz tests' profiles: derandomised by default (CI runs the README command as it is)
    from hypothesis import HealthCheck, settings

    _FUZZ = dict(deadline=None, print_blob=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                        HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])
    settings.register_profile("aicp", derandomize=True, database=None, **_FUZZ)
    settings.register_profile("explore", derandomize=False, **_FUZZ)  # HYPOTHESIS_PROFILE=explore
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "aicp"))
except ImportError:  # without the test extra: the fuzz module skips itself
    pass


@pytest.fixture
def aicp(tmp_path: Path):
    """Run ``python -m aicp ARGS`` in ``tmp_path`` and return a :class:`Run`."""

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 120, cwd: Path | None = None) -> Run:
        proc = subprocess.run(aicp_argv(*args), input=input, capture_output=True, text=True,
                              cwd=cwd or tmp_path, env=env or child_env(), timeout=timeout)
        return Run(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def write_chain(tmp_path: Path):
    """Write a chain file (dedented YAML) into ``tmp_path``; return its path as a string."""

    def write(text: str, name: str = "chain.yaml") -> str:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return str(path)

    return write


@pytest.fixture
def write_module(tmp_path: Path):
    """Write a Python module next to the chain (importable by ``python`` steps)."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / f"{name}.py"
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write


# --------------------------------------------------------------------------- event schema

_EVENTS_SCHEMA_PATH = Path(__file__).resolve().parent.parent / "src" / "aicp" / "events.schema.json"
_events_validator: Any = None


def events_validator() -> Any:
    """A jsonschema validator for one event of the stream (src/aicp/events.schema.json)."""
    global _events_validator
    if _events_validator is None:
        import jsonschema

        schema = json.loads(_EVENTS_SCHEMA_PATH.read_text())
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        _events_validator = cls(schema)
    return _events_validator


def assert_valid_events(events: list[dict[str, Any]]) -> None:
    """Fail with the first event that does not match the event schema (and why)."""
    validator = events_validator()
    for event in events:
        errors = sorted(validator.iter_errors(event), key=lambda e: e.path)
        if errors:
            # oneOf hides the useful message: validate against the definition named by "event"
            name = event.get("event")
            definition = validator.schema["$defs"].get(name)
            if definition is not None:
                sub = validator.evolve(schema={**definition, "$defs": validator.schema["$defs"]})
                errors = list(sub.iter_errors(event)) or errors
            messages = "; ".join(f"{'/'.join(map(str, e.absolute_path)) or '<event>'}: {e.message}"
                                 for e in errors[:5])
            raise AssertionError(f"event does not match the schema: {messages}\n{json.dumps(event)[:2000]}")


@pytest.fixture
def validate_events():
    """``validate_events(run_or_events)``: schema-check every event of a :class:`Run` (result included)."""

    def check(run: Any) -> None:
        if isinstance(run, Run):
            events = run.events
            events += [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
        else:
            events = list(run)
        assert_valid_events(events)

    return check
