"""The warm workers of one function, and the life of each invocation on them.

``Pool.invoke`` is the one place an invocation is run: it acquires a worker (warm, new within
the concurrency limit, or queued for with a deadline), invokes, releases, and hands what
happened to the function's ``Accounts``. Every front end reaches it through
``Supervisor.invoke``.

Nothing here scans: an idle worker is popped from the end of a list (most recently used first,
so the hottest process serves and the coldest ages out), a queued request is a future in a
deque (``Waiters``), and worker counts move with each worker's state transitions
(``StateCounts``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable

import anyio
import structlog

from ..errors import (
    ForkLost,
    FunctionError,
    RequestTooLarge,
    ResourceNotFound,
    ResponseTooLarge,
    ShuttingDown,
    TooManyRequests,
    WorkerProtocolError,
)
from ..observability.logs import ReportLog
from ..observability.report import Report, RequestIds
from . import protocol
from .accounting import Accounts, PoolSnapshot
from .backoff import BACKOFF_MAX_S, InitBackoff
from .invocation import (
    SYNC_PAYLOAD_MAX,
    Invocation,
    InvocationType,
    Outcome,
    client_context_object,
)
from .limits import MemoryBackend
from .spawn import WorkerSpec
from .states import State, StateCounts
from .stemcell import StemCells
from .waiters import Waiters
from .worker import Worker
from .zygotes import Zygotes

log = structlog.get_logger("fnhost.pool")

@dataclasses.dataclass(frozen=True, slots=True)
class PoolConfig:
    """What the pool needs of a function's configuration and the daemon's settings."""

    function: str
    memory_mb: int
    timeout_s: float
    min_warm: int
    idle_ttl_s: float
    limit: int  # max concurrent workers: the function's reserved concurrency or the daemon's cap
    queue_timeout_s: float  # how long a call waits for a worker at the limit
    billing_granularity_ms: int


Spawner = Callable[[Callable[[], Awaitable[None]]], None]
WorkerFactory = Callable[..., Worker]  # Worker's signature; a unit test passes a fake


class Pool:
    def __init__(self, config: PoolConfig, spec: WorkerSpec, *, backend: MemoryBackend,
                 spawn_background: Spawner, busy_registry: set[Worker], request_ids: RequestIds,
                 report_log: ReportLog, worker_factory: WorkerFactory = Worker,
                 zygotes: Zygotes | None = None, cells: StemCells | None = None) -> None:
        self.config = config
        self.spec = spec
        self.backend = backend
        self.zygotes = zygotes
        self.cells = cells
        if cells is not None and spec.stem_cell is not None:
            cells.want(spec.stem_cell)  # ready before its first worker is needed
        self.spawn_background = spawn_background
        self.busy_registry = busy_registry  # the daemon's BUSY workers, for the memory sampler
        self.request_ids = request_ids
        self.accounts = Accounts(config.function, report_log)
        self.generation = 0
        self.idle: list[Worker] = []
        self.workers: set[Worker] = set()  # every live worker, any generation
        self.live = 0  # current-generation workers that are starting, idle or busy
        self.states = StateCounts()  # every live worker, any generation, by state
        self.waiters: Waiters[Worker] = Waiters()
        self.backoff = InitBackoff()
        self.closed = False
        self._strikes = InitBackoff()  # protocol violations in a row: they slow min_warm respawns
        self._stopping = False  # stop_all: busy workers are being killed by the daemon's shutdown
        self._new_worker = worker_factory

    # --- one invocation -----------------------------------------------------------------------

    async def invoke(self, invocation: Invocation) -> Outcome:
        """Run ``invocation`` on a worker and account for it, success or failure alike.

        Raises RequestTooLarge, InvalidRequestContent (a client context that is not a JSON object),
        TooManyRequests (no worker within the queue wait),
        ResourceNotFound (the function was deleted meanwhile), ShuttingDown (the daemon's shutdown
        killed the worker). Everything the function did wrong is an Outcome.
        """
        payload = invocation.payload
        if len(payload) > SYNC_PAYLOAD_MAX:
            raise RequestTooLarge(
                f"Request must be smaller than {SYNC_PAYLOAD_MAX} bytes for the Invoke operation "
                f"(payload is {len(payload)} bytes)"
            )
        if invocation.invocation_type is not InvocationType.REQUEST_RESPONSE:
            # Event never gets here: the supervisor stores it and its dispatcher comes back with a
            # RequestResponse invocation carrying the event's request id.
            assert invocation.invocation_type is InvocationType.DRY_RUN, invocation.invocation_type
            return Outcome(204, b"", "", self.request_ids.next(), None)  # DryRun: it would have run
        context = b""  # most invocations: no JSON to build or parse
        if invocation.client_context or invocation.invoked_function_arn:
            context = protocol.encode_context(client_context_object(invocation.client_context),
                                              invocation.invoked_function_arn)
        config = self.config
        accounts = self.accounts
        request_id = invocation.request_id or self.request_ids.next()
        accounts.counters.invocations += 1
        started = time.perf_counter()
        try:
            worker, cold = await self.acquire(invocation.deadline, may_queue=invocation.may_queue)
        except FunctionError as exc:  # the cold start failed: Lambda reports it as Unhandled
            report = Report.failed(request_id, config.memory_mb, started, config.billing_granularity_ms)
            return accounts.failed(report, exc, b"", invocation.tail)
        if cold:
            accounts.counters.cold_starts += 1
        init_ms = worker.init_duration_ms if cold else None
        try:
            reply = await worker.invoke(request_id, payload or b"{}", config.timeout_s, context)
        except FunctionError as exc:
            if self._stopping:
                raise ShuttingDown(
                    "fnhost shut down before the invocation finished (the drain grace ran out)"
                ) from exc
            report = Report.failed(request_id, config.memory_mb, started, config.billing_granularity_ms,
                                   init_ms=init_ms, peak=worker.peak_bytes())
            return accounts.failed(report, exc, worker.invocation_log(), invocation.tail)
        finally:
            self.release(worker)
        report = Report.of(request_id, reply.duration_ms, config.memory_mb, reply.peak_bytes, init_ms,
                           config.billing_granularity_ms)
        if reply.ok and len(reply.body) > SYNC_PAYLOAD_MAX:
            error = ResponseTooLarge(
                f"Response payload size ({len(reply.body)} bytes) exceeded maximum allowed payload size "
                f"({SYNC_PAYLOAD_MAX} bytes)."
            )
            return accounts.failed(report, error, reply.log, invocation.tail)
        return accounts.succeeded(report, reply.body, reply.ok, reply.log, invocation.tail)

    # --- the hot path -------------------------------------------------------------------------

    async def acquire(self, deadline: float | None = None, *, may_queue: bool = True) -> tuple[Worker, bool]:
        """A BUSY worker for one invocation and whether it was a cold start.

        ``deadline`` (anyio's clock) shortens the queue wait to the caller's own; without
        ``may_queue`` there is no wait. Raises InitError/RuntimeExit (a cold start failed),
        TooManyRequests, ResourceNotFound.
        """
        wait_until: float | None = None  # set at the first wait: waking to retry does not extend it
        while True:
            if self.closed:
                raise ResourceNotFound(f"Function not found: {self.config.function}")
            if self.idle:
                worker = self.idle.pop()
                worker.claim()
                return worker, False
            error = self.backoff.active()
            if error is not None:
                raise error
            if self.live < self.config.limit:
                return await self._not_cancelled(await self._start_worker(for_request=True)), True
            if not may_queue:
                self.accounts.counters.throttles += 1
                raise TooManyRequests(
                    f"Rate Exceeded: {self.config.function} is at its concurrency limit of {self.config.limit}; "
                    "a call from a function does not wait for a worker (it could be waiting on itself)"
                )
            if wait_until is None:
                wait_until = anyio.current_time() + self.config.queue_timeout_s
                if deadline is not None and deadline < wait_until:
                    wait_until = deadline
            worker = await self._wait_for_worker(wait_until)
            if worker is not None:
                return await self._not_cancelled(worker), False

    async def _not_cancelled(self, worker: Worker) -> Worker:
        """``worker``, unless its caller was cancelled while it waited for it.

        anyio delivers a cancellation only to a task blocked on a future that is not done yet: a
        caller cancelled in the instant a worker was handed to it would otherwise go on to send
        the invocation, and then kill the worker when the cancellation lands mid-invocation.
        """
        try:
            await anyio.lowlevel.checkpoint_if_cancelled()
        except BaseException:
            self.release(worker)
            raise
        return worker

    def release(self, worker: Worker) -> None:
        """Give a worker back after an invocation; dead or stale workers are dropped here."""
        if worker.state is not State.BUSY:
            return  # it died or was stopped during the invocation; _on_dead accounted for it
        if worker.generation != self.generation or self.closed:
            self.spawn_background(worker.stop)
            return
        self._hand_over(worker)

    def _hand_over(self, worker: Worker) -> None:
        """A BUSY worker of the current generation: to the oldest waiter, or back to idle."""
        if self.waiters.hand(worker):
            return  # handed over still BUSY: no idle round trip
        worker.release()
        self.idle.append(worker)

    # --- starting workers ---------------------------------------------------------------------

    async def _start_worker(self, *, for_request: bool, retried: bool = False, use_cells: bool = True) -> Worker:
        spec = self.spec
        cell = None
        if self.cells is not None and spec.stem_cell is not None and use_cells and not retried:
            cell = await self.cells.take(spec.stem_cell)
            if cell is not None and (self.closed or spec is not self.spec):
                self.spawn_background(cell.stop)  # reconfigured meanwhile: its key may differ
                cell = None
                spec = self.spec
        if cell is not None:
            worker = cell
            worker.adopt(spec, self.generation, self._on_dead, self._observe)
        else:
            worker = self._new_worker(spec, self.generation, self._on_dead, self._observe)
        self.workers.add(worker)
        self.live += 1
        try:
            if cell is not None:
                await self.cells.specialise(cell, spec)  # type: ignore[union-attr]
            else:
                # A retry after a lost fork spawns: whatever killed that worker may be killing forks.
                await worker.start(self.backend, None if retried else self.zygotes)
        except ForkLost as exc:
            log.warning("forked_worker_lost", function=self.config.function, error=exc.message,
                        note="killed before any of its code ran: another worker takes its place")
            if retried or self.closed:
                raise
            # After a stem cell, the usual start; after a fork, a spawn.
            if cell is not None:
                return await self._start_worker(for_request=for_request, use_cells=False)
            return await self._start_worker(for_request=for_request, retried=True)
        except FunctionError as exc:
            if worker.generation != self.generation and not self.closed:
                # Old code failed to start after an update: the new code deserves its own try.
                return await self._start_worker(for_request=True) if for_request else worker
            self.backoff.record(exc)
            log.warning(
                "init_failed",
                function=self.config.function,
                error_type=exc.code,
                error=exc.message,
                retry_in_s=round(self.backoff.until - time.monotonic(), 2),
            )
            self.waiters.wake_one()  # a waiter may now get the error (backoff) instead of waiting
            raise
        except BaseException:
            with anyio.CancelScope(shield=True):
                await worker.stop()
            raise
        self.backoff = InitBackoff()
        if worker.generation != self.generation or self.closed:
            # Reconfigured while this worker was starting: it runs stale code.
            self.spawn_background(worker.stop)
            if for_request:
                return await self._start_worker(for_request=True) if not self.closed else self._gone()
            return worker
        if for_request:
            worker.claim()
        return worker

    def _gone(self) -> Worker:
        raise ResourceNotFound(f"Function not found: {self.config.function}")

    async def _wait_for_worker(self, wait_until: float) -> Worker | None:
        """Queue for a worker until ``wait_until`` (anyio's clock); None means a slot freed up and
        the caller should try again."""
        try:
            return await self.waiters.wait(wait_until, self.release)
        except TimeoutError:
            config = self.config
            self.accounts.counters.throttles += 1
            raise TooManyRequests(
                f"Rate Exceeded: {config.function} is at its concurrency limit of {config.limit} "
                f"and no worker became free within {config.queue_timeout_s:g} s"
            ) from None

    @property
    def queued(self) -> int:
        """Calls waiting for a worker now."""
        return self.waiters.queued

    def _observe(self, worker: Worker, old: State | None, new: State) -> None:
        """Every worker transition: the counts move, and BUSY workers are known to the sampler."""
        self.states.moved(old, new)
        if new is State.BUSY:
            self.busy_registry.add(worker)
        elif old is State.BUSY:
            self.busy_registry.discard(worker)
        elif old is State.IDLE and new is State.STOPPING and worker in self.idle:
            self.idle.remove(worker)  # it broke the protocol while idle: never hand it out

    def _on_dead(self, worker: Worker) -> None:
        self.workers.discard(worker)
        if worker.generation == self.generation and worker.state is State.DEAD:
            self.live -= 1
            try:
                self.idle.remove(worker)  # rare: a worker that dies while idle
            except ValueError:
                pass
            self.waiters.wake_one()
            if worker.killed_for is WorkerProtocolError:
                # Workers that break the protocol once warm (a thread writing to the control pipe
                # after init, say) would otherwise be respawned in a hot loop: min_warm waits
                # 1 s, doubling to 60 s; a violation long after the last one starts over.
                strikes = self._strikes
                if time.monotonic() - strikes.until > BACKOFF_MAX_S:
                    strikes.failures = 0
                strikes.record(WorkerProtocolError(worker.spec.function))
            if not self.closed and self.live < self.config.min_warm:
                self.spawn_background(self.ensure_warm)

    async def ensure_warm(self) -> None:
        """Start workers until min_warm are live (provisioned concurrency); never while closing,
        nor before the back-off of workers killed for protocol violations has passed."""
        delay = self._strikes.until - time.monotonic()
        if delay > 0:
            await anyio.sleep(delay)
        while not self.closed and self.live < self.config.min_warm and self.backoff.active() is None:
            try:
                worker = await self._start_worker(for_request=False)
            except FunctionError:
                return
            if self.closed:
                return  # _start_worker saw it and stops the worker
            if worker.state is State.IDLE and worker.generation == self.generation:
                worker.claim()
                self._hand_over(worker)

    # --- reconfiguration and shutdown -----------------------------------------------------------

    def apply_settings(self, config: PoolConfig) -> None:
        """New limits that do not change what a worker runs (a reloaded daemon setting)."""
        raised = config.limit - self.config.limit
        self.config = config
        for _ in range(min(len(self.waiters), max(raised, 0))):
            self.waiters.wake_one()  # waiters queued for a lower limit may now fit

    def reconfigure(self, config: PoolConfig, spec: WorkerSpec) -> None:
        """New code or configuration: later invocations only ever get new workers."""
        self.config = config
        self.spec = spec
        if self.cells is not None and spec.stem_cell is not None:
            self.cells.want(spec.stem_cell)
        self.generation += 1
        self.live = 0
        self.backoff = InitBackoff()
        stale, self.idle = self.idle, []
        for worker in stale:
            self.spawn_background(worker.stop)
        # Waiters queued for the old limit may now fit.
        for _ in range(min(len(self.waiters), config.limit)):
            self.waiters.wake_one()
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
                tg.start_soon(_stop, worker)

    def _fail_waiters(self) -> None:
        self.waiters.fail_all(lambda: ResourceNotFound(f"Function not found: {self.config.function}"))

    async def stop_all(self) -> None:
        """Shutdown: every worker, busy or not, is stopped now."""
        self.closed = True
        self._stopping = True
        self._fail_waiters()
        self.idle = []
        async with anyio.create_task_group() as tg:
            for worker in list(self.workers):
                tg.start_soon(_stop, worker)

    def snapshot(self, *, with_histograms: bool = False) -> PoolSnapshot:
        """The pool's counts now; histograms and pids only for a metrics scrape."""
        config = self.config
        accounts = self.accounts
        counters = dataclasses.replace(accounts.counters)
        warming = (self.live < config.min_warm and self.backoff.active() is None
                   or self.states[State.STARTING] > 0)
        if not with_histograms:
            return PoolSnapshot(config.function, self.states.by_name(), counters, self.queued, warming)
        return PoolSnapshot(config.function, self.states.by_name(), counters, self.queued, warming,
                            accounts.durations.snapshot(), accounts.inits.snapshot(),
                            tuple(w.pid for w in self.workers if w.pid))


async def _stop(worker: Worker) -> None:
    """Stop one worker for close/stop_all: a failure is logged, and the others still stop."""
    try:
        await worker.stop()
    except Exception:
        log.exception("worker_stop_failed", function=worker.spec.function, pid=worker.pid)
