"""Runs many ``aicp`` invocations fast: one interpreter imports aicp once, then forks a child per case.

Each child is a whole ``aicp`` process as far as the contract goes: its own
stdin, stdout and stderr (files), its own working directory, exit code from
``aicp.cli.main``; only the interpreter start and the imports are shared, which
is what makes 500 fuzz cases fit in a minute on two cores. A child that
outlives ``timeout`` seconds is killed and reported as such.

Protocol: one JSON object per line on stdin
``{"argv": [...], "cwd": "...", "stdin": "<hex>", "timeout": 60}``; one JSON
object per line on stdout ``{"code": N, "stdout": "<hex>", "stderr": "<hex>",
"timed_out": bool}``. Strings may hold surrogate escapes (JSON carries them).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time

import aicp.cli  # noqa: F401 - imported once, before any fork
import aicp._commands.run_chain  # noqa: F401
import aicp._chain.load  # noqa: F401


def _child(argv: list[str], cwd: str, stdin_path: str, out_path: str, err_path: str) -> None:
    try:
        os.setpgid(0, 0)  # the parent kills the whole group on a timeout
        os.chdir(cwd)
        for fd, path, flags in ((0, stdin_path, os.O_RDONLY), (1, out_path, os.O_WRONLY),
                                (2, err_path, os.O_WRONLY)):
            new = os.open(path, flags)
            os.dup2(new, fd)
            os.close(new)
        code = 0
        try:
            aicp.cli.main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    except BaseException:  # noqa: BLE001 - what escaped main: the test sees it as a traceback
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        os._exit(99)


def run_case(request: dict[str, object]) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="aicp-fuzz-io-") as io_dir:
        paths = [os.path.join(io_dir, name) for name in ("in", "out", "err")]
        with open(paths[0], "wb") as f:
            f.write(bytes.fromhex(str(request.get("stdin", ""))))
        for path in paths[1:]:
            open(path, "wb").close()
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            _child(list(request["argv"]), str(request["cwd"]), *paths)  # type: ignore[call-overload]
        deadline = time.monotonic() + float(request.get("timeout", 60))  # type: ignore[arg-type]
        timed_out = False
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                timed_out = True
                os.killpg(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
                break
            time.sleep(0.002)
        code = os.waitstatus_to_exitcode(status)
        with open(paths[1], "rb") as out, open(paths[2], "rb") as err:
            return {"code": code, "stdout": out.read().hex(), "stderr": err.read().hex(), "timed_out": timed_out}


def main() -> None:
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(run_case(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
