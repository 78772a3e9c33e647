"""Batches from a queue: what InvokeStream's both ends use to put many items in one message."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

T = TypeVar("T")

END = None  # put on the queue to end the batches (after what is already queued)


async def batches(queue: asyncio.Queue[T | None]) -> AsyncIterator[list[T]]:
    """Wait for one item, then take every item already queued with it: one batch per message.

    Under load a batch grows by itself (items pile up while the previous message is written),
    and an idle stream still sends each item at once.
    """
    while True:
        first = await queue.get()
        if first is END:
            return
        batch = [first]
        while not queue.empty():
            item = queue.get_nowait()
            if item is END:
                yield batch
                return
            batch.append(item)
        yield batch
