"""Every input has a named outcome, however hostile: exit 2 (3 for files), one positioned line.

Through the real CLI in a subprocess: numbers beyond their documented range,
integers beyond 64 bits, NaN and infinities, deep nesting, alias bombs, files
that are not regular files, files too large, text that is not UTF-8, NUL
characters, YAML's odd corners. Never a traceback, never exit 1; with
``--stream`` the error event and the one result line. The limits are those
of :mod:`aicp._chain.limits` (README's "Limits" table).
"""

from __future__ import annotations

import json
import os
import re
import resource
import socket
import subprocess
import time
from pathlib import Path

import pytest
from _aicp import Run, aicp_argv, child_env

from aicp._chain.limits import FIELDS, MAX_DEPTH, MAX_FILE_BYTES, number_text

POSITIONED = re.compile(r"^error: (?P<file>[^\n]+?):(?P<line>\d+):(?P<col>\d+): (?P<rest>.*)$")
CMD_STEP = "  - type: command\n    params: {argv: [echo, '{input}']}\n"


def aicp_in(folder: Path, *args: str, stdin: bytes | None = None, timeout: float = 60,
            limit_memory: int | None = None) -> Run:
    def preexec() -> None:
        if limit_memory:
            resource.setrlimit(resource.RLIMIT_AS, (limit_memory, limit_memory))

    proc = subprocess.run(aicp_argv(*args), input=stdin if stdin is not None else b"", capture_output=True,
                          cwd=folder, env=child_env(), timeout=timeout, preexec_fn=preexec)
    return Run(proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))


def refused(run: Run, code: int, *fragments: str, positioned: bool = True) -> str:
    """One ``error:`` line on stderr, nothing on stdout, the exit code; return the line."""
    assert "Traceback" not in run.stderr, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (run.returncode, lines)
    assert run.returncode == code, (run.returncode, lines)
    if positioned:
        assert POSITIONED.match(lines[0]), f"not file:line:col: {lines[0]!r}"
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert run.stdout == ""
    return lines[0]


def refused_everywhere(folder: Path, config: str, code: int, *fragments: str, positioned: bool = True) -> str:
    """``validate``, ``run-chain`` and ``run-chain --stream`` all refuse it the same way."""
    line = refused(aicp_in(folder, "validate", "--config", config), code, *fragments, positioned=positioned)
    assert refused(aicp_in(folder, "run-chain", "--config", config), code, positioned=positioned) == line
    stream = aicp_in(folder, "run-chain", "--config", config, "--stream")
    assert stream.returncode == code
    assert f"error: {stream.stream_failure}" == line
    return line


def chain_with(tmp_path: Path, top: str = "", step: str = "", name: str = "chain.yaml") -> str:
    (tmp_path / name).write_text(f"name: hostile\nprompt: p\n{top}steps:\n  - type: command\n"
                                 f"    params: {{argv: [echo, '{{input}}']}}\n{step}")
    return name


# ----------------------------------------------------------------------------- numbers


OUT_OF_RANGE = ["1.0e+300", "18446744073709551616", "100000000000000000000000000000", ".inf", "-.inf", ".nan",
                "1" * 400, "-1.0e+300"]


