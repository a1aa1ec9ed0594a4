"""The bytes of every event, pinned: the cheap per-event path against structlog's own.

``EventLog.emit`` (and ``_render``, which the result and warnings use) drives the
structlog processor list itself instead of going through a bound logger, takes
its keyword arguments as the event dict without a copy, rounds ``elapsed_seconds``
and formats ``time`` without ``round()`` and ``strftime`` per event, renders
without ``OPT_NON_STR_KEYS`` unless a key needs it, and masks secrets only when
the rendered line could hold one. None of that may change a byte:

* every event of a varied table (secrets from the environment and given ones, in
  fields, messages, paths and nested values; unicode, control characters, long
  lines; floats including NaN, infinities and -0.0; datetimes, paths, bytes, sets,
  tuples; keys that are not exactly ``str``; secret-looking key names) rendered by
  ``emit`` and by a plain ``structlog`` bound logger wrapping the same processors,
  with the clocks at awkward instants, in every ``--log-format`` and with a batch
  job's context, gives identical bytes;
* a few lines are pinned byte for byte (key order, number formatting, masking);
* ``round_millis`` is ``round(x, 3)`` and ``rfc3339`` the same instant as
  ``strftime`` gives, on the boundaries where a shortcut would go wrong.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import random
import struct
import time
from pathlib import Path
from typing import Any

import pytest
import structlog

from aicp import _events
from aicp._events import EventLog, level_of, rfc3339, round_millis

SECRET = "given-secret-1234"
ENV_SECRET = 'env"quoted\\secret-99'
RUN_ID = "0123456789abcdef"
STARTED = 1000.0

# (wall clock, monotonic clock) for each event in turn: second and millisecond boundaries,
# elapsed times that round at a half, the epoch, far dates
CLOCKS = [(1764659342.9995, 1000.0005), (1764659342.0005, 1000.0015), (1764659343.0, 1000.0025),
          (1764659343.999999, 1001.2345), (1795608946.7012345, 1001.9995), (0.0, 1000.0),
          (1e9 + 0.0015, 1002.00049999), (4102444800.123, 5000.1235), (1764659400.0009999, 1e6 + 0.0005),
          (1764659399.5, 1000.000000001)]


class Key(str):
    """A key that is a str, but not exactly one."""


class Colour(str, enum.Enum):
    RED = "red"


STEP = {"step": 1, "type": "text_to_image", "model": "title_card", "name": None, "attempt": 1, "cost": 0.0,
        "output": "/tmp/out/step_1_1.png", "outputs": ["/tmp/out/step_1_1.png"], "pid": 12345,
        "duration_seconds": 0.123, "peak_rss_bytes": 31457280, "cpu_seconds": 0.1}

EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("pipeline_start", {"name": "demo ☕", "total_steps": 3, "aicp_version": "9.9.9", "chain": {"steps": [{"params": {"api_key": "zzzz-hidden"}}]}}),
    ("step_start", {"step": 0, "type": "python", "model": None, "name": "render", "attempt": 1, "pid": 1}),
    ("step_start", {"step": 2, "member": 3, "type": "text_to_image", "model": "flux", "name": None, "attempt": 3}),
    ("step_start", {"step": 1, "type": "parallel", "members": 4, "merge_strategy": "merge"}),
    ("step_complete", STEP),
    ("step_complete", {**STEP, "cost": 1.23456789, "duration_seconds": math.inf, "cpu_seconds": math.nan,
                       "peak_rss_bytes": 2 ** 63 - 1}),
    ("step_complete", {**STEP, "output": Path("/tmp") / SECRET, "outputs": [SECRET, ENV_SECRET, "x"]}),
    ("step_error", {"step": 0, "type": "python", "reason": "exception", "error": f"ValueError: bad {SECRET}\nmore",
                    "traceback": f"Traceback (most recent call last):\n  File x\nKeyError({ENV_SECRET!r})"}),
    ("step_retry", {"step": 0, "attempt": 2, "reason": "timeout", "delay_seconds": 0.5, "error": "took too long"}),
    ("step_skipped", {"step": 4, "type": "python", "reason": "reused"}),
    ("step_progress", {"step": 0, "fraction": 0.25, "message": None}),
    ("step_progress", {"step": 0, "fraction": 1 / 3, "message": "halfway ünïcode 🎉"}),
    ("step_progress", {"step": 0, "fraction": 0.5}),
    ("step_log", {"step": 0, "stream": "stdout", "line": "plain line"}),
    ("step_log", {"step": 0, "stream": "stderr", "line": f"secret {SECRET} and {ENV_SECRET} here"}),
    ("step_log", {"step": 0, "stream": "log", "line": "ctx log", "log_level": "WARN",
                  "fields": {"k": 1, "nested": {"deep": [1, 2.5, None, -0.0]}, "token": "hidden-by-name"}}),
    ("step_log", {"step": 0, "stream": "log", "line": "exception level", "log_level": "exception"}),
    ("step_log", {"step": 0, "stream": "odd", "line": 12345}),
    ("step_log", {"step": 0, "line": "x" * 5000 + "é" * 100}),
    ("step_log", {"step": 0, "stream": "stdout", "line": "\x00\x1b[31m\u2028 tab\t \"q\" \\ {brace}", "truncated": True}),
    ("warning", {"message": f"cannot write: {SECRET}", "dropped_lines": 3}),
    ("run_end", {"success": False, "exit_code": 5, "error": f"step 2 failed: {SECRET}", "steps_completed": 1,
                 "total_steps": 3, "total_cost": None, "total_time": None}),
    ("job_complete", {"job_id": "j1", "status": "failed", "success": False, "exit_code": 3, "error": "boom"}),
    ("custom_event", {"when": dt.datetime(2024, 1, 2, 3, 4, 5), "date": dt.date(2024, 1, 2), "path": Path("/x"),
                      "b": b"bytes", "tuple": (1, "two", (3,)), "set": {1}, "enum": Colour.RED, "sub": Key("v"),
                      "nested": {Key("k"): 1, 2: "int key", None: "none key", 1.5: "float key"},
                      "neg": -0.0, "tiny": 5e-324, "large": 1e300, "flag": False}),
    ("custom_event", {Key("subclass_key"): 1, "Colour": Colour.RED}),
    ("custom_event", {"Authorization": "Bearer abcdefgh", "token_count": 5, "password": None, "x-api-key": "hide"}),
    ("custom_event", {"message": f"own message {SECRET}", "x": {"y": {"z": SECRET}}, "level": "ignored"}),
    ("custom_event", {"m": "A" * 400, "unicode": "ünïcödé ☕ 𝄞", "control": "\x07\x7f"}),
]


class _Capture:
    """structlog's final 'logger': keeps what the processors hand it."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def msg(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append((args, kwargs))

    debug = info = warning = error = critical = msg


