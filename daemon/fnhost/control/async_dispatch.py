"""The dispatcher: runs queued events with Lambda's asynchronous semantics.

For each function with deliverable events it leases as many as the function's async share has
room for (``async_max_share`` of its concurrency limit, at least one worker, none while
synchronous callers are queued for a worker and an event already runs), and runs each as a
synchronous invocation with the event's own request id, so every attempt writes its REPORT line
under the same id. Then, as Lambda does:

* success: the on-success destination gets the record; the event is done;
* a function error (the handler raised, timed out, ran out of memory, crashed) uses one of
  ``MaximumRetryAttempts``: retried after ``async_retry_base_s``, then twice that; once they
  are used up the event goes to the on-failure destination, or else the dead-letter queue;
* throttled (no worker within the queue wait) or a platform failure: retried with a growing
  delay, without counting, until the event's age runs out;
* an event older than ``MaximumEventAgeInSeconds`` when its turn comes is not run: counted as
  dropped, and sent to the on-failure destination or the dead-letter queue.

Retry delays never reach past an event's maximum age: the delivery that would come too late
comes at the deadline and is dropped there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import anyio
import structlog

from ..errors import ApiError, QueueUnavailable, ResourceNotFound, ShuttingDown, TooManyRequests
from ..execution.invocation import Invocation, Outcome
from .async_model import AsyncStats, Condition, EventInvokeConfig, QueuedEvent, Reason
from .async_queue import AsyncQueue
from .destinations import Attempt, DestinationError, deliver, record
from .event_configs import EventConfigs

log = structlog.get_logger("fnhost.async.dispatch")

POLL_S = 0.1  # how soon a retry that came due (or another host's event) is noticed
LEASE_MARGIN_S = 30.0  # beyond the longest an attempt can take, before its lease runs out
THROTTLE_DELAY_MAX_S = 300.0  # Lambda backs off throttled events up to about 5 minutes


class Dispatcher:
    """Leases events from the backend and runs them on the supervisor's pools."""

    def __init__(self, supervisor: Any, backend: AsyncQueue, configs: EventConfigs,
                 stats: Callable[[str], AsyncStats]) -> None:
        self.supervisor = supervisor
        self.backend = backend
        self.configs = configs
        self.stats = stats
        self.in_flight: dict[str, int] = {}
        self._wake = anyio.Event()
        self._hinted: set[str] = set()  # functions known to have changed since the last look
        self._full = True  # ask the backend which functions are ready (else: only the hinted)
        self._leasing: set[str] = set()  # functions whose lease is under way

    def wake(self, function: str | None = None) -> None:
        """Something changed: ``function`` got an event or freed a slot (None: anything may have).

        A hint saves asking the store which functions are ready: on the accept path that is a
        query fewer competing with the next accept's commit.
        """
        if function is None:
            self._full = True
        else:
            self._hinted.add(function)
        self._wake.set()

    # --- the loop -----------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Dispatch until cancelled; attempts still running are cancelled with it (their leases stay
        in the store: a restart delivers those events again)."""
        async with anyio.create_task_group() as tg:
            task_status.started()
            last_full = 0.0
            while True:
                self._wake = anyio.Event()
                now = anyio.current_time()
                # Retries that came due and other hosts' events have no hint: every POLL_S, even
                # while hints keep coming, the store is asked.
                full = self._full or now - last_full >= POLL_S
                hinted, self._hinted, self._full = self._hinted, set(), False
                if full:
                    last_full = now
                try:
                    await self._dispatch(tg, None if full else hinted)
                except QueueUnavailable as exc:
                    log.warning("async_queue_unavailable", error=exc.message)
                    await anyio.sleep(1.0)
                except Exception:  # a bug must not stop asynchronous invocation for good
                    log.exception("async_dispatch_failed")
                    await anyio.sleep(1.0)
                with anyio.move_on_after(POLL_S):
                    await self._wake.wait()

    async def _dispatch(self, tg: anyio.abc.TaskGroup, hinted: set[str] | None) -> None:
        if self.supervisor.draining:
            return
        for function in await self.backend.ready_functions() if hinted is None else hinted:
            if function in self._leasing:
                continue
            free = self._free(function)
            if free <= 0:
                continue
            # Each function's lease is a task of its own: JetStream's fetch waits a moment when
            # nothing of that function is deliverable (an event waiting out a retry's delay), and
            # one such function must not hold up the dispatch of every other.
            self._leasing.add(function)
            tg.start_soon(self._lease, tg, function, free)

    async def _lease(self, tg: anyio.abc.TaskGroup, function: str, free: int) -> None:
        try:
            events = await self.backend.lease(function, free, self._lease_s(function))
        except QueueUnavailable as exc:
            log.warning("async_queue_unavailable", function=function, error=exc.message)
            return
        finally:
            self._leasing.discard(function)
        for event in events:
            self.in_flight[function] = self.in_flight.get(function, 0) + 1
            tg.start_soon(self._attempt, event)

    def _free(self, function: str) -> int:
        """How many more of ``function``'s events may run now."""
        running = self.in_flight.get(function, 0)
        pool = self.supervisor.pools.get(function)
        if pool is None:  # deleted (its attempt dead-letters it) or not loaded: one at a time
            return 1 - running
        if pool.queued and running:
            return 0  # synchronous callers are waiting for a worker: they go first
        share = max(1, int(pool.config.limit * self.supervisor.settings.async_max_share))
        return share - running

    def _lease_s(self, function: str) -> float:
        settings = self.supervisor.settings
        pool = self.supervisor.pools.get(function)
        timeout = pool.config.timeout_s if pool is not None else 900.0
        return timeout + settings.init_timeout_s + settings.queue_timeout_s + LEASE_MARGIN_S

    # --- one attempt --------------------------------------------------------------------------

    async def _attempt(self, event: QueuedEvent) -> None:
        try:
            await self._run_attempt(event)
        except QueueUnavailable as exc:  # the lease stays: the event is delivered again later
            log.warning("async_attempt_unrecorded", function=event.function, request_id=event.request_id,
                        error=exc.message)
        except Exception:
            log.exception("async_attempt_failed", function=event.function, request_id=event.request_id)
        finally:
            self.in_flight[event.function] -= 1
            if not self.in_flight[event.function]:
                del self.in_flight[event.function]
            self.wake(event.function)

    async def _run_attempt(self, event: QueuedEvent) -> None:
        config = self.configs.effective(event.function, event.qualifier)
        stats = self.stats(event.function)
        if event.age_s(time.time()) >= config.maximum_event_age_s:
            event.attempts -= 1  # this delivery does not run
            stats.dropped_age += 1
            log.info("async_event_dropped", function=event.function, request_id=event.request_id,
                     age_s=round(event.age_s(time.time()), 1), maximum_event_age_s=config.maximum_event_age_s)
            await self._fail(event, config, Condition.EVENT_AGE_EXCEEDED, event.last_error or json.dumps(
                {"errorType": Reason.EVENT_AGE_EXCEEDED.value,
                 "errorMessage": f"the event was older than {config.maximum_event_age_s} s before it could run"}),
                None)
            return
        if event.failures > config.maximum_retry_attempts:
            # Its retries were used up before this delivery (JetStream counts a delivery whose
            # daemon died as one): it goes where exhausted events go, without running again.
            event.attempts -= 1
            await self._fail(event, config, Condition.RETRIES_EXHAUSTED, event.last_error, None)
            return
        if event.attempts > 1:
            stats.retries += 1
        outcome, failure = await self._invoke(event)
        if failure is not None:
            await self._failed_to_run(event, config, stats, failure)
        elif outcome is not None and outcome.ok:
            await self._succeeded(event, config, outcome)
        elif outcome is not None:
            await self._function_error(event, config, outcome)

    async def _invoke(self, event: QueuedEvent) -> tuple[Outcome | None, BaseException | None]:
        """Run the attempt, keeping the lease alive meanwhile; the outcome or what was raised."""
        invocation = Invocation(event.function, event.payload, qualifier=event.qualifier,
                                client_context=event.client_context, request_id=event.request_id)
        result: list[Any] = [None, None]
        lease_s = self._lease_s(event.function)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._keep_alive, event, lease_s)
            try:
                result[0] = await self.supervisor.invoke(invocation)
            except Exception as exc:  # sorted by the caller: throttle, platform failure, gone
                result[1] = exc
            tg.cancel_scope.cancel()
        return result[0], result[1]

    async def _keep_alive(self, event: QueuedEvent, lease_s: float) -> None:
        while True:
            await anyio.sleep(lease_s / 3)
            try:
                await self.backend.extend(event, lease_s)
            except QueueUnavailable:
                pass  # the next try may reach it; a lost lease only means a second delivery

    async def _succeeded(self, event: QueuedEvent, config: EventInvokeConfig, outcome: Outcome) -> None:
        if config.on_success:
            attempt = Attempt(outcome.status_code, outcome.executed_version, "", outcome.payload)
            if await self._send(event, config.on_success, Condition.SUCCESS, attempt):
                self.stats(event.function).delivered_success += 1
        await self.backend.complete(event)

    async def _function_error(self, event: QueuedEvent, config: EventInvokeConfig, outcome: Outcome) -> None:
        error = outcome.payload.decode("utf-8", "replace")
        if event.failures + 1 > config.maximum_retry_attempts:
            event.failures += 1
            event.last_error = error
            attempt = Attempt(outcome.status_code, outcome.executed_version, outcome.function_error,
                              outcome.payload)
            await self._fail(event, config, Condition.RETRIES_EXHAUSTED, error, attempt)
            return
        delay = self.supervisor.settings.async_retry_base_s * 2 ** event.failures  # ~1 min, then ~2
        await self.backend.retry(event, self._within_age(event, config, delay), counted=True, error=error)

    async def _failed_to_run(self, event: QueuedEvent, config: EventInvokeConfig, stats: AsyncStats,
                             failure: BaseException) -> None:
        if isinstance(failure, ShuttingDown):
            return  # the daemon is stopping: the lease stays, and the next start delivers it again
        if isinstance(failure, ResourceNotFound):  # its function or qualifier was deleted meanwhile
            event.attempts -= 1
            await self.backend.dead_letter(event, Reason.FUNCTION_DELETED.value, json.dumps(
                {"errorType": failure.code, "errorMessage": failure.message}))
            stats.dead_lettered += 1
            return
        if isinstance(failure, TooManyRequests) or not isinstance(failure, ApiError):
            # Throttled, or the platform failed: not the function's fault, so not counted.
            if isinstance(failure, TooManyRequests):
                stats.throttled += 1
            else:
                log.warning("async_platform_failure", function=event.function, request_id=event.request_id,
                            error=repr(failure))
            # 1 s, doubling, up to 5 × async_retry_base_s (Lambda's ~5 minutes at the default of
            # 60 s); a short base (tests, build hosts) shortens both.
            base = self.supervisor.settings.async_retry_base_s
            unit = min(1.0, base) or 0.05
            uncounted = max(0, event.attempts - event.failures - 1)
            delay = min(unit * 2 ** min(uncounted, 10), min(THROTTLE_DELAY_MAX_S, 5 * max(base, unit)))
            code = getattr(failure, "code", type(failure).__name__)
            error = json.dumps({"errorType": code, "errorMessage": getattr(failure, "message", str(failure))})
            await self.backend.retry(event, self._within_age(event, config, delay), counted=False, error=error)
            return
        # Any other refusal (a client context that is not JSON) fails the same way every time.
        error = json.dumps({"errorType": failure.code, "errorMessage": failure.message})
        event.last_error = error
        await self._fail(event, config, Condition.RETRIES_EXHAUSTED, error, None)

    @staticmethod
    def _within_age(event: QueuedEvent, config: EventInvokeConfig, delay: float) -> float:
        """``delay``, cut short so the next delivery comes no later than the event's age limit."""
        remaining = config.maximum_event_age_s - event.age_s(time.time())
        return max(0.0, min(delay, remaining))

    async def _fail(self, event: QueuedEvent, config: EventInvokeConfig, condition: Condition, error: str,
                    attempt: Attempt | None) -> None:
        """The event is done without success: its on-failure destination, else the dead-letter queue."""
        stats = self.stats(event.function)
        if config.on_failure and await self._send(event, config.on_failure, condition, attempt):
            stats.delivered_failure += 1
            await self.backend.complete(event)
            return
        reason = Reason.EVENT_AGE_EXCEEDED if condition is Condition.EVENT_AGE_EXCEEDED else Reason.RETRIES_EXHAUSTED
        await self.backend.dead_letter(event, reason.value, error)
        stats.dead_lettered += 1
        log.info("async_event_dead_lettered", function=event.function, request_id=event.request_id,
                 reason=reason.value, attempts=event.attempts)

    async def _send(self, event: QueuedEvent, arn: str, condition: Condition, attempt: Attempt | None) -> bool:
        """Deliver the record; False (logged) when the destination cannot take it."""
        settings = self.supervisor.settings
        body = record(event, condition.value, attempt, region=settings.region, account_id=settings.account_id)
        try:
            await deliver(self.backend, arn, body, new_request_id=self.supervisor.request_ids.next(),
                          function_exists=self.supervisor.get_function)
        except DestinationError as exc:
            log.warning("async_destination_failed", function=event.function, request_id=event.request_id,
                        destination=arn, error=str(exc))
            return False
        self.wake()
        return True
