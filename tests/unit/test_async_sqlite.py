"""The embedded queue's promises (control/async_sqlite.py) on a real SQLite file, and the
dispatcher's decisions (control/async_dispatch.py) with a scripted supervisor in place of pools."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from fnhost.control.async_dispatch import Dispatcher
from fnhost.control.async_model import AsyncStats, QueuedEvent
from fnhost.control.async_sqlite import SqliteQueue
from fnhost.control.event_configs import EventConfigs
from fnhost.errors import QueueUnavailable, ResourceNotFound, TooManyRequests
from fnhost.execution.invocation import Outcome


def event(request_id: str, function: str = "f", received_at: float | None = None) -> QueuedEvent:
    return QueuedEvent(request_id, function, "", b'{"n": 1}', time.time() if received_at is None else received_at)


@pytest.fixture
async def queue(tmp_path: Path):
    q = SqliteQueue(tmp_path / "async.sqlite3")
    await q.start()
    yield q
    await q.close()


async def test_put_is_idempotent_and_lease_counts_the_attempt(queue: SqliteQueue) -> None:
    await queue.put(event("a"))
    await queue.put(event("a"))
    assert await queue.ready_functions() == {"f"}
    (leased,) = await queue.lease("f", 10, 30)
    assert (leased.request_id, leased.attempts, leased.payload) == ("a", 1, b'{"n": 1}')
    assert await queue.lease("f", 10, 30) == []  # leased: no one else gets it
    assert await queue.ready_functions() == set()
    assert (await queue.depth())["f"][0] == 1


async def test_a_stale_lease_cannot_end_the_newer_delivery(queue: SqliteQueue) -> None:
    await queue.put(event("a"))
    (first,) = await queue.lease("f", 1, 0.01)
    await asyncio.sleep(0.05)  # the lease runs out: delivered again
    (second,) = await queue.lease("f", 1, 30)
    assert second.attempts == 2
    await queue.complete(first)  # the first delivery's late answer
    assert (await queue.depth())["f"][0] == 1
    await queue.complete(second)
    assert await queue.depth() == {}


async def test_retry_waits_and_counts_only_function_errors(queue: SqliteQueue) -> None:
    await queue.put(event("a"))
    (leased,) = await queue.lease("f", 1, 30)
    await queue.retry(leased, 0.2, counted=False, error="throttled")
    assert await queue.lease("f", 1, 30) == []  # not before its delay
    await asyncio.sleep(0.25)
    (again,) = await queue.lease("f", 1, 30)
    assert (again.attempts, again.failures, again.last_error) == (2, 0, "throttled")
    await queue.retry(again, 0, counted=True, error='{"errorType": "E"}')
    (third,) = await queue.lease("f", 1, 30)
    assert (third.attempts, third.failures) == (3, 1)


async def test_dead_letters_move_atomically_replay_and_purge(queue: SqliteQueue) -> None:
    for rid in ("a", "b"):
        await queue.put(event(rid))
    for leased in await queue.lease("f", 2, 30):
        letter = await queue.dead_letter(leased, "RetriesExhausted", "boom")
        assert letter.attempts == 1
    assert await queue.depth() == {}
    assert [d.request_id for d in await queue.dead_letters("f")] == ["a", "b"]
    assert (await queue.get_dead_letter("f", "a")).last_error == "boom"
    with pytest.raises(ResourceNotFound):
        await queue.get_dead_letter("f", "zzz")
    assert await queue.replay("f", ["a", "zzz"]) == 1
    (replayed,) = await queue.lease("f", 5, 30)
    assert (replayed.request_id, replayed.attempts, replayed.failures) == ("a", 1, 0)
    assert await queue.purge("f", None) == 1
    assert await queue.dead_letters("f") == []


async def test_restart_recovers_leased_events_at_once(tmp_path: Path) -> None:
    q = SqliteQueue(tmp_path / "async.sqlite3")
    await q.start()
    await q.put(event("a"))
    await q.lease("f", 1, 3600)  # then the daemon dies: no complete, no retry
    await q.close()
    q = SqliteQueue(tmp_path / "async.sqlite3")
    await q.start()
    (again,) = await q.lease("f", 1, 30)
    assert (again.request_id, again.attempts) == ("a", 2)
    await q.close()


async def test_concurrent_puts_share_commits_and_each_is_stored(queue: SqliteQueue) -> None:
    await asyncio.gather(*(queue.put(event(f"e{i}")) for i in range(500)))
    assert (await queue.depth())["f"][0] == 500


async def test_queue_destinations_keep_order_and_delete(queue: SqliteQueue) -> None:
    first = await queue.send("q1", b"one")
    await queue.send("q1", b"two")
    assert [m.body for m in await queue.receive("q1")] == [b"one", b"two"]
    assert await queue.queues() == {"q1": 2}
    assert await queue.delete_messages("q1", [first.message_id]) == 1
    assert [m.body for m in await queue.receive("q1")] == [b"two"]


async def test_a_store_that_cannot_be_written_refuses_with_queue_unavailable(tmp_path: Path) -> None:
    q = SqliteQueue(tmp_path / "async.sqlite3")
    await q.start()
    db = sqlite3.connect(tmp_path / "async.sqlite3")
    db.execute("BEGIN EXCLUSIVE")  # another writer holds the lock past busy_timeout
    q._db.execute("PRAGMA busy_timeout=50")  # type: ignore[union-attr]
    with pytest.raises(QueueUnavailable):
        await q.put(event("a"))
    db.rollback()
    db.close()
    await q.put(event("a"))  # the store is back: accepted again
    await q.close()


# --- the dispatcher's decisions ---------------------------------------------------------------


class Script:
    """A supervisor whose invoke answers from a list (an Outcome, or an exception to raise)."""

    def __init__(self, answers: list[object], base_s: float = 10.0) -> None:
        self.answers = answers
        self.calls: list[str] = []
        self.settings = SimpleNamespace(async_retry_base_s=base_s, async_max_share=0.5, init_timeout_s=1,
                                        queue_timeout_s=1, region="us-east-1", account_id="000000000000")
        self.pools: dict = {}
        self.draining = False
        self.request_ids = SimpleNamespace(next=lambda: "new-id")

    def get_function(self, name: str, qualifier: str = "") -> None:
        return None

    async def invoke(self, invocation):  # type: ignore[no-untyped-def]
        self.calls.append(invocation.request_id)
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def failed() -> Outcome:
    return Outcome(200, json.dumps({"errorType": "E", "errorMessage": "no"}).encode(), "Unhandled", "x", None)


async def one_attempt(queue: SqliteQueue, sup: Script, configs: EventConfigs, stats: AsyncStats) -> QueuedEvent:
    dispatcher = Dispatcher(sup, queue, configs, lambda _: stats)
    (leased,) = await queue.lease("f", 1, 30)
    await dispatcher._run_attempt(leased)
    return leased


@pytest.fixture
def configs() -> EventConfigs:
    return EventConfigs(sqlite3.connect(":memory:"), lambda name, qualifier: None, region="us-east-1",
                        account_id="000000000000")


async def test_function_errors_retry_base_then_twice_base_then_dead_letter(queue, configs) -> None:
    sup, stats = Script([failed(), failed(), failed()]), AsyncStats()
    await queue.put(event("a"))
    delays = []
    for _ in range(2):
        before = time.time()
        await one_attempt(queue, sup, configs, stats)
        (row,) = queue._db.execute("SELECT not_before FROM events").fetchall()  # type: ignore[union-attr]
        delays.append(row[0] - before)
        queue._db.execute("UPDATE events SET due = 0")  # type: ignore[union-attr]  # skip the wait
    assert 10 <= delays[0] < 11 and 20 <= delays[1] < 21
    await one_attempt(queue, sup, configs, stats)
    (letter,) = await queue.dead_letters("f")
    assert (letter.attempts, letter.reason, sup.calls) == (3, "RetriesExhausted", ["a", "a", "a"])
    assert (stats.retries, stats.dead_lettered) == (2, 1)


async def test_throttles_do_not_use_retries_and_delays_stop_at_the_maximum_age(queue, configs) -> None:
    configs.put("f", maximum_retry_attempts=0, maximum_event_age_s=60)
    sup, stats = Script([TooManyRequests("busy"), failed()], base_s=600), AsyncStats()
    await queue.put(event("a", received_at=time.time() - 55))
    await one_attempt(queue, sup, configs, stats)
    (row,) = queue._db.execute("SELECT failures, not_before - received_at FROM events").fetchall()  # type: ignore[union-attr]
    assert row[0] == 0 and row[1] <= 60.01  # uncounted, and never later than the age limit
    assert stats.throttled == 1
    queue._db.execute("UPDATE events SET due = 0, received_at = ?", (time.time() - 61,))  # type: ignore[union-attr]
    await one_attempt(queue, sup, configs, stats)  # now too old: not run
    assert sup.calls == ["a"]
    (letter,) = await queue.dead_letters("f")
    assert (letter.reason, letter.attempts, stats.dropped_age) == ("EventAgeExceeded", 1, 1)


async def test_platform_failures_retry_uncounted_and_a_deleted_function_dead_letters(queue, configs) -> None:
    sup, stats = Script([RuntimeError("worker pipe broke"), ResourceNotFound("Function not found: f")]), AsyncStats()
    await queue.put(event("a"))
    await one_attempt(queue, sup, configs, stats)
    (row,) = queue._db.execute("SELECT failures, last_error FROM events").fetchall()  # type: ignore[union-attr]
    assert row[0] == 0 and "worker pipe broke" in row[1]
    queue._db.execute("UPDATE events SET due = 0")  # type: ignore[union-attr]
    await one_attempt(queue, sup, configs, stats)
    (letter,) = await queue.dead_letters("f")
    assert (letter.reason, letter.attempts) == ("FunctionDeleted", 1)


async def test_full_durability_is_the_connections_synchronous_mode(tmp_path: Path) -> None:
    from fnhost.control.async_backends import open_backend
    from fnhost.control.config import settings_from
    from fnhost.errors import ConfigError

    q = open_backend(settings_from({"state_dir": str(tmp_path), "async_durability": "full"}))
    await q.start()
    assert q._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # type: ignore[attr-defined]  # FULL
    await q.close()
    with pytest.raises(ConfigError, match="async_durability"):
        settings_from({"async_durability": "sometimes"})
