"""README's "Limits" table says what aicp._chain.limits enforces: one source, checked here."""

from __future__ import annotations

import re
from pathlib import Path

from aicp._chain.limits import FIELDS, MAX_DEPTH, MAX_FILE_BYTES, MAX_INT, MAX_VALUES, MIN_INT

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
TABLE = README[README.index("### Limits"):README.index("A `python` step's `ctx`")]


def test_every_numeric_field_is_in_the_table_with_its_range():
    rows = dict(re.findall(r"^\| `(\w+)` \| (.+?) \|$", TABLE, re.M))
    assert set(rows) == set(FIELDS)
    for key, limit in FIELDS.items():
        assert rows[key] == limit.describe(), key


def test_the_document_limits_are_the_modules():
    assert f"at most {MAX_FILE_BYTES} bytes" in TABLE
    assert f"| {MAX_DEPTH} levels |" in TABLE
    assert f"| {MAX_VALUES}, every YAML alias" in TABLE
    assert f"{MIN_INT} .. {MAX_INT}" in TABLE
