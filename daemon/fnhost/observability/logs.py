"""structlog set-up: JSON lines when stderr is not a terminal (journald, files), readable otherwise."""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import sys
import time
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
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


class _Mode:
    fast_reports = False  # JSON lines at info level: REPORT lines skip structlog's chain
    prefix = ""  # journald's "<6>"


def configure(level: str = "info", *, json: bool | None = None) -> None:
    if json is None:
        json = not sys.stderr.isatty()
    _Mode.fast_reports = json and logging.getLevelName(level.upper()) <= logging.INFO
    _Mode.prefix = "<6>" if under_journald() else ""
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
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


class ReportLog:
    """The one line every invocation logs, kept off the invoke path's critical costs.

    In JSON mode (a service's normal mode) ``emit`` only notes the report and the time; every
    50 ms ``flush`` formats the batch directly — the same fields structlog writes, all of them
    strings fnhost made and JSON-safe (names are [A-Za-z0-9_-]) — and writes it at once.
    structlog's processor chain costs ~25 µs an event, a third of what fnhost allows itself per
    invocation. Elsewhere (a terminal, debug level) it is a plain structlog event.
    """

    FLUSH_S = 0.05

    def __init__(self, logger: structlog.typing.FilteringBoundLogger) -> None:
        self._log = logger
        self._pending: list[tuple[str, Report, float]] = []
        self._handle: asyncio.TimerHandle | None = None
        self._second = -1
        self._second_text = ""
        atexit.register(self.flush)

    def emit(self, function: str, report: Report) -> None:
        if not _Mode.fast_reports:
            self._log.info("REPORT", function=function, request_id=report.request_id, report=report.line())
            return
        self._pending.append((function, report, time.time()))
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(self.FLUSH_S, self.flush)

    def flush(self) -> None:
        self._handle = None
        if not self._pending:
            return
        prefix = _Mode.prefix
        sys.stderr.write("".join([
            f'{prefix}{{"function": "{function}", "request_id": "{report.request_id}", '
            f'"report": "{report.line()}", "event": "REPORT", "level": "info", '
            f'"timestamp": "{self._timestamp(at)}"}}\n'
            for function, report, at in self._pending
        ]))
        sys.stderr.flush()
        self._pending.clear()

    def _timestamp(self, at: float) -> str:
        """structlog's ``TimeStamper(fmt="iso", utc=True)`` format, with the date part cached."""
        second = int(at)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._second_text}.{int((at - second) * 1e6):06d}Z"