class TestFieldRanges:
    """Each numeric field has a documented range; outside it the chain is refused, with position."""

    @pytest.mark.parametrize("field", sorted(k for k in FIELDS if k != "max_workers"))
    @pytest.mark.parametrize("value", OUT_OF_RANGE)
    def test_out_of_range_field(self, tmp_path, field, value):
        level = "top" if field in ("retry_delay", "retry_max_delay", "kill_grace") else "step"
        config = chain_with(tmp_path, top=f"{field}: {value}\n") if level == "top" else \
            chain_with(tmp_path, step=f"    {field}: {value}\n")
        line = refused(aicp_in(tmp_path, "validate", "--config", config), 2)
        m = POSITIONED.match(line)
        assert m and m["file"] == config
        expected_line = 3 if level == "top" else 6
        assert (int(m["line"]), int(m["col"])) == (expected_line, 1 if level == "top" else 5), line
        assert m["rest"].startswith(field if level == "top" else f"steps[0].{field}"), line

    @pytest.mark.parametrize("field", sorted(FIELDS))
    def test_the_upper_bound_is_accepted_and_one_above_refused(self, tmp_path, field):
        limit = FIELDS[field]
        high = int(limit.high)
        group = ("  - type: parallel_group\n    params:\n      {field}: {value}\n      parallel_steps:\n"
                 "        - {{type: command, params: {{run: 'true'}}}}\n")
        for value, ok in ((high, True), (high + 1, False)):
            if field == "max_workers":
                (tmp_path / "chain.yaml").write_text("name: g\nprompt: p\nsteps:\n"
                                                     + group.format(field=field, value=value))
            elif field in ("retry_delay", "retry_max_delay", "kill_grace"):
                chain_with(tmp_path, top=f"{field}: {value}\n")
            else:
                chain_with(tmp_path, step=f"    {field}: {value}\n")
            run = aicp_in(tmp_path, "validate", "--config", "chain.yaml")
            if ok:
                assert run.returncode == 0, run.stderr
            else:
                refused(run, 2, f"must be at most {number_text(limit.high)} ")

    @pytest.mark.parametrize("value", ["1e400", "NaN", "Infinity", "-Infinity", "18446744073709551616",
                                       "9" * 5000])
    def test_json_numbers(self, tmp_path, value):
        text = '{"name": "j", "prompt": "p",\n "timeout": ' + value + \
               ',\n "steps": [{"type": "command", "params": {"run": "true"}}]}'
        (tmp_path / "chain.json").write_text(text)
        line = refused_everywhere(tmp_path, "chain.json", 2, "timeout")
        assert line.startswith("error: chain.json:2:2: timeout: "), line

    def test_a_valid_chain_at_the_limits_runs(self, tmp_path):
        """'valid' implies 'runs': the largest values of every field, through a real run."""
        (tmp_path / "chain.yaml").write_text(
            "name: big\nprompt: p\n"
            + "".join(f"{k}: {FIELDS[k].high:g}\n" for k in ("timeout", "retry_delay", "retry_max_delay"))
            + "kill_grace: 600\nretry_count: 100\nsteps:\n"
            "  - type: command\n    timeout: 2592000\n    max_memory_mb: 1048576\n"
            "    params: {argv: [echo, '{input}']}\n"
            "  - type: parallel_group\n    params:\n      max_workers: 64\n      parallel_steps:\n"
            "        - {type: command, params: {run: 'true'}}\n")
        run = aicp_in(tmp_path, "run-chain", "--config", "chain.yaml", "--stream")
        assert run.returncode == 0, run.stderr
        assert run.result["success"] is True


class TestValuesAnywhere:
    """What no step and no JSON event could carry is refused wherever it is, params included."""

    @pytest.mark.parametrize("value,fragment", [
        ("18446744073709551616", "out of range"), ("-9223372036854775809", "out of range"),
        ("1" * 60, "digits is out of range"), (".inf", "finite"), (".nan", "finite"), ("-.inf", "finite"),
        ('"a\\0b"', "NUL"), ("!!set {a, b}", "set value"), ("!!binary aGVsbG8=", "bytes value"),
        ("{1: x}", "keys must be strings"), ("{on: x}", "keys must be strings"),
    ])
    def test_in_params(self, tmp_path, value, fragment):
        (tmp_path / "chain.yaml").write_text("name: x\nprompt: p\nsteps:\n  - type: command\n"
                                             f"    params:\n      run: 'true'\n      extra: {value}\n")
        line = refused_everywhere(tmp_path, "chain.yaml", 2, fragment)
        assert re.match(r"error: chain\.yaml:(6|7):\d+: steps\[0\]\.params\.extra", line), line

    @pytest.mark.parametrize("key,value", [("output_dir", '"out\\0put"'), ("name", '"a\\0"'),
                                           ("prompt", '"p\\x00"'), ("description", '"\\0"')])
    def test_nul_in_top_level_strings(self, tmp_path, key, value):
        top = {"name": "x", "prompt": "p", key: value}
        (tmp_path / "chain.yaml").write_text("".join(f"{k}: {v}\n" for k, v in top.items() if k != key)
                                             + f"{key}: {value}\nsteps:\n{CMD_STEP}")
        line = refused_everywhere(tmp_path, "chain.yaml", 2, "NUL")
        assert line.startswith(f"error: chain.yaml:{2 if key in ('name', 'prompt') else 3}:1: {key}: "), line

    @pytest.mark.parametrize("text", [
        '{"name": "x", "prompt": "p", "output_dir": "a\\u0000b", "steps": [{"type": "command"}]}',
        '{"name": "x", "prompt": "p", "steps": [{"type": "command", "params": {"run": "\\u0000"}}]}',
        '{"name": "x\\ud800", "prompt": "p", "steps": [{"type": "command"}]}',
        '{"name": "x", "prompt": "p", "steps": [{"type": "command", "params": {"run": "true", "\\u0000": 1}}]}',
    ])
    def test_nul_and_surrogates_in_json(self, tmp_path, text):
        (tmp_path / "chain.json").write_text(text)
        refused_everywhere(tmp_path, "chain.json", 2, "chain.json:1:")

    @pytest.mark.parametrize("value", ["!!int abc", "2024-13-45", "!!float zz", "!!timestamp nope",
                                       "!!python/object:os.system {}", "*nowhere", "!!omap [1]"])
    def test_odd_yaml(self, tmp_path, value):
        (tmp_path / "chain.yaml").write_text(f"name: x\nprompt: p\nx: {value}\nsteps:\n{CMD_STEP}")
        line = refused_everywhere(tmp_path, "chain.yaml", 2)
        assert line.startswith("error: chain.yaml:3:"), line

    def test_two_documents(self, tmp_path):
        (tmp_path / "chain.yaml").write_text(f"name: x\nprompt: p\nsteps:\n{CMD_STEP}---\nname: y\n")
        refused_everywhere(tmp_path, "chain.yaml", 2, "chain.yaml:6:1:", "one YAML document")