class _Clock:
    """The envelope's clocks, one (wall, monotonic) pair per event."""

    def __init__(self) -> None:
        self.wall, self.mono = CLOCKS[0]

    def at(self, index: int) -> None:
        self.wall, self.mono = CLOCKS[index % len(CLOCKS)]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> _Clock:
    state = _Clock()
    monkeypatch.setattr(_events, "_wall", lambda: state.wall)
    monkeypatch.setattr(_events, "_monotonic", lambda: state.mono)
    monkeypatch.setenv("MY_SERVICE_TOKEN", ENV_SECRET)
    return state


def _lines(routes: list[tuple[list[Any], bytes]]) -> list[bytes]:
    return [line for _writers, line in routes]


def _structlog_lines(log: EventLog, event: str, fields: dict[str, Any]) -> list[bytes]:
    """What a structlog bound logger with the lifecycle chain's processors renders for ``event``."""
    capture = _Capture()
    bound = structlog.wrap_logger(capture, processors=log._lifecycle.processors,
                                  wrapper_class=structlog.BoundLogger, context_class=dict)
    getattr(bound, level_of(event, fields))(event, **fields)
    if not capture.calls:
        return []
    (result,), _kwargs = capture.calls[0]
    return [result] if isinstance(result, bytes) else _lines(result)


def _emit_lines(log: EventLog, path: Path, event: str, fields: dict[str, Any]) -> list[bytes]:
    before = path.read_bytes() if path.exists() else b""
    log.emit(event, **fields)
    log._files[0].sink().flush()
    return [(path.read_bytes()[len(before):])]


@pytest.mark.parametrize("log_format", ["json", "ecs", "otel"])
@pytest.mark.parametrize("context", [None, {"batch_id": "b1", "job_id": "j7"}])
def test_emit_renders_what_a_structlog_bound_logger_renders(tmp_path, clock, log_format, context):
    path = tmp_path / "events.jsonl"
    log = EventLog(log_file=str(path), run_id=RUN_ID, secrets=[SECRET], log_format=log_format, context=context)
    log.started = STARTED
    for processor in log._lifecycle.processors:
        if isinstance(processor, _events._Envelope):
            processor.started = STARTED
    rendered = 0
    for index, (event, fields) in enumerate(EVENTS):
        clock.at(index)
        try:
            expected = _structlog_lines(log, event, dict(fields))
        except (TypeError, ValueError, OverflowError) as exc:  # cannot be rendered: emit fails the same way
            with pytest.raises(type(exc)):
                log.emit(event, **fields)
            continue
        got = _emit_lines(log, path, event, dict(fields))
        assert [b"".join(expected)] == got, (event, fields)
        clock.at(index)
        assert _lines(log._render(log._lifecycle, event, dict(fields), level_of(event, fields))) == expected
        rendered += 1
    log.close()
    assert rendered >= len(EVENTS) - 2
    text = path.read_bytes()
    assert SECRET.encode() not in text and b"zzzz-hidden" not in text and b"hidden-by-name" not in text


