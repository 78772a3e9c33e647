"""The JetStream backend against a real nats-server: what the dispatcher relies on.

These drive ``JetStreamQueue`` directly (the dispatcher's side of the contract); the tests with
real daemons are in test_multi_host.py.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from fnhost.control.async_model import QueuedEvent
from fnhost.control.async_nats import MAX_DELIVER, JetStreamQueue
from fnhost.errors import QueueUnavailable, ResourceNotFound

from tests.nats_server import NatsServer


def _event(function: str = "fn", payload: bytes = b"{}") -> QueuedEvent:
    return QueuedEvent(str(uuid.uuid4()), function, "", payload, time.time(), client_context=b'{"a":1}')


async def _lease_all(queue: JetStreamQueue, function: str, want: int, lease_s: float = 5.0,
                     within_s: float = 10.0) -> list[QueuedEvent]:
    got: list[QueuedEvent] = []
    deadline = time.monotonic() + within_s
    while len(got) < want and time.monotonic() < deadline:
        got += await queue.lease(function, want - len(got), lease_s)
    return got


async def test_put_lease_complete_round_trip(nats_server: NatsServer) -> None:
    queue = JetStreamQueue(nats_server.url)
    await queue.start()
    try:
        events = [_event(payload=f'{{"i":{i}}}'.encode()) for i in range(5)]
        for event in events:
            await queue.put(event)
        await queue.put(events[0])  # the same request id again: stored once
        assert await queue.ready_functions() == {"fn"}
        depth = await queue.depth()
        assert depth["fn"][0] == 5 and abs(depth["fn"][1] - events[0].received_at) < 0.01
        leased = await _lease_all(queue, "fn", 5)
        assert [e.request_id for e in leased] == [e.request_id for e in events]
        assert leased[0].client_context == b'{"a":1}' and leased[0].attempts == 1 and leased[0].failures == 0
        assert await queue.lease("fn", 5, 5.0) == []  # all leased: nobody else gets them
        for event in leased:
            await queue.complete(event)
        assert await queue.depth() == {}
    finally:
        await queue.close()


async def test_counted_retry_is_a_nak_with_delay_and_counts(nats_server: NatsServer) -> None:
    queue = JetStreamQueue(nats_server.url)
    await queue.start()
    try:
        await queue.put(_event())
        (first,) = await _lease_all(queue, "fn", 1)
        started = time.monotonic()
        await queue.retry(first, 1.0, counted=True, error='{"errorMessage":"boom"}')
        (second,) = await _lease_all(queue, "fn", 1)
        assert time.monotonic() - started >= 0.9  # JetStream waited the Nak's delay
        assert (second.attempts, second.failures) == (2, 1)
        assert second.request_id == first.request_id
    finally:
        await queue.close()


async def test_uncounted_retry_waits_and_keeps_the_count(nats_server: NatsServer) -> None:
    queue = JetStreamQueue(nats_server.url)
    await queue.start()
    try:
        await queue.put(_event())
        (first,) = await _lease_all(queue, "fn", 1)
        await queue.retry(first, 0.5, counted=True, error="e1")
        (second,) = await _lease_all(queue, "fn", 1)
        # Throttled many more times than MaxDeliver allows deliveries: none of it is counted.
        event = second
        for _ in range(MAX_DELIVER + 1):
            started = time.monotonic()
            await queue.retry(event, 0.3, counted=False, error="throttled")
            (event,) = await _lease_all(queue, "fn", 1)
            assert time.monotonic() - started >= 0.25
            assert event.failures == 1 and event.last_error == "throttled"
        assert event.attempts == 2 + MAX_DELIVER + 1
        await queue.complete(event)
        assert await queue.depth() == {}
    finally:
        await queue.close()


async def test_a_lease_that_runs_out_is_delivered_again_and_extend_keeps_it(nats_server: NatsServer) -> None:
    one, other = JetStreamQueue(nats_server.url), JetStreamQueue(nats_server.url)
    await one.start()
    await other.start()
    try:
        await one.put(_event())
        await one.put(_event())
        held = await _lease_all(one, "fn", 2, lease_s=1.0)
        assert len(held) == 2
        again: list[QueuedEvent] = []
        for _ in range(5):  # keep the first alive for 3 s with in_progress; let the second run out
            await one.extend(held[0], 1.0)
            for event in again:
                await other.extend(event, 1.0)
            again += await other.lease("fn", 2, 1.0)
            await asyncio.sleep(0.6)
        assert [e.request_id for e in again] == [held[1].request_id]  # only the one left to run out
        assert again[0].attempts == 2 and again[0].failures == 1  # the lost delivery counted
        await other.complete(again[0])
        await one.complete(held[0])
        assert await one.depth() == {}
    finally:
        await one.close()
        await other.close()


async def test_dead_letters_replay_and_purge(nats_server: NatsServer) -> None:
    queue = JetStreamQueue(nats_server.url)
    await queue.start()
    try:
        events = [_event() for _ in range(3)]
        for event in events:
            await queue.put(event)
        for leased in await _lease_all(queue, "fn", 3):
            record = await queue.dead_letter(leased, "RetriesExhausted", '{"errorMessage":"x\\ny"}')
            assert record.attempts == 1
        assert await queue.depth() == {}
        letters = await queue.dead_letters("fn")
        assert [d.request_id for d in letters] == [e.request_id for e in events]
        assert letters[0].last_error == '{"errorMessage":"x\\ny"}' and letters[0].reason == "RetriesExhausted"
        assert (await queue.get_dead_letter("fn", events[1].request_id)).payload == b"{}"
        with pytest.raises(ResourceNotFound):
            await queue.get_dead_letter("fn", "nope")
        assert await queue.replay("fn", [events[0].request_id, "unknown"]) == 1
        (replayed,) = await _lease_all(queue, "fn", 1)
        assert replayed.request_id == events[0].request_id and replayed.failures == 0
        await queue.complete(replayed)
        assert await queue.purge("fn", None) == 2
        assert await queue.dead_letters("fn") == []
    finally:
        await queue.close()


async def test_queue_destinations(nats_server: NatsServer) -> None:
    queue = JetStreamQueue(nats_server.url)
    await queue.start()
    try:
        sent = [await queue.send("failures.fifo", f"r{i}".encode()) for i in range(3)]
        assert await queue.queues() == {"failures.fifo": 3}
        got = await queue.receive("failures.fifo", limit=2)
        assert [m.body for m in got] == [b"r0", b"r1"] and got[0].message_id == sent[0].message_id
        assert await queue.delete_messages("failures.fifo", [sent[1].message_id]) == 1
        assert [m.body for m in await queue.receive("failures.fifo")] == [b"r0", b"r2"]
        assert await queue.delete_messages("failures.fifo", None) == 2
        assert await queue.queues() == {}
    finally:
        await queue.close()


async def test_refuses_while_down_and_loses_nothing_accepted(nats_server: NatsServer) -> None:
    queue = JetStreamQueue(nats_server.url)
    await queue.start()
    try:
        accepted = [_event() for _ in range(20)]
        for event in accepted:
            await queue.put(event)
        nats_server.stop(kill=True)
        with pytest.raises(QueueUnavailable, match="NATS"):
            for _ in range(50):  # the client notices the lost connection within a moment
                await queue.put(_event())
                await asyncio.sleep(0.1)
        nats_server.start()
        deadline = time.monotonic() + 15
        while True:  # reconnects by itself
            try:
                await queue.put(late := _event())
                break
            except QueueUnavailable:
                assert time.monotonic() < deadline, "did not reconnect"
                await asyncio.sleep(0.2)
        got = await _lease_all(queue, "fn", 21)
        assert {e.request_id for e in got} == {e.request_id for e in accepted} | {late.request_id}
    finally:
        await queue.close()


async def test_unreachable_at_start_connects_later(nats_server: NatsServer) -> None:
    nats_server.stop()
    queue = JetStreamQueue(nats_server.url)
    await queue.start()  # does not raise: the daemon starts, Event invocations are refused
    try:
        with pytest.raises(QueueUnavailable):
            await queue.put(_event())
        nats_server.start()
        deadline = time.monotonic() + 15
        while not await _try_put(queue):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
    finally:
        await queue.close()


async def _try_put(queue: JetStreamQueue) -> bool:
    try:
        await queue.put(_event())
        return True
    except QueueUnavailable:
        return False
