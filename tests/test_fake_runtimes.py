"""The real ``Worker`` against scripted fake runtimes (``tests/fake_runtimes/``), real processes.

Each fake speaks the protocol through ``fnhost.execution.protocol`` and breaks it one way; these
tests hold the daemon side to what DESIGN.md promises: the daemon, not the worker, enforces time
(SIGTERM, a grace, then SIGKILL to the whole group), a broken reply is a typed error, and nothing
a worker sends can leave an invocation hanging.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import psutil
import pytest
import structlog

import fnhost
from fnhost.errors import FunctionError, RuntimeExit, SandboxTimeout, WorkerProtocolError
from fnhost.execution import backoff as backoff_module
from fnhost.execution import protocol
from fnhost.execution.invocation import Invocation
from fnhost.execution.pool import Pool, PoolConfig
from fnhost.execution.spawn import WorkerSpec
from fnhost.execution.states import State
from fnhost.execution.worker import Worker
from fnhost.observability.logs import ReportLog
from fnhost.observability.report import RequestIds

from tests.conftest import Background, pool_in_task_group

FAKES = Path(__file__).resolve().parent / "fake_runtimes"
PACKAGE_ROOT = Path(fnhost.__file__).resolve().parents[1]  # what PYTHONPATH needs for `import fnhost`
KILL_GRACE_S = 0.3


def fake_spec(script: str, *args: str, cwd: str | None = None) -> WorkerSpec:
    return WorkerSpec(
        function="fake",
        argv=[sys.executable, str(FAKES / script), *args],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(PACKAGE_ROOT)},
        cwd=cwd or str(FAKES),
        init_frame=protocol.encode_init({"handler": "fake.handler", "function_name": "fake",
                                         "function_version": "$LATEST", "memory_mb": 128,
                                         "timeout_s": 1, "environment": {}}),
        memory_limit_bytes=128 * 1024 * 1024,
        init_timeout_s=2.0,
        kill_grace_s=KILL_GRACE_S,
    )


def group_alive(pgid: int) -> list[int]:
    """Processes of the group that still run (a zombie waiting for its reaper does not)."""
    alive = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(proc.pid)
        except (ProcessLookupError, PermissionError):
            pass
    return alive


async def wait_group_gone(pgid: int, within_s: float = 2.0) -> None:
    with anyio.move_on_after(within_s):
        while group_alive(pgid):
            await anyio.sleep(0.02)
    assert group_alive(pgid) == []


class Recorder:
    """The pool's side of a worker: its transitions and its death, as they were reported."""

    def __init__(self) -> None:
        self.transitions: list[tuple[State | None, State]] = []
        self.dead: list[Worker] = []

    def observe(self, worker: Worker, old: State | None, new: State) -> None:
        self.transitions.append((old, new))


@contextlib.asynccontextmanager
async def started(spec: WorkerSpec) -> AsyncIterator[tuple[Worker, Recorder]]:
    """A real worker past HELLO and INIT, claimed for one invocation; killed if a test fails."""
    recorder = Recorder()
    worker = Worker(spec, 0, recorder.dead.append, recorder.observe)
    try:
        with anyio.fail_after(5):
            await worker.start(None)  # type: ignore[arg-type]  # no memory backend: not under test
        worker.claim()
        yield worker, recorder
    finally:
        if worker.state is not State.DEAD:
            with anyio.CancelScope(shield=True):
                await worker.stop(signal.SIGKILL)


@contextlib.asynccontextmanager
async def real_pool(spec: WorkerSpec, **overrides: object) -> AsyncIterator[Pool]:
    """A pool of real workers, its background work run in a task group owned by the test."""
    values: dict[str, object] = dict(function="fake", memory_mb=128, timeout_s=1.0, min_warm=0,
                                     idle_ttl_s=600.0, limit=1, queue_timeout_s=0.5,
                                     billing_granularity_ms=1)
    values.update(overrides)

    def make(spawn_background: Background) -> Pool:
        return Pool(PoolConfig(**values), spec, backend=None, spawn_background=spawn_background,  # type: ignore[arg-type]
                    busy_registry=set(), request_ids=RequestIds(), report_log=ReportLog(structlog.get_logger()))

    async def finish(pool: Pool) -> None:
        with anyio.move_on_after(1, shield=True):  # bounded: see the spawn failure tests below
            await pool.stop_all()

    async with pool_in_task_group(make, finish) as pool:
        yield pool


