"""The parsed-document cache: a chain read from it validates exactly as when it is parsed.

``aicp validate`` keeps what a YAML chain parsed to in ``$XDG_CACHE_HOME/aicp/chains/``
(aicp._chain.doccache). Through the real CLI: the second invocation prints what
the first did, byte for byte, for valid chains, chains with warnings and chains
with errors; an entry is used only for its own text, read by the same aicp and
PyYAML; what JSON cannot carry exactly is not kept; concurrent invocations
share the cache safely.
"""

from __future__ import annotations

import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from _aicp import aicp_argv, child_env
from aicp._cache import read_entry, write_entry
from aicp._chain import doccache

CHAINS = {
    "valid": "name: cached\nprompt: hello\nsteps:\n  - {type: command, params: {argv: [echo, '{input}']}}\n"
             "  - {type: python, params: {function: 'mod:fn'}}\n",
    "readme_like": "name: card\nprompt: 'A lighthouse: the lamp still turns.'\noutput_dir: out\ntimeout: 120\nsteps:\n"
                   "  - type: text_to_image\n    model: title_card\n    params: {aspect_ratio: '16:9', background: '#0b1d3a'}\n"
                   "  - {type: image_to_video, model: ken_burns, params: {duration: 2.5, zoom: 1.08, pan: right}}\n",
    "warning": "name: w\nprompt: hi\nauthor: someone\nsteps:\n  - {type: command, params: {run: 'echo {input}'}}\n",
    "errors": "name: e\nprompt: hi\ntimeout: -3\nsteps:\n  - {type: text_to_imag, model: title_card}\n"
              "  - {type: command, params: {argv: [echo], bogus: 1}}\n",
    "anchors": "name: a\nprompt: hi\ndefaults: &d {timeout: 30, retry_count: 1}\nsteps:\n"
               "  - {<<: *d, type: command, params: {argv: [echo, x]}}\n  - {<<: *d, type: command, params: {argv: [true]}}\n",
    "unicode": "name: ünï\nprompt: \"caf\\u00e9 \\U0001F600 — fin\"\nsteps:\n  - {type: command, params: {argv: [echo, \"é\"]}}\n",
}


def _env(cache: Path) -> dict[str, str]:
    return child_env(XDG_CACHE_HOME=str(cache))


