"""``validate`` and ``estimate-cost`` read a plain command line without argparse, and get what argparse gives.

``aicp.cli._plain_args`` saves argparse's import and parser (~4 ms of a
``validate``) for the command lines people type and hooks run. It must give
exactly argparse's namespace, or nothing (argparse then parses, with its help,
abbreviations and errors): checked here against argparse on every command line
hypothesis can build from the options' own words and their near misses, and
through the real CLI for the forms it takes and the forms it leaves to argparse.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aicp.cli import _plain_args, build_parser
from aicp._errors import UsageError

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

WORDS = ["validate", "estimate-cost", "run-chain", "list-steps", "--config", "-c", "--offline", "--json",
         "--quiet", "-q", "--debug", "--base-dir", "--cache-dir", "--config-dir", "--state-dir", "--conf",
         "--off", "--config=x.yaml", "-cx.yaml", "-qc", "--", "-", "-h", "--help", "--version", "--stream",
         "chain.yaml", "dir", "", "-1", "-x", "validate.yaml", "--set"]


def _argparse(argv: list[str]) -> dict[str, object] | None:
    """argparse's namespace for ``argv``, or None when it refuses it (or prints help or the version)."""
    try:
        return vars(build_parser(named=set(argv)).parse_args(argv))
    except (UsageError, SystemExit):
        return None


def _same_as_argparse(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    plain = _plain_args(argv)
    expected = _argparse(argv)
    capsys.readouterr()  # help and version text
    if plain is not None:
        assert expected is not None, argv
        assert vars(plain) == expected, argv


FLAGS = ["--offline", "--json", "--quiet", "-q", "--debug"]
VALUED = ["--config", "-c", "--base-dir", "--cache-dir", "--config-dir", "--state-dir"]
VALUES = ["chain.yaml", "-", "", "dir", "validate", "-x", "-1", "--json"]


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    """Mostly well-formed: options (with their values) around one command that has its --config, with a
    near miss (any word, any value) now and then."""
    value = st.one_of(st.sampled_from(["chain.yaml", "-", "dir"]), st.sampled_from(VALUES))
    noise = st.sampled_from(WORDS).map(lambda word: [word])
    part = st.one_of(st.sampled_from(FLAGS).map(lambda flag: [flag]),
                     st.tuples(st.sampled_from(VALUED[2:]), value).map(list))
    parts = st.one_of(part, part, part, part, noise)
    before = sum(draw(st.lists(parts, max_size=3, unique_by=lambda p: p[0])), [])
    after = sum(draw(st.lists(parts, max_size=4, unique_by=lambda p: p[0])), [])
    where = draw(st.integers(0, len(after)))
    config = [draw(st.sampled_from(["--config", "-c"])), draw(value)]
    return before + [draw(st.sampled_from(["validate", "estimate-cost"]))] + after[:where] + config + after[where:]


@settings(max_examples=1500)
@given(argv=st.lists(st.sampled_from(WORDS), max_size=8))
def test_any_command_line_reads_as_argparse_reads_it(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    _same_as_argparse(argv, capsys)


@settings(max_examples=1500)
@given(argv=command_lines())
def test_a_plain_command_line_reads_as_argparse_reads_it(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    _same_as_argparse(argv, capsys)


PLAIN = [
    ["validate", "--config", "chain.yaml"],
    ["validate", "-c", "chain.yaml", "--offline"],
    ["validate", "--offline", "-c", "-"],
    ["--json", "validate", "--config", "c.yaml", "--quiet"],
    ["-q", "--debug", "validate", "-c", "c.yaml", "--base-dir", "out", "--json"],
    ["--cache-dir", "cache", "validate", "--config", "c.yaml", "--state-dir", "s", "--config-dir", "k"],
    ["estimate-cost", "--config", "c.yaml", "--json"],
    ["estimate-cost", "-c", "c.yaml", "-q"],
]


@pytest.mark.parametrize("argv", PLAIN, ids=[" ".join(a) for a in PLAIN])
def test_the_usual_command_lines_take_the_plain_path(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert _plain_args(argv) is not None
    _same_as_argparse(argv, capsys)


LEFT_TO_ARGPARSE = [
    ["validate"], ["validate", "--help"], ["validate", "--conf", "c.yaml"], ["validate", "--config=c.yaml"],
    ["validate", "-cc.yaml"], ["validate", "--config", "c.yaml", "--config", "d.yaml"],
    ["validate", "--config", "--offline"], ["validate", "--config"], ["--config", "c.yaml", "validate"],
    ["validate", "--config", "c.yaml", "extra"], ["estimate-cost", "--config", "c.yaml", "--offline"],
    ["validate", "--config", "validate"], ["validate", "--", "--config", "c.yaml"],
    ["validate", "--config", "-x"], ["run-chain", "--config", "c.yaml"],
]


@pytest.mark.parametrize("argv", LEFT_TO_ARGPARSE, ids=[" ".join(a) for a in LEFT_TO_ARGPARSE])
def test_anything_else_is_left_to_argparse(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert _plain_args(argv) is None
    _same_as_argparse(argv, capsys)


@pytest.mark.parametrize("argv, message", [
    (["validate", "--conf", "c.yaml"], "ambiguous option: --conf could match"),
    (["validate"], "the following arguments are required: --config/-c"),
    (["estimate-cost", "--config", "c.yaml", "--offline"], "unrecognized arguments: --offline"),
    (["validate", "--config", "c.yaml", "--config-dir"], "argument --config-dir: expected one argument"),
])
def test_argparse_still_refuses_what_it_refused(aicp, argv: list[str], message: str) -> None:
    run = aicp(*argv)
    assert run.returncode == 2 and message in run.stderr, run.stderr


def test_the_plain_path_gives_the_same_output_as_argparse(aicp, tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("name: x\nprompt: hi\nsteps:\n  - {type: command, params: {argv: [echo, '{input}']}}\n")
    (tmp_path / "cache").mkdir()
    plain = aicp("--json", "validate", "--config", "c.yaml", "--cache-dir", "cache", "--offline")
    parsed = aicp("--json", "validate", "--config=c.yaml", "--cache-dir=cache", "--offline")  # argparse's path
    assert plain.returncode == parsed.returncode == 0
    assert plain.stdout == parsed.stdout and plain.stderr == parsed.stderr