# ----------------------------------------------------------------------------- depth and aliases


class TestNesting:
    @pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 100_000])
    @pytest.mark.parametrize("style", ["flow", "block", "json"])
    def test_too_deep(self, tmp_path, depth, style):
        if style == "flow":
            text = f"name: x\nprompt: p\nsteps:\n{CMD_STEP}x: " + "[" * depth + "]" * depth + "\n"
        elif style == "block":
            depth = min(depth, 2000)  # block nesting needs an indent per level: 2000 levels is 4 MB of spaces
            text = f"name: x\nprompt: p\nsteps:\n{CMD_STEP}x:\n" + "".join(
                "  " * (i + 1) + "- \n" if i < depth - 1 else "  " * (i + 1) + "- 1\n" for i in range(depth))
            text = text if len(text) < MAX_FILE_BYTES else text[:MAX_FILE_BYTES - 1]
        else:
            text = '{"name": "x", "prompt": "p", "x": ' + "[" * depth + "]" * depth + \
                   ', "steps": [{"type": "command", "params": {"run": "true"}}]}'
        name = "chain.json" if style == "json" else "chain.yaml"
        (tmp_path / name).write_text(text)
        line = refused(aicp_in(tmp_path, "validate", "--config", name), 2, f"deeper than {MAX_DEPTH}")
        assert line.startswith(f"error: {name}:"), line

    def test_nesting_within_the_limit_is_fine(self, tmp_path):
        inner = "[" * (MAX_DEPTH - 6) + "1" + "]" * (MAX_DEPTH - 6)
        (tmp_path / "chain.yaml").write_text(f"name: x\nprompt: p\nsteps:\n{CMD_STEP}    timeout: 5\n"
                                             f"x: {inner}\n")
        assert aicp_in(tmp_path, "validate", "--config", "chain.yaml").returncode == 0


def _laughs(levels: int, width: int = 9) -> str:
    lines = ["lol0: &a0 [" + ", ".join(['"lol"'] * width) + "]"]
    lines += [f"lol{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


class TestAliasBombs:
    """Refused quickly and with bounded memory, even in a key nobody uses."""

    @pytest.mark.parametrize("levels", [6, 9, 30])
    def test_billion_laughs_in_an_unused_key(self, tmp_path, levels):
        (tmp_path / "chain.yaml").write_text(f"name: x\nprompt: p\nsteps:\n{CMD_STEP}unused:\n"
                                             + "".join("  " + line + "\n" for line in _laughs(levels).splitlines()))
        started = time.monotonic()
        run = aicp_in(tmp_path, "validate", "--config", "chain.yaml", limit_memory=1 << 30, timeout=30)
        elapsed = time.monotonic() - started
        refused(run, 2, "aliases", "expanded")
        assert elapsed < 20, elapsed  # a generous bound on a loaded machine: it is milliseconds of parsing

    def test_merge_key_bomb(self, tmp_path):
        text = "a0: &a0 {k0: 1, k1: 2, k2: 3, k3: 4}\n" + "".join(
            f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 7))
        (tmp_path / "chain.yaml").write_text(f"name: x\nprompt: p\nsteps:\n{CMD_STEP}" + text
                                             + "m: {<<: [*a0], z: 1}\n")
        refused(aicp_in(tmp_path, "validate", "--config", "chain.yaml", limit_memory=1 << 30), 2, "aliases")

    def test_recursive_alias(self, tmp_path):
        (tmp_path / "chain.yaml").write_text(f"name: x\nprompt: p\nsteps:\n{CMD_STEP}r: &r [1, *r]\n")
        refused_everywhere(tmp_path, "chain.yaml", 2, "recursive")

    def test_a_few_aliases_are_fine(self, tmp_path):
        (tmp_path / "chain.yaml").write_text(
            "name: x\nprompt: p\ndefaults: &d {type: command, params: {run: 'true'}}\n"
            "steps:\n  - *d\n  - *d\n  - {<<: *d, name: third}\n")
        assert aicp_in(tmp_path, "validate", "--config", "chain.yaml").returncode == 0