def _validate(where: Path, cache: Path, *extra: str, config: str = "chain.yaml") -> tuple[int, str, str]:
    done = subprocess.run(aicp_argv("validate", "--offline", "--config", config, *extra), cwd=where, env=_env(cache),
                          capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout, done.stderr


def _entries(cache: Path) -> list[Path]:
    folder = cache / "aicp" / "chains"
    return sorted(folder.glob("*.bin")) if folder.is_dir() else []


@pytest.mark.parametrize("name", sorted(CHAINS))
@pytest.mark.parametrize("json_flag", [(), ("--json",)])
def test_a_chain_read_from_the_cache_validates_as_when_parsed(tmp_path: Path, name: str, json_flag: tuple[str, ...]) -> None:
    (tmp_path / "chain.yaml").write_text(CHAINS[name], encoding="utf-8")
    cache = tmp_path / "cache"
    parsed = _validate(tmp_path, cache, *json_flag)
    assert len(_entries(cache)) == 1  # what it parsed to, errors or not: the text parsed
    cached = _validate(tmp_path, cache, *json_flag)
    assert cached == parsed
    assert (parsed[0] == 0) == (name not in ("errors",))
    assert "Traceback" not in parsed[2]


def _tampered(tmp_path: Path, change: dict[str, object]) -> tuple[tuple[int, str, str], tuple[int, str, str]]:
    """Validate chain A (the entry is written), then change A's entry; validate A again."""
    (tmp_path / "chain.yaml").write_text(CHAINS["valid"])
    cache = tmp_path / "cache"
    parsed = _validate(tmp_path, cache)
    (entry,) = _entries(cache)
    saved = read_entry(str(entry))
    saved.update(change)
    assert write_entry(str(entry), saved)
    return parsed, _validate(tmp_path, cache)


def _other_data() -> dict[str, object]:
    return {"name": "other", "prompt": "x", "steps": [{"type": "python", "params": {"function": "a:b"}}]}


def test_an_entry_holding_another_text_is_not_used(tmp_path: Path) -> None:
    parsed, again = _tampered(tmp_path, {"text": CHAINS["warning"], "data": _other_data()})
    assert again == parsed


def test_an_entry_written_by_another_aicp_is_not_used(tmp_path: Path) -> None:
    parsed, again = _tampered(tmp_path, {"reader": ["0.0.0-other"], "data": _other_data()})
    assert again == parsed


def test_an_entry_of_another_pyyaml_is_not_used(tmp_path: Path) -> None:
    parsed, again = _tampered(tmp_path, {"yaml": ["/nowhere/yaml/__init__.py", 1, 1], "data": _other_data()})
    assert again == parsed


def test_a_broken_entry_is_parsed_again_and_replaced(tmp_path: Path) -> None:
    (tmp_path / "chain.yaml").write_text(CHAINS["valid"])
    cache = tmp_path / "cache"
    parsed = _validate(tmp_path, cache)
    (entry,) = _entries(cache)
    entry.write_bytes(b"\x00{not marshal")
    assert _validate(tmp_path, cache) == parsed
    assert read_entry(str(entry))["text"] == CHAINS["valid"]


@pytest.mark.parametrize("value, kept", [("2024-01-02", False), ("2024-01-02T10:00:00Z", False), ("1" * 60, False),
                                         ("!!set {a, b}", True), ("!!binary aGVsbG8=", True), ("!!omap [a: 1]", True),
                                         (".nan", True), ("{1: x, true: y}", True)])
def test_only_what_is_given_back_exactly_is_kept(tmp_path: Path, value: str, kept: bool) -> None:
    # dates and too-long integers are not kept (marshal does not carry them); sets, bytes, tuples, NaN
    # and keys that are not strings are, and are refused the same way when read back
    (tmp_path / "chain.yaml").write_text(f"name: d\nprompt: hi\nreleased: {value}\nsteps:\n"
                                         "  - {type: command, params: {argv: [echo, x]}}\n")
    cache = tmp_path / "cache"
    first = _validate(tmp_path, cache)
    assert len(_entries(cache)) == int(kept)
    assert _validate(tmp_path, cache) == first


def test_a_json_chain_and_a_text_that_does_not_parse_are_not_kept(tmp_path: Path) -> None:
    (tmp_path / "chain.json").write_text(json.dumps({"prompt": "hi", "steps": [{"type": "command",
                                                                                "params": {"argv": ["echo"]}}]}))
    (tmp_path / "chain.yaml").write_text("name: [unclosed\nsteps: []\n")
    cache = tmp_path / "cache"
    assert _validate(tmp_path, cache, config="chain.json")[0] == 0
    code, _, err = _validate(tmp_path, cache)
    assert code == 2 and err.startswith("error: chain.yaml:")
    assert _entries(cache) == []


def test_cache_dir_flag_says_where_the_cache_is(tmp_path: Path) -> None:
    (tmp_path / "chain.yaml").write_text(CHAINS["valid"])
    code, _, err = _validate(tmp_path, tmp_path / "unused", "--cache-dir", "elsewhere")
    assert code == 0, err
    assert len(_entries(tmp_path / "elsewhere")) == 1 and _entries(tmp_path / "unused") == []


def test_an_unwritable_cache_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "chain.yaml").write_text(CHAINS["warning"])
    (tmp_path / "cache").write_text("a file where the cache folder would be")
    first = _validate(tmp_path, tmp_path / "cache")
    assert first[0] == 0 and first == _validate(tmp_path, tmp_path / "cache")


