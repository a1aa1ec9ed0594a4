"""The relay's fast paths against their references.

* ``EventLog.step_output`` renders a batch of ``step_log`` lines with one pass
  of the structlog pipeline; its bytes must be exactly what ``emit`` renders
  line by line, for every shape of event, with secrets, in batch-job context.
  Any later change to the pipeline that the fast path would miss (a processor
  that rewrites the line, a new field derived from it) must fail here, or make
  the fast path fall back to the pipeline, which is checked too.
* ``LineSplitter`` cuts chunks in batches; whatever the chunking, it must give
  the lines that the plain per-line rule gives (8 KiB cut, CR LF, bad UTF-8).
* ``Sink`` (one output's writer thread): backpressure, drops counted and
  reported, whole lines on a real pipe, a failing output given up.
"""

from __future__ import annotations

import fcntl
import os
import random
import sys
import termios
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from aicp import _events, _sink
from aicp._events import EventLog
from aicp._process.lines import LineSplitter

SECRETS = ["sk-live-0123456789", 'quo"te\\secret', "ünïcode-sëcret", "multi\nline-secret"]

LINES = [
    "", " ", "plain ascii line", "line with \"quotes\" and \\backslashes\\", "tab\there", "nul \x00 byte",
    "escape \x1b[31mred\x1b[0m", "ünïcödé ☕ 𝄞 emoji 🎉", "\ufffd\ufffd replaced bytes", "{\"event\": \"step_complete\"}",
    '{"k": "result", "value": {"output": "forged"}}', "WARNING: looks like a level", "ERROR something failed",
    "a secret sk-live-0123456789 inside", 'another quo"te\\secret here', "ünïcode-sëcret", "multi", "line-secret",
    "token=abc password=hunter2 (names, not values)", "x" * 8192, "é" * 4096, "\u2028 line separator \u2029",
    "trailing spaces   ", "   leading spaces", "ends with a backslash \\", "ends with a quote and a comma \",",
]


@pytest.fixture
def frozen(monkeypatch):
    """One instant for every event: renders at different moments compare byte for byte."""
    for name in ("_wall", "_monotonic"):  # the envelope's clocks, whatever they are bound to
        if hasattr(_events, name):
            monkeypatch.setattr(_events, name, {"_wall": lambda: 1795608946.7012345, "_monotonic": lambda: 1234.5}[name])
    monkeypatch.setattr(_events.time, "time", lambda: 1795608946.7012345)
    monkeypatch.setattr(_events.time, "monotonic", lambda: 1234.5)


def _bytes_of(tmp_path: Path, name: str, write: Any, **options: Any) -> bytes:
    path = tmp_path / name
    log = EventLog(log_file=str(path), run_id="0123456789abcdef", secrets=SECRETS, **options)
    write(log)
    log.close()
    return path.read_bytes()


SHAPES = [
    ({"step": 0}, "stdout", False),
    ({"step": 3}, "stderr", False),
    ({"step": 2, "member": 1}, "stdout", False),
    ({"step": 0}, "stdout", True),
    ({"step": 1, "member": 0}, "stderr", True),
]


@pytest.mark.parametrize("base, stream, truncated", SHAPES)
@pytest.mark.parametrize("context", [None, {"batch_id": "b1", "job_id": "j7", "job_attempt": 1}])
def test_step_output_renders_the_pipelines_bytes(tmp_path, frozen, base, stream, truncated, context):
    extra = {"truncated": True} if truncated else {}
    lines = [line[:8192] for line in LINES]

    def fast(log: EventLog) -> None:
        log.step_output(base, stream, lines, truncated)
        log.step_output(base, stream, lines[:1], truncated)
        log.step_output(base, stream, lines[::-1], truncated)

    def pipeline(log: EventLog) -> None:
        for line in lines + lines[:1] + lines[::-1]:
            log.emit("step_log", **base, stream=stream, line=line, **extra)

    expected = _bytes_of(tmp_path, "pipeline.jsonl", pipeline, context=context)
    assert _bytes_of(tmp_path, "fast.jsonl", fast, context=context) == expected
    assert expected.count(b"\n") == 2 * len(lines) + 1
    for secret in SECRETS:
        for form in (secret.encode(), _events.orjson.dumps(secret)[1:-1]):
            assert form not in expected or "\n" in secret


