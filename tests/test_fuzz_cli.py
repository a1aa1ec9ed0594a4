"""A hypothesis fuzz of chain files and command lines through the real CLI: every input has a named outcome.

For every generated case (at least 500 per run, derandomised: the ``aicp``
profile in conftest): no traceback of aicp's own (a failing step's is reported), never exit 1, never a hang; with
``--stream`` stderr is JSON lines only and stdout exactly one result line;
without it a failure is one ``error:`` line. Generators are hostile on purpose:
huge integers, NaN and infinities, deep nesting, alias bombs, NUL characters,
bytes that are not UTF-8 (in the file and in argv), wrong types in every field,
truncated and garbled documents, hostile command lines.

Cases run in a fork server (tests/_fork_runner.py): one interpreter imports
aicp once and forks a whole ``aicp`` process per case, which keeps 500 cases
near a minute on two cores. Commands the fuzz runs are harmless by
construction: ``run`` and ``argv`` values come from a fixed pool.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest
from _aicp import child_env

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytestmark = pytest.mark.slow

FUZZ_EXAMPLES = int(os.environ.get("AICP_FUZZ_EXAMPLES", "520"))  # fewer only while developing
RESULT_EVENTS = {"pipeline_complete"}
# fuzzmod:fail raises on purpose, fuzzmod:nope names no function, and a failed step's own traceback
# is part of the report (the step_error `traceback` field, the live view's failures section): one
# whose first frame is the worker calling the step (raw, or JSON-escaped in an event); only aicp's
# own is a bug
STEP_TRACEBACK = re.compile(r"Traceback \(most recent call last\):(?:(?!Traceback).)*?RuntimeError: on purpose"
                            r'|Traceback \(most recent call last\):(?:\\n|\n)  File \\?"[^"\n]*?/aicp/_worker/main\.py'
                            r'\\?", line \d+, in run\b', re.S)

# --------------------------------------------------------------------------- hostile values

HUGE_INTS = [2**63, 2**64, 2**64 + 1, -(2**63) - 1, 10**30, 10**400]
FLOATS = [float("inf"), float("-inf"), float("nan"), 1e308, -1e308, 5e-324, 0.0, -0.0]
STRINGS = ["", " ", "a\x00b", "\x00", "\u2028", "é", "💥", "x" * 5000, "{input}", "{output_dir}",
           "$(touch pwned)", "../../etc/passwd", "\t", "null", "~", "*", "&a", "!!python/name:os.system"]
SAFE_RUNS = ["true", "false", "exit 3", "echo hi", ": {input}", "printf %s '{input}'"]
SAFE_ARGV = [["true"], ["echo", "{input}"], ["false"], [sys.executable, "-c", "pass"]]


def _nested(depth: int) -> Any:
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


scalars = st.one_of(
    st.sampled_from(HUGE_INTS), st.sampled_from(FLOATS), st.sampled_from(STRINGS),
    st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.none(), st.text(max_size=30),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)
hostile = st.one_of(values, st.sampled_from([_nested(70), _nested(200), _nested(20)]))

STEP_FIELDS = ["type", "model", "params", "enabled", "retry_count", "name", "timeout", "max_memory_mb", "bogus"]
TOP_FIELDS = ["name", "prompt", "description", "output_dir", "input_type", "timeout", "retry_count",
              "kill_grace", "retry_delay", "retry_max_delay", "steps", "input_image", "promt"]


@st.composite
def steps(draw: Any) -> dict[str, Any]:
    kind = draw(st.sampled_from(["command", "command", "python", "parallel_group", "text_to_image", "nope"]))
    if kind == "command":
        params: Any = draw(st.one_of(st.builds(lambda r: {"run": r}, st.sampled_from(SAFE_RUNS)),
                                     st.builds(lambda a: {"argv": a}, st.sampled_from(SAFE_ARGV))))
    elif kind == "python":
        params = {"function": draw(st.sampled_from(["fuzzmod:echo", "fuzzmod:fail", "fuzzmod:nope", "nomod:x"]))}
    elif kind == "parallel_group":
        params = {"parallel_steps": [{"type": "command", "params": {"run": draw(st.sampled_from(SAFE_RUNS))}}
                                     for _ in range(draw(st.integers(0, 3)))],
                  "max_workers": draw(st.one_of(st.integers(-2, 70), st.sampled_from(HUGE_INTS)))}
    else:
        params = {"aspect_ratio": "16:9"}
    step: dict[str, Any] = {"type": kind, "params": params}
    if kind == "text_to_image":
        step["model"] = draw(st.sampled_from(["title_card", "nope", None]))
    for field in draw(st.lists(st.sampled_from(STEP_FIELDS), max_size=2, unique=True)):
        if field == "params" and kind == "command":
            continue  # the command a step runs always comes from the harmless pool
        step[field] = draw(hostile)
    return step


@st.composite
def chains(draw: Any) -> dict[str, Any]:
    chain: dict[str, Any] = {"name": "fuzz", "prompt": "hello", "output_dir": "out",
                             "steps": draw(st.lists(steps(), min_size=1, max_size=3))}
    for field in draw(st.lists(st.sampled_from(TOP_FIELDS), max_size=2, unique=True)):
        if field == "steps":
            chain["steps"] = draw(st.one_of(hostile, st.just([])))
        elif field == "output_dir":
            chain["output_dir"] = draw(st.sampled_from(["out\x00x", "", 7, None, ["a"], "o" * 300]))
        else:
            chain[field] = draw(hostile)
    return chain


def _yaml(value: Any) -> str:
    """YAML flow text for any value, NaN/inf and NUL included (PyYAML would emit them too, slower)."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return ".nan" if value != value else (".inf" if value > 0 else "-.inf")
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value).replace("\\u0000", "\\0")
    if isinstance(value, list):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    return "{" + ", ".join(f"{_yaml(str(k))}: {_yaml(v)}" for k, v in value.items()) + "}"


