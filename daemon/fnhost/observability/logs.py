"""structlog set-up: JSON lines when stderr is not a terminal (journald, files), readable otherwise.

In JSON mode the lines functions print (``function_log``) and the REPORT lines, whose volume
the functions decide, reach stderr through one writer thread (``LineWriter``): when stderr is a
slow pipe (journald) or full, the event loop still never waits on it. The daemon's own events
stay synchronous structlog writes, sharing the writer's lock so lines never interleave.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import os
import select
import sys
import threading
import time
from typing import TextIO

import structlog

from ..errors import FunctionError
from .report import Report

# syslog priorities by structlog method name, for journald's "<N>" line prefix.
_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "warn": 4, "error": 3, "exception": 3, "critical": 2}


def under_journald() -> bool:
    """True when stderr is the journal stream systemd gave us (JOURNAL_STREAM is dev:inode)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


def _priority_prefix(logger: object, method: str, line: str) -> str:
    return f"<{_PRIORITY.get(method, 6)}>{line}"


class LineWriter:
    """Whole log lines written to ``fd`` by one thread, from a queue bounded in bytes.

    ``write`` never blocks on the fd: it queues, or, when ``max_bytes`` are already waiting
    (stderr is slow or full), drops the lines and counts them. Once the writer has caught up it
    writes one ``function_log_dropped`` event saying how many were lost. Bytes count against the
    bound until they are written, so the memory held is at most ``max_bytes`` and one notice.
    ``lock`` is held around each write to the fd (at most ``CHUNK`` bytes at a time), so another
    writer of the same fd that takes it too never splits a line.
    """

    CHUNK = 64 * 1024
    COALESCE_S = 0.005

    def __init__(self, fd: int, *, max_bytes: int = 4 * 1024 * 1024, lock: threading.Lock | None = None,
                 journald: bool = False) -> None:
        self.fd = fd
        self.max_bytes = max_bytes
        self.lock = lock or threading.Lock()
        self.dropped_total = 0
        self._notice_prefix = "<4>" if journald else ""
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[bytes] = []
        self._queued = 0  # bytes queued or being written
        self._dropped = 0  # lines dropped since the last notice
        self._idle = True  # the thread has nothing in hand
        self._thread: threading.Thread | None = None

    def write(self, data: bytes, lines: int = 1) -> bool:
        """Queue ``data`` (``lines`` whole lines); False when it was dropped for want of room."""
        with self._cond:
            if self._queued + len(data) > self.max_bytes:
                self._dropped += lines
                self.dropped_total += lines
                return False
            self._queue.append(data)
            self._queued += len(data)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fnhost-log-writer", daemon=True)
                self._thread.start()
            self._cond.notify()
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued is written (and any drop notice); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._idle and not self._queue and not self._dropped, timeout)

    def _run(self) -> None:
        written = 0
        while True:
            with self._cond:
                self._queued -= written  # only now is there room again
                if not self._queue and not self._dropped:
                    self._idle = True
                    self._cond.notify_all()  # flush() waiters
                    self._cond.wait_for(lambda: self._queue or self._dropped)
                self._idle = False
                batch, self._queue = self._queue, []
                dropped, self._dropped = self._dropped, 0
            written = sum(map(len, batch))
            if batch:
                self._write(batch)
            if dropped:
                self._write([self._notice(dropped)])
            # At most one wake-up per COALESCE_S: a thread woken per line printed would take the
            # GIL from the event loop thousands of times a second when many functions print.
            time.sleep(self.COALESCE_S)

    def _notice(self, dropped: int) -> bytes:
        at = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1e6):06d}Z"
        return (f'{self._notice_prefix}{{"dropped_lines": {dropped}, "event": "function_log_dropped", '
                f'"level": "warning", "timestamp": "{stamp}"}}\n').encode()

    def _write(self, batch: list[bytes]) -> None:
        """Write ``batch`` in pieces of about CHUNK bytes, each under the lock."""
        piece: list[bytes] = []
        size = 0
        for data in batch:
            piece.append(data)
            size += len(data)
            if size >= self.CHUNK:
                self._write_piece(b"".join(piece))
                piece, size = [], 0
        if piece:
            self._write_piece(b"".join(piece))

    def _write_piece(self, data: bytes) -> None:
        view = memoryview(data)
        with self.lock:
            while view:
                try:
                    n = os.write(self.fd, view)
                except BlockingIOError:  # a non-blocking stderr inherited from our parent
                    select.select([], [self.fd], [], 1.0)
                    continue
                except OSError:
                    return  # stderr is gone (EPIPE, EBADF): nothing can be logged any more
                view = view[n:]


class _SharedStream:
    """stderr as structlog's file: each event written and flushed under the writer's lock."""

    def __init__(self, stream: TextIO, lock: threading.Lock) -> None:
        self._stream = stream
        self._lock = lock

    def write(self, text: str) -> int:
        with self._lock:
            n = self._stream.write(text)
            self._stream.flush()
        return n

    def flush(self) -> None:
        pass  # every write() has flushed


class _Mode:
    fast_reports = False  # JSON lines at info level: REPORT and function lines skip structlog's chain
    prefix = ""  # journald's "<6>"
    writer: LineWriter | None = None  # set exactly when fast_reports is


WRITER_QUEUE_BYTES = 4 * 1024 * 1024  # waiting for a slow stderr; more is dropped and counted
CONSOLE_ENVELOPE = 100  # about what a terminal line adds to a function's line (time, names, request id)
EXIT_FLUSH_S = 5.0  # at exit, how long the writer may take to empty its queue into stderr

_function_log = structlog.get_logger("fnhost.function")


