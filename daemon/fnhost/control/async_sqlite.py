"""The embedded asynchronous queue: SQLite in WAL mode in the state directory (``async.sqlite3``).

Tables::

    events          queued and leased events; ``due`` is when one may be delivered (``not_before``
                    for a waiting event, the end of the lease for a leased one), ``lease_id`` the
                    delivery that holds it
    depth           events per function, kept by triggers on ``events``
    dead_letters    per function, by request id
    queue_messages  records sent to queue destinations, by queue name, in order

Durability: WAL with ``synchronous=NORMAL`` by default: a commit is in the operating system's
hands when ``put`` returns, which survives SIGKILL of the daemon (the promise of a 202); a
power cut may lose the last commits. ``synchronous=FULL`` (``[daemon] async_durability = "full"``) fsyncs every
commit and survives that too, at a cost bench/async_invoke.py measures.

Every statement runs on one connection in a thread of the queue's own, never on the event loop
(a write that the kernel throttles would stall every invocation): a job queue and one
``call_soon_threadsafe`` per transaction, about 100 µs a round trip here, where anyio's
``to_thread`` (a thread pool and its cancel scope) took 160 µs, most of an acceptance's cost
(bench/async_invoke.py). Operations
that arrive while a transaction is being written wait and go together into the next one (group
commit): a burst of accepts costs one commit, not one each. An operation that refuses (a dead
letter that is not there) does so before it writes, and fails alone; a failure of SQLite itself
fails the whole transaction, and every operation in it gets QueueUnavailable.
"""

from __future__ import annotations

import asyncio
import queue
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import structlog

from ..errors import QueueUnavailable, ResourceNotFound
from .async_model import DeadLetter, QueuedEvent, QueueMessage

log = structlog.get_logger("fnhost.async.sqlite")

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    request_id TEXT PRIMARY KEY,
    function TEXT NOT NULL,
    qualifier TEXT NOT NULL,
    payload BLOB NOT NULL,
    client_context BLOB NOT NULL,
    received_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    not_before REAL NOT NULL,
    due REAL NOT NULL,
    lease_id TEXT
);
CREATE INDEX IF NOT EXISTS events_function_due ON events (function, due);
CREATE INDEX IF NOT EXISTS events_function_received ON events (function, received_at);
-- Events per function, kept by triggers: counting a backlog of 100,000 rows takes ~0.2 s, and the
-- stats ask every second on the one connection every accept waits for.
CREATE TABLE IF NOT EXISTS depth (function TEXT PRIMARY KEY, events INTEGER NOT NULL);
CREATE TRIGGER IF NOT EXISTS events_in AFTER INSERT ON events BEGIN
    INSERT INTO depth VALUES (NEW.function, 1) ON CONFLICT (function) DO UPDATE SET events = events + 1;
END;
CREATE TRIGGER IF NOT EXISTS events_out AFTER DELETE ON events BEGIN
    UPDATE depth SET events = events - 1 WHERE function = OLD.function;
END;
CREATE TABLE IF NOT EXISTS dead_letters (
    function TEXT NOT NULL,
    request_id TEXT NOT NULL,
    qualifier TEXT NOT NULL,
    payload BLOB NOT NULL,
    client_context BLOB NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    received_at REAL NOT NULL,
    dead_lettered_at REAL NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (function, request_id)
);
CREATE TABLE IF NOT EXISTS queue_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL UNIQUE,
    body BLOB NOT NULL,
    sent_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_messages_queue ON queue_messages (queue, seq);
"""

# The functions with an event due: one index probe per function with events (a skip scan over
# the function index), not a scan of the backlog, which "SELECT DISTINCT … WHERE due <= ?" is.
_READY = """
WITH RECURSIVE f(name) AS (
    SELECT MIN(function) FROM events
    UNION ALL SELECT (SELECT MIN(function) FROM events WHERE function > f.name) FROM f WHERE f.name IS NOT NULL)
SELECT name FROM f WHERE name IS NOT NULL
    AND EXISTS (SELECT 1 FROM events WHERE function = f.name AND due <= ?)