GARBAGE = [b"\xff\xfe", b"\x00", b"\x80abc", b": : :", b"[[[[", b"- - -", b"&a [*a]", b"!!binary zz", b"\t",
           b"---\n", b"%YAML 9.9\n", b"key: 'unterminated", b"\xc3", b"\r\n\r", b"*", b"? "]


def _bomb(levels: int) -> bytes:
    lines = ['l0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"l{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return ("\n".join(lines) + "\n").encode()


@st.composite
def documents(draw: Any) -> tuple[str, bytes]:
    """(file name, bytes) of a chain file: YAML or JSON of a generated chain, maybe garbled."""
    chain = draw(chains())
    as_json = draw(st.booleans())
    if as_json:
        text = json.dumps(chain, allow_nan=True, default=str)
    else:
        text = "\n".join(f"{k}: {_yaml(v)}" for k, v in chain.items()) + "\n"
    data = text.encode("utf-8", "surrogatepass")
    twist = draw(st.sampled_from(["none", "none", "none", "garbage", "truncate", "bomb", "unused-deep"]))
    if twist == "garbage":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from(GARBAGE)) + data[at:]
    elif twist == "truncate":
        data = data[:draw(st.integers(0, len(data)))]
    elif twist == "bomb" and not as_json:
        data += b"unused:\n" + b"".join(b"  " + line + b"\n" for line in _bomb(draw(st.integers(5, 12))).splitlines())
    elif twist == "unused-deep":
        depth = draw(st.integers(60, 3000))
        data = data.rstrip(b"\n}") + (b', "deep": ' if as_json else b"\ndeep: ") + b"[" * depth + b"]" * depth \
            + (b"}" if as_json else b"\n")
    return ("chain.json" if as_json else "chain.yaml"), data


# --------------------------------------------------------------------------- command lines

ODD_TEXT = ["", "-", "--", "\x7f", os.fsdecode(b"\xff\xfe"), os.fsdecode(b"caf\xe9"), "a" * 3000, "{input}", "é",
            "--stream", "-c"]


@st.composite
def command_lines(draw: Any) -> tuple[list[str], bool]:
    """(argv, whether --stream applies): run-chain mostly, other commands and junk too."""
    command = draw(st.sampled_from(["run-chain", "run-chain", "run-chain", "validate", "estimate-cost",
                                    "list-steps", "schema", "runs", "bogus"]))
    argv = [command] if command != "runs" else ["runs", draw(st.sampled_from(["list", "show", "nope"]))]
    if command in ("run-chain", "validate", "estimate-cost") and draw(st.integers(0, 9)) > 0:
        argv += ["--config", draw(st.sampled_from(["chain.yaml", "chain.json", "chain.yaml", "missing.yaml", "-",
                                                   "", ".", "pipe", os.fsdecode(b"\xff.yaml"), "/dev/zero"]))]
    options: list[list[str]] = []
    if command == "run-chain":
        options = [["--input-text", draw(st.one_of(st.sampled_from(ODD_TEXT), st.text(max_size=20)))],
                   ["--prompt-file", draw(st.sampled_from(["prompt.txt", "nul.txt", "latin1.txt", "pipe", "missing"]))],
                   ["--input", draw(st.sampled_from(["-", "prompt.txt", "pic.png", "nul.txt", "/dev/zero", "pipe"]))],
                   ["--output-dir", draw(st.sampled_from(["out2", os.fsdecode(b"o\xff"), "nested/out"]))],
                   ["--log-file", draw(st.sampled_from(["log.jsonl", os.fsdecode(b"l\xff.jsonl")]))],
                   ["--resume", draw(st.sampled_from(["latest", "nope", "../..", os.fsdecode(b"\xff")]))],
                   ["--set", draw(st.sampled_from(["timeout=1e400", "timeout=.nan", "retry_count=99999999999999999999",
                                                   "name=x", "bad", "=1", "prompt=!!binary zz", "steps=[]"]))],
                   ["--yes"], ["--stream"], ["--stream"], ["--json"], ["--quiet"], ["--debug"], ["--bogus"],
                   [draw(st.sampled_from(ODD_TEXT))]]
    elif command in ("validate", "estimate-cost", "list-steps"):
        options = [["--json"], ["--quiet"], ["--debug"], ["--bogus"], [draw(st.sampled_from(ODD_TEXT))]]
    for option in draw(st.lists(st.sampled_from(options), max_size=4)) if options else []:
        argv += option
    if command == "run-chain" and draw(st.integers(0, 9)) < 6:
        argv.insert(draw(st.integers(1, len(argv))), "--stream")
    if draw(st.integers(0, 9)) == 0:
        argv.insert(draw(st.integers(0, len(argv))), draw(st.sampled_from(ODD_TEXT + ["--json", "--quiet"])))
    # the documented rule: a command line naming run-chain and --stream (before any '--') is
    # answered in JSON, also when argparse refuses it
    before_dashdash = argv[:argv.index("--")] if "--" in argv else argv
    stream = "run-chain" in before_dashdash and "--stream" in before_dashdash
    return argv, stream


