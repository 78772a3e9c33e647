"""Functions that write to the runtime's control pipe, and a runtime that breaks the protocol at
random (issue #10, items 2 and 3).

A Python function's code runs inside the shim, which holds the control pipe: it can find the
pipe's fd (here: the shim's ``channel`` on the call stack) and write whatever it likes — at import,
from its handler, or from a thread after its handler returned. Every such byte is hostile input to
the daemon: it must stay up (also when restarted on the same state with ``min_warm``), its memory
must not grow with what a worker writes, a broken worker is killed and replaced, its caller gets
``Runtime.InvalidResponse``, and no later invocation is answered with a stale reply.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import itertools
import json
import os
import random
import time
from collections import Counter
from pathlib import Path

import anyio
import grpc
import psutil
import pytest
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fnhost.client import Client
from fnhost.control.supervisor import Supervisor
from fnhost.errors import ApiError, TooManyRequests, WorkerProtocolError
from fnhost.execution.invocation import Invocation
from fnhost.execution.states import State
from fnhost.execution.worker import Worker
from tests.conftest import Daemon, payload, unique, wait_gone
from tests.test_fake_runtimes import KILL_GRACE_S, fake_spec, real_pool
from tests.worker_pids import host_pid

# The function's code: it finds the shim's control pipe and writes to it, as asked.
APP = r'''
import json
import os
import struct
import sys
import threading
import time

HEADER = struct.Struct(">IB")
HELLO, INIT, INIT_OK, INIT_ERROR, INVOKE, RESULT, ERROR = range(1, 8)


def control_fd():
    """The shim's write end of its control pipe: its Channel is a local of a caller up the stack."""
    frame = sys._getframe(1)
    while frame is not None:
        channel = frame.f_locals.get("channel")
        if hasattr(channel, "fd_out"):
            return channel.fd_out
        frame = frame.f_back
    raise RuntimeError("the shim's channel is not on the stack")


