"""The worker path and the CLI's start-up keep the import promises their comments make.

A worker's start-up is the per-step overhead of the whole tool, so the code a
worker imports (``_worker/``, ``_context``, ``_targets`` and the built-in
``python`` and ``command`` steps, which the template pre-imports) avoids
``typing`` (~10 ms) and structlog (loaded only when a step uses ``ctx.log``).
The warm template, on the other hand, promises to pre-import structlog so a
forked step's first log line is free: that must work under an editable
install too, where structlog does not sit next to the aicp package.

``aicp --version`` loads nothing but the CLI module, and ``aicp validate``
none of what it does not need (typing, dataclasses, PyYAML for a chain read
before, subprocess, the run's machinery): each is milliseconds of a start-up
that ``scripts/bench_startup.py`` holds at 1.3x and 3x a bare interpreter's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from _aicp import Run, aicp_argv, child_env
from aicp._process.launch import PYTHON_FLAGS, _package_root

WORKER_MODULES = ("aicp._worker.main", "aicp._worker.protocol", "aicp.steps.python_step", "aicp.steps.command_step")
NOT_ON_THE_WORKER_PATH = ("typing", "structlog")


def _imported(code: str) -> list[str]:
    """Every module a worker-like interpreter (same flags, same path) imports running ``code``."""
    boot = f"import sys; sys.path[:0] = [{_package_root()!r}]; {code}"
    done = subprocess.run([sys.executable, *PYTHON_FLAGS, "-X", "importtime", "-c", boot],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return [line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines()
            if line.startswith("import time:") and "|" in line]


def test_the_modules_a_worker_imports_are_measured() -> None:
    modules = _imported("import " + ", ".join(WORKER_MODULES))
    for name in WORKER_MODULES:  # the measurement sees them, so it would see typing too
        assert name in modules


@pytest.mark.parametrize("module", WORKER_MODULES)
def test_no_worker_module_imports_typing_or_structlog(module: str) -> None:
    modules = _imported(f"import {module}")
    for name in NOT_ON_THE_WORKER_PATH:
        pulled = [m for m in modules if m == name or m.startswith(name + ".")]
        assert not pulled, f"importing {module} imports {pulled}"


def test_a_step_sees_what_each_launcher_promised(tmp_path: Path) -> None:
    # Through the real CLI: a spawned worker has imported neither; a worker forked from the
    # template finds structlog already imported (the template's pre-import worked).
    (tmp_path / "probe.py").write_text(textwrap.dedent("""
        import sys

        def loaded(ctx):
            return {"output": "ok", "typing": "typing" in sys.modules, "structlog": "structlog" in sys.modules}
    """))
    chain = tmp_path / "chain.yaml"
    chain.write_text("name: probe\nprompt: go\nsteps:\n  - {type: python, params: {function: 'probe:loaded'}}\n")
    seen = {}
    for launcher in ("spawn", "fork"):
        done = subprocess.run(aicp_argv("run-chain", "-c", str(chain), "--stream"), cwd=tmp_path,
                              env=child_env(AICP_WORKER_START=launcher), capture_output=True, timeout=120)
        run = Run(done.returncode, done.stdout.decode(), done.stderr.decode())
        assert run.returncode == 0, run.stderr[-2000:]
        seen[launcher] = run.result["outputs"]["step_1_python"]["metadata"]
    assert seen["spawn"] == {"typing": False, "structlog": False}
    assert seen["fork"]["structlog"] is True


# --------------------------------------------------------------------------- the CLI's start-up

# What an invocation loaded, written when it exits (-X importtime also lists failed attempts). Run
# as bin/aicp runs it: the interpreter, then aicp.cli.
LOADED = """
import atexit, sys
def dump():
    with open(sys.argv[1], "w") as out:
        out.write("\\n".join(sorted(sys.modules)))
atexit.register(dump)
if sys.argv[2:]:
    from aicp.cli import main
    main(sys.argv[2:])