# ----------------------------------------------------------------------------- files


def _make(tmp_path: Path, kind: str) -> str:
    if kind == "fifo":
        os.mkfifo(tmp_path / "pipe")
        return "pipe"
    if kind == "directory":
        (tmp_path / "dir").mkdir()
        return "dir"
    if kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(tmp_path / "sock"))
        tmp_path.joinpath(".keep").write_text("")  # the socket file stays after close
        sock.close()
        return "sock"
    return {"dev-zero": "/dev/zero", "dev-null-dir": "/dev", "dev-urandom": "/dev/urandom"}[kind]


FILE_KINDS = ["fifo", "directory", "socket", "dev-zero", "dev-urandom", "dev-null-dir"]


class TestOnlyRegularFiles:
    """A FIFO, a device, a socket or a directory is refused at once (exit 3), never read, never waited on."""

    @pytest.mark.parametrize("kind", FILE_KINDS)
    @pytest.mark.parametrize("flag", ["--config", "--prompt-file", "--input"])
    def test_not_a_regular_file(self, tmp_path, kind, flag):
        chain_with(tmp_path)
        path = _make(tmp_path, kind)
        args = ["--config", path] if flag == "--config" else ["--config", "chain.yaml", flag, path]
        run = aicp_in(tmp_path, "run-chain", *args, timeout=30)
        line = refused(run, 3, positioned=False)
        assert "not a regular file" in line or "directory" in line, line
        stream = aicp_in(tmp_path, "run-chain", *args, "--stream", timeout=30)
        assert stream.returncode == 3 and f"error: {stream.stream_failure}" == line

    @pytest.mark.parametrize("what", ["config", "input"])
    def test_endless_stdin_is_cut_at_the_limit(self, tmp_path, what):
        chain_with(tmp_path)
        args = ["--config", "-"] if what == "config" else ["--config", "chain.yaml", "--input", "-"]
        with open("/dev/zero", "rb") as zero:
            proc = subprocess.run(aicp_argv("run-chain", *args), stdin=zero, capture_output=True, text=True,
                                  cwd=tmp_path, env=child_env(), timeout=60)
        refused(Run(proc.returncode, proc.stdout, proc.stderr), 3, f"larger than {MAX_FILE_BYTES} bytes",
                positioned=False)

    @pytest.mark.parametrize("flag", ["--config", "--prompt-file"])
    def test_too_large(self, tmp_path, flag):
        chain_with(tmp_path)
        (tmp_path / "big.yaml").write_text("# " + "x" * MAX_FILE_BYTES + "\n")
        args = ["--config", "big.yaml"] if flag == "--config" else ["--config", "chain.yaml", flag, "big.yaml"]
        refused(aicp_in(tmp_path, "run-chain", *args), 3, "larger than", positioned=False)

    def test_just_under_the_limit_is_read(self, tmp_path):
        text = f"name: x\nprompt: p\nsteps:\n{CMD_STEP}"
        (tmp_path / "chain.yaml").write_text(text + "#" * (MAX_FILE_BYTES - len(text) - 1) + "\n")
        assert aicp_in(tmp_path, "validate", "--config", "chain.yaml").returncode == 0


# ----------------------------------------------------------------------------- encodings and names