def send(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def frame(kind, body=b""):
    return HEADER.pack(len(body) + 1, kind) + body


def reply(kind, request_id, body):
    rid = request_id.encode()
    return frame(kind, bytes((len(rid),)) + rid + body)


ATTACKS = {
    "init_error_not_json": frame(INIT_ERROR, b"\xff this is not JSON"),
    "init_error_not_an_object": frame(INIT_ERROR, b'["errorType", "errorMessage"]'),
    "init_error_wrong_types": frame(INIT_ERROR, b'{"errorType": 7, "errorMessage": {"a": 1}}'),
    "second_hello": frame(HELLO, b"garbage, not a HELLO"),
    "garbage": b"\x00\x00\x00\x00\xff and more garbage",
    "huge_header": HEADER.pack(0xFFFFFFF0, INIT_ERROR),
    "init_error_huge": frame(INIT_ERROR, json.dumps({
        "errorType": "Custom.InitFailure", "errorMessage": "m" * 500_000, "stackTrace": ["line"] * 10_000,
    }).encode()),
}
if os.environ.get("ATTACK"):
    send(control_fd(), ATTACKS[os.environ["ATTACK"]])
    time.sleep(0.5)  # the daemon judges that frame before the shim's own INIT_OK follows


def flood(fd, request_id, frames, size):
    time.sleep(0.2)  # after the handler returned and the shim sent its reply
    data = reply(RESULT, request_id, b"x" * size)
    for _ in range(frames):
        send(fd, data)


def handler(event, context):
    mode = event.get("mode", "")
    if mode == "flood":
        args = (control_fd(), context.aws_request_id, event["frames"], event["size"])
        threading.Thread(target=flood, args=args, daemon=True).start()
    elif mode == "twice":  # a reply of its own, then the shim's
        forged = json.dumps({"forged": os.getpid()}).encode()
        send(control_fd(), reply(RESULT, context.aws_request_id, forged))
    elif mode == "empty":  # a RESULT with no body at all, then (too late) the shim's
        send(control_fd(), frame(RESULT))
        time.sleep(0.3)
    return {"pid": os.getpid(), "uid": os.getuid(), "mode": mode}
'''

INVALID = "Runtime.InvalidResponse"
VIOLATIONS = ["init_error_not_json", "init_error_not_an_object", "init_error_wrong_types", "second_hello",
              "garbage", "huge_header"]


@pytest.fixture
def code(public_dir: Path) -> Path:
    (public_dir / "app.py").write_text(APP)
    (public_dir / "app.py").chmod(0o644)
    return public_dir


def create(client: Client, code: Path, prefix: str, attack: str = "", **options: int) -> str:
    name = unique(prefix)
    environment = {"ATTACK": attack} if attack else None
    client.create_function(name, runtime="python", handler="app.handler", code=str(code),
                           environment=environment, **options)
    return name


def error_of(client: Client, name: str, event: object = None) -> dict:
    result = client.invoke(name, json.dumps(event or {}).encode())
    assert result.function_error == "Unhandled", result.payload
    return json.loads(result.payload)


def serving(daemon: Daemon) -> bool:
    daemon.check_alive()
    with grpc.insecure_channel(daemon.address) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status
    return status == health_pb2.HealthCheckResponse.SERVING


def protocol_errors(daemon: Daemon, name: str) -> list[dict]:
    return [e for e in daemon.log_events() if e.get("event") == "worker_protocol_error" and e.get("function") == name]


def worker_pid(daemon: Daemon, seen: dict) -> int:
    """The host pid of the worker that answered ``seen`` (in its own pid namespace it says 2)."""
    return host_pid(daemon.pid, seen["pid"], uid=seen["uid"])


def check_healthy_neighbour(client: Client, code: Path) -> None:
    """Another function on the same daemon is untouched."""
    name = create(client, code, "neighbour")
    assert payload(client.invoke(name, b'{"mode": "plain"}'))["mode"] == "plain"


# --- (1) bad frames at import time ---------------------------------------------------------------


@pytest.mark.parametrize("attack", VIOLATIONS)
def test_a_bad_frame_at_init_fails_the_invocation_and_nothing_else(daemon: Daemon, client: Client, code: Path,
                                                                    attack: str) -> None:
    name = create(client, code, "init-attack", attack)
    error = error_of(client, name)
    assert error["errorType"] == INVALID, error
    assert "broke the worker protocol and was killed while starting" in error["errorMessage"]
    assert serving(daemon)
    assert protocol_errors(daemon, name), "the violation is logged with the function's name"
    again = error_of(client, name)  # within the init back-off: the same answer, no new worker
    assert again["errorType"] == INVALID
    check_healthy_neighbour(client, code)


def test_an_init_error_with_huge_strings_is_clipped(client: Client, code: Path) -> None:
    name = create(client, code, "init-huge", "init_error_huge")
    error = error_of(client, name)
    assert error["errorType"] == "Custom.InitFailure"
    assert error["errorMessage"].startswith("m" * 1000) and "characters clipped" in error["errorMessage"]
    assert len(error["errorMessage"]) < 17 * 1024
    assert len(error["stackTrace"]) == 101 and "more entries clipped" in error["stackTrace"][-1]


def test_a_daemon_restarted_on_a_function_that_breaks_init_stays_up(fresh_daemon: Daemon, code: Path) -> None:
    # Before: the ProtocolError of a non-JSON INIT_ERROR escaped min_warm's background start and
    # ended the daemon — at once, and again on every restart (a crash loop under systemd).
    daemon = fresh_daemon.start()
    with daemon.client() as client:
        name = create(client, code, "crashloop", "init_error_not_json", min_warm=1)
        time.sleep(1.0)  # the warm-up ran, and failed
        assert serving(daemon)
        assert error_of(client, name)["errorType"] == INVALID
    assert daemon.stop() == 0, daemon.log_tail()

    daemon.start()  # the function comes back from the registry, min_warm 1
    time.sleep(2.5)  # the warm-up and its first retry after the 1 s back-off, both failing
    assert serving(daemon)
    with daemon.client() as client:
        assert error_of(client, name)["errorType"] == INVALID
        check_healthy_neighbour(client, code)
    assert len(protocol_errors(daemon, name)) >= 2
    assert not [e for e in daemon.log_events() if e.get("event") == "background_task_failed"]


# --- (2) a flood of frames after the handler returned ---------------------------------------------


def test_frames_written_while_idle_cannot_grow_the_daemon(fresh_daemon: Daemon, code: Path) -> None:
    # Before: 1,500 RESULT frames of 1 MiB written by a thread after its handler returned were all
    # read and kept, taking the daemon from ~54 MB to 1.6 GB.
    daemon = fresh_daemon.start()
    process = psutil.Process(daemon.pid)
    with daemon.client() as client:
        name = create(client, code, "flood", max_concurrency=1)
        first = payload(client.invoke(name, b'{"mode": "plain"}'))
        pid = worker_pid(daemon, first)
        baseline = process.memory_info().rss

        flooded = payload(client.invoke(name, json.dumps({"mode": "flood", "frames": 1500,
                                                          "size": 1024 * 1024}).encode()))
        assert flooded["pid"] == first["pid"]  # its answer went out before the flood began
        peak = baseline
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and wait_gone([pid], timeout=0.05):
            peak = max(peak, process.memory_info().rss)
        assert wait_gone([pid], timeout=1) == [], "the flooding worker was not killed"
        for _ in range(20):  # and a while after, had anything been buffered
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.05)

        later = payload(client.invoke(name, b'{"mode": "plain"}'))
        assert later["mode"] == "plain" and worker_pid(daemon, later) != pid  # replaced
        assert serving(daemon)
    print(f"flood: daemon RSS {baseline / 2**20:.0f} MiB before, {peak / 2**20:.0f} MiB at most after")
    assert peak < 300 * 1024 * 1024, f"daemon RSS peaked at {peak / 2**20:.0f} MiB"
    assert peak - baseline < 100 * 1024 * 1024, f"{(peak - baseline) / 2**20:.0f} MiB over {baseline / 2**20:.0f}"
    [event] = protocol_errors(daemon, name)
    assert event["state"] == "idle" and "while no frame was expected" in event["error"]


# --- (3) replies the daemon did not ask for -------------------------------------------------------


def test_a_second_reply_kills_the_worker_and_never_answers_the_next_call(daemon: Daemon, client: Client,
                                                                        code: Path) -> None:
    name = create(client, code, "twice", max_concurrency=1)
    plain = payload(client.invoke(name, b'{"mode": "plain"}'))
    pid = worker_pid(daemon, plain)  # the one worker, which is asked to reply twice next
    first = payload(client.invoke(name, b'{"mode": "twice"}'))
    assert first["forged"] == plain["pid"]  # the first reply stands; the shim's own (second) broke the protocol
    assert wait_gone([pid], timeout=5) == [], "the worker that replied twice was not killed"

    for _ in range(2):
        later = payload(client.invoke(name, b'{"mode": "plain"}'))
        assert later == {"pid": later["pid"], "uid": plain["uid"], "mode": "plain"}  # its own answer, not a stale one
        assert worker_pid(daemon, later) != pid


def test_an_empty_result_fails_the_call_and_the_worker_is_not_reused(daemon: Daemon, client: Client,
                                                                      code: Path) -> None:
    # Before: the empty body raised outside FunctionError (INTERNAL) and the worker went back to
    # the pool with the shim's real reply still to come, for the next caller.
    name = create(client, code, "empty", max_concurrency=1)
    pid = worker_pid(daemon, payload(client.invoke(name, b'{"mode": "plain"}')))
    error = error_of(client, name, {"mode": "empty"})
    assert error["errorType"] == INVALID and "empty body" in error["errorMessage"], error
    assert wait_gone([pid], timeout=5) == []

    later = payload(client.invoke(name, b'{"mode": "plain"}'))
    assert later["mode"] == "plain" and worker_pid(daemon, later) != pid


# --- a chaotic runtime through a real pool --------------------------------------------------------

SEED = 1006
# action: (weight, what its own caller may get besides a worker poisoned by the one before it)
ACTIONS: dict[str, tuple[int, frozenset[str]]] = {
    "ok": (6, frozenset({"own"})),
    "chunked": (2, frozenset({"own"})),
    "big": (1, frozenset({"own"})),
    "twice": (2, frozenset({"own"})),
    "reply_then_junk": (2, frozenset({"own"})),
    "pester": (2, frozenset({"own"})),
    "error": (1, frozenset({"ChaosError"})),
    "junk": (2, frozenset({"foreign-success"})),  # a junk frame may happen to be a valid reply
    "truncated": (1, frozenset({"Runtime.ExitError"})),
    "exit": (1, frozenset({"Runtime.ExitError"})),
    "hang": (1, frozenset()),
}
# A worker broken by an earlier caller's thread (or by a reply that came after it was handed on)
# fails the next caller with one of these — or, its bytes mixed into that caller's, with a reply
# that is well-formed but no answer. Never with another invocation's answer ("crossed").
POISONED = frozenset({INVALID, "Sandbox.Timeout", "foreign-success"})
# Platform answers that are no one's fault but a starved machine's: the queue wait ran out, or a
# cold start missed its init timeout (then the back-off repeats it for a second).
STARVED = frozenset({TooManyRequests.code, "Runtime.InitError"})
TIMEOUT_S = 0.5
QUEUE_S = 2.0
INIT_S = 5.0
BOUND_S = QUEUE_S + INIT_S + TIMEOUT_S + KILL_GRACE_S + 1.5


def classify(n: int, result: object) -> str:
    """What invocation ``n`` got: its own answer, a reply that is not an answer, an error type."""
    if isinstance(result, ApiError):
        return result.code
    if isinstance(result, BaseException):
        return f"{type(result).__name__}: {result}"
    if result.function_error:  # type: ignore[attr-defined]
        return json.loads(result.payload)["errorType"]  # type: ignore[attr-defined]
    try:
        answer = json.loads(result.payload)  # type: ignore[attr-defined]
    except ValueError:
        return "foreign-success"
    if isinstance(answer, dict) and "n" in answer:
        return "own" if (answer["n"], answer["reply"]) == (n, 1) else f"crossed: {answer}"
    return "foreign-success"


def run_delay() -> float:
    """Seconds this thread has spent runnable but waiting for a CPU (Linux schedstat)."""
    with open("/proc/thread-self/schedstat") as f:
        return int(f.read().split()[1]) / 1e9


def open_fds() -> int:
    gc.collect()  # what earlier tests left for the collector to close is not this test's leak
    return len(os.listdir("/proc/self/fd"))


async def test_a_chaotic_runtime_never_hangs_crosses_answers_or_leaks() -> None:
    names = list(ACTIONS)
    weights = [ACTIONS[a][0] for a in names]
    answers: dict[int, list[tuple[str, str, float]]] = {}
    lags: list[float] = []  # how late each 10 ms tick of the loop came (wall clock)
    stalls: list[float] = []  # ... less the time the kernel kept it waiting for a CPU
    numbers = itertools.count()
    fds_before = open_fds()

    async def call(pool) -> None:  # type: ignore[no-untyped-def]
        while anyio.current_time() < stop_at:
            n = next(numbers)
            rng = random.Random(f"{SEED}:{n}")  # invocation n does the same thing in every run
            action = names[n] if n < len(names) else rng.choices(names, weights)[0]  # each at least once
            body = json.dumps({"n": n, "action": action, "seed": rng.randrange(1 << 30)}).encode()
            began = time.monotonic()
            try:
                with anyio.fail_after(BOUND_S + 5):
                    result: object = await pool.invoke(Invocation("fake", body, deadline=anyio.current_time() + QUEUE_S))
            except ApiError as exc:
                result = exc
            except TimeoutError:
                result = TimeoutError(f"invocation {n} ({action}) had no answer after {BOUND_S + 5} s")
            answers.setdefault(n, []).append((action, classify(n, result), time.monotonic() - began))

    async def watch_loop() -> None:
        # On a shared 2-core machine a tick can come late only because this process waited for a
        # CPU: the kernel counts that wait (schedstat's run delay). What is left is the loop's own
        # thread busy or blocked in one go — a stall the daemon's code can cause. Both reported.
        loop = asyncio.get_running_loop()
        while True:
            began, waited = loop.time(), run_delay()
            await asyncio.sleep(0.01)
            late = loop.time() - began - 0.01
            lags.append(late)
            stalls.append(late - (run_delay() - waited))

    spec = dataclasses.replace(fake_spec("chaos.py"), init_timeout_s=INIT_S)
    async with real_pool(spec, limit=4, timeout_s=TIMEOUT_S, queue_timeout_s=QUEUE_S) as pool:
        stop_at = anyio.current_time() + 4.0
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_loop)
            async with anyio.create_task_group() as callers:
                for _ in range(8):
                    callers.start_soon(call, pool)
            tg.cancel_scope.cancel()
        counters = pool.snapshot().counters
    assert pool.workers == set(), pool.workers  # real_pool's stop_all ended every one

    count = len(answers)
    print(f"chaos: {count} invocations, {Counter(k for _, k, _ in (a[0] for a in answers.values()))}, "
          f"slowest {max(a[0][2] for a in answers.values()):.2f} s, loop late by up to {max(lags) * 1000:.1f} ms, "
          f"stalled by itself up to {max(stalls) * 1000:.1f} ms, "
          f"fds {fds_before} -> {open_fds()}")
    assert count >= 40, f"only {count} invocations in 4 s"
    assert sorted(answers) == list(range(count)), "an invocation with no answer"
    assert all(len(a) == 1 for a in answers.values()), "an invocation answered twice"
    kinds = {n: a[0] for n, a in answers.items()}
    slow = {n: k for n, k in kinds.items() if k[2] > BOUND_S}
    assert not slow, f"answered later than {BOUND_S} s: {slow}"
    for n, (action, kind, _) in kinds.items():
        allowed = ACTIONS[action][1] | POISONED | STARVED
        assert kind in allowed, f"invocation {n} ({action}) got {kind}"
    got = {kind for _, kind, _ in kinds.values()}
    assert {"own", INVALID} <= got and len(got - {"own", INVALID}) >= 2, got
    safe = [k for a, k, _ in kinds.values() if ACTIONS[a][1] == {"own"}]
    assert safe.count("own") > len(safe) / 2, "most well-behaved invocations should succeed"
    assert counters.invocations == count
    assert max(stalls) < 0.1, f"the event loop stalled for {max(stalls) * 1000:.0f} ms"
    await anyio.sleep(0.1)
    assert open_fds() == fds_before, "file descriptors leaked"



# --- respawns ------------------------------------------------------------------------------------


async def test_workers_broken_while_idle_are_replaced_with_a_back_off_and_not_after_close() -> None:
    # Each worker writes junk 0.3 s after it is warm: without the back-off, min_warm would respawn
    # one as soon as the last was killed, for as long as the function exists.
    async with real_pool(fake_spec("chaos.py", "pester"), min_warm=1) as pool:
        started: list[Worker] = []

        def counting(*args: object) -> Worker:
            started.append(Worker(*args))  # type: ignore[arg-type]
            return started[-1]

        pool._new_worker = counting
        pool.spawn_background(pool.ensure_warm)
        await anyio.sleep(4.0)
        assert all(w.state is State.IDLE for w in pool.idle)  # a broken one never waits there
        spawned = len(started)
        # At 0 s, then ~0.3 s + 1 s, then ~0.3 s + 2 s later; a hot loop starts one every ~0.4 s.
        assert 2 <= spawned <= 4, [w.pid for w in started]
        assert all(w.killed_for is WorkerProtocolError for w in started if w.state is State.DEAD)

        await pool.close()
        await anyio.sleep(4.5)  # past the next back-off: a closed pool starts nothing
        assert len(started) == spawned
        assert pool.workers == set()


async def test_a_background_task_that_raises_is_logged_and_the_daemon_goes_on() -> None:
    sup = object.__new__(Supervisor)  # only what _spawn_background touches

    async def broken() -> None:
        raise RuntimeError("one function's fault")

    with structlog.testing.capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            sup._tg = tg
            sup._spawn_background(broken)
            tg.start_soon(anyio.sleep, 0.05)  # a sibling, as the reaper is: it must not be cancelled
    [event] = [e for e in logs if e["event"] == "background_task_failed"]
    assert "broken" in event["task"] and event["log_level"] == "error"
    sup._tg = None  # shutting down: new background work is dropped, not started
    sup._spawn_background(broken)