def configure(level: str = "info", *, json: bool | None = None) -> None:
    if json is None:
        json = not sys.stderr.isatty()
    fast = json and logging.getLevelName(level.upper()) <= logging.INFO
    _Mode.prefix = "<6>" if under_journald() else ""
    file: TextIO | _SharedStream = sys.stderr
    _Mode.writer = None
    if fast:
        try:
            fd = sys.stderr.fileno()
        except (AttributeError, OSError, ValueError):  # a stand-in stderr (tests): stay synchronous
            fast = False
        else:
            _Mode.writer = LineWriter(fd, max_bytes=WRITER_QUEUE_BYTES, journald=under_journald())
            file = _SharedStream(sys.stderr, _Mode.writer.lock)
    _Mode.fast_reports = fast
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
            *([_priority_prefix] if under_journald() else []),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.WriteLoggerFactory(file=file),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )


def flush(timeout: float = EXIT_FLUSH_S) -> None:
    """Let the writer thread put what it holds on stderr (at exit; a stalled stderr gets ``timeout``)."""
    if _Mode.writer is not None:
        _Mode.writer.flush(timeout)


atexit.register(flush)  # registered first, so it runs after every ReportLog's own atexit flush


def function_lines(function: str, request_id: str | None, stream: str, lines: list[bytes],
                   budget: int | None = None) -> tuple[int, int]:
    """Log lines a function printed, one ``function_log`` event each, while they fit in ``budget``
    bytes of log; returns how many were logged and the bytes they took.

    In JSON mode the events are formatted here as structlog would write them (request ids and
    names are fnhost's; the line is escaped by ``json.dumps``, as structlog's renderer does), so
    what counts against the budget is exactly what reaches the log, envelope and escapes included
    (a flood of empty lines costs what it writes), and queued for the writer thread. Elsewhere
    each line is a structlog event, counted as its text plus ``CONSOLE_ENVELOPE``.
    """
    writer = _Mode.writer
    used = 0
    if writer is None:
        kept = 0
        for line in lines:
            size = len(line) + CONSOLE_ENVELOPE
            if budget is not None and used + size > budget:
                break
            _function_log.info("function_log", function=function, request_id=request_id, stream=stream,
                               line=line.decode(errors="replace"))
            kept += 1
            used += size
        return kept, used
    head = (f'{_Mode.prefix}{{"function": {json.dumps(function)}, "request_id": {json.dumps(request_id)}, '
            f'"stream": "{stream}", "line": ')
    tail = f', "event": "function_log", "level": "info", "timestamp": "{timestamp(time.time())}"}}\n'
    dumps = json.dumps
    events = []
    for line in lines:
        event = head + dumps(line.decode(errors="replace")) + tail  # ASCII: len() is its size in bytes
        if budget is not None and used + len(event) > budget:
            break
        events.append(event)
        used += len(event)
    if events:
        writer.write("".join(events).encode(), len(events))
    return len(events), used


class _Clock:
    second = -1
    text = ""


def timestamp(at: float) -> str:
    """structlog's ``TimeStamper(fmt="iso", utc=True)`` format; the date part is cached (loop thread)."""
    second = int(at)
    if second != _Clock.second:
        _Clock.second = second
        _Clock.text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{_Clock.text}.{int((at - second) * 1e6):06d}Z"


class ReportLog:
    """The one line every invocation logs, kept off the invoke path's critical costs.

    A failed invocation's line is the same event with ``error_type`` and ``error`` added.

    In JSON mode (a service's normal mode) ``emit`` only notes the report and the time; every
    50 ms ``flush`` formats the batch directly — the same fields structlog writes, all of them
    strings fnhost made and JSON-safe (names are [A-Za-z0-9_-]) — and hands it to the writer
    thread at once.
    structlog's processor chain costs ~25 µs an event, a third of what fnhost allows itself per
    invocation. Elsewhere (a terminal, debug level) it is a plain structlog event.
    """

    FLUSH_S = 0.05

    def __init__(self, logger: structlog.typing.FilteringBoundLogger) -> None:
        self._log = logger
        self._pending: list[tuple[str, Report, float, FunctionError | None]] = []
        self._handle: asyncio.TimerHandle | None = None
        atexit.register(self._at_exit)

    def emit(self, function: str, report: Report, error: FunctionError | None = None) -> None:
        if not _Mode.fast_reports:
            extra = {"error_type": error.code, "error": error.message} if error is not None else {}
            self._log.info("REPORT", function=function, request_id=report.request_id, report=report.line(),
                           **extra)
            return
        self._pending.append((function, report, time.time(), error))
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(self.FLUSH_S, self.flush)

    def flush(self) -> None:
        self._handle = None
        if not self._pending:
            return
        prefix = _Mode.prefix
        text = "".join([
            f'{prefix}{{"function": "{function}", "request_id": "{report.request_id}", '
            f'"report": "{report.line()}", {_error_fields(error)}"event": "REPORT", "level": "info", '
            f'"timestamp": "{timestamp(at)}"}}\n'
            for function, report, at, error in self._pending
        ])
        if _Mode.writer is not None:
            _Mode.writer.write(text.encode(), len(self._pending))
        else:  # reconfigured since emit(): no writer any more
            sys.stderr.write(text)
            sys.stderr.flush()
        self._pending.clear()

    def _at_exit(self) -> None:
        self.flush()
        flush()


def _error_fields(error: FunctionError | None) -> str:
    """A failed invocation's extra fields; its message is the worker's text, so it is escaped."""
    if error is None:
        return ""
    return f'"error_type": {json.dumps(error.code)}, "error": {json.dumps(error.message)}, '
