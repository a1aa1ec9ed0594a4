"""aicp._chain.plainyaml reads exactly what PyYAML reads, or leaves the text to it.

``plainyaml.read`` saves a new or edited chain's ``validate`` PyYAML's import.
It must give the data (values and their types) and the positions
(``yamlload.marks``) that ``yamlload.load`` gives, or None; never a value for a
text PyYAML refuses. Held to that here: on every chain the project ships or
tests with and the old tool's chains, on generated chain-like documents in
every style the reader takes and many it does not, on the same documents with
characters changed, inserted or removed, and on the hostile inputs that must
keep their refusals (through the real CLI: the message is PyYAML's, positioned).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aicp._chain import plainyaml, yamlload

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted([*ROOT.glob("examples/**/*.yaml"), *ROOT.glob("tests/**/*.yaml"), *ROOT.glob("tests/**/*.yml")])


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same types all the way down (True is not 1, -0.0 is not 0.0), keys in order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, float):
        return repr(a) == repr(b)
    return bool(a == b)


def _pyyaml(text: str) -> tuple[Any, dict[Any, Any]] | None:
    try:
        data, root = yamlload.load(text)
    except yamlload.DocumentError:
        return None
    return data, (yamlload.marks(root) if root is not None else {})


def _agrees(text: str) -> bool:
    """Whether plainyaml read ``text`` (else it left it to PyYAML); fails if it read it otherwise."""
    plain = plainyaml.read(text)
    if plain is None:
        return False
    expected = _pyyaml(text)
    assert expected is not None, f"plainyaml read a text PyYAML refuses: {text!r}"
    assert _same(plain[0], expected[0]), (text, plain[0], expected[0])
    assert plain[1] == expected[1], (text, sorted(set(plain[1].items()) ^ set(expected[1].items()), key=str))
    assert plainyaml.read(text, with_marks=False) == (plain[0], {})
    return True


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(ROOT)) for p in SHIPPED])
def test_every_shipped_chain_reads_as_pyyaml_reads_it(path: Path) -> None:
    _agrees(path.read_text(encoding="utf-8"))


def test_the_readme_example_and_the_old_tools_chains_are_read_without_pyyaml() -> None:
    plain = [p for p in SHIPPED if p.parent.name in ("examples", "old_tool")]
    assert len(plain) >= 12
    assert [p.name for p in plain if not _agrees(p.read_text(encoding="utf-8"))] == []


# --------------------------------------------------------------------------- cases, one by one

READ = [
    "a: 1\n", "a: -0\nb: +7\nc: 0\nd: 123456789012345678\n", "steps:\n  - [a, b]\n", "a: 1.5\nb: -0.0\nc: +2.25\nd: 10.10\n",
    "a: yes\nb: No\nc: ON\nd: off\ne: true\nf: FALSE\ng: y\nh: n\n", "a: null\nb: ~\nc: Null\nd: NULL\ne: nul\n",
    "a:\nb:   # nothing\nc: x\n", "a: 'it''s'\nb: \"say \\\"hi\\\"\\n\\t\\\\ \\u00e9\"\n", "'a b': 1\n\"c\": 2\n",
    "a: [x , y ]\nb: {k: v , j: [1, 2.5, {z: ~}]}\nc: []\nd: {}\n", "a: echo {input} > out.txt\nb: x,y]\n",
    "a: http://example.com/x?y=1#z\nb: mod:fn\nc: C# and F#\n", "a: x  # comment\nb: 'q'   # c\n",
    "steps:\n- a\n- b\nname: x\n", "steps:\n  - type: a\n    params:\n      k: v\n  - {type: b}\n  -\n  - \n",
    "a:\n    b:\n         c: 1\n    d: 2\n", "  a: 1\n  b: 2\n", "é: {ü: [ä, \"☃\", 😀]}\n",
    "a: \"\\U0001F600 \\x41\"\n", "a: x\n\n\n# end\n", "# start\n\na: 1", "a: 'x: y'\nb: \"# not a comment\"\n",
    "a: -5\nb: [-1.5, -0]\n", "a: [b,\nc]\n", "a: {b: 1,\n\n   c: [d, e]  ,\n  f: g\n  }\n",
    "a: [\n  b,   # c\n  c\n]\nd: 1\n", "a: |\n  x\n\n  y:  z\n\n\nb: 1\n", "a: >\n  x\n  y\n\n  z\nb: 1\n",
    "a: >-\n  x\n  y", "a: |\n  x", "x:\n  - |\n    # not a comment\n     deeper\n  - >-\n    z\n", "a: |\n  x  \n  \n", "x:\n- [a,\n b]\n- {c: d}\n", "x:\n  a: [b,\n c]\n  d: 1\n",
    "a: b: c\n", "a: [b\n c]\n", "a: [b # c\n]\n", "a: [b,\n", "a: [b,\n# c\n]\n", "a: [#b]\n", "l:\n  - - 1\n",
    "a: - 5\n", "a:\tb\n", "a: x\r\nb: y\r\n", "a: 1\n---\nb: 2\n", "a: &x 1\nb: *x\n",
    "a: !!str 1\n", "a: |\n  x\n", "a: >\n  x\n", "a: 0x1f\n", "a: 0o7\n", "a: 007\n", "a: 1_000\n", "a: 1e3\n",
    "a: 1.0e+3\n", "a: .5\n", "a: 1.\n", "a: .inf\n", "a: .nan\n", "a: 16:9\n", "a: 2024-01-02\n", "<<: {a: 1}\n",
    "a: =\n", "a: 1\na: 2\n", "1: a\n", "yes: a\n", "? a\n: b\n", "a: [b,\n  c]\n", "a: 'b\n  c'\n", "a: b\n  c\n",
    "a: |\n   # c\n  x\n", "a: |\n    x\n  y\n", "a: >\n  x\n   y\n", "a: |\n\n  x\n", "a: |\n  x\n    \nb: 1\n",
    "a: |\nb: 1\n", "a: |+\n  x\n", "a: |2\n   x\n", "a: | # c\n  x\n", "a: \"\\x4\"\n", "a: \"\\U0011FFFF\"\n", "a: \"\\u000a\"\n", "a: \"\\0\"\n", "a: \"\\ud800\"\n", "a: \"\\/\"\n", "a: [a: b]\n", "a: {b}\n", "a: [b, ]\n",
    "a: {b: }\n", "a: {b:c}\n", "a: {'b':c}\n", "- a\n- b\n", "a\n", "", "# only a comment\n", "a: 1\n b: 2\n",
    "a:\n  b: 1\n c: 2\n", "a: @x\n", "a: `x`\n", "a: %x\n", "a: x\u00a0y\n", "a: x\u200dy\n", "a: \u2028\n",
    "a: \x85\n", "\ufeffa: 1\n", "a: \"x\" y\n", "a: [x] y\n", "a: [x]# c\n", "a: 'x'#c\n", "a :b\n", "a : b\n",
    "a: [x?y]\n", "a: {b: c:d}\n", "a: [it's]\n", "a: 1" + "0" * 40 + "\n", "a:  \n", "a: x  \n",
    "steps:\n  - a:\n  - b\n", "- x\na: 1\n", "a:\n- x\n - y\n", "a:\n  - x\n  b: 1\n", "{a: 1}\n", "[a]\n",
]


@pytest.mark.parametrize("text", READ, ids=[repr(t)[:40] for t in READ])
def test_each_case_reads_as_pyyaml_reads_it_or_goes_to_pyyaml(text: str) -> None:
    _agrees(text)


def test_the_plain_cases_are_read_without_pyyaml() -> None:
    # the forms chain files are written in: each is read here, not left to PyYAML
    taken = [t for t in READ[:READ.index("a: b: c\n")] if not _agrees(t)]
    assert taken == []


# --------------------------------------------------------------------------- generated documents

WORDS = ["x", "name", "a b", "title card", "it's", "say \"hi\"", "16:9", "mod:fn", "http://h/p?q=1#f", "#0b1d3a",
         "a: b", "a #b", "a#b", "- x", "x -", "[x]", "{x}", "x, y", "?x", "!x", "&x", "*x", "|", ">", "%x", "@x", "`x`",
         "yes", "No", "on", "OFF", "true", "False", "y", "n", "null", "~", "Null", "", " ", "0", "-0", "+1", "007",
         "12", "-12", "1.5", "-0.0", "1.", ".5", "1e3", "1.0e+3", "0x1f", "0o7", "0b11", "1_000", "1:30", ".inf",
         "-.inf", ".NaN", "2024-01-02", "2024-01-02 10:00:00", "<<", "=", "é", "ünï — fin", "😀", "\u00a0", "\u200d",
         "\t", "x\ty", "\r", "\x00", "\x7f", "\x85", "\u2028", "\ufeff", "\\", "\\n", "'", "''", '"', "9" * 25,
         "x  ", "  x", ":", "x:", ":x", "-", "--- x", "...", "a'b", "$HOME", "{input}"]


# what chain files hold: most of the generated documents are read by plainyaml, so that what it reads is tested
USUAL = ["x", "name", "a b", "title card", "it's", "mod:fn", "#0b1d3a", "16:9", "true", "no", "null", "", "0", "-3",
         "12", "1.5", "-0.0", "é", "😀", "{input}", "echo {input} > out.txt", "http://h/p?q=1#f", "a#b", "$HOME"]


def _quoted(draw: st.DrawFn, word: str) -> str:
    style = draw(st.sampled_from(["plain", "plain", "single", "double", "json"]))
    if style == "single":
        return "'" + word.replace("'", "''") + "'"
    if style == "double":
        return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if style == "json":
        return json.dumps(word, ensure_ascii=draw(st.booleans()))
    return word


def _scalar(draw: st.DrawFn, words: list[str]) -> str:
    return _quoted(draw, draw(st.sampled_from(words)))


def _flow(draw: st.DrawFn, words: list[str], depth: int) -> str:
    if depth > 2 or draw(st.integers(0, 2)) == 0:
        return _scalar(draw, words)
    breaks = [" ", "", "  ", "\n  ", "\n", " \n    ", "  # c\n  ", "\n\n "]
    space = st.sampled_from(breaks[:3] * 4 + breaks[3:])  # mostly one line, sometimes over several
    items = [_flow(draw, words, depth + 1) for _ in range(draw(st.integers(0, 3)))]
    if draw(st.booleans()):
        return "[" + draw(space) + "".join(f"{item}{draw(space)},{draw(space)}" for item in items)[:-1] \
            + draw(space) + "]" if items else "[" + draw(space) + "]"
    entries = [f"{_scalar(draw, words)}:{draw(st.sampled_from([' ', '', '  ']))}{item}" for item in items]
    return "{" + draw(space) + f",{draw(space)}".join(entries) + draw(space) + "}"


def _inline(draw: st.DrawFn, words: list[str]) -> str:
    value = _flow(draw, words, 0) if draw(st.booleans()) else _scalar(draw, words)
    return value + draw(st.sampled_from(["", "", " # note", "  ", "#x", " #"]))


def _block(draw: st.DrawFn, words: list[str], indent: int, depth: int) -> list[str]:
    """A block mapping or sequence at ``indent``, as lines; its own entries, nested blocks, blank lines and comments."""
    step = draw(st.sampled_from([2, 2, 4, 1, 3]))
    sequence = depth > 0 and draw(st.integers(0, 2)) == 0
    lines: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        pad = " " * indent
        head = "- " if sequence else f"{_scalar(draw, words)}:"
        kind = draw(st.sampled_from(["inline", "inline", "empty", "nested", "block"] if depth < 3
                                    else ["inline", "empty", "block"]))
        if sequence and kind == "inline" and draw(st.booleans()):  # "- key: value" and the mapping's next keys
            inner = _block(draw, words, indent + 2, depth + 1)
            lines.append(pad + "- " + inner[0].lstrip(" ") if inner[0].strip() else pad + "-")
            lines += inner[1:]
        elif kind == "inline":
            lines.append(pad + head + ("" if sequence else " ") + _inline(draw, words))
        elif kind == "block":
            lines.append(pad + head + ("" if sequence else " ") + _block_header(draw))
            lines += _block_lines(draw, words, indent + draw(st.sampled_from([1, 2, 2, 4])))
        elif kind == "empty":
            lines.append(pad + head.rstrip(" ") + draw(st.sampled_from(["", " ", "  # empty"])))
        else:
            lines.append(pad + head.rstrip(" "))
            indentless = not sequence and draw(st.integers(0, 3)) == 0
            lines += _block(draw, words, indent + (0 if indentless else step), depth + 1)
        if draw(st.integers(0, 5)) == 0:
            lines.append(draw(st.sampled_from(["", "   ", "# comment", " " * indent + "# indented", "  #x"])))
    return lines


def _block_header(draw: st.DrawFn) -> str:
    return draw(st.sampled_from(["|", "|-", ">", ">-", "|", ">", "|+", ">+", "|2", ">1-", "| # c", "|  ", ">-  "]))


def _block_lines(draw: st.DrawFn, words: list[str], margin: int) -> list[str]:
    """The lines of a block scalar: at ``margin`` mostly, some empty, some indented more or less, some of spaces."""
    lines = []
    for _ in range(draw(st.integers(1, 5))):
        shape = draw(st.sampled_from(["line", "line", "line", "empty", "deeper", "spaces", "shallower"]))
        text = " ".join(draw(st.lists(st.sampled_from(words), min_size=1, max_size=3)))
        lines.append({"line": " " * margin + text, "empty": "", "deeper": " " * (margin + 2) + text,
                      "spaces": " " * draw(st.integers(1, margin + 2)),
                      "shallower": " " * max(0, margin - 1) + text}[shape])
    return lines


@st.composite
def documents(draw: st.DrawFn) -> str:
    words = draw(st.sampled_from([USUAL, USUAL, WORDS]))
    lines = _block(draw, words, draw(st.sampled_from([0, 0, 0, 2])), 0)
    if draw(st.booleans()):
        lines.insert(0, "# a chain")
    return "\n".join(lines) + draw(st.sampled_from(["\n", "", "\n\n", "\n# end\n"]))


@st.composite
def damaged(draw: st.DrawFn) -> str:
    """A generated document with a few characters changed, inserted or removed."""
    text = draw(documents())
    for _ in range(draw(st.integers(1, 3))):
        if not text:
            break
        at = draw(st.integers(0, len(text) - 1))
        char = draw(st.sampled_from(list(" \n-:#'\"[]{},?!&*|>%@`\\\t\r\x00é") + ["  ", ": ", "- ", " #"]))
        change = draw(st.sampled_from(["insert", "replace", "delete"]))
        if change == "insert":
            text = text[:at] + char + text[at:]
        elif change == "replace":
            text = text[:at] + char + text[at + 1:]
        else:
            text = text[:at] + text[at + 1:]
    return text


@settings(max_examples=2000)
@given(text=documents())
def test_a_generated_document_reads_as_pyyaml_reads_it(text: str) -> None:
    _agrees(text)


@settings(max_examples=2000)
@given(text=damaged())
def test_a_damaged_document_reads_as_pyyaml_reads_it_or_goes_to_it(text: str) -> None:
    _agrees(text)


# --------------------------------------------------------------------------- the refusals keep their words


HOSTILE = {
    "nul": ("name: n\nprompt: \"a\\0b\"\nsteps:\n  - {type: command, params: {argv: [echo]}}\n", "NUL character"),
    "surrogate": ("name: n\nprompt: \"\\ud800\"\nsteps:\n  - {type: command, params: {argv: [echo]}}\n",
                  "invalid Unicode character escape code"),
    "huge int": ("name: n\nprompt: hi\ntimeout: 99999999999999999999999\nsteps:\n  - {type: command, params: {argv: [echo]}}\n",
                 "timeout"),
    "nan": ("name: n\nprompt: hi\ntimeout: .nan\nsteps:\n  - {type: command, params: {argv: [echo]}}\n", "timeout"),
    "set": ("name: n\nprompt: hi\nx: !!set {a, b}\nsteps:\n  - {type: command, params: {argv: [echo]}}\n", "set value"),
    "second document": ("name: n\nprompt: hi\nsteps: []\n---\nname: m\n", "only one YAML document"),
    "duplicate": ("name: n\nprompt: hi\nname: m\nsteps:\n  - {type: command, params: {argv: [echo]}}\n", "duplicate key 'name'"),
    "boolean key": ("name: n\nprompt: hi\nsteps:\n  - {type: command, params: {argv: [echo]}}\non: 1\n", "keys must be strings"),
    "tab": ("name: n\nprompt: hi\nsteps:\n\t- {type: command}\n", "invalid YAML"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_chain_is_refused_in_pyyaml_s_words(aicp, tmp_path: Path, name: str) -> None:
    text, words = HOSTILE[name]
    assert plainyaml.read(text) is None  # every one of them goes to PyYAML
    (tmp_path / "chain.yaml").write_text(text, encoding="utf-8")
    run = aicp("validate", "--config", "chain.yaml")
    assert run.returncode == 2 and words in run.stderr and run.stderr.startswith("error: chain.yaml:"), run.stderr
