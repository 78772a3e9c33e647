"""``AsyncInvocations``: the one face of asynchronous invocation the front ends see.

The supervisor owns one, ``supervisor.async_events``. It accepts events (``accept``: durable
before it returns, through the configured backend), keeps the event invoke configs
(``event_configs``), runs the dispatcher (``async_dispatch``) and answers the operator's
questions: the dead-letter queue, queue destinations and per-function stats.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import structlog

from ..errors import RequestTooLarge, ResourceNotFound
from ..execution.invocation import LATEST, Invocation, Outcome
from .async_dispatch import Dispatcher
from .async_model import ASYNC_PAYLOAD_MAX, AsyncStats, DeadLetter, EventInvokeConfig, QueuedEvent, QueueMessage
from .async_queue import AsyncQueue
from .event_configs import EventConfigs

log = structlog.get_logger("fnhost.async")


class AsyncInvocations:
    """Asynchronous invocation for one supervisor: accept, configure, dispatch, inspect."""

    def __init__(self, supervisor: Any, backend: AsyncQueue, configs: EventConfigs) -> None:
        self.supervisor = supervisor
        self.backend = backend
        self.configs = configs
        self.stats_by_function: dict[str, AsyncStats] = {}
        self.dispatcher = Dispatcher(supervisor, backend, configs, self._stats)
        self._depth: dict[str, tuple[int, float]] = {}

    def _stats(self, function: str) -> AsyncStats:
        stats = self.stats_by_function.get(function)
        if stats is None:
            stats = self.stats_by_function[function] = AsyncStats()
        return stats

    # --- lifecycle ----------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Open the backend (recovering leased events) and dispatch until cancelled.
        Raises QueueUnavailable when the backend cannot be opened."""
        await self.backend.start()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._refresh_depth)
                await tg.start(self.dispatcher.run)
                task_status.started()
        finally:
            with anyio.CancelScope(shield=True):
                await self.backend.close()

    async def _refresh_depth(self) -> None:
        """Depth and oldest age per function, read now and then so ``stats()`` stays synchronous."""
        while True:
            try:
                self._depth = await self.backend.depth()
            except Exception:  # the store is down: stats show the last known depth
                log.warning("async_depth_failed", exc_info=True)
            await anyio.sleep(1.0)

    # --- accepting ----------------------------------------------------------------------------

    async def accept(self, invocation: Invocation) -> Outcome:
        """InvocationType Event: store ``invocation`` durably, then answer 202 with its request id
        (the dispatcher runs it later; every attempt keeps that id).

        Raises ResourceNotFound (function or qualifier), RequestTooLarge (over Lambda's 1 MB
        asynchronous limit), QueueUnavailable (the store cannot take it: nothing was accepted).
        """
        supervisor = self.supervisor
        qualifier = invocation.qualifier
        if not qualifier or qualifier == LATEST:
            if invocation.function not in supervisor.pools:
                raise ResourceNotFound(f"Function not found: {invocation.function}")
        else:
            supervisor.resolve(invocation.function, qualifier)  # ResourceNotFound, Lambda's message
        if len(invocation.payload) > ASYNC_PAYLOAD_MAX:
            raise RequestTooLarge(
                f"Request must be smaller than {ASYNC_PAYLOAD_MAX} bytes for the Event invocation type "
                f"(payload is {len(invocation.payload)} bytes)"
            )
        request_id = supervisor.request_ids.next()
        event = QueuedEvent(request_id, invocation.function, invocation.qualifier, invocation.payload,
                            time.time(), client_context=invocation.client_context)
        await self.backend.put(event)
        self._stats(invocation.function).received += 1
        self.dispatcher.wake(invocation.function)
        return Outcome(202, b"", "", request_id, None)

    # --- event invoke configs (Lambda's FunctionEventInvokeConfig operations) ------------------

    def put_event_invoke_config(self, name: str, qualifier: str = "", *,
                                maximum_retry_attempts: int | None = None,
                                maximum_event_age_s: int | None = None,
                                on_success: str | None = None,
                                on_failure: str | None = None) -> EventInvokeConfig:
        """Replace the config (unset fields take Lambda's defaults). Raises ResourceNotFound
        (function or qualifier), InvalidParameter (Lambda's messages)."""
        return self.configs.put(name, qualifier, maximum_retry_attempts=maximum_retry_attempts,
                                maximum_event_age_s=maximum_event_age_s, on_success=on_success,
                                on_failure=on_failure, merge=False)

    def update_event_invoke_config(self, name: str, qualifier: str = "", *,
                                   maximum_retry_attempts: int | None = None,
                                   maximum_event_age_s: int | None = None,
                                   on_success: str | None = None,
                                   on_failure: str | None = None) -> EventInvokeConfig:
        """Merge into the existing config (or the defaults when there is none); same errors as put."""
        return self.configs.put(name, qualifier, maximum_retry_attempts=maximum_retry_attempts,
                                maximum_event_age_s=maximum_event_age_s, on_success=on_success,
                                on_failure=on_failure, merge=True)

    def get_event_invoke_config(self, name: str, qualifier: str = "") -> EventInvokeConfig:
        """Raises ResourceNotFound when the function has no config for this qualifier."""
        return self.configs.get(name, qualifier)

    def delete_event_invoke_config(self, name: str, qualifier: str = "") -> None:
        """Raises ResourceNotFound when there is none."""
        self.configs.delete(name, qualifier)

    def list_event_invoke_configs(self, name: str) -> list[EventInvokeConfig]:
        """Every config of the function, unqualified first. Raises ResourceNotFound (no function)."""
        return self.configs.list(name)

    # --- dead letters and queue destinations --------------------------------------------------

    async def dead_letters(self, name: str) -> list[DeadLetter]:
        return await self.backend.dead_letters(name)

    async def dead_letter(self, name: str, request_id: str) -> DeadLetter:
        """Raises ResourceNotFound."""
        return await self.backend.get_dead_letter(name, request_id)

    async def replay(self, name: str, request_ids: list[str] | None = None) -> int:
        """Queue dead letters again (None: all); how many."""
        count = await self.backend.replay(name, request_ids)
        self.dispatcher.wake()
        return count

    async def purge(self, name: str, request_ids: list[str] | None = None) -> int:
        return await self.backend.purge(name, request_ids)

    async def queue_messages(self, queue: str, limit: int = 100) -> list[QueueMessage]:
        """Records sent to a queue destination (``arn:aws:sqs:…:QUEUE``, by its name)."""
        return await self.backend.receive(queue, limit)

    async def delete_queue_messages(self, queue: str, message_ids: list[str] | None = None) -> int:
        return await self.backend.delete_messages(queue, message_ids)

    # --- observability ------------------------------------------------------------------------

    def stats(self) -> dict[str, AsyncStats]:
        """Per function: counters since start, depth and oldest age as last read (≤ 1 s old)."""
        now = time.time()
        out: dict[str, AsyncStats] = {}
        for function in set(self.stats_by_function) | set(self._depth):
            stats = self._stats(function)
            depth, oldest = self._depth.get(function, (0, now))
            stats.depth = depth
            stats.oldest_age_s = max(0.0, now - oldest) if depth else 0.0
            out[function] = stats
        return out

    async def forget_function(self, name: str) -> None:
        """The function was deleted: its queued events and configs go (dead letters stay)."""
        self.configs.forget(name)
        await self.backend.forget_function(name)