def test_step_output_renders_the_pipelines_bytes_for_random_lines(tmp_path, frozen):
    rng = random.Random(12)
    alphabet = "ab \"\\\t\x00\x1fé☕🎉{}:,\u2028" + "sk-live-0123456789"
    lines = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300))) for _ in range(2000)]

    def fast(log: EventLog) -> None:
        for start in range(0, len(lines), 97):
            log.step_output({"step": 4}, "stderr", lines[start:start + 97])

    def pipeline(log: EventLog) -> None:
        for line in lines:
            log.emit("step_log", step=4, stream="stderr", line=line)

    assert _bytes_of(tmp_path, "fast.jsonl", fast) == _bytes_of(tmp_path, "pipeline.jsonl", pipeline)


def test_step_output_with_an_observer_gives_it_every_line(tmp_path, frozen):
    seen: list[dict[str, Any]] = []
    observed = _bytes_of(tmp_path, "fast.jsonl", lambda log: log.step_output({"step": 0}, "stdout", LINES[:5]),
                         observer=seen.append)
    assert [e["line"] for e in seen] == LINES[:5]
    plain = _bytes_of(tmp_path, "plain.jsonl", lambda log: log.step_output({"step": 0}, "stdout", LINES[:5]))
    assert observed == plain


def _fast_and_slow(tmp_path: Path, processor: Any, position: int, lines: list[str]) -> tuple[bytes, bytes]:
    """The bytes of ``lines`` relayed by step_output and emitted one by one, with ``processor``
    put into the pipeline at ``position``."""

    def with_processor(write: Any) -> Any:
        def run(log: EventLog) -> None:
            log._lifecycle.processors.insert(position, processor)
            write(log)
        return run

    fast = _bytes_of(tmp_path, "fast.jsonl", with_processor(lambda log: log.step_output({"step": 0}, "stdout", lines)))
    slow = _bytes_of(tmp_path, "slow.jsonl", with_processor(
        lambda log: [log.emit("step_log", step=0, stream="stdout", line=line) for line in lines]))
    return fast, slow


