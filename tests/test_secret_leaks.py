"""Masked means masked, everywhere aicp writes (issue 11).

Five secrets are set for each run: ``FAL_KEY``, a multi-line PEM in
``MY_PRIVATE_KEY``, the value of a secret-named param (``api_key``, which the
step also finds in an innocently named variable), an ``OPENAI_API_KEY``-like
value, and a ``DB_PASSWORD`` full of JSON-special characters (quotes,
backslashes, braces). Steps print them (plain, JSON-encoded, repr'd, through
``ctx.log`` and ``ctx.progress``), return them (as the output and under
secret-named keys) and raise with them; a ``command`` step echoes them and
fails. Every file under the output dir (the run record included), stdout,
stderr and the ``--log-file`` are then searched for each secret raw,
JSON-escaped and repr-escaped, and for every line of the multi-line one, in
the three output modes: ``--stream``, the human view on a terminal, and
``--quiet`` / ``--json``; then ``aicp runs show`` and ``runs list`` too.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from _aicp import aicp_argv, child_env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux pty and process semantics")

PEM = ("-----BEGIN PRIVATE KEY-----\n"
       "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDZ3x4q9kJ2mNw7\n"
       "c1PqT0zHk8yL5dVbR2eXoW3fG6hJ9sA4uK7mN0pQ1rS2tU3vW4xY5zA6bC7dE8fG\n"
       "Zx81QwErTy==\n"
       "-----END PRIVATE KEY-----\n")
SECRETS = {
    "FAL_KEY": "fal-3c9d1e7a5b2f4c8d:a91b7e3f0d2c6b5a",
    "MY_PRIVATE_KEY": PEM,
    "OPENAI_API_KEY": "sk-proj-Q7rT2vX9zB4nM6kP1wL8",
    "DB_PASSWORD": 'pa"ss\\wo\'rd{"x":1}\\n\ttab',
}
PARAM_SECRET = "param-secret-5f1e2d3c4b5a6978"  # only ever in a chain param named api_key

LEAKY = '''
import json
import os
import sys

NAMES = ["FAL_KEY", "MY_PRIVATE_KEY", "OPENAI_API_KEY", "DB_PASSWORD"]


def _all(ctx):
    return [os.environ[n] for n in NAMES] + [ctx.params["api_key"], os.environ["PLAIN_SETTING"]]


def chatty(ctx):
    for value in _all(ctx):
        print(value, flush=True)                        # the PEM leaves line by line
        print(json.dumps(value), flush=True)            # JSON-escaped text
        print(repr(value), file=sys.stderr, flush=True)  # repr-escaped text
        print("inline:" + value + ":end", flush=True)
    ctx.log.info("connecting", api_key=ctx.params["api_key"], note="with " + os.environ["FAL_KEY"])
    ctx.progress(0.5, message="using " + os.environ["OPENAI_API_KEY"])
    return {"output": "ok", "echo": os.environ["DB_PASSWORD"]}


def returns(ctx):
    values = _all(ctx)
    return {"output": " | ".join(values), "token": os.environ["FAL_KEY"],
            "headers": {"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"]},
            "notes": values}


def raises(ctx):
    values = _all(ctx)
    if ctx.params.get("kind") == "key":
        raise KeyError(os.environ["DB_PASSWORD"])  # repr() of the value in the message
    raise RuntimeError("upstream said: " + " / ".join(values))
'''

CHAIN = """\
name: leaky
prompt: go
output_dir: out
steps:
  - {{type: python, params: {{function: "leaky:chatty", api_key: "{param}"}}}}
  - type: command
    params:
      run: 'echo "$FAL_KEY"; printf "%s\\n" "$MY_PRIVATE_KEY"; printf "%s\\n" "$DB_PASSWORD" >&2; echo {last}'
      env: {{api_key: "{param}"}}  # a command takes only its declared params; the secret rides in env
  - {{type: python, params: {{function: "leaky:{final}", api_key: "{param}", kind: "{kind}"}}}}
