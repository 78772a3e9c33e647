"""``Pool`` as a unit: a fake worker class, no processes, every race driven by hand.

The fake subclasses ``Worker`` and keeps its ``_set``, ``claim`` and ``release``, so it moves
through the real state table and reports every transition to the pool exactly as a process
would; only spawning, the conversation and the kill are played. What a fake does (wait at a
gate, fail its init, time out) is set per test on a ``Host``, which also records what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import anyio
import pytest
import structlog

from fnhost.errors import FunctionError, InitError, RuntimeExit, SandboxTimeout, TooManyRequests
from fnhost.execution import backoff as backoff_module
from fnhost.execution.invocation import Invocation, Outcome
from fnhost.execution.pool import Pool, PoolConfig
from fnhost.execution.spawn import WorkerSpec
from fnhost.execution.states import State
from fnhost.execution.worker import Reply, Worker
from fnhost.observability.logs import ReportLog
from fnhost.observability.report import RequestIds

from tests.conftest import Background, pool_in_task_group

_pids = itertools.count(10_000)

Observer = Callable[[Worker, "State | None", State], None]  # Worker's ``observe``


def _spec(version: str = "v1") -> WorkerSpec:
    return WorkerSpec(function="f", argv=["fake", version], env={}, cwd="/", init_frame=b"",
                      memory_limit_bytes=128 * 1024 * 1024, init_timeout_s=1.0, kill_grace_s=0.1)


def _config(**overrides: object) -> PoolConfig:
    values: dict[str, object] = dict(function="f", memory_mb=128, timeout_s=3.0, min_warm=0,
                                     idle_ttl_s=600.0, limit=1, queue_timeout_s=5.0,
                                     billing_granularity_ms=1)
    values.update(overrides)
    return PoolConfig(**values)  # type: ignore[arg-type]


@dataclass
class Host:
    """The fakes' script (set by a test) and their record (read by it)."""

    start_gate: asyncio.Event | None = None  # starts wait here until the test opens it
    start_errors: dict[int, Callable[[], FunctionError]] = field(default_factory=dict)  # by generation
    invoke_gate: asyncio.Event | None = None  # invocations wait here until the test opens it
    invoke_error: Callable[[], FunctionError] | None = None
    created: list[FakeWorker] = field(default_factory=list)
    starts: int = 0
    invoked: list[tuple[FakeWorker, str]] = field(default_factory=list)  # (worker, request id)

    def worker(self, spec: WorkerSpec, generation: int, on_dead: Callable[[Worker], None],
               observe: Observer) -> FakeWorker:
        return FakeWorker(self, spec, generation, on_dead, observe)


class FakeWorker(Worker):
    """A worker with the real state machine and a played process."""

    def __init__(self, host: Host, spec: WorkerSpec, generation: int,
                 on_dead: Callable[[Worker], None], observe: Observer) -> None:
        self.host = host
        super().__init__(spec, generation, on_dead, observe)
        host.created.append(self)

    async def start(self, backend: object, zygotes: object = None) -> None:
        host = self.host
        host.starts += 1
        self.pid = next(_pids)
        if host.start_gate is not None:
            await host.start_gate.wait()
        error = host.start_errors.get(self.generation)
        if error is not None:  # as INIT_ERROR: FAILED, then the process exits
            self._set(State.FAILED)
            self.die()
            raise error()
        self.init_duration_ms = 42.0
        self._set(State.IDLE)

    async def invoke(self, request_id: str, payload: bytes, timeout_s: float, context: bytes = b"") -> Reply:
        assert self.state is State.BUSY, self.state
        host = self.host
        host.invoked.append((self, request_id))
        self.invocations += 1
        try:
            if host.invoke_gate is not None:
                await host.invoke_gate.wait()
            else:
                await asyncio.sleep(0)  # the reply arrives on a later turn of the loop
        except BaseException:
            # As the real worker: a caller that went away leaves a worker that cannot be reused.
            if self.state is State.BUSY:
                self._set(State.STOPPING)
                asyncio.get_running_loop().call_soon(self.die)
            raise
        if host.invoke_error is not None:
            error = host.invoke_error()
            self.killed_for = type(error)
            await self.stop()
            raise error
        return Reply(ok=True, body=b'{"echo":' + payload + b"}", duration_ms=1.5, peak_bytes=0, log=b"")

    async def stop(self, sig: int | None = None) -> None:
        if self.state is State.DEAD:
            return
        if self.state is not State.STOPPING:
            self._set(State.STOPPING)
        await asyncio.sleep(0)  # a real stop waits for the exit
        self.die()

    def die(self) -> None:
        """The process is gone (stopped, or crashed on its own)."""
        if self.state is not State.DEAD:
            self._set(State.DEAD)
            self._on_dead(self)