# --------------------------------------------------------------------------- the runner and the contract


class ForkRunner:
    def __init__(self) -> None:
        tests = str(Path(__file__).resolve().parent)
        env = child_env(PYTHONPATH=os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen([sys.executable, "-m", "_fork_runner"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env, cwd=tests, text=True)

    def run(self, argv: list[str], cwd: Path, stdin: bytes = b"") -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"argv": argv, "cwd": str(cwd), "stdin": stdin.hex(), "timeout": 60}) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        answer["stdout"] = bytes.fromhex(answer["stdout"]).decode("utf-8", "replace")
        answer["stderr"] = bytes.fromhex(answer["stderr"]).decode("utf-8", "replace")
        return answer

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)


@pytest.fixture(scope="module")
def runner() -> Iterator[ForkRunner]:
    fork_runner = ForkRunner()
    yield fork_runner
    fork_runner.close()


def _folder(root: Path, files: dict[str, bytes]) -> Path:
    folder = Path(tempfile.mkdtemp(dir=root))
    (folder / "fuzzmod.py").write_text("def echo(ctx):\n    return ctx.input\n\n"
                                       "def fail(ctx):\n    raise RuntimeError('on purpose')\n")
    (folder / "prompt.txt").write_text("a prompt\n")
    (folder / "nul.txt").write_bytes(b"a\x00b")
    (folder / "latin1.txt").write_bytes(b"caf\xe9")
    (folder / "pic.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    os.mkfifo(folder / "pipe")
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def check_contract(answer: dict[str, Any], stream: bool, what: str, debug: bool = False) -> None:
    code, out, err = answer["code"], answer["stdout"], answer["stderr"]
    event(f"exit {code}{' --stream' if stream else ''}")  # --hypothesis-show-statistics: what the cases reached
    assert not answer["timed_out"], f"{what}: hung"
    assert debug or "Traceback" not in STEP_TRACEBACK.sub("", err), f"{what}: {err[-3000:]}"  # --debug asks for them
    assert code in (0, 2, 3, 4, 5), f"{what}: exit {code}: {err[-2000:]}"
    if stream:
        events = [json.loads(line) for line in err.splitlines() if line.strip()]  # each line must be JSON
        lines = [line for line in out.splitlines() if line.strip()]
        assert len(lines) == 1, f"{what}: stdout {lines!r}"
        result = json.loads(lines[0])
        assert result["event"] in RESULT_EVENTS and result["exit_code"] == code, f"{what}: {result}"
        if code in (2, 3):
            assert [e["event"] for e in events].count("error") == 1, f"{what}: {events}"
    elif code in (2, 3):
        lines = err.splitlines()
        assert lines and lines[-1].startswith("error: "), f"{what}: {err[-2000:]}"
        # one 'error:' line per mistake (a chain's mistakes are all told at once), nothing else
        assert debug or all(line.startswith("error: ") for line in lines), f"{what}: {err[-2000:]}"


@settings(max_examples=FUZZ_EXAMPLES)
@given(document=documents(), command_line=command_lines(), stdin=st.sampled_from([b"", b"text\n", b"\xff\x00"]))
def test_fuzz_chain_files_and_command_lines(runner, tmp_path_factory, document, command_line, stdin):
    name, data = document
    argv, stream = command_line
    folder = _folder(tmp_path_factory.getbasetemp(), {name: data, "chain.yaml" if name == "chain.json"
                                                      else "chain.json": b'{"name": "j", "prompt": "p", "steps": '
                                                      b'[{"type": "command", "params": {"run": "true"}}]}'})
    answer = runner.run(argv, folder, stdin)
    check_contract(answer, stream, f"argv={argv!r} {name}={data[:300]!r}", debug="--debug" in argv)


@settings(max_examples=FUZZ_EXAMPLES // 4)
@given(document=documents(), command=st.sampled_from(["validate", "run-chain"]))
def test_fuzz_chain_files_through_stream(runner, tmp_path_factory, document, command):
    """Every generated chain file, given to run-chain --stream (or validate), always."""
    name, data = document
    folder = _folder(tmp_path_factory.getbasetemp(), {name: data})
    argv = [command, "--config", name] + (["--stream"] if command == "run-chain" else [])
    check_contract(runner.run(argv, folder), command == "run-chain", f"{argv!r} {name}={data[:300]!r}")
