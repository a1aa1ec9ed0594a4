"""Placeholders are never shell code (issue 11): ``{input}``, ``{output_dir}`` and ``{step}`` in a
``command`` step reach the program as data, whatever quotes surround them.

Each accepted quoting context is a member of one parallel group, so one run of
the real CLI checks them all against one hostile input. A member writes what
its shell printed to ``<output_dir>/got_<context>``; the expected bytes are what
``/bin/sh`` prints for the same template with a plain word in the
placeholder's place, that word then replaced by the input: the value arrives
byte for byte as one piece of data at that spot. No file named ``pwned`` may
appear. Contexts where no expansion can be correct are refused at validation,
with the position.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _aicp import aicp_argv, child_env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX shell")

ACCEPTED = {
    "bare": "printf %s {input}",
    "single": "printf %s '{input}'",
    "double": 'printf %s "{input}"',
    "adjacent": "printf %s pre{input}post",
    "adjacent_quotes": "printf %s 'a'{input}\"b\"",
    "in_single_text": "printf %s 'x {input} y'",
    "in_double_text": 'printf %s "x {input} y"',
    "cmdsub_double": 'printf %s "$(printf %s {input})"',
    "cmdsub_single": "printf %s \"$(printf %s '{input}')\"",
    "cmdsub_assign": 'x=$(printf %s "{input}"); printf %s "$x"',
    "backticks": 'x=`printf %s {input}`; printf %s "$x"',
    "backticks_in_double": 'printf %s "`printf %s {input}`"',
    "heredoc": "cat <<EOF\n{input}\nEOF",
    "heredoc_tabs": "cat <<-EOF\n\t{input}\n\tEOF",
    "heredoc_text": "cat <<EOF\nbefore {input} after\nEOF\nprintf %s done",
    "assignment": 'v={input}; printf %s "$v"',
    "parameter_default": "printf %s ${UNSET_AICP_TEST:-{input}}",
    "double_backslash": 'printf %s "\\{input}"',
    "twice": "printf %s {input}-{input}",
    "comment": "printf %s ok # {input} $(touch pwned)",
}
REFUSED = {
    "ansi_c": ("printf %s $'{input}'", "$'...'"),
    "arithmetic": ("echo $(( {input} + 1 ))", "arithmetic"),
    "arithmetic_command": ("(( {input} )) && echo yes", "arithmetic"),
    "quoted_heredoc": ("cat <<'EOF'\n{input}\nEOF", "quoted here-document"),
    "escaped": ("printf %s \\{input}", "backslash"),
    "shell_variable_syntax": ("printf %s ${input}", "${...}"),
    "backticks_with_backslash": ("x=`printf '\\n%s' {input}`", "`...`"),
}
HOSTILE = [
    "$(touch pwned)",
    "`touch pwned`",
    "'; touch pwned; '",
    '"; touch pwned; "',
    "line one\n; touch pwned\nline three",
    "{output_dir}",
    "{step} {input}",
    "* ?",
    "EOF\ntouch pwned\nEOF",
    "back\\slash \\\" \\' $HOME ${PATH} \\n",
    "-n",
    "}\"')`;",
]
SENTINEL = "AICPSENTINELWORD"


def wrap(template: str, target: str) -> str:
    """The template's stdout into ``target`` (a brace group, so here-documents keep working)."""
    return "{ " + template + "\n} > " + target


def expected(template: str, value: str, tmp: Path) -> bytes:
    target = tmp / "expected.bin"
    subprocess.run(["/bin/sh", "-c", wrap(template.replace("{input}", SENTINEL), str(target))], cwd=tmp,
                   check=True, timeout=30)
    return target.read_bytes().replace(SENTINEL.encode(), value.encode())


def group_chain(folder: Path, contexts: dict[str, str]) -> Path:
    members = [{"type": "command", "name": name,
                "params": {"run": wrap(template, "{output_dir}/got_" + name)}}
               for name, template in contexts.items()]
    chain = {"name": "placeholders", "output_dir": "out",
             "steps": [{"type": "parallel_group", "params": {"max_workers": 4, "parallel_steps": members}}]}
    path = folder / "chain.json"
    path.write_text(json.dumps(chain))
    return path


def run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(aicp_argv(*args), cwd=folder, env=child_env(), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)


