"""The ``command`` step: run a program, ``params.argv`` (no shell) or ``params.run`` (a shell string).

``{input}``, ``{output_dir}`` and ``{step}`` are data, never code: their values
travel in ``AICP_INPUT``, ``AICP_OUTPUT_DIR`` and ``AICP_STEP`` and each
placeholder in ``run`` becomes a quoted expansion of its variable (see
:mod:`aicp.steps.shell_template`); in ``argv`` and ``output`` they are replaced
by the values, in one pass. The program's stdout is relayed as it comes and,
when the step names no ``output`` file, becomes the step's output (stripped,
at most 64 KiB).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from aicp._context import StepFailed
from aicp.steps.shell_template import ENV_NAMES, TemplateError, shell_template, substitute

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: the worker template pre-imports this module
if TYPE_CHECKING:
    import subprocess
    from typing import Any

    from aicp._context import StepContext

MAX_CAPTURE = 64 * 1024


def check(params: dict[str, Any], model: str | None) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    argv, run = params.get("argv"), params.get("run")
    if (argv is None) == (run is None):
        problems.append(("params", "needs exactly one of 'argv' (a list, no shell) or 'run' (a shell string)"))
    if argv is not None and (not isinstance(argv, list) or not argv
                             or not all(isinstance(a, (str, int, float)) for a in argv)):
        problems.append(("params.argv", f"must be a non-empty list of strings, got {argv!r}"))
    if run is not None and (not isinstance(run, str) or not run.strip()):
        problems.append(("params.run", f"must be a non-empty shell command string, got {run!r}"))
    elif run is not None:
        try:
            shell_template(run)
        except TemplateError as exc:
            problems.append(("params.run", str(exc)))
    env = params.get("env")
    if env is not None and not (isinstance(env, dict) and all(isinstance(k, str) for k in env)):
        problems.append(("params.env", "must be a mapping of variable names to values"))
    for key in ("cwd", "output"):
        if key in params and not isinstance(params[key], str):
            problems.append((f"params.{key}", f"must be a path string, got {params[key]!r}"))
    return problems


def _input_text(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return "" if value is None else str(value)


def run(ctx: StepContext) -> dict[str, Any]:
    params = ctx.params
    values = {"input": _input_text(ctx.input), "output_dir": str(ctx.output_dir), "step": str(ctx.step)}
    if params.get("argv") is not None:
        args: Any = [substitute(str(a), values) for a in params["argv"]]
        shell = False
    else:
        args = shell_template(params["run"])
        shell = True
    env = dict(os.environ)
    env.update({k: str(v) for k, v in (params.get("env") or {}).items()})
    env.update({ENV_NAMES[k]: v for k, v in values.items()})  # what the rewritten placeholders expand
    cwd = ctx.chain_dir / params["cwd"] if params.get("cwd") else None
    import subprocess  # here, not at the top: validate imports this module for check(); the template pre-imports it

    try:
        proc = subprocess.Popen(args, shell=shell, cwd=cwd, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte, which no program can be given
        raise StepFailed(f"cannot start {args[0] if isinstance(args, list) else 'the shell'}: {exc}") from exc
    captured = _tee_stdout(proc)
    status = proc.wait()
    if status < 0:
        name = signal.Signals(-status).name
        raise StepFailed(f"the command was killed by {name}", reason="signal", signal=name)
    if status != 0:
        raise StepFailed(f"the command exited with status {status}", reason="exit", exit_code=status)
    if params.get("output"):
        path = Path(substitute(params["output"], values))
        if not path.is_absolute():
            path = (cwd or Path.cwd()) / path
        if not path.exists():
            raise StepFailed(f"the command did not create its output {path}")
        return {"output": str(path), "outputs": [str(path)]}
    return {"output": captured.decode("utf-8", "replace").strip()}


def _tee_stdout(proc: subprocess.Popen[bytes]) -> bytes:
    """Copy the program's stdout to ours (relayed live) and keep the first 64 KiB."""
    assert proc.stdout is not None
    kept = bytearray()
    fd = proc.stdout.fileno()
    while chunk := os.read(fd, 65536):
        view = memoryview(chunk)
        while view:
            view = view[os.write(1, view):]
        if len(kept) < MAX_CAPTURE:
            kept += chunk[: MAX_CAPTURE - len(kept)]
    proc.stdout.close()
    return bytes(kept)
