"""What the host's invocations would cost on Lambda: usage kept per function and hour, priced on demand.

The invoke path only adds to two integers on the pool; a background task folds them into SQLite
every few seconds (and at shutdown), so billing costs nothing per call that a dictionary update
would not.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# Lambda's published x86 prices and monthly free tier.
PRICE_PER_MILLION_REQUESTS = 0.20
PRICE_PER_GB_SECOND = 0.0000166667
FREE_REQUESTS = 1_000_000
FREE_GB_SECONDS = 400_000.0
FLUSH_INTERVAL_S = 5.0


@dataclass(slots=True)
class Meter:
    """One function's usage since the last flush."""

    requests: int = 0
    billed_ms: int = 0
    mb_ms: int = 0  # billed milliseconds × memory size in MB

    def add(self, billed_ms: int, memory_mb: int) -> None:
        self.requests += 1
        self.billed_ms += billed_ms
        self.mb_ms += billed_ms * memory_mb


@dataclass(frozen=True, slots=True)
class FunctionUsage:
    function_name: str
    requests: int
    billed_duration_ms: int
    gb_seconds: float

    @property
    def cost_usd(self) -> float:
        return self.requests / 1e6 * PRICE_PER_MILLION_REQUESTS + self.gb_seconds * PRICE_PER_GB_SECOND


def gb_seconds(mb_ms: int) -> float:
    return mb_ms / 1024 / 1000


def cost_after_free_tier(requests: int, gbs: float) -> float:
    return (max(0, requests - FREE_REQUESTS) / 1e6 * PRICE_PER_MILLION_REQUESTS
            + max(0.0, gbs - FREE_GB_SECONDS) * PRICE_PER_GB_SECOND)


class UsageStore:
    """Usage per function and hour in SQLite. ``take`` runs on the event loop (it only reads and
    zeroes the meters); ``write``, which may wait on the disk, runs in a thread."""

    def __init__(self, path: Path) -> None:
        # Written from a worker thread and read from the loop: one lock, never two at once.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        # Usage is a running tally: losing the last seconds of it to a power cut is acceptable,
        # an fsync per flush on a busy disk is not (one took 275 ms on a loaded host).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            """CREATE TABLE IF NOT EXISTS usage (
                function TEXT NOT NULL,
                hour INTEGER NOT NULL,
                requests INTEGER NOT NULL,
                billed_ms INTEGER NOT NULL,
                mb_ms INTEGER NOT NULL,
                PRIMARY KEY (function, hour)
            )"""
        )

    @staticmethod
    def take(meters: dict[str, Meter], now: float | None = None) -> list[tuple[str, int, int, int, int]]:
        """The rows to add for what ``meters`` counted since the last take; zeroes them."""
        hour = int((now or time.time()) // 3600) * 3600
        rows = [(name, hour, m.requests, m.billed_ms, m.mb_ms) for name, m in meters.items() if m.requests]
        for m in meters.values():
            m.requests = m.billed_ms = m.mb_ms = 0
        return rows

    def write(self, rows: list[tuple[str, int, int, int, int]]) -> None:
        if not rows:
            return
        with self._lock:
            self._db.executemany(
                """INSERT INTO usage VALUES (?,?,?,?,?) ON CONFLICT(function, hour) DO UPDATE SET
                   requests = requests + excluded.requests, billed_ms = billed_ms + excluded.billed_ms,
                   mb_ms = mb_ms + excluded.mb_ms""",
                rows,
            )

    def flush(self, meters: dict[str, Meter], now: float | None = None) -> None:
        self.write(self.take(meters, now))

    def since(self, since_unix_s: int) -> list[FunctionUsage]:
        start = since_unix_s // 3600 * 3600
        with self._lock:
            rows = self._db.execute(
                """SELECT function, SUM(requests), SUM(billed_ms), SUM(mb_ms) FROM usage
                   WHERE hour >= ? GROUP BY function ORDER BY function""",
                (start,),
            ).fetchall()
        return [FunctionUsage(name, req, ms, gb_seconds(mb_ms)) for name, req, ms, mb_ms in rows]

    def close(self) -> None:
        self._db.close()