"""


def forms(value: str) -> set[str]:
    """The raw, JSON-escaped and repr-escaped forms of a secret, and of each line of a multi-line one."""
    parts = {value} | {line.strip() for line in value.splitlines() if line.strip()}
    out: set[str] = set()
    for part in parts:
        out |= {part, json.dumps(part)[1:-1], json.dumps(part, ensure_ascii=False)[1:-1], repr(part)[1:-1]}
    return out


NEEDLES = sorted({f for v in [*SECRETS.values(), PARAM_SECRET] for f in forms(v)}, key=len)


def leaks(where: str, data: bytes) -> list[str]:
    text = data.decode("utf-8", "replace")
    return [f"{where}: {needle!r}" for needle in NEEDLES if needle in text]


def env() -> dict[str, str]:
    return child_env(**SECRETS, PLAIN_SETTING=PARAM_SECRET)


def every_file(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            found += leaks(str(path.relative_to(root)), path.read_bytes())
    return found


def on_pty(argv: list[str], cwd: Path, timeout: float = 60) -> tuple[int, bytes]:
    """Run with stdout and stderr on a terminal (the live human view); return (exit code, output)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, cwd=cwd, env=env(), stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    return proc.returncode, b"".join(chunks)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "leaky.py").write_text(LEAKY.lstrip())
    return tmp_path


def write(folder: Path, final: str, kind: str = "", last: str = "done") -> Path:
    path = folder / "chain.yaml"
    path.write_text(CHAIN.format(param=PARAM_SECRET, final=final, kind=kind, last=last))
    return path


CASES = {  # name: (final step, its kind, expected exit code)
    "ok": ("returns", "", 0),
    "raises": ("raises", "", 5),
    "raises_keyerror": ("raises", "key", 5),
}
MODES = {
    "stream": ["--stream"],
    "human": [],
    "quiet": ["--quiet"],
    "json": ["--json"],
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("mode", sorted(MODES))
def test_no_secret_reaches_any_file_or_stream(folder: Path, case: str, mode: str) -> None:
    final, kind, expected = CASES[case]
    chain = write(folder, final, kind)
    log = folder / "events.log"
    argv = aicp_argv("run-chain", "-c", str(chain), "--log-file", str(log), *MODES[mode])
    if mode == "human":
        code, shown = on_pty(argv, folder)
        outputs = {"terminal": shown}
        assert b"running 'leaky'" in shown and b"\x1b[" in shown, shown[-2000:]  # the live view did draw
    else:
        proc = subprocess.run(argv, cwd=folder, env=env(), stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=120)
        code = proc.returncode
        outputs = {"stdout": proc.stdout, "stderr": proc.stderr}
    assert code == expected, outputs
    found = [leak for name, data in outputs.items() for leak in leaks(name, data)]
    found += every_file(folder / "out") + leaks("--log-file", log.read_bytes())
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(e["event"] == "step_log" and "***" in e.get("line", "") for e in events)  # it was there, masked
    for args in (["runs", "show", "latest", "-c", str(chain)], ["runs", "show", "latest", "-c", str(chain), "--json"],
                 ["runs", "list", "-c", str(chain)]):
        shown_run = subprocess.run(aicp_argv(*args), cwd=folder, env=env(), capture_output=True, timeout=60)
        assert shown_run.returncode == 0, shown_run.stderr
        found += leaks(" ".join(args[:2]), shown_run.stdout + shown_run.stderr)
    assert not found, "\n".join(found)


def test_secret_param_values_are_masked_even_without_the_environment(folder: Path) -> None:
    """`runs show` in a shell without the secrets set still shows the masked record."""
    chain = write(folder, "returns")
    run = subprocess.run(aicp_argv("run-chain", "-c", str(chain), "--quiet"), cwd=folder, env=env(),
                         capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr
    bare = subprocess.run(aicp_argv("runs", "show", "latest", "-c", str(chain), "--json"), cwd=folder,
                          env=child_env(), capture_output=True, timeout=60)
    assert bare.returncode == 0, bare.stderr
    assert not leaks("runs show", bare.stdout), bare.stdout
    assert b"***" in bare.stdout


@pytest.mark.parametrize("bad", [
    '{token: "%s"}',              # a mapping where a string belongs: quoted in the error
    '["%s"]',
])
def test_validation_errors_do_not_quote_secret_params(folder: Path, bad: str) -> None:
    chain = folder / "bad.yaml"
    chain.write_text(textwrap.dedent(f"""\
        name: bad
        steps:
          - type: command
            params: {{run: {bad % PARAM_SECRET}, api_key: "{PARAM_SECRET}"}}
        """))
    for mode in (["--stream"], [], ["--json"]):
        proc = subprocess.run(aicp_argv("run-chain", "-c", str(chain), *mode), cwd=folder, env=env(),
                              capture_output=True, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert b"params.run" in proc.stderr
        assert not leaks("stdout", proc.stdout) + leaks("stderr", proc.stderr), proc.stderr
    proc = subprocess.run(aicp_argv("validate", "-c", str(chain)), cwd=folder, env=env(), capture_output=True,
                          timeout=60)
    assert proc.returncode == 2 and not leaks("validate", proc.stderr), proc.stderr
