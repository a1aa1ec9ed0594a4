"""The package type-checks: ``python -m mypy`` (settings in pyproject.toml) reports nothing.

CI also runs mypy on its own before the tests (``.ci/run``); running it here too
means whoever runs the suite before landing sees a type error then, not in CI.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_passes() -> None:
    done = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found" in done.stdout
