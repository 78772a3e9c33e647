"""The bounds on a function's output, without a daemon: LogCapture's reads and budget, and the
log writer thread's queue, fed through real pipes."""

from __future__ import annotations

import asyncio
import fcntl
import io
import json
import os
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from fnhost.control.config import Settings, load_config_file, settings_from
from fnhost.errors import ConfigError
from fnhost.execution import logcapture
from fnhost.execution.logcapture import LOG_MAX_BYTES, READ_MAX, LogCapture
from fnhost.execution.spawn import WorkerSpec
from fnhost.observability import logs
from fnhost.observability.logs import LineWriter

LINE = b"y" * 99 + b"\n"


class Sink:
    """The read end of a pipe, read to the end by a thread: what a LineWriter wrote."""

    def __init__(self, fds: tuple[int, int] | None = None) -> None:
        self.r, self.w = fds or os.pipe()
        self.data = bytearray()
        self._thread = threading.Thread(target=self._run)

    def start(self) -> Sink:
        self._thread.start()
        return self

    def _run(self) -> None:
        while chunk := os.read(self.r, 65536):
            self.data += chunk

    def settle(self) -> bytes:
        """What was read once the pipe is empty and the reader has stored it."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            size = len(self.data)
            if unread(self.r) == 0:
                time.sleep(0.01)
                if len(self.data) == size and unread(self.r) == 0:
                    break
            time.sleep(0.001)
        return bytes(self.data)

    def close(self) -> bytes:
        os.close(self.w)
        self._thread.join(10)
        os.close(self.r)
        return bytes(self.data)


def parsed(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode().splitlines()]


def unread(fd: int) -> int:
    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4), "little")


@pytest.fixture
def sink(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sink]:
    """JSON mode, as a service runs: function lines go through a LineWriter into this sink."""
    s = Sink().start()
    writer = LineWriter(s.w)
    monkeypatch.setattr(logs._Mode, "writer", writer)
    monkeypatch.setattr(logs._Mode, "fast_reports", True)
    monkeypatch.setattr(logs._Mode, "prefix", "")
    yield s
    writer.flush(5)
    if s.w >= 0:
        s.close()


class Pipes:
    def __init__(self, max_bytes: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.out_r, self.out_w = os.pipe()
        self.err_r, self.err_w = os.pipe()
        fcntl.fcntl(self.out_w, fcntl.F_SETPIPE_SZ, 1024 * 1024)
        self.capture = LogCapture("fn", self.out_r, self.err_r, self.loop, max_bytes)

    def print(self, data: bytes, fd: int | None = None) -> None:
        os.write(self.out_w if fd is None else fd, data)

    def read_all(self) -> None:
        """Readable callbacks until both pipes are empty."""
        while unread(self.out_r) or unread(self.err_r):
            for fd in (self.out_r, self.err_r):
                if unread(fd):
                    self.capture._on_readable(fd)

    def close(self) -> None:
        os.close(self.out_w)
        os.close(self.err_w)
        self.capture.close()
        self.loop.close()


@pytest.fixture
def pipes(request: pytest.FixtureRequest) -> Iterator[Pipes]:
    p = Pipes(getattr(request, "param", 10_000))
    yield p
    p.close()


def events_of(sink: Sink) -> list[dict]:
    assert logs._Mode.writer is not None and logs._Mode.writer.flush(5)
    return parsed(sink.settle())


# --- LogCapture ----------------------------------------------------------------------------------


@pytest.mark.parametrize("pipes", [LOG_MAX_BYTES], indirect=True)
def test_one_bounded_read_per_callback(sink: Sink, pipes: Pipes) -> None:
    pipes.print(LINE * 3000)  # 300 kB waiting
    pipes.capture.begin("r1")
    pipes.capture._on_readable(pipes.out_r)
    assert unread(pipes.out_r) == 3000 * len(LINE) - READ_MAX
    assert len(events_of(sink)) == READ_MAX // len(LINE)


def test_budget_then_one_marker_then_nothing(sink: Sink, pipes: Pipes) -> None:
    pipes.capture.begin("r1")
    pipes.print(LINE * 500)  # 50 kB of text, far more as log events
    pipes.print(b"e" * 50 + b"\n", pipes.err_w)
    pipes.read_all()
    assert unread(pipes.out_r) == 0, "what is over the budget is still read (and dropped)"
    kept = pipes.capture.end()
    events = events_of(sink)
    *lines, marker = events
    assert sum(len(json.dumps(e)) + 1 for e in events) <= 10_000  # the marker inside the budget too
    assert all(e["line"] == LINE[:-1].decode() and e["request_id"] == "r1" for e in lines)
    assert marker["line"] == logcapture.truncation_marker(10_000, True).decode()
    assert "this invocation's output took more than 10000 bytes" in marker["line"]
    assert kept.endswith(logcapture.truncation_marker(10_000, True) + b"\n")
    assert kept.count(b"\n") == len(events)
    # The next invocation has its budget again.
    pipes.capture.begin("r2")
    pipes.print(b"second\n")
    pipes.read_all()
    assert pipes.capture.end() == b"second\n"
    assert events_of(sink)[-1]["line"] == "second"


def test_empty_lines_pay_for_their_events(sink: Sink, pipes: Pipes) -> None:
    pipes.capture.begin("r1")
    pipes.print(b"\n" * 60_000)
    pipes.read_all()
    pipes.capture.end()
    assert len(events_of(sink)) < 10_000 // 100
    assert sum(len(line) + 1 for line in sink.data.splitlines()[:-1]) <= 10_000


def test_between_invocations_has_its_own_budget(sink: Sink, pipes: Pipes) -> None:
    pipes.print(LINE * 300)
    pipes.read_all()
    events = events_of(sink)
    assert all(e["request_id"] is None for e in events)
    assert "this worker's output between invocations took more than 10000 bytes" in events[-1]["line"]
    pipes.capture.begin("r1")
    pipes.print(b"inside\n")
    pipes.read_all()
    assert pipes.capture.end() == b"inside\n"
    pipes.print(b"after\n")  # and after the invocation, a fresh one
    pipes.read_all()
    assert events_of(sink)[-1] == {**events_of(sink)[-1], "line": "after", "request_id": None}


@pytest.mark.parametrize("pipes", [LOG_MAX_BYTES], indirect=True)
def test_long_lines_are_logged_in_pieces(sink: Sink, pipes: Pipes) -> None:
    pipes.capture.begin("r1")
    pipes.print(b"z" * (logcapture.LINE_MAX * 2 + 10) + b"\n")
    pipes.read_all()
    pipes.capture.end()
    assert [len(e["line"]) for e in events_of(sink)] == [logcapture.LINE_MAX, logcapture.LINE_MAX, 10]


def test_drain_is_bounded_while_a_descendant_keeps_writing(sink: Sink, pipes: Pipes) -> None:
    stop = threading.Event()

    def descendant() -> None:
        while not stop.is_set():
            os.write(pipes.out_w, LINE * 100)

    writing = threading.Thread(target=descendant)
    writing.start()
    try:
        time.sleep(0.05)
        started = time.perf_counter()
        pipes.capture.drain()
        pipes.capture.stderr_tail(100)
        assert time.perf_counter() - started < 1.0
    finally:
        stop.set()
        pipes.read_all()  # let the writer's last write() return
        writing.join(5)
    assert not writing.is_alive()


def test_console_mode_is_bounded_too(monkeypatch: pytest.MonkeyPatch, pipes: Pipes) -> None:
    out = io.StringIO()
    monkeypatch.setattr(logs._Mode, "writer", None)
    console = structlog.wrap_logger(structlog.WriteLogger(out),
                                    processors=[structlog.dev.ConsoleRenderer(colors=False)])
    monkeypatch.setattr(logs, "_function_log", console)
    pipes.capture.begin("r1")
    pipes.print(LINE * 500)
    pipes.read_all()
    pipes.capture.end()
    lines = out.getvalue().splitlines()
    # What fits beside the room kept for the marker, and the marker.
    assert len(lines) == (10_000 - logcapture.MARKER_RESERVE) // (len(LINE) - 1 + logs.CONSOLE_ENVELOPE) + 1
    assert "output truncated" in lines[-1]


# --- the JSON lines are structlog's --------------------------------------------------------------


def test_function_lines_are_what_structlog_writes(sink: Sink) -> None:
    logs.function_lines("fn", "r1", "stderr", ['a "quoted" \\ line \x01 é'.encode()])
    logs.function_lines("fn", None, "stdout", [b"\xff not utf-8"])
    ours = [json.dumps(e) for e in events_of(sink)]
    out = io.StringIO()
    structlog_logger = structlog.wrap_logger(structlog.WriteLogger(out), processors=[
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        structlog.processors.JSONRenderer(),
    ])
    structlog_logger.info("function_log", function="fn", request_id="r1", stream="stderr",
                          line='a "quoted" \\ line \x01 é')
    structlog_logger.info("function_log", function="fn", request_id=None, stream="stdout",
                          line=b"\xff not utf-8".decode(errors="replace"))
    theirs = out.getvalue().splitlines()
    assert len(ours) == len(theirs) == 2
    for a, b in zip(ours, theirs):
        stamp_a, stamp_b = json.loads(a)["timestamp"], json.loads(b)["timestamp"]
        assert len(stamp_a) == 27 and stamp_a.endswith("Z")
        assert a.replace(stamp_a, "T") == b.replace(stamp_b, "T")


# --- the writer thread ---------------------------------------------------------------------------


def test_writer_drops_and_counts_when_stderr_is_full() -> None:
    r, w = os.pipe()  # nobody reads until the end: the writer's thread blocks on a full pipe
    writer = LineWriter(w, max_bytes=64 * 1024)
    accepted: list[bytes] = []
    dropped = 0
    slowest = 0.0
    i = 0
    while dropped < 100:
        line = b'{"n": %d}\n' % i
        i += 1
        started = time.perf_counter()
        ok = writer.write(line)
        slowest = max(slowest, time.perf_counter() - started)
        if ok:
            accepted.append(line)
        else:
            dropped += 1
    assert slowest < 0.05, "write() waited on the full pipe"
    assert writer.dropped_total == dropped
    sink = Sink((r, w)).start()
    assert writer.flush(5)
    data = sink.close()
    lines = data.splitlines(keepends=True)
    notices = [json.loads(line) for line in lines if b"function_log_dropped" in line]
    assert [line for line in lines if b"function_log_dropped" not in line] == accepted
    # One notice per batch the writer took while lines were being dropped: usually one, two when
    # the thread took its first batch after the first drops. Together they count every drop.
    assert 1 <= len(notices) <= 2, notices
    assert sum(n["dropped_lines"] for n in notices) == dropped
    assert all(n["event"] == "function_log_dropped" and n["level"] == "warning" for n in notices)
    assert lines[-1] == json.dumps(notices[-1]).encode() + b"\n"


def test_writer_keeps_whole_lines_beside_structlog() -> None:
    sink = Sink().start()
    writer = LineWriter(sink.w)
    big = b"".join(b'{"w": "%s"}\n' % (b"x" * 3000) for _ in range(100))
    with open(sink.w, "w", closefd=False) as stderr:
        shared = logs._SharedStream(stderr, writer.lock)
        for _ in range(20):
            writer.write(big, 100)
            shared.write('{"s": "daemon"}\n')
        assert writer.flush(5)
    data = sink.close()
    assert all(json.loads(line) for line in data.splitlines())
    assert data.count(b'"daemon"') == 20


# --- the setting ---------------------------------------------------------------------------------


def test_function_log_max_bytes_setting(tmp_path: Path) -> None:
    assert Settings().function_log_max_bytes == LOG_MAX_BYTES == WorkerSpec(
        function="f", argv=[], env={}, cwd="/", init_frame=b"", memory_limit_bytes=0, init_timeout_s=1,
        kill_grace_s=1).log_max_bytes
    path = tmp_path / "fnhost.toml"
    path.write_text("[daemon]\nfunction_log_max_bytes = 65536\n")
    assert settings_from(load_config_file(path).daemon).function_log_max_bytes == 65536
    path.write_text("[daemon]\nfunction_log_max_bytes = 'lots'\n")
    with pytest.raises(ConfigError, match="daemon.function_log_max_bytes: expected int"):
        load_config_file(path)
    with pytest.raises(ConfigError, match="function_log_max_bytes"):
        settings_from({"function_log_max_bytes": 0})