@contextlib.asynccontextmanager
async def running(host: Host | None = None, **config: object) -> AsyncIterator[tuple[Pool, Host]]:
    """A pool of fakes whose background work (stops, ensure_warm) runs in a task group we own."""
    host = host or Host()

    def make(spawn_background: Background) -> Pool:
        return Pool(_config(**config), _spec(), backend=None, spawn_background=spawn_background,  # type: ignore[arg-type]
                    busy_registry=set(), request_ids=RequestIds(), report_log=ReportLog(structlog.get_logger()),
                    worker_factory=host.worker)

    async def finish(pool: Pool) -> None:
        with anyio.CancelScope(shield=True):
            await settle()  # background work started by the test's last steps runs out

    async with pool_in_task_group(make, finish) as pool:
        yield pool, host


async def settle() -> None:
    """Let every task and callback run until all are waiting on something."""
    for _ in range(3):
        await asyncio.sleep(0)
        await anyio.wait_all_tasks_blocked()


def invoke_soon(pool: Pool, payload: bytes = b"{}") -> asyncio.Task[Outcome]:
    return asyncio.create_task(pool.invoke(Invocation("f", payload)))


def error_of(outcome: Outcome) -> dict[str, object]:
    assert outcome.function_error == "Unhandled", outcome
    return json.loads(outcome.payload)


# --- (a) a worker handed over to a caller who is cancelled in that same instant ------------------


@pytest.mark.parametrize("order", ["release-then-cancel", "cancel-then-release"])
async def test_a_worker_handed_to_a_cancelled_caller_goes_back_to_idle(order: str) -> None:
    async with running(limit=1) as (pool, host):
        worker, cold = await pool.acquire()
        assert cold and worker.state is State.BUSY
        queued = invoke_soon(pool)
        await settle()
        assert pool.snapshot().queued == 1

        # One synchronous step: the release hands the worker over, the caller is cancelled
        # (asyncio's Task.cancel, as grpc.aio cancels a handler whose client went away).
        if order == "release-then-cancel":
            pool.release(worker)
            queued.cancel()
        else:
            queued.cancel()
            pool.release(worker)
        with pytest.raises(asyncio.CancelledError):
            await queued
        await settle()

        assert worker.state is State.IDLE
        assert pool.idle == [worker]
        assert pool.snapshot().workers == {"idle": 1}
        assert pool.snapshot().queued == 0
        assert pool.busy_registry == set()
        assert host.invoked == []  # nothing ran for the caller that went away

        outcome = await pool.invoke(Invocation("f", b"1"))  # the same warm worker serves
        assert outcome.ok and outcome.payload == b'{"echo":1}'
        assert host.starts == 1 and host.invoked[-1][0] is worker


async def test_a_worker_handed_to_a_cancelled_caller_goes_to_the_next_waiter() -> None:
    async with running(limit=1) as (pool, host):
        worker, _ = await pool.acquire()
        first = invoke_soon(pool, b"1")
        await settle()
        second = invoke_soon(pool, b"2")
        await settle()
        assert pool.snapshot().queued == 2

        pool.release(worker)  # handed to the oldest waiter, `first`...
        first.cancel()  # ...who goes away in the same instant
        with pytest.raises(asyncio.CancelledError):
            await first
        outcome = await second

        assert outcome.ok and outcome.payload == b'{"echo":2}'
        assert [w for w, _ in host.invoked] == [worker]  # one invocation ran: the second's
        assert host.starts == 1  # no cold start: the warm worker moved on
        assert pool.snapshot().workers == {"idle": 1}
        assert pool.snapshot().queued == 0


async def test_a_worker_handed_to_a_caller_cancelled_by_a_cancel_scope_is_not_used() -> None:
    # As above, cancelled through an anyio cancel scope instead (a front end on task groups):
    # anyio does not interrupt a task whose awaited future is already done, so the caller
    # resumes holding the worker and only a check of its own scope stops it using it.
    async with running(limit=1) as (pool, host):
        worker, _ = await pool.acquire()
        scope = anyio.CancelScope()

        async def call() -> Outcome | None:
            with scope:
                return await pool.invoke(Invocation("f", b"{}"))
            return None

        queued = asyncio.create_task(call())
        await settle()
        pool.release(worker)
        scope.cancel()
        assert await queued is None
        await settle()

        assert host.invoked == []  # the abandoned request never reached user code
        assert worker.state is State.IDLE and pool.snapshot().workers == {"idle": 1}
        assert host.starts == 1


