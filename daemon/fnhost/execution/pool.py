"""The warm workers of one function: acquire, release, scale up, reap idle, replace dead.

Nothing here scans: an idle worker is popped from the end of a list (most recently used first,
so the hottest process serves and the coldest ages out), a queued request is a future in a
deque, and counts are kept as they change.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
import structlog

from .billing import Meter
from .config import FunctionConfig
from .errors import FunctionError, ResourceNotFound, TooManyRequests
from .limits import MemoryBackend
from .metrics import DURATION_BUCKETS, INIT_BUCKETS, Durations
from .worker import State, Worker, WorkerSpec

log = structlog.get_logger("fnhost.pool")

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0


@dataclass(slots=True)
class PoolCounters:
    invocations: int = 0
    errors: int = 0
    throttles: int = 0
    cold_starts: int = 0
    timeouts: int = 0
    out_of_memory: int = 0


@dataclass(slots=True)
class _InitBackoff:
    """Consecutive init failures: until ``until``, callers get ``error`` without a new spawn."""

    failures: int = 0
    until: float = 0.0
    error: FunctionError | None = None

    def record(self, error: FunctionError) -> None:
        self.failures += 1
        self.error = error
        delay = min(BACKOFF_FIRST_S * 2 ** (self.failures - 1), BACKOFF_MAX_S)
        self.until = time.monotonic() + delay

    def active(self) -> FunctionError | None:
        if self.error is not None and time.monotonic() < self.until:
            return self.error
        return None


@dataclass(slots=True)
class Pool:
    config: FunctionConfig
    spec: WorkerSpec
    backend: MemoryBackend
    limit: int  # max concurrent workers of the current generation
    queue_timeout_s: float
    spawn_background: Callable[[Callable[[], Awaitable[None]]], None]
    busy_registry: set[Worker]
    generation: int = 0
    counters: PoolCounters = field(default_factory=PoolCounters)
    idle: list[Worker] = field(default_factory=list)
    workers: set[Worker] = field(default_factory=set)  # every live worker, any generation
    live: int = 0  # current-generation workers that are starting, idle or busy
    waiters: deque[asyncio.Future[Worker | None]] = field(default_factory=deque)
    backoff: _InitBackoff = field(default_factory=_InitBackoff)
    closed: bool = False
    meter: Meter = field(default_factory=Meter)  # usage for the cost report, flushed by billing
    durations: Durations = field(default_factory=lambda: Durations(DURATION_BUCKETS))
    inits: Durations = field(default_factory=lambda: Durations(INIT_BUCKETS))

    # --- the hot path -------------------------------------------------------------------------

    async def acquire(self) -> tuple[Worker, bool]:
        """A BUSY worker for one invocation and whether it was a cold start.

        Raises InitError/RuntimeExit (a cold start failed), TooManyRequests, ResourceNotFound.
        """
        while True:
            if self.closed:
                raise ResourceNotFound(f"Function not found: {self.config.name}")
            if self.idle:
                worker = self.idle.pop()
                worker.claim()
                self.busy_registry.add(worker)
                return worker, False
            error = self.backoff.active()
            if error is not None:
                raise error
            if self.live < self.limit:
                return await self._start_worker(for_request=True), True
            worker = await self._wait_for_worker()
            if worker is not None:
                self.busy_registry.add(worker)
                return worker, False

    def release(self, worker: Worker) -> None:
        """Give a worker back after an invocation; dead or stale workers are dropped here."""
        self.busy_registry.discard(worker)
        if worker.state is not State.BUSY:
            return  # it died or was stopped during the invocation; _on_dead accounted for it
        if worker.generation != self.generation or self.closed:
            self.spawn_background(worker.stop)
            return
        self._hand_over(worker)

    def _hand_over(self, worker: Worker) -> None:
        """A BUSY worker of the current generation: to the oldest waiter, or back to idle."""
        waiter = self._next_waiter()
        if waiter is not None:
            waiter.set_result(worker)  # handed over still BUSY: no idle round trip
            return
        worker.release()
        self.idle.append(worker)

    def _next_waiter(self) -> asyncio.Future[Worker | None] | None:
        """The oldest queued request still waiting (timed-out ones are dropped on the way)."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                return waiter
        return None

    # --- starting workers ---------------------------------------------------------------------

    async def _start_worker(self, *, for_request: bool) -> Worker:
        worker = Worker(self.spec, self.generation, self._on_dead)
        self.workers.add(worker)
        self.live += 1
        try:
            await worker.start(self.backend)
        except FunctionError as exc:
            self.backoff.record(exc)
            log.warning(
                "init_failed",
                function=self.config.name,
                error_type=exc.code,
                error=exc.message,
                retry_in_s=round(self.backoff.until - time.monotonic(), 2),
            )
            self._wake_one()  # a waiter may now get the error (backoff) instead of waiting
            raise
        except BaseException:
            with anyio.CancelScope(shield=True):
                await worker.stop()
            raise
        self.backoff = _InitBackoff()
        if worker.generation != self.generation or self.closed:
            # Reconfigured while this worker was starting: it runs stale code.
            self.spawn_background(worker.stop)
            if for_request:
                return await self._start_worker(for_request=True) if not self.closed else self._gone()
            return worker
        if for_request:
            worker.claim()
            self.busy_registry.add(worker)
        return worker

    def _gone(self) -> Worker:
        raise ResourceNotFound(f"Function not found: {self.config.name}")

    async def _wait_for_worker(self) -> Worker | None:
        """Queue for a worker; None means a slot freed up and the caller should try again."""
        waiter: asyncio.Future[Worker | None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            with anyio.move_on_after(self.queue_timeout_s):
                await waiter
        except BaseException:
            # The caller went away; a worker handed over at that very moment must not be lost.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()
                if handed is not None:
                    self.busy_registry.add(handed)
                    self.release(handed)
            waiter.cancel()
            raise
        if waiter.done() and not waiter.cancelled():
            return waiter.result()  # even if the deadline struck in the same instant
        waiter.cancel()
        self.counters.throttles += 1
        raise TooManyRequests(
            f"Rate Exceeded: {self.config.name} is at its concurrency limit of {self.limit} "
            f"and no worker became free within {self.queue_timeout_s:g} s"
        )

    def _wake_one(self) -> None:
        """A slot freed up (a worker died or a start failed): let the oldest waiter retry."""
        waiter = self._next_waiter()
        if waiter is not None:
            waiter.set_result(None)

    def _on_dead(self, worker: Worker) -> None:
        self.workers.discard(worker)
        self.busy_registry.discard(worker)
        if worker.generation == self.generation and worker.state is State.DEAD:
            self.live -= 1
            try:
                self.idle.remove(worker)  # rare: a worker that dies while idle
            except ValueError:
                pass
            self._wake_one()
            if not self.closed:
                self.spawn_background(self.ensure_warm)

    async def ensure_warm(self) -> None:
        """Start workers until min_warm are live (provisioned concurrency)."""
        while not self.closed and self.live < self.config.min_warm and self.backoff.active() is None:
            try:
                worker = await self._start_worker(for_request=False)
            except FunctionError:
                return
            if worker.state is State.IDLE and worker.generation == self.generation:
                worker.claim()
                self._hand_over(worker)

    # --- reconfiguration and shutdown -----------------------------------------------------------

    def reconfigure(self, config: FunctionConfig, spec: WorkerSpec, limit: int) -> None:
        """New code or configuration: later invocations only ever get new workers."""
        self.config = config
        self.spec = spec
        self.limit = limit
        self.generation += 1
        self.live = 0
        self.backoff = _InitBackoff()
        stale, self.idle = self.idle, []
        for worker in stale:
            self.spawn_background(worker.stop)
        # Waiters queued for the old limit may now fit.
        for _ in range(min(len(self.waiters), self.limit)):
            self._wake_one()
        self.spawn_background(self.ensure_warm)

    def reap_idle(self, now: float) -> None:
        """Stop workers idle longer than idle_ttl_s, keeping min_warm."""
        ttl = self.config.idle_ttl_s
        while self.idle and self.live > self.config.min_warm and now - self.idle[0].last_used > ttl:
            worker = self.idle.pop(0)  # the least recently used sits at the front
            self.live -= 1
            worker.generation = -1  # no longer counted; _on_dead must not count it twice
            self.spawn_background(worker.stop)

    async def close(self) -> None:
        """Stop every worker; queued requests get ResourceNotFound, running ones finish first."""
        self.closed = True
        self._fail_waiters()
        idle, self.idle = self.idle, []
        async with anyio.create_task_group() as tg:
            for worker in idle:
                tg.start_soon(worker.stop)

    def _fail_waiters(self) -> None:
        while (waiter := self._next_waiter()) is not None:
            waiter.set_exception(ResourceNotFound(f"Function not found: {self.config.name}"))

    async def stop_all(self) -> None:
        """Shutdown: every worker, busy or not, is stopped now."""
        self.closed = True
        self._fail_waiters()
        self.idle = []
        async with anyio.create_task_group() as tg:
            for worker in list(self.workers):
                tg.start_soon(worker.stop)

    @property
    def queued(self) -> int:
        """Requests waiting for a worker now."""
        return sum(1 for w in self.waiters if not w.done())

    def workers_starting(self) -> bool:
        return any(w.state is State.STARTING for w in self.workers)

    def worker_states(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for worker in self.workers:
            counts[worker.state.value] = counts.get(worker.state.value, 0) + 1
        return counts