def test_the_lines_are_pinned(tmp_path, clock):
    """Key order, number and time formatting, masking: these exact bytes."""
    path = tmp_path / "events.jsonl"
    log = EventLog(log_file=str(path), run_id=RUN_ID, secrets=[SECRET])
    for processor in log._lifecycle.processors:
        if isinstance(processor, _events._Envelope):
            processor.started = STARTED
    clock.at(0)
    log.emit("step_start", step=0, type="python", model=None, name="render", attempt=2, pid=7)
    clock.at(4)
    log.emit("step_complete", **{**STEP, "cost": 0.25, "outputs": [f"/o/{SECRET}.png"]})
    clock.at(3)
    log.emit("step_log", step=0, stream="stderr", line=f"é {ENV_SECRET} \"q\"")
    clock.at(9)
    log.emit("custom_event", nested={2: (1, 2.5)}, when=dt.datetime(2024, 1, 2), password="pw-1234")
    log.close()
    assert path.read_bytes().decode().splitlines() == [
        '{"schema_version":"1","event":"step_start","timestamp":1764659342.9995,"elapsed_seconds":0.0,'
        '"level":"info","run_id":"0123456789abcdef","time":"2025-12-02T07:09:02.999Z","source":"aicp",'
        '"message":"step 1 \'render\' (python) started, attempt 2","step":0,"type":"python","model":null,'
        '"name":"render","attempt":2,"pid":7}',
        '{"schema_version":"1","event":"step_complete","timestamp":1795608946.7012346,"elapsed_seconds":2.0,'
        '"level":"info","run_id":"0123456789abcdef","time":"2026-11-25T12:15:46.701Z","source":"aicp",'
        '"message":"step 2 (text_to_image/title_card) completed in 0.12s, $0.250","step":1,'
        '"type":"text_to_image","model":"title_card","name":null,"attempt":1,"cost":0.25,'
        '"output":"/tmp/out/step_1_1.png","outputs":["/o/***.png"],"pid":12345,"duration_seconds":0.123,'
        '"peak_rss_bytes":31457280,"cpu_seconds":0.1}',
        '{"schema_version":"1","event":"step_log","timestamp":1764659343.999999,"elapsed_seconds":1.235,'
        '"level":"info","run_id":"0123456789abcdef","time":"2025-12-02T07:09:03.999Z","source":"step.stderr",'
        '"message":"é *** \\"q\\"","step":0,"stream":"stderr","line":"é *** \\"q\\""}',
        '{"schema_version":"1","event":"custom_event","timestamp":1764659399.5,"elapsed_seconds":0.0,'
        '"level":"info","run_id":"0123456789abcdef","time":"2025-12-02T07:09:59.500Z","source":"aicp",'
        '"message":"custom event","nested":{"2":[1,2.5]},"when":"2024-01-02T00:00:00","password":"***"}',
    ]


def _floats() -> list[float]:
    rng = random.Random(12)
    values = [0.0, -0.0, 5e-324, 1e-10, 0.0004999, 0.0005, 0.0015, 0.0025, 1.0005, 2.0005, 999999.9995,
              1e6, math.nextafter(1e6, 0), 1e7, 1e300, -1.5, -0.0005, math.nan, math.inf, -math.inf]
    for k in range(0, 2_000_000, 997):  # every kind of half-way point, and the floats either side of it
        x = k / 1000 + 0.0005
        values += [x, math.nextafter(x, 0), math.nextafter(x, math.inf)]
    for _ in range(20000):
        values += [rng.uniform(0, 10), rng.uniform(0, 1e6), rng.uniform(1e5, 2e6),
                   struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0]]
    return values


def test_round_millis_is_round_to_three_decimals():
    for value in _floats():
        assert repr(round_millis(value)) == repr(round(value, 3)), value


def test_rfc3339_is_the_instant_strftime_gives():
    rng = random.Random(3)
    stamps = [0.0, 0.0005, 0.9995, 0.999999, 1.0, 1764659342.9995, 1764659342.0005, 1764659343.999999,
              4102444800.123, 253402300799.999]
    stamps += [rng.uniform(0, 4e9) for _ in range(5000)]
    stamps += [float(int(s)) + m / 1000 for s in stamps[:50] for m in (0, 1, 499, 500, 998, 999)]
    for stamp in sorted(stamps, key=lambda _: rng.random()):  # seconds out of order: the cache must follow
        millis = int(stamp * 1000)
        expected = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(millis // 1000)) + f".{millis % 1000:03d}Z"
        assert rfc3339(stamp) == expected, stamp