# --- (b) a new generation while a worker is starting -------------------------------------------


async def test_a_worker_started_for_old_code_is_stopped_and_the_caller_gets_new_code() -> None:
    host = Host(start_gate=asyncio.Event())
    async with running(host, limit=2) as (pool, _):
        call = invoke_soon(pool)
        await settle()
        [stale] = host.created
        assert stale.state is State.STARTING and stale.generation == 0

        new_spec = _spec("v2")
        pool.reconfigure(_config(limit=2), new_spec)
        host.start_gate.set()
        outcome = await call
        await settle()

        assert outcome.ok
        assert [w.generation for w, _ in host.invoked] == [1]  # nothing ran on the old code
        [(served, _)] = host.invoked
        assert served is not stale and served.spec is new_spec
        assert stale.state is State.DEAD  # stopped, not left running
        assert pool.workers == {served}
        assert pool.snapshot().workers == {"idle": 1}
        assert pool.live == 1


async def test_a_busy_worker_of_old_code_is_stopped_when_released() -> None:
    async with running(limit=1) as (pool, host):
        await pool.invoke(Invocation("f", b"{}"))
        [old] = host.created
        host.invoke_gate = asyncio.Event()
        call = invoke_soon(pool)
        await settle()
        assert old.state is State.BUSY

        pool.reconfigure(_config(limit=1), _spec("v2"))
        host.invoke_gate.set()
        assert (await call).ok  # the invocation already running finishes on its worker
        await settle()
        assert old.state is State.DEAD
        assert pool.idle == [] and pool.snapshot().workers == {}

        await pool.invoke(Invocation("f", b"{}"))
        assert [w.generation for w, _ in host.invoked] == [0, 0, 1]


async def test_an_init_failure_of_old_code_does_not_hold_back_new_code() -> None:
    host = Host(start_gate=asyncio.Event(),
                start_errors={0: lambda: InitError("Runtime.ImportModuleError", "No module named 'app'")})
    async with running(host, limit=2) as (pool, _):
        call = invoke_soon(pool)
        await settle()
        pool.reconfigure(_config(limit=2), _spec("v2"))  # the fix is deployed while v1 starts
        host.start_gate.set()
        first = await call  # its old-code worker failed: it ran on the new code instead
        assert first.ok, first.payload
        await settle()

        outcome = await pool.invoke(Invocation("f", b"{}"))
        assert outcome.ok, outcome.payload
        assert [w.generation for w, _ in host.invoked] == [1, 1]


# --- (c) init back-off ---------------------------------------------------------------------------


async def test_a_failing_init_is_not_retried_until_the_back_off_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backoff_module, "BACKOFF_FIRST_S", 0.1)
    host = Host(start_errors={0: lambda: InitError("Runtime.ImportModuleError", "No module named 'app'")})
    async with running(host, limit=2) as (pool, _):
        first = await pool.invoke(Invocation("f", b"{}"))
        assert error_of(first)["errorType"] == "Runtime.ImportModuleError"
        assert host.starts == 1

        for _ in range(3):  # immediately after: the same error, no new process
            again = await pool.invoke(Invocation("f", b"{}"))
            assert again.payload == first.payload
        assert host.starts == 1

        await anyio.sleep(0.15)  # past the first back-off (0.1 s): one new attempt, which fails
        assert error_of(await pool.invoke(Invocation("f", b"{}")))["errorType"] == "Runtime.ImportModuleError"
        assert host.starts == 2

        host.start_errors.clear()  # the cause is gone, but the back-off has doubled to 0.2 s
        await anyio.sleep(0.12)
        assert not (await pool.invoke(Invocation("f", b"{}"))).ok
        assert host.starts == 2
        await anyio.sleep(0.15)
        recovered = await pool.invoke(Invocation("f", b"{}"))
        assert recovered.ok and host.starts == 3
        counters = pool.snapshot().counters
        assert (counters.invocations, counters.errors, counters.cold_starts) == (7, 6, 1)
        assert pool.snapshot().workers == {"idle": 1}


