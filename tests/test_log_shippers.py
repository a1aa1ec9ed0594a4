"""The shipper configs in examples/log-shipping/, run by the real daemons on a real run.

Each test starts the daemon (its own config from examples/, paths in tmp, no
system-wide state: its own persist/state files, pid file, no privileges needed),
runs aicp with ``--log-file`` while the daemon follows the file, waits until every
event has arrived, checks that each kept its time and had its level mapped, and
ends the daemon by its pid.
"""

from __future__ import annotations

import datetime as dt
import glob
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from _aicp import child_env
from _shipchain import CHAIN, MODULE

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "log-shipping"
RSYSLOG_ROOT = Path(os.environ.get("AICP_RSYSLOG_ROOT", "/opt/aicp-ci/rsyslog"))  # .ci/run unpacks it there
LEVELS = {"debug", "info", "warning", "error", "critical"}


def rsyslogd() -> list[str] | None:
    """The rsyslogd to run: an installed one, or the one .ci/run unpacked (with its module folder)."""
    found = shutil.which("rsyslogd") or (os.path.exists("/usr/sbin/rsyslogd") and "/usr/sbin/rsyslogd")
    if found:
        return [str(found)]
    modules = glob.glob(str(RSYSLOG_ROOT / "usr" / "lib" / "*" / "rsyslog"))
    exe = RSYSLOG_ROOT / "usr" / "sbin" / "rsyslogd"
    return [str(exe), "-M", modules[0]] if exe.exists() and modules else None


def syslog_ng() -> list[str] | None:
    found = shutil.which("syslog-ng") or (os.path.exists("/usr/sbin/syslog-ng") and "/usr/sbin/syslog-ng")
    return [str(found)] if found else None


class Daemon:
    """A daemon in the foreground, started by the test and ended by its pid."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.out = log.open("wb")
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=self.out, stderr=self.out)

    def wait_for(self, done: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if self.proc.poll() is not None:
                pytest.fail(f"the daemon exited ({self.proc.returncode}): {self.log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"not everything arrived within {timeout} s; daemon said: {self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, 15)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, 9)
                self.proc.wait()
        self.out.close()


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def ship(tmp_path: Path, aicp: Any, write_module: Any, write_chain: Any, argv: list[str], env: dict[str, str],
         out: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Start the daemon, make a real run write its events to the followed file, wait for all of them."""
    write_module("shipmod", MODULE)
    write_chain(CHAIN)
    events_file = Path(env["AICP_EVENTS"])
    events_file.write_text("")
    daemon = Daemon(argv, env, tmp_path / "daemon.log")
    try:
        run = aicp("run-chain", "--config", "chain.yaml", "--log-file", str(events_file), "--quiet")
        assert run.returncode == 5, run.stderr
        events = [json.loads(line) for line in _lines(events_file)]
        assert len(events) > 20 and {e["level"] for e in events} == LEVELS
        daemon.wait_for(lambda: len(_lines(out)) >= len(events))
    finally:
        daemon.stop()
    return events, _lines(out)


@pytest.mark.skipif(syslog_ng() is None, reason="syslog-ng is not installed (apt-get install syslog-ng-core; "
                                                "`.ci/run` installs it)")
def test_syslog_ng_ships_every_event_with_its_time_and_severity(tmp_path, aicp, write_module, write_chain):
    out = tmp_path / "shipped.jsonl"
    env = child_env(AICP_EVENTS=str(tmp_path / "events.jsonl"), AICP_OUT=str(out))
    argv = [*(syslog_ng() or []), "-F", "--no-caps", "-f", str(EXAMPLES / "syslog-ng.conf"),
            "-R", str(tmp_path / "syslog-ng.persist"), "-p", str(tmp_path / "syslog-ng.pid"),
            "-c", str(tmp_path / "syslog-ng.ctl")]
    events, lines = ship(tmp_path, aicp, write_module, write_chain, argv, env, out)
    shipped = [json.loads(line) for line in lines]
    assert len(shipped) == len(events)
    severity = {"debug": "debug", "info": "info", "warning": "warning", "error": "err", "critical": "crit"}
    for event, record in zip(events, shipped):
        assert record["event"] == event["event"] and record["run_id"] == event["run_id"]
        assert record["message"] == (event["message"] or "")
        assert _utc(record["@timestamp"]) == _utc(event["time"]), (record, event)  # the event's own time
        assert record["@timestamp"].endswith("+00:00")
        assert record["severity"] == severity[event["level"]], (record, event)


@pytest.mark.skipif(rsyslogd() is None, reason="rsyslog is not installed (apt-get install rsyslog, or "
                                               "`.ci/run`, which unpacks it into /opt/aicp-ci/rsyslog)")
def test_rsyslog_ships_every_event_as_rfc5424_with_its_time_and_severity(tmp_path, aicp, write_module,
                                                                           write_chain):
    out = tmp_path / "shipped.log"
    state = tmp_path / "rsyslog-state"
    state.mkdir()
    env = child_env(AICP_EVENTS=str(tmp_path / "events.jsonl"), AICP_OUT=str(out), AICP_RSYSLOG_STATE=str(state))
    argv = [*(rsyslogd() or []), "-n", "-f", str(EXAMPLES / "rsyslog.conf"), "-i", str(tmp_path / "rsyslog.pid")]
    events, lines = ship(tmp_path, aicp, write_module, write_chain, argv, env, out)
    assert len(lines) == len(events)
    rfc5424 = re.compile(r'^<(\d+)>1 (\S+) (\S+) aicp - (\S+) \[aicp@32473 run_id="([^"]*)" level="([^"]*)"\] ?(.*)$')
    severity = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}  # RFC 5424, table 2
    for event, line in zip(events, lines):
        match = rfc5424.match(line)
        assert match, line
        pri, stamp, _host, msgid, run_id, level, message = match.groups()
        assert (msgid, run_id, level) == (event["event"], event["run_id"], event["level"])
        assert int(pri) // 8 == 1 and int(pri) % 8 == severity[event["level"]], (line, event)
        assert _utc(stamp) == _utc(event["time"])  # the event's own time, not when rsyslog read it
        assert message == (event["message"] or "")
