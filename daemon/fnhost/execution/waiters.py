"""The callers of one function queued for a worker at its concurrency limit, oldest first.

A caller waits on a future of its own. A worker freed by an invocation is handed to the oldest
caller still waiting, still BUSY (no round trip through idle); a slot freed otherwise (a worker
died, a start failed, the limit was raised) wakes the oldest with None, to try again itself.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

import anyio

W = TypeVar("W")


class Waiters(Generic[W]):
    def __init__(self) -> None:
        self._queue: deque[asyncio.Future[W | None]] = deque()
        self.queued = 0  # callers waiting now (the queue may still hold some that gave up)

    def __len__(self) -> int:
        return len(self._queue)

    async def wait(self, until: float, give_back: Callable[[W], None]) -> W | None:
        """A worker handed over by ``until`` (anyio's clock), or None: a slot freed up, and the
        caller should try again. TimeoutError when neither came in time. A caller that goes away
        in the instant a worker is handed to it gives the worker back with ``give_back``."""
        waiter: asyncio.Future[W | None] = asyncio.get_running_loop().create_future()
        self._queue.append(waiter)
        self.queued += 1
        try:
            with anyio.move_on_after(until - anyio.current_time()):
                await waiter
        except BaseException:
            # The caller went away; a worker handed over at that very moment must not be lost.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()
                if handed is not None:
                    give_back(handed)
            waiter.cancel()
            raise
        finally:
            self.queued -= 1
        if waiter.done() and not waiter.cancelled():
            return waiter.result()  # even if the deadline struck in the same instant
        waiter.cancel()
        raise TimeoutError

    def hand(self, worker: W) -> bool:
        """Give ``worker`` to the oldest caller still waiting; False when nobody is."""
        waiter = self._next()
        if waiter is None:
            return False
        waiter.set_result(worker)
        return True

    def wake_one(self) -> None:
        """A slot freed up: let the oldest caller still waiting try again."""
        waiter = self._next()
        if waiter is not None:
            waiter.set_result(None)

    def fail_all(self, error: Callable[[], BaseException]) -> None:
        """Every caller still waiting raises ``error()`` (the function was deleted or shut down)."""
        while (waiter := self._next()) is not None:
            waiter.set_exception(error())

    def _next(self) -> asyncio.Future[W | None] | None:
        """The oldest caller still waiting (those that gave up are dropped on the way)."""
        while self._queue:
            waiter = self._queue.popleft()
            if not waiter.done():
                return waiter
        return None