class TestNotUtf8:
    @pytest.mark.parametrize("data,line_col", [(b"name: \xff\xfe\n", "1:7"), (b"name: x\nprompt: caf\xe9\n", "2:12"),
                                               (b"name: x\n# \xc3\n", "2:3")])
    def test_chain_file(self, tmp_path, data, line_col):
        (tmp_path / "chain.yaml").write_bytes(data)
        refused_everywhere(tmp_path, "chain.yaml", 3, f"chain.yaml:{line_col}: cannot read chain file",
                           "not valid UTF-8")

    @pytest.mark.parametrize("flag", ["--prompt-file", "--input"])
    def test_input_text_file(self, tmp_path, flag):
        chain_with(tmp_path)
        (tmp_path / "in.txt").write_bytes(b"caf\xe9 au lait")
        refused(aicp_in(tmp_path, "run-chain", "--config", "chain.yaml", flag, "in.txt"), 3,
                "in.txt:1:4:", "not valid UTF-8")

    @pytest.mark.parametrize("text", [b"caf\xe9", b"\xff", b"ok\n\x80"])
    def test_input_text_argument(self, tmp_path, text):
        chain_with(tmp_path)
        arg = os.fsdecode(text)
        refused(aicp_in(tmp_path, "run-chain", "--config", "chain.yaml", "--input-text", arg), 2,
                "--input-text:", "not valid UTF-8")

    def test_stdin_input(self, tmp_path):
        chain_with(tmp_path)
        refused(aicp_in(tmp_path, "run-chain", "--config", "chain.yaml", "--input", "-", stdin=b"a\nb\xff"), 3,
                "<stdin>:2:2:", "not valid UTF-8")

    def test_a_byte_order_mark_is_fine(self, tmp_path):
        (tmp_path / "chain.yaml").write_bytes(b"\xef\xbb\xbf" + f"name: x\nprompt: p\nsteps:\n{CMD_STEP}".encode())
        assert aicp_in(tmp_path, "validate", "--config", "chain.yaml").returncode == 0


class TestFileNames:
    """Names from argv that are not UTF-8 (surrogate escapes): read where only shown, refused where
    they would be written into the events and the run record."""

    @pytest.mark.parametrize("raw", [b"\xff.yaml", b"caf\xe9.yaml", b"\x80\x81.json"])
    def test_chain_file_name(self, tmp_path, validate_events, raw):
        text = f"name: x\nprompt: p\nsteps:\n{CMD_STEP}"
        if raw.endswith(b".json"):
            text = json.dumps({"name": "x", "prompt": "p", "steps": [{"type": "command", "params": {"run": "true"}}]})
        with open(os.path.join(os.fsencode(tmp_path), raw), "w") as f:
            f.write(text)
        name = os.fsdecode(raw)
        assert aicp_in(tmp_path, "validate", "--config", name).returncode == 0
        run = aicp_in(tmp_path, "run-chain", "--config", name, "--stream")
        assert run.returncode == 0, run.stderr
        validate_events(run)
        missing = aicp_in(tmp_path, "run-chain", "--config", os.fsdecode(b"no\xff.yaml"), "--stream")
        assert missing.returncode == 3 and "no\\xff.yaml" in missing.stream_failure

    @pytest.mark.parametrize("flag", ["--output-dir", "--log-file", "--input"])
    def test_written_names_must_be_utf8(self, tmp_path, flag):
        chain_with(tmp_path)
        name = os.fsdecode(b"out\xff.png")
        with open(os.path.join(os.fsencode(tmp_path), b"out\xff.png"), "wb") as f:
            f.write(b"x")
        run = aicp_in(tmp_path, "run-chain", "--config", "chain.yaml", flag, name, "--stream")
        assert run.returncode == 2, run.stderr
        assert "not valid UTF-8" in run.stream_failure and "out\\xff.png" in run.stream_failure


class TestNulInInput:
    @pytest.mark.parametrize("data,line_col", [(b"a\x00b", "1:2"), (b"line one\nli\x00ne", "2:3"), (b"\x00", "1:1")])
    @pytest.mark.parametrize("how", ["--prompt-file", "--input", "stdin"])
    def test_nul_is_positioned(self, tmp_path, data, line_col, how):
        chain_with(tmp_path)
        (tmp_path / "in.txt").write_bytes(data)
        if how == "stdin":
            run = aicp_in(tmp_path, "run-chain", "--config", "chain.yaml", "--input", "-", stdin=data)
            label = "<stdin>"
        else:
            run = aicp_in(tmp_path, "run-chain", "--config", "chain.yaml", how, "in.txt")
            label = "in.txt"
        refused(run, 2, f"{label}:{line_col}: ", "NUL")