def test_concurrent_invocations_share_the_cache(tmp_path: Path) -> None:
    (tmp_path / "chain.yaml").write_text(CHAINS["readme_like"])
    cache = tmp_path / "cache"
    with ThreadPoolExecutor(8) as pool:
        first = list(pool.map(lambda _: _validate(tmp_path, cache), range(8)))
        second = list(pool.map(lambda _: _validate(tmp_path, cache), range(8)))
    assert len({*first, *second}) == 1 and first[0][0] == 0
    (entry,) = _entries(cache)
    assert read_entry(str(entry))["text"] == CHAINS["readme_like"]
    assert not list(entry.parent.glob("*.tmp"))


def test_the_oldest_entries_go_beyond_the_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(doccache, "MAX_ENTRIES", 3)
    texts = [f"name: n{i}\nsteps: []\n" for i in range(5)]
    for i, text in enumerate(texts):
        doccache.save(text, {"name": f"n{i}", "steps": []}, {(): (1, 1)})
        for entry in _entries(tmp_path):  # distinct ages whatever the file system's clock resolution
            os.utime(entry, ns=(entry.stat().st_mtime_ns - 10**9,) * 2)
    assert len(_entries(tmp_path)) == 3
    assert [doccache.load(t) is not None for t in texts] == [False, False, True, True, True]


def test_pruning_goes_down_to_three_quarters_of_the_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # beyond the bound the oldest go, down to 3/4 of it: the entries' ages are read once in many misses
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(doccache, "MAX_ENTRIES", 8)
    counts = []
    for i in range(12):
        doccache.save(f"name: n{i}\nsteps: []\n", {"name": f"n{i}", "steps": []}, {(): (1, 1)})
        for entry in _entries(tmp_path):
            os.utime(entry, ns=(entry.stat().st_mtime_ns - 10**9,) * 2)
        counts.append(len(_entries(tmp_path)))
    assert counts == [1, 2, 3, 4, 5, 6, 7, 8, 6, 7, 8, 6]
    assert max(counts) <= 8


@pytest.mark.parametrize("name, pyyaml", [("valid", False), ("anchors", True)])
def test_an_entry_depends_on_pyyaml_only_when_pyyaml_parsed_it(tmp_path: Path, name: str, pyyaml: bool) -> None:
    # plain YAML is read by aicp._chain.plainyaml (part of the reader); an anchor takes PyYAML, whose
    # file the entry names, so that another PyYAML does not read it back
    (tmp_path / "chain.yaml").write_text(CHAINS[name])
    cache = tmp_path / "cache"
    parsed = _validate(tmp_path, cache)
    (entry,) = _entries(cache)
    saved = read_entry(str(entry))
    assert (saved["yaml"] is not None) is pyyaml
    if pyyaml:
        saved.update({"yaml": ["/nowhere/yaml/__init__.py", 1, 1], "data": _other_data()})
        assert write_entry(str(entry), saved)
        assert _validate(tmp_path, cache) == parsed


def test_a_run_reads_the_cache_and_writes_nothing_there(tmp_path: Path) -> None:
    (tmp_path / "chain.yaml").write_text(CHAINS["valid"].replace("  - {type: python, params: {function: 'mod:fn'}}\n", ""))
    cache = tmp_path / "cache"

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(aicp_argv("run-chain", "--config", "chain.yaml", "--stream"), cwd=tmp_path,
                              env=_env(cache), capture_output=True, text=True, timeout=120)

    assert run().returncode == 0
    assert _entries(cache) == []  # a run's I/O is its record's
    assert _validate(tmp_path, cache)[0] == 0 and len(_entries(cache)) == 1
    (entry,) = _entries(cache)
    before = entry.stat().st_mtime_ns
    done = run()
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["outputs"]["step_1_command"]["text"] == "hello"
    assert entry.stat().st_mtime_ns == before