@pytest.mark.parametrize("rewrite", [
    lambda line: line[:100],  # a processor that shortens lines
    lambda line: line.strip(),  # one that strips them
    lambda line: line.upper(),  # one that rewrites them
])
def test_step_output_follows_a_pipeline_that_rewrites_lines(tmp_path, frozen, rewrite):
    """A processor the fast path cannot reproduce by substitution: it must use the pipeline."""

    def processor(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        if isinstance(event_dict.get("line"), str):
            event_dict["line"] = rewrite(event_dict["line"])
        return event_dict

    fast, slow = _fast_and_slow(tmp_path, processor, 1, [line for line in LINES if "\n" not in line])
    assert fast == slow


def test_step_output_follows_a_field_derived_from_the_line(tmp_path, frozen):
    """A new field copied from the line (a ``message``, say) is filled in too."""

    def processor(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        if "line" in event_dict:
            event_dict["message"] = event_dict["line"]
        return event_dict

    fast, slow = _fast_and_slow(tmp_path, processor, 2, LINES)
    assert fast == slow and b'"message":"plain ascii line"' in fast


# ----------------------------------------------------------------------------- LineSplitter


def _reference(data: bytes, limit: int) -> list[tuple[str, bool]]:
    """The per-line rule: cut at ``limit`` bytes (the rest of the line dropped), CR LF, UTF-8 replaced."""
    *whole, last = data.split(b"\n")
    out = []
    for line in whole + ([last] if last else []):
        cut = len(line) > limit
        line = line[:limit] if cut else line
        if line.endswith(b"\r"):
            line = line[:-1]
        out.append((line.decode("utf-8", "replace"), cut))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_line_splitter_gives_the_per_line_rule_whatever_the_chunks(seed):
    rng = random.Random(seed)
    limit = rng.choice([16, 64, 8192])
    pieces = [b"\n", b"\r\n", b"a", b"xyz", b"\xe2\x82\xac", b"\xff", b"\xe2\x82", b"\r", b"{}"]
    data = b"".join(rng.choice(pieces) * rng.choice([1, 1, 2, 7, 40]) for _ in range(3000))
    got: list[tuple[str, bool]] = []
    splitter = LineSplitter(limit, lambda lines, cut: got.extend((line, cut) for line in lines))
    pos = 0
    while pos < len(data):
        size = rng.choice([1, 2, 3, 17, 100, 4096, 65536])
        splitter.feed(data[pos:pos + size])
        pos += size
    splitter.close()
    assert got == _reference(data, limit)


# ----------------------------------------------------------------------------- Sink


def _read_all(fd: int, into: list[bytes]) -> None:
    while chunk := os.read(fd, 1 << 16):
        into.append(chunk)


def test_sink_backpressure_drops_and_recovery_on_a_real_pipe(monkeypatch):
    monkeypatch.setattr(_sink, "SOFT_LIMIT", 64 * 1024)
    monkeypatch.setattr(_sink, "RELAY_LIMIT", 256 * 1024)
    read_end, write_end = os.pipe()
    sink = _sink.Sink(write_end, "test-pipe")
    recovered: list[int] = []
    sink.on_recover = lambda s, lines: recovered.append(lines)
    line = b'{"n": "' + b"y" * 90 + b'"}\n'  # 100 bytes
    accepted = sum(sink.put(line * 10, relay=True) for _ in range(1000))  # 1 MB offered, nobody reads
    assert sink.congested()
    assert 200 < accepted < 400, accepted  # about RELAY_LIMIT plus what the pipe took
    assert sink.dropped == (1000 - accepted) * 10
    assert sink.put(b'{"control": true}\n')  # other events still have room
    assert sink.flush(stall=0.3) is False  # nobody reads: given up, not waited for forever
    chunks: list[bytes] = []
    reader = threading.Thread(target=_read_all, args=(read_end, chunks))
    reader.start()
    assert sink.flush(stall=5)
    deadline = time.monotonic() + 10
    while not recovered and time.monotonic() < deadline:
        time.sleep(0.01)
    assert recovered == [(1000 - accepted) * 10]
    os.close(write_end)
    reader.join(10)
    os.close(read_end)
    data = b"".join(chunks)
    assert data.count(line) == accepted * 10 and data.endswith(b'{"control": true}\n')
    assert not sink.congested()


def test_sink_writes_whole_lines_that_fit_the_pipe(monkeypatch):
    """Each write holds whole lines: more than PIPE_BUF bytes of them only into an empty pipe
    (all of it goes in at once), else at most PIPE_BUF (atomic); a longer line alone."""
    read_end, write_end = os.pipe()
    sizes: list[int] = []
    real_write = os.write

    def recording(fd: int, data: Any) -> int:
        if fd == write_end:
            chunk = bytes(data)
            assert chunk.endswith(b"\n")
            if len(chunk) > _sink.PIPE_BUF and chunk.count(b"\n") > 1:
                unread = bytearray(4)
                fcntl.ioctl(write_end, termios.FIONREAD, unread)
                assert int.from_bytes(unread, sys.byteorder) == 0 and len(chunk) <= 65536
            else:
                sizes.append(len(chunk))
        return real_write(fd, data)

    monkeypatch.setattr(_sink.os, "write", recording)
    sink = _sink.Sink(write_end, "test-pipe")
    lines = [b"%d %s\n" % (i, b"z" * (i * 37 % 9000)) for i in range(400)]
    chunks: list[bytes] = []
    reader = threading.Thread(target=_read_all, args=(read_end, chunks))
    reader.start()
    for i in range(0, 400, 40):
        sink.put(b"".join(lines[i:i + 40]), relay=True)
    assert sink.flush()
    os.close(write_end)
    reader.join(10)
    os.close(read_end)
    assert b"".join(chunks) == b"".join(lines)
    long_lines = {len(line) for line in lines if len(line) > _sink.PIPE_BUF}
    assert all(size <= _sink.PIPE_BUF or size in long_lines for size in sizes)


def _recording_writes(monkeypatch: pytest.MonkeyPatch, fd: int) -> list[bytes]:
    """Every os.write to ``fd`` from now on, as bytes (written through)."""
    writes: list[bytes] = []
    real_write = os.write

    def recording(to: int, data: Any) -> int:
        if to == fd:
            writes.append(bytes(data))
        return real_write(to, data)

    monkeypatch.setattr(_sink.os, "write", recording)
    return writes


def test_an_event_after_a_quiet_moment_is_in_the_pipe_when_put_returns(monkeypatch):
    """The first line after a quiet moment is written by the caller itself: a reader following the
    run (or a kill -9 right after) sees it at once."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    sink = _sink.Sink(write_end, "test-pipe")
    writes = _recording_writes(monkeypatch, write_end)
    for i in range(3):
        time.sleep(_sink.COALESCE * 3)
        line = b'{"n": %d}\n' % i
        assert sink.put(line)
        assert os.read(read_end, 1 << 16) == line
    assert writes == [b'{"n": 0}\n', b'{"n": 1}\n', b'{"n": 2}\n']
    sink.close()
    os.close(write_end)
    os.close(read_end)


def test_a_burst_is_written_a_pipe_buffer_at_a_time_by_the_caller(monkeypatch):
    """While a burst's lines keep coming into a pipe with room, the caller itself writes them, as
    many whole lines as fit PIPE_BUF per write (a write that can neither block nor be split): no
    burst piles up waiting for the writer thread. The tail follows on its own."""
    read_end, write_end = os.pipe()  # 64 KiB of room and nobody reading: nothing here may block
    sink = _sink.Sink(write_end, "test-pipe")
    writes = _recording_writes(monkeypatch, write_end)
    by_caller: list[bytes] = []
    recording = _sink.os.write

    def noting_the_caller(fd: int, data: Any) -> int:
        if fd == write_end and threading.current_thread() is threading.main_thread():
            by_caller.append(bytes(data))
        return recording(fd, data)

    monkeypatch.setattr(_sink.os, "write", noting_the_caller)
    lines = [b'{"n": %d, "pad": "%s"}\n' % (i, b"q" * 80) for i in range(300)]  # about 30 KiB
    for line in lines:
        assert sink.put(line)
    # the first line at once, then (unless the machine stalled the loop a millisecond at a time)
    # a pipe buffer at a time, each as full as whole lines make it
    assert by_caller[0] == lines[0]
    full = [w for w in by_caller[1:] if len(w) + len(lines[0]) > _sink.PIPE_BUF]
    assert len(full) >= 4, [len(w) for w in by_caller]
    assert all(len(w) <= _sink.PIPE_BUF and w.endswith(b"\n") for w in by_caller)
    deadline = time.monotonic() + 10
    while sum(map(len, writes)) < sum(map(len, lines)) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert os.read(read_end, 1 << 20) == b"".join(lines)
    sink.close()
    os.close(write_end)
    os.close(read_end)


@pytest.mark.parametrize("output", ["pipe", "file"])
def test_a_burst_shares_writes_and_every_line_arrives_without_a_flush(monkeypatch, tmp_path, output):
    """Lines that come faster than one a millisecond wait (about that long) to share a write with
    the next ones: far fewer writes than lines, each of whole lines and at most one piece, all in
    order, and the burst's last lines arrive on their own (no flush, no later event)."""
    if output == "pipe":
        read_end, write_end = os.pipe()
    else:
        path = tmp_path / "events.jsonl"
        write_end = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    sink = _sink.Sink(write_end, "test-output")
    writes = _recording_writes(monkeypatch, write_end)
    lines = [b'{"n": %d, "pad": "%s"}\n' % (i, b"p" * (i % 300)) for i in range(5000)]
    chunks: list[bytes] = []
    if output == "pipe":
        reader = threading.Thread(target=_read_all, args=(read_end, chunks), daemon=True)
        reader.start()
    for line in lines:
        assert sink.put(line)
    expected = b"".join(lines)
    deadline = time.monotonic() + 10
    while sum(map(len, writes)) < len(expected) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert b"".join(writes) == expected
    assert len(writes) < len(lines) / 10, len(writes)
    assert all(w.endswith(b"\n") and len(w) <= _sink.PIECE for w in writes)
    sink.close()
    os.close(write_end)
    if output == "pipe":
        reader.join(10)
        os.close(read_end)
        assert b"".join(chunks) == expected
    else:
        assert (tmp_path / "events.jsonl").read_bytes() == expected


def test_a_failing_output_is_given_up_and_reported(tmp_path):
    errors: list[OSError] = []
    sink = _sink.Sink(os.open("/dev/full", os.O_WRONLY), "/dev/full", owned=True)
    sink.on_error = lambda s, exc: errors.append(exc)
    sink.put(b"a line\n")
    sink.close()
    assert [e.strerror for e in errors] == [os.strerror(28)]  # ENOSPC
    assert sink.broken and not sink.put(b"more\n")


def test_a_log_file_that_fails_mid_run_is_reported_on_the_others(tmp_path, capsys):
    log = EventLog(stream=True, log_file="/dev/full", run_id="r")
    log.emit("step_start", step=0)
    log.close()
    err = capsys.readouterr().err
    assert '"event":"step_start"' in err and "cannot write events to /dev/full" in err


def test_step_output_is_exact_when_a_step_prints_the_relays_own_markers(tmp_path, frozen):
    """The markers the fast path puts between a line's appearances are text a step could print."""
    lines = ["before", _events._MARKS[0], "between", _events._BETWEEN, _events._MARKS[1], "after"]
    fast = _bytes_of(tmp_path, "fast.jsonl", lambda log: log.step_output({"step": 0}, "stdout", lines))
    slow = _bytes_of(tmp_path, "slow.jsonl",
                     lambda log: [log.emit("step_log", step=0, stream="stdout", line=line) for line in lines])
    assert fast == slow


def test_step_output_with_a_line_in_three_places(tmp_path, frozen):
    def processor(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        if "line" in event_dict:
            event_dict["copy_one"] = event_dict["copy_two"] = event_dict["line"]
        return event_dict

    fast, slow = _fast_and_slow(tmp_path, processor, 2, LINES)
    assert fast == slow and b'"copy_two":"plain ascii line"' in fast