def pwned(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob("*pwned*") if p.name == "pwned"]


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_every_quoting_context_gets_the_value_as_data(tmp_path: Path, value: str) -> None:
    chain = group_chain(tmp_path, ACCEPTED)
    done = run(tmp_path, "run-chain", "-c", str(chain), f"--input-text={value}", "--stream")
    assert done.returncode == 0, done.stderr[-3000:]
    assert pwned(tmp_path) == []
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    wrong = {}
    for name, template in ACCEPTED.items():
        got = (tmp_path / "out" / f"got_{name}").read_bytes()
        want = expected(template, value, scratch)
        if got != want:
            wrong[name] = (got, want)
    assert wrong == {}
    assert pwned(tmp_path) == []


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_contexts_that_cannot_be_made_safe_are_refused_with_a_position(tmp_path: Path, name: str) -> None:
    template, words = REFUSED[name]
    chain = group_chain(tmp_path, {name: template})
    checked = run(tmp_path, "validate", "-c", str(chain))
    assert checked.returncode == 2, checked.stderr
    [line] = checked.stderr.splitlines()
    assert line.startswith(f"error: {chain}:1:") and "parallel_steps[0].params.run" in line, line
    assert "at character " in line and words in line and "{input}" in line, line
    ran = run(tmp_path, "run-chain", "-c", str(chain), "--input-text", "$(touch pwned)", "--stream")
    assert ran.returncode == 2
    assert json.loads(ran.stdout)["exit_code"] == 2
    assert not (tmp_path / "out").exists() and pwned(tmp_path) == []


def test_output_dir_and_step_are_data_too(tmp_path: Path) -> None:
    """An output_dir whose name is shell code, in every placeholder form."""
    hostile_dir = tmp_path / "o $(touch pwned) 'q\" `touch pwned`"
    chain = tmp_path / "chain.json"
    chain.write_text(json.dumps({"name": "dirs", "prompt": "x", "steps": [
        {"type": "command", "params": {"run": "printf '%s|%s' {output_dir} \"{step}\" > {output_dir}/bare"}},
        {"type": "command", "params": {"run": "printf %s '{output_dir}' > \"{output_dir}/quoted\""}},
    ]}))
    done = run(tmp_path, "run-chain", "-c", str(chain), "--output-dir", str(hostile_dir), "--stream")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (hostile_dir / "bare").read_text() == f"{hostile_dir}|0"
    assert (hostile_dir / "quoted").read_text() == str(hostile_dir)
    assert pwned(tmp_path) == []


@pytest.mark.parametrize("value", ["{output_dir}", "{step}", "{input}", "a {output_dir} b"])
def test_one_pass_substitution_in_argv_and_output(tmp_path: Path, value: str) -> None:
    chain = tmp_path / "chain.json"
    chain.write_text(json.dumps({"name": "argv", "output_dir": "out", "steps": [
        {"type": "command", "params": {"argv": ["printf", "%s", "[{input}]"]}},
        {"type": "command", "params": {"argv": ["sh", "-c", "printf %s \"$0\" > \"$1\"", "{input}",
                                                "{output_dir}/file_{input}"],
                                       "output": "{output_dir}/file_{input}"}},
    ]}))
    done = run(tmp_path, "run-chain", "-c", str(chain), f"--input-text={value}", "--stream")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["outputs"]["step_1_command"]["text"] == f"[{value}]"
    [made] = result["outputs"]["step_2_command"]["files"]
    assert made == str(tmp_path / "out" / f"file_[{value}]")
    assert Path(made).read_text() == f"[{value}]"


def test_the_values_are_also_in_the_environment(tmp_path: Path) -> None:
    chain = tmp_path / "chain.json"
    chain.write_text(json.dumps({"name": "env", "output_dir": "out", "steps": [
        {"type": "command", "params": {"run": "printf '%s|%s|%s' \"$AICP_INPUT\" \"$AICP_STEP\" \"$AICP_OUTPUT_DIR\""}},
    ]}))
    done = run(tmp_path, "run-chain", "-c", str(chain), "--input-text", "it's $(x)", "--stream")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["outputs"]["step_1_command"]["text"] == f"it's $(x)|0|{tmp_path / 'out'}"