async def test_a_queued_caller_gets_the_init_error_instead_of_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backoff_module, "BACKOFF_FIRST_S", 5.0)
    host = Host(start_gate=asyncio.Event(),
                start_errors={0: lambda: InitError("Runtime.InitError", "boom")})
    async with running(host, limit=1, queue_timeout_s=5.0) as (pool, _):
        starting = invoke_soon(pool)
        await settle()
        queued = invoke_soon(pool)
        await settle()
        assert pool.snapshot().queued == 1
        host.start_gate.set()
        with anyio.fail_after(1):  # well before the queue wait of 5 s
            outcomes = [await starting, await queued]
        assert [error_of(o)["errorType"] for o in outcomes] == ["Runtime.InitError"] * 2
        assert host.starts == 1
        assert pool.snapshot().queued == 0 and pool.snapshot().counters.throttles == 0


# --- (d) throttling ------------------------------------------------------------------------------


async def test_at_the_limit_a_caller_waits_the_queue_timeout_then_is_throttled() -> None:
    host = Host(invoke_gate=asyncio.Event())
    async with running(host, limit=1, queue_timeout_s=0.2) as (pool, _):
        holder = invoke_soon(pool)
        await settle()
        throttled = invoke_soon(pool)
        await settle()
        assert pool.snapshot().queued == 1

        started = time.monotonic()
        with pytest.raises(TooManyRequests) as info:
            await throttled
        waited = time.monotonic() - started
        assert 0.15 <= waited < 1.0
        assert "concurrency limit of 1" in info.value.message
        snapshot = pool.snapshot()
        assert snapshot.counters.throttles == 1
        assert snapshot.queued == 0
        assert host.starts == 1  # the limit held: no second worker

        host.invoke_gate.set()
        assert (await holder).ok
        await settle()
        assert pool.snapshot().workers == {"idle": 1}  # not handed to the caller that gave up
        assert pool.snapshot().counters.outcomes()["throttled"] == 1


async def test_a_callers_own_deadline_shortens_the_queue_wait() -> None:
    host = Host(invoke_gate=asyncio.Event())
    async with running(host, limit=1, queue_timeout_s=10.0) as (pool, _):
        holder = invoke_soon(pool)
        await settle()
        started = time.monotonic()
        with pytest.raises(TooManyRequests):
            await pool.invoke(Invocation("f", b"{}", deadline=anyio.current_time() + 0.1))
        assert time.monotonic() - started < 1.0
        assert pool.snapshot().queued == 0 and pool.snapshot().counters.throttles == 1
        host.invoke_gate.set()
        await holder


async def test_a_call_that_may_not_queue_is_throttled_at_once_at_the_limit() -> None:
    """A function calling a function: waiting could be waiting on itself (A calls A at limit 1)."""
    host = Host(invoke_gate=asyncio.Event())
    async with running(host, limit=1, queue_timeout_s=10.0) as (pool, _):
        holder = invoke_soon(pool)
        await settle()
        started = time.monotonic()
        with pytest.raises(TooManyRequests, match="does not wait"):
            await pool.invoke(Invocation("f", b"{}", may_queue=False))
        assert time.monotonic() - started < 0.5
        assert pool.snapshot().queued == 0 and pool.snapshot().counters.throttles == 1
        host.invoke_gate.set()
        assert (await holder).ok
        await settle()
        assert (await pool.invoke(Invocation("f", b"{}", may_queue=False))).ok  # a free worker: served


# --- (e) counts follow the transitions -----------------------------------------------------------


class _NoScan(set):  # type: ignore[type-arg]
    def __iter__(self):  # type: ignore[no-untyped-def]
        raise AssertionError("the snapshot walked the workers")


async def test_the_snapshot_counts_follow_each_transition_without_scanning() -> None:
    host = Host(start_gate=asyncio.Event(), invoke_gate=asyncio.Event())
    async with running(host, limit=2) as (pool, _):
        pool.workers = _NoScan()  # counts must come from the transitions, not from a walk
        call = invoke_soon(pool)
        await settle()
        assert pool.snapshot().workers == {"starting": 1}
        assert pool.snapshot().warming

        host.start_gate.set()
        await settle()
        [worker] = host.created
        assert pool.snapshot().workers == {"busy": 1}
        assert pool.busy_registry == {worker}

        host.invoke_gate.set()
        outcome = await call
        assert outcome.report is not None and outcome.report.init_duration_ms == 42.0  # cold
        assert pool.snapshot().workers == {"idle": 1}
        assert pool.busy_registry == set()
        assert not pool.snapshot().warming

        warm = await pool.invoke(Invocation("f", b"{}"))
        assert warm.report is not None and warm.report.init_duration_ms is None
        assert pool.snapshot().counters.cold_starts == 1

        worker.die()  # it crashes while idle: the pool hears of it only through the transition
        snapshot = pool.snapshot()
        assert snapshot.workers == {}
        assert pool.idle == [] and pool.live == 0