async def test_a_worker_deaf_to_sigterm_is_killed_with_its_group_after_the_grace() -> None:
    async with started(fake_spec("ignores_sigterm.py")) as (worker, recorder):
        pid = worker.pid
        assert len(group_alive(pid)) == 2  # the leader and the grandchild it forked

        began = time.monotonic()
        with anyio.fail_after(5), pytest.raises(SandboxTimeout) as info:
            await worker.invoke("req-1", b"{}", 0.5)
        took = time.monotonic() - began

        assert info.value.code == "Sandbox.Timeout"
        assert info.value.message == "Task timed out after 0.50 seconds"
        assert took >= 0.5 + KILL_GRACE_S - 0.05  # SIGTERM was ignored: the grace ran out...
        assert took < 0.5 + KILL_GRACE_S + 1.5
        assert worker.returncode == -signal.SIGKILL  # ...and SIGKILL ended it
        assert worker.state is State.DEAD
        assert recorder.transitions[-2:] == [(State.BUSY, State.STOPPING), (State.STOPPING, State.DEAD)]
        assert recorder.dead == [worker]
        await wait_group_gone(pid)  # the grandchild went with the group


async def test_a_reply_for_another_request_is_a_protocol_error_and_ends_the_worker() -> None:
    async with started(fake_spec("wrong_request_id.py")) as (worker, recorder):
        pid = worker.pid
        began = time.monotonic()
        with anyio.fail_after(5), pytest.raises(WorkerProtocolError) as info:
            await worker.invoke("req-1", b"{}", 2.0)

        assert time.monotonic() - began < 1.5  # refused on arrival, not left to the timeout
        assert info.value.code == "Runtime.InvalidResponse"
        assert "req-1" in info.value.message
        assert worker.state is State.DEAD and recorder.dead == [worker]
        await wait_group_gone(pid)


async def test_a_reply_for_another_request_fails_the_invocation_and_the_pool_replaces_the_worker() -> None:
    async with real_pool(fake_spec("wrong_request_id.py"), limit=1) as pool:
        with anyio.fail_after(10):
            first = await pool.invoke(Invocation("fake", b'{"n":1}'))
            assert pool.workers == set()  # the broken worker is gone before the next call
            second = await pool.invoke(Invocation("fake", b'{"n":2}'))

        for outcome in (first, second):
            assert outcome.function_error == "Unhandled"
            assert json.loads(outcome.payload)["errorType"] == "Runtime.InvalidResponse"
        counters = pool.snapshot().counters
        assert (counters.invocations, counters.errors, counters.cold_starts) == (2, 2, 2)
        assert pool.snapshot().workers == {} and pool.live == 0


@pytest.mark.parametrize(
    ("mode", "error", "ends_by_timeout"),
    [
        ("stay", SandboxTimeout, True),  # the rest never comes and the worker lives on
        ("exit", RuntimeExit, False),  # the rest never comes and the worker exits
        ("huge", FunctionError, False),  # the header alone breaks the protocol (16 MiB maximum)
    ],
)
async def test_a_frame_longer_than_what_was_sent_cannot_hang_the_invocation(
    mode: str, error: type[FunctionError], ends_by_timeout: bool
) -> None:
    timeout_s = 0.5
    async with started(fake_spec("overlong_frame.py", mode)) as (worker, recorder):
        pid = worker.pid
        began = time.monotonic()
        with anyio.fail_after(5), pytest.raises(error):
            await worker.invoke("req-1", b"{}", timeout_s)
        took = time.monotonic() - began

        if ends_by_timeout:
            assert timeout_s - 0.05 <= took < timeout_s + KILL_GRACE_S + 1.0
        else:
            assert took < timeout_s  # the daemon did not need the timer to notice
        assert worker.state is State.DEAD and recorder.dead == [worker]
        await wait_group_gone(pid)


async def test_an_oversized_frame_header_is_reported_as_a_protocol_error() -> None:
    async with started(fake_spec("overlong_frame.py", "huge")) as (worker, _):
        with anyio.fail_after(5), pytest.raises(FunctionError) as info:
            await worker.invoke("req-1", b"{}", 0.5)
        assert info.value.code == "Runtime.InvalidResponse", info.value.message


async def test_a_worker_that_cannot_be_spawned_gives_its_slot_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backoff_module, "BACKOFF_FIRST_S", 0.05)
    async with real_pool(fake_spec("wrong_request_id.py", cwd="/nonexistent/fnhost-code"), limit=1,
                         queue_timeout_s=0.2) as pool:
        outcome = await pool.invoke(Invocation("fake", b"{}"))
        assert json.loads(outcome.payload)["errorType"] == "Runtime.ExitError"
        assert pool.live == 0 and pool.workers == set()

        await anyio.sleep(0.1)  # past the back-off: the next call may try again
        retried = await pool.invoke(Invocation("fake", b"{}"))  # today: TooManyRequests
        assert json.loads(retried.payload)["errorType"] == "Runtime.ExitError"


async def test_shutdown_does_not_wait_for_a_worker_that_never_spawned() -> None:
    async with real_pool(fake_spec("wrong_request_id.py", cwd="/nonexistent/fnhost-code")) as pool:
        outcome = await pool.invoke(Invocation("fake", b"{}"))
        assert json.loads(outcome.payload)["errorType"] == "Runtime.ExitError"
        with anyio.move_on_after(1) as scope:
            await pool.stop_all()
        assert not scope.cancelled_caught, "stop_all still waiting after 1 s"
