"""structlog set-up: JSON lines when stderr is not a terminal (journald, files), readable otherwise."""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import sys
from datetime import UTC, datetime

import structlog


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

    In JSON mode (a service's normal mode) a REPORT event is formatted directly — the same fields
    structlog writes, all of them strings fnhost made and JSON-safe (names are [A-Za-z0-9_-]) — and
    lines are written together every 50 ms: structlog's processor chain costs ~25 µs an event,
    a third of the whole budget fnhost allows itself per invocation. Elsewhere it is a plain
    structlog event.
    """

    FLUSH_S = 0.05

    def __init__(self, logger: structlog.typing.FilteringBoundLogger) -> None:
        self._log = logger
        self._lines: list[str] = []
        self._handle: asyncio.TimerHandle | None = None
        atexit.register(self.flush)

    def emit(self, function: str, request_id: str, line: str) -> None:
        if not _Mode.fast_reports:
            self._log.info("REPORT", function=function, request_id=request_id, report=line)
            return
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        self._lines.append(
            f'{_Mode.prefix}{{"function": "{function}", "request_id": "{request_id}", "report": "{line}", '
            f'"event": "REPORT", "level": "info", "timestamp": "{now}"}}\n'
        )
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(self.FLUSH_S, self.flush)

    def flush(self) -> None:
        self._handle = None
        if self._lines:
            sys.stderr.write("".join(self._lines))
            sys.stderr.flush()
            self._lines.clear()