# --- (f) a platform failure is accounted as Lambda does --------------------------------------------


async def test_a_timeout_is_an_unhandled_function_error_and_the_worker_is_replaced() -> None:
    host = Host(invoke_error=lambda: SandboxTimeout("Task timed out after 3.00 seconds"))
    async with running(host, limit=1) as (pool, _):
        outcome = await pool.invoke(Invocation("f", b"{}"))

        assert outcome.status_code == 200 and outcome.function_error == "Unhandled"
        assert error_of(outcome) == {"errorType": "Sandbox.Timeout",
                                     "errorMessage": "Task timed out after 3.00 seconds",
                                     "stackTrace": []}
        assert outcome.report is not None and outcome.report.request_id == outcome.request_id
        counters = pool.snapshot().counters
        assert (counters.invocations, counters.errors, counters.timeouts) == (1, 1, 1)
        assert counters.outcomes()["timeout"] == 1 and counters.outcomes()["success"] == 0
        [dead] = host.created
        assert dead.state is State.DEAD
        assert pool.snapshot().workers == {} and pool.live == 0 and pool.busy_registry == set()

        host.invoke_error = None
        assert (await pool.invoke(Invocation("f", b"{}"))).ok  # a new worker, within the limit
        assert host.starts == 2 and host.invoked[-1][0] is not dead


async def test_a_worker_killed_while_starting_is_replaced_before_any_back_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """A start that died (killed from outside, a crash) is retried at once, twice in a row; only
    the third in a row backs off. A handler that cannot load backs off at the first (above)."""
    monkeypatch.setattr(backoff_module, "BACKOFF_FIRST_S", 5.0)
    host = Host(start_errors={0: lambda: RuntimeExit("Runtime exited with error: signal: kill")})
    async with running(host, limit=2) as (pool, _):
        for expected_starts in (1, 2, 3):
            outcome = await pool.invoke(Invocation("f", b"{}"))
            assert error_of(outcome)["errorType"] == "Runtime.ExitError"
            assert host.starts == expected_starts  # each call tried a new process
        again = await pool.invoke(Invocation("f", b"{}"))  # third in a row: backing off now
        assert error_of(again)["errorType"] == "Runtime.ExitError" and host.starts == 3
        host.start_errors.clear()
        pool.backoff.until = 0.0  # as if the back-off had passed
        assert (await pool.invoke(Invocation("f", b"{}"))).ok and host.starts == 4


async def test_answering_from_the_back_off_does_not_grow_the_stored_error() -> None:
    """Each caller gets a fresh exception: re-raising one object would chain every raise's frames
    (and their locals) onto its traceback, growing the daemon with every throttled call."""
    host = Host(start_errors={0: lambda: InitError("Runtime.ImportModuleError", "No module named 'app'")})
    async with running(host, limit=2) as (pool, _):
        await pool.invoke(Invocation("f", b"{}"))
        stored = pool.backoff.error
        assert stored is not None

        def depth(exc: BaseException) -> int:
            n, tb = 0, exc.__traceback__
            while tb is not None:
                n, tb = n + 1, tb.tb_next
            return n

        before = depth(stored)
        for _ in range(50):
            assert error_of(await pool.invoke(Invocation("f", b"{}")))["errorType"] == "Runtime.ImportModuleError"
        assert pool.backoff.error is stored and depth(stored) == before
        assert host.starts == 1


async def test_a_queued_caller_woken_to_retry_keeps_its_original_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """A slot that frees up wakes the oldest waiter to try again; if the retry queues once more,
    the wait still ends queue_timeout_s after the call began, not after the wake-up."""
    async with running(limit=1, queue_timeout_s=0.6) as (pool, host):
        busy, _ = await pool.acquire()
        started = anyio.current_time()
        queued = asyncio.create_task(pool.acquire())
        await anyio.sleep(0.4)
        pool.waiters.wake_one()  # as a dying worker or a failed start does; the limit is still reached
        with pytest.raises(TooManyRequests):
            await queued
        assert anyio.current_time() - started < 0.9  # not 0.4 + 0.6
        pool.release(busy)