"""

# Never loaded by `aicp validate` (scripts/bench_startup.py: validate <= 3x a bare start): typing and
# dataclasses (with inspect, ast, dis) alone are about a bare start each; the worker's and the run's
# machinery, the providers' clients, Pillow and ffmpeg have nothing to do in a validation; argparse
# (with gettext and locale) reads only the command lines cli._plain_args leaves to it.
NOT_FOR_VALIDATE = ("typing", "dataclasses", "inspect", "ast", "dis", "tokenize", "subprocess", "tempfile",
                    "argparse", "gettext", "locale",
                    "difflib", "textwrap", "orjson", "uuid", "platform", "structlog", "PIL", "imageio_ffmpeg",
                    "aicp._run", "aicp._process", "aicp._worker.main", "aicp._worker.template", "aicp._events", "aicp._batch", "aicp._view",
                    "aicp.providers.fal_queue", "aicp.providers._http", "httpx")
# Loaded only when PyYAML parses or composes: not for a YAML chain that parsed before (the
# parsed-document cache), nor ever for a JSON chain that is valid.
YAML = ("yaml", "_yaml", "aicp._chain.yamlload")
# What shutil brings (argparse imports it to ask the terminal's width; aicp tells it)
SHUTIL = ("shutil", "bz2", "lzma")


def _quiet_env(tmp_path: Path) -> dict[str, str]:
    """The test's environment with a cache of its own and no secret-looking variable (masking
    a secret loads orjson)."""
    env = child_env(XDG_CACHE_HOME=str(tmp_path / "cache"), COLUMNS="80")
    return {k: v for k, v in env.items() if not k.upper().endswith(("_KEY", "_TOKEN", "_SECRET", "_PASSWORD"))}


def _loaded(where: Path, *args: str, expect: int = 0) -> set[str]:
    out = where / "modules.txt"
    done = subprocess.run([sys.executable, "-c", LOADED, str(out), *args], cwd=where, env=_quiet_env(where),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == expect, done.stderr[-2000:]
    return set(out.read_text().split())


def _among(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if m in names or m.startswith(tuple(n + "." for n in names)))


def test_version_loads_nothing_but_the_cli(tmp_path: Path) -> None:
    extra = _loaded(tmp_path, "--version") - _loaded(tmp_path)
    assert extra <= {"aicp", "aicp.cli", "aicp._version", "aicp._interrupt"}, sorted(extra)


VALIDATED = {
    "readme_example": (Path(__file__).resolve().parents[1] / "examples" / "prompt_to_video.yaml").read_text(),
    "command": "name: c\nprompt: hi\nsteps:\n  - {type: command, params: {argv: [echo, '{input}']}}\n"
               "  - {type: command, params: {run: 'wc -c', output: out.txt}}\n",
    "python": "name: p\nprompt: hi\nsteps:\n  - {type: python, params: {function: 'mod:fn'}}\n",
    "media": "prompt: hi\nsteps:\n  - {type: text_to_image, model: title_card}\n"
             "  - {type: image_to_video, model: ken_burns, params: {duration: 2}}\n"
             "  - {type: upscale_video, model: lanczos}\n  - {type: generate_subtitles, params: {format: srt}}\n"
             "  - {type: add_audio, params: {audio: voice.wav, policy: loop}}\n",
    "group_and_images": "prompt: hi\nsteps:\n  - {type: text_to_image, model: title_card}\n"
                        "  - {type: split_image, params: {rows: 1, cols: 2}}\n"
                        "  - type: parallel_group\n    params:\n      parallel_steps:\n"
                        "        - {type: upscale_image, model: lanczos}\n        - {type: upscale_image, model: lanczos}\n",
    "remote_models": "prompt: hi\nsteps:\n  - {type: text_to_image, model: flux_dev, params: {aspect_ratio: '16:9'}}\n"
                     "  - {type: image_to_video, model: auto, params: {criteria: speed}}\n",
    "with_a_warning": "prompt: hi\nauthor: me\nsteps:\n  - {type: command, params: {run: 'echo {input}'}}\n",
}


@pytest.mark.parametrize("name", sorted(VALIDATED))
def test_validate_loads_none_of_what_it_does_not_need(tmp_path: Path, name: str) -> None:
    (tmp_path / "chain.yaml").write_text(VALIDATED[name])
    (tmp_path / "voice.wav").write_bytes(b"RIFF")  # named by a param: validate checks it exists
    (tmp_path / "mod.py").write_text("def fn(ctx):\n    return ctx.input\n")  # read, never run (ast)
    args = ("validate", "--offline", "--config", "chain.yaml")
    first = _loaded(tmp_path, *args)  # parses, fills the caches (burn_in: asks ffmpeg for its filters)
    assert not _among(first, tuple(m for m in NOT_FOR_VALIDATE if m.startswith("aicp")) + ("dataclasses", "orjson"))
    assert not _among(first, YAML) and "aicp._chain.plainyaml" in first  # plain YAML: read without PyYAML
    assert "mod" not in first  # the user's module is not run
    again = _loaded(tmp_path, *args)
    # an unknown key's warning looks for a near miss (difflib), its position is kept with the data;
    # a python step's module is parsed (ast) to find its function, never run
    allowed = {"with_a_warning": ("difflib",), "python": ("ast",)}.get(name, ())
    assert not _among(again, tuple(m for m in NOT_FOR_VALIDATE + SHUTIL + YAML if m not in allowed))
    assert "aicp._chain.doccache" in again


def test_a_json_chain_never_loads_yaml(tmp_path: Path) -> None:
    (tmp_path / "chain.json").write_text(json.dumps(
        {"name": "j", "prompt": "hi", "steps": [{"type": "text_to_image", "model": "title_card"},
                                                {"type": "command", "params": {"argv": ["echo", "{input}"]}}]}))
    for _ in range(2):
        loaded = _loaded(tmp_path, "validate", "--config", "chain.json")
        assert not _among(loaded, NOT_FOR_VALIDATE + SHUTIL + YAML)


@pytest.mark.parametrize("anchor, pyyaml", [("", False), ("&t ", True)])
def test_an_invalid_chain_loads_what_its_errors_need(tmp_path: Path, anchor: str, pyyaml: bool) -> None:
    # the did-you-mean and the positions are paid for by the chain that needs them, and only then; the
    # plain YAML of chain files is read without PyYAML (aicp._chain.plainyaml), an anchor is PyYAML's
    (tmp_path / "chain.yaml").write_text(f"prompt: hi\nsteps:\n  - {{type: {anchor}text_to_imag, model: title_card}}\n")
    for parsed in (True, False):  # then read with its positions from the parsed-document cache
        loaded = _loaded(tmp_path, "validate", "--config", "chain.yaml", expect=2)
        assert "difflib" in loaded and ("yaml" in loaded) is (parsed and pyyaml)
        assert ("aicp._chain.plainyaml" in loaded) is parsed
        assert not _among(loaded, tuple(m for m in NOT_FOR_VALIDATE if m != "difflib"))


@pytest.mark.parametrize("enabled", [True, False])
def test_main_gives_a_host_its_garbage_collector_back_as_it_was(enabled: bool, capsys: pytest.CaptureFixture[str]) -> None:
    # validate and the other short commands run with the collector off (cli._end_collection)
    import gc

    from aicp.cli import main

    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        for argv in (["list-steps"], ["validate", "--config", "/nonexistent.yaml"], ["--bogus"]):
            with pytest.raises(SystemExit):
                main(argv)
            assert gc.isenabled() is enabled, argv
    finally:
        (gc.enable if was else gc.disable)()
    capsys.readouterr()