"""

_EVENT_COLUMNS = ("request_id, function, qualifier, payload, client_context, received_at, attempts, failures, "
                  "last_error, not_before")


def _event(row: tuple[Any, ...], lease_id: str | None = None) -> QueuedEvent:
    return QueuedEvent(row[0], row[1], row[2], bytes(row[3]), row[5], client_context=bytes(row[4]),
                       attempts=row[6], failures=row[7], last_error=row[8], not_before=row[9], handle=lease_id)


def _dead_letter(row: tuple[Any, ...]) -> DeadLetter:
    return DeadLetter(request_id=row[1], function=row[0], qualifier=row[2], payload=bytes(row[3]),
                      client_context=bytes(row[4]), attempts=row[5], last_error=row[6], received_at=row[7],
                      dead_lettered_at=row[8], reason=row[9])


class SqliteQueue:
    """``AsyncQueue`` on SQLite (see the module docstring)."""

    name = "sqlite"

    def __init__(self, path: Path, *, durability: str = "normal") -> None:
        if durability not in ("normal", "full"):
            raise ValueError(f"durability must be normal or full, not {durability!r}")
        self.path = path
        self.durability = durability
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self._flushing = False
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Callable[[tuple[bool, Any]], None]] | None] = \
            queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        def open_db() -> sqlite3.Connection:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.durability.upper()}")
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(SCHEMA)
            # Every lease is this host's: a daemon that died left its running events leased.
            # They are due now; their interrupted attempt stays counted in ``attempts``.
            recovered = db.execute("UPDATE events SET due = ?, lease_id = NULL WHERE lease_id IS NOT NULL",
                                   (time.time(),)).rowcount
            if recovered:
                log.info("async_events_recovered", events=recovered)
            db.execute("DELETE FROM depth")  # recounted once: it cannot drift across a restart
            db.execute("INSERT INTO depth SELECT function, COUNT(*) FROM events GROUP BY function")
            return db

        try:
            self._thread = threading.Thread(target=self._serve, name="fnhost-async-sqlite", daemon=True)
            self._thread.start()
            self._db = await self._in_thread(open_db)
        except sqlite3.Error as exc:
            raise QueueUnavailable(f"cannot open the asynchronous queue {self.path}: {exc}") from exc

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            await self._in_thread(db.close)
        if self._thread is not None:
            self._jobs.put(None)
            self._thread = None

    # --- the queue's thread -------------------------------------------------------------------

    def _serve(self) -> None:
        """The thread: run each job, hand its outcome back to the loop; a None job ends it."""
        while (job := self._jobs.get()) is not None:
            fn, done = job
            try:
                outcome: tuple[bool, Any] = (True, fn())
            except BaseException as exc:  # handed to the caller, whatever it is
                outcome = (False, exc)
            done(outcome)

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the queue's thread; returns what it returned or raises what it raised."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[bool, Any]] = loop.create_future()

        def settle(outcome: tuple[bool, Any]) -> None:
            if not future.done():  # its caller may have been cancelled meanwhile
                future.set_result(outcome)

        self._jobs.put((fn, lambda outcome: loop.call_soon_threadsafe(settle, outcome)))
        ok, value = await future
        if not ok:
            raise value
        return value

    # --- group commit -------------------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in the next transaction and return what it returned (or raise what it raised).

        The first caller to find no transaction being written writes them, batch after batch,
        until none is left; the others wait for their own result. Shielded: a caller cancelled
        mid-write must not strand the operations queued behind it.
        """
        if self._db is None:
            raise QueueUnavailable("the asynchronous queue is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((fn, future))
        if not self._flushing:
            self._flushing = True
            try:
                with anyio.CancelScope(shield=True):
                    while self._pending:
                        batch, self._pending = self._pending, []
                        await self._write(batch)
            finally:
                self._flushing = False
        return await future

    async def _write(self, batch: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]]) -> None:
        db = self._db

        def transaction() -> list[tuple[bool, Any]]:
            if db is None:
                raise QueueUnavailable("the asynchronous queue is closed")
            results: list[tuple[bool, Any]] = []
            db.execute("BEGIN IMMEDIATE")
            try:
                for fn, _ in batch:
                    try:
                        results.append((True, fn(db)))
                    except sqlite3.Error:
                        raise  # the store failed: the whole transaction, every operation in it
                    except Exception as exc:  # a refusal (no such dead letter) raised before writing
                        results.append((False, exc))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            return results

        try:
            results = await self._in_thread(transaction)
        except (sqlite3.Error, QueueUnavailable) as exc:
            error = exc if isinstance(exc, QueueUnavailable) else QueueUnavailable(
                f"the asynchronous queue ({self.path}) cannot be written: {exc}")
            log.error("async_queue_write_failed", error=str(exc))
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), (ok, value) in zip(batch, results, strict=True):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                if isinstance(value, sqlite3.Error):
                    value = QueueUnavailable(f"the asynchronous queue cannot be written: {value}")
                future.set_exception(value)

    # --- accepting and delivering ---------------------------------------------------------------

    async def put(self, event: QueuedEvent) -> None:
        row = (event.request_id, event.function, event.qualifier, event.payload, event.client_context,
               event.received_at, event.attempts, event.failures, event.last_error, event.not_before,
               event.not_before)

        def put(db: sqlite3.Connection) -> None:
            db.execute(f"INSERT OR IGNORE INTO events ({_EVENT_COLUMNS}, due) VALUES (?,?,?,?,?,?,?,?,?,?,?)", row)

        await self._run(put)

    async def ready_functions(self) -> set[str]:
        now = time.time()
        return await self._run(lambda db: {r[0] for r in db.execute(_READY, (now,))})

    async def lease(self, function: str, max_events: int, lease_s: float) -> list[QueuedEvent]:
        def lease(db: sqlite3.Connection) -> list[QueuedEvent]:
            now = time.time()
            rows = db.execute(f"SELECT {_EVENT_COLUMNS} FROM events WHERE function = ? AND due <= ? "
                              "ORDER BY due LIMIT ?", (function, now, max_events)).fetchall()
            events = []
            for row in rows:
                lease_id = secrets.token_hex(8)
                db.execute("UPDATE events SET attempts = attempts + 1, due = ?, lease_id = ? WHERE request_id = ?",
                           (now + lease_s, lease_id, row[0]))
                event = _event(row, lease_id)
                event.attempts += 1
                events.append(event)
            return events

        return await self._run(lease)

    async def extend(self, event: QueuedEvent, lease_s: float) -> None:
        await self._run(lambda db: db.execute("UPDATE events SET due = ? WHERE request_id = ? AND lease_id = ?",
                                              (time.time() + lease_s, event.request_id, event.handle)))

    async def complete(self, event: QueuedEvent) -> None:
        await self._run(lambda db: db.execute("DELETE FROM events WHERE request_id = ? AND lease_id = ?",
                                              (event.request_id, event.handle)))

    async def retry(self, event: QueuedEvent, delay_s: float, *, counted: bool, error: str) -> None:
        def retry(db: sqlite3.Connection) -> None:
            when = time.time() + delay_s
            db.execute("UPDATE events SET failures = failures + ?, last_error = ?, not_before = ?, due = ?, "
                       "lease_id = NULL WHERE request_id = ? AND lease_id = ?",
                       (1 if counted else 0, error, when, when, event.request_id, event.handle))

        await self._run(retry)

    async def dead_letter(self, event: QueuedEvent, reason: str, error: str) -> DeadLetter:
        letter = DeadLetter(event.request_id, event.function, event.qualifier, event.payload, event.attempts,
                            error, event.received_at, time.time(), reason, event.client_context)

        def move(db: sqlite3.Connection) -> DeadLetter:
            gone = db.execute("DELETE FROM events WHERE request_id = ? AND lease_id = ?",
                              (event.request_id, event.handle)).rowcount
            if gone:  # else the lease had run out and another delivery owns the event
                db.execute("INSERT OR REPLACE INTO dead_letters VALUES (?,?,?,?,?,?,?,?,?,?)",
                           (letter.function, letter.request_id, letter.qualifier, letter.payload,
                            letter.client_context, letter.attempts, letter.last_error, letter.received_at,
                            letter.dead_lettered_at, letter.reason))
            return letter

        return await self._run(move)

    async def depth(self) -> dict[str, tuple[int, float]]:
        return await self._run(lambda db: {r[0]: (r[1], r[2]) for r in db.execute(
            "SELECT function, events, (SELECT MIN(received_at) FROM events e WHERE e.function = d.function) "
            "FROM depth d WHERE events > 0")})

    async def forget_function(self, function: str) -> int:
        return await self._run(lambda db: db.execute("DELETE FROM events WHERE function = ?",
                                                     (function,)).rowcount)

    # --- dead letters -------------------------------------------------------------------------

    async def dead_letters(self, function: str) -> list[DeadLetter]:
        return await self._run(lambda db: [_dead_letter(r) for r in db.execute(
            "SELECT * FROM dead_letters WHERE function = ? ORDER BY dead_lettered_at", (function,))])

    async def get_dead_letter(self, function: str, request_id: str) -> DeadLetter:
        def get(db: sqlite3.Connection) -> DeadLetter:
            row = db.execute("SELECT * FROM dead_letters WHERE function = ? AND request_id = ?",
                             (function, request_id)).fetchone()
            if row is None:
                raise ResourceNotFound(f"No dead letter {request_id} for function {function}")
            return _dead_letter(row)

        return await self._run(get)

    @staticmethod
    def _chosen(function: str, request_ids: list[str] | None) -> tuple[str, tuple[Any, ...]]:
        if request_ids is None:
            return "function = ?", (function,)
        marks = ",".join("?" * len(request_ids))
        return f"function = ? AND request_id IN ({marks})", (function, *request_ids)

    async def replay(self, function: str, request_ids: list[str] | None) -> int:
        where, args = self._chosen(function, request_ids)

        def replay(db: sqlite3.Connection) -> int:
            now = time.time()
            db.execute(f"INSERT OR IGNORE INTO events ({_EVENT_COLUMNS}, due) SELECT request_id, function, "
                       f"qualifier, payload, client_context, {now!r}, 0, 0, '', {now!r}, {now!r} "
                       f"FROM dead_letters WHERE {where}", args)
            return db.execute(f"DELETE FROM dead_letters WHERE {where}", args).rowcount

        return await self._run(replay)

    async def purge(self, function: str, request_ids: list[str] | None) -> int:
        where, args = self._chosen(function, request_ids)
        return await self._run(lambda db: db.execute(f"DELETE FROM dead_letters WHERE {where}", args).rowcount)

    # --- queue destinations -------------------------------------------------------------------

    async def send(self, queue: str, body: bytes) -> QueueMessage:
        message = QueueMessage(queue, secrets.token_hex(16), body, time.time())
        await self._run(lambda db: db.execute(
            "INSERT INTO queue_messages (queue, message_id, body, sent_at) VALUES (?,?,?,?)",
            (queue, message.message_id, body, message.sent_at)))
        return message

    async def receive(self, queue: str, limit: int = 100) -> list[QueueMessage]:
        return await self._run(lambda db: [QueueMessage(queue, r[0], bytes(r[1]), r[2]) for r in db.execute(
            "SELECT message_id, body, sent_at FROM queue_messages WHERE queue = ? ORDER BY seq LIMIT ?",
            (queue, limit))])

    async def delete_messages(self, queue: str, message_ids: list[str] | None) -> int:
        if message_ids is None:
            return await self._run(lambda db: db.execute("DELETE FROM queue_messages WHERE queue = ?",
                                                         (queue,)).rowcount)
        marks = ",".join("?" * len(message_ids))
        return await self._run(lambda db: db.execute(
            f"DELETE FROM queue_messages WHERE queue = ? AND message_id IN ({marks})",
            (queue, *message_ids)).rowcount)

    async def queues(self) -> dict[str, int]:
        return await self._run(lambda db: dict(db.execute(
            "SELECT queue, COUNT(*) FROM queue_messages GROUP BY queue").fetchall()))
