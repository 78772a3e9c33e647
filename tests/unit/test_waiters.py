"""``Waiters`` as a unit: the callers queued for a worker, handed one oldest first."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from fnhost.execution.waiters import Waiters


async def test_a_worker_goes_to_the_oldest_caller_still_waiting() -> None:
    waiters: Waiters[str] = Waiters()
    got: dict[str, str | None] = {}

    async def wait(name: str, for_s: float) -> None:
        try:
            got[name] = await waiters.wait(anyio.current_time() + for_s, lambda w: None)
        except TimeoutError:
            got[name] = "timed out"

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait, "gave up", 0.01)
        await asyncio.sleep(0)
        tg.start_soon(wait, "first", 5)
        await asyncio.sleep(0)
        tg.start_soon(wait, "second", 5)
        await asyncio.sleep(0.05)
        assert waiters.queued == 2
        assert waiters.hand("worker")  # the caller that gave up is skipped
        waiters.wake_one()  # a slot freed: the next caller tries again itself
    assert got == {"gave up": "timed out", "first": "worker", "second": None}
    assert waiters.queued == 0 and not waiters.hand("another")


async def test_a_worker_handed_to_a_caller_that_went_away_is_given_back() -> None:
    waiters: Waiters[str] = Waiters()
    given_back: list[str] = []
    task = asyncio.ensure_future(waiters.wait(anyio.current_time() + 5, given_back.append))
    await asyncio.sleep(0)
    assert waiters.hand("worker")
    task.cancel()  # in the same instant: the caller never sees the worker
    with pytest.raises(asyncio.CancelledError):
        await task
    assert given_back == ["worker"] and waiters.queued == 0


async def test_every_caller_still_waiting_gets_the_error() -> None:
    waiters: Waiters[str] = Waiters()
    tasks = [asyncio.ensure_future(waiters.wait(anyio.current_time() + 5, lambda w: None)) for _ in range(3)]
    await asyncio.sleep(0)
    waiters.fail_all(lambda: LookupError("deleted"))
    for task in tasks:
        with pytest.raises(LookupError, match="deleted"):
            await task
    assert waiters.queued == 0 and len(waiters) == 0
