"""Load generation: a pool of client processes, each with its own grpc.aio channel.

Python's gRPC client costs about as much CPU per call as the server, so one client process would
be the ceiling of every throughput figure. The pool spreads the requests in flight over several
processes: fresh interpreters (``python -m bench.load FD``), not forks, since gRPC does not survive
a fork, and not multiprocessing's spawn, which re-imports the parent's main module (``fnhost``'s
``__main__`` would run its CLI again). Requests travel as pre-serialized
bytes with no (de)serializer, so the client does the same, minimal work for the floor and for
fnhost, and the difference between the two is the server's.

Processes agree on a measurement window by CLOCK_MONOTONIC, which is system-wide on Linux. Only
calls that complete inside the window count towards throughput, and only calls started inside it
give latencies; the pool warms every connection (and every fnhost worker) before a window opens.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from array import array
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from fnhost.api.grpc_wire import MESSAGE_OPTIONS as CHANNEL_OPTIONS
CALL_TIMEOUT_S = 60.0
RAMP_S = 0.1  # calls start this long before the window so it opens on a steady state


@dataclass(frozen=True, slots=True)
class Target:
    """One RPC to hammer: where, which method, and the serialized request."""

    label: str
    address: str
    method: str  # "/package.Service/Method"
    request: bytes


@dataclass(slots=True)
class WindowResult:
    in_flight: int
    window_s: float
    completed: int
    errors: int
    latencies_ns: list[int]
    first_error: str | None
    sample_response: bytes | None

    @property
    def throughput(self) -> float:
        return self.completed / self.window_s


class ClientError(RuntimeError):
    """A client process failed outright (not one call: the job)."""


# --- the client process -------------------------------------------------------------------------


def _child_main(conn: Connection) -> None:
    # The bench's parent handles Ctrl-C and tells us to stop (or closes the pipe); a KeyboardInterrupt
    # here would only print a traceback in the middle of its cleanup.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import grpc

    loop = asyncio.new_event_loop()
    channels: dict[str, Any] = {}

    def channel(address: str) -> Any:
        if address not in channels:
            channels[address] = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        return channels[address]

    try:
        while True:
            try:
                job = conn.recv()
            except (EOFError, OSError):
                break
            if job is None:
                break
            try:
                result = loop.run_until_complete(_JOBS[job["kind"]](channel, **job["args"]))
            except Exception as exc:  # reported to the parent, which decides what it means
                result = {"failed": f"{type(exc).__name__}: {exc}"}
            conn.send(result)
    finally:
        for ch in channels.values():
            loop.run_until_complete(ch.close())
        loop.close()


async def _sequential(channel: Any, target: Target, count: int, warmup: int) -> dict[str, Any]:
    call = channel(target.address).unary_unary(target.method)
    req = target.request
    clock = time.perf_counter_ns
    sample = None
    for _ in range(warmup):
        sample = await call(req, timeout=CALL_TIMEOUT_S)
    lat = array("q")
    for _ in range(count):
        t0 = clock()
        resp = await call(req, timeout=CALL_TIMEOUT_S)
        lat.append(clock() - t0)
    return {"latencies": lat.tobytes(), "sample": sample if sample is not None else resp}


async def _warm(channel: Any, target: Target, concurrency: int, per_task: int) -> dict[str, Any]:
    """Every task makes ``per_task`` calls at once: opens streams, spawns fnhost's workers."""
    call = channel(target.address).unary_unary(target.method)
    errors: list[str] = []

    async def task() -> None:
        for _ in range(per_task):
            try:
                await call(target.request, timeout=CALL_TIMEOUT_S)
            except Exception as exc:
                errors.append(str(exc)[:300])

    await asyncio.gather(*(task() for _ in range(concurrency)))
    return {"errors": len(errors), "first_error": errors[0] if errors else None}


async def _window(channel: Any, target: Target, concurrency: int, start: float, end: float) -> dict[str, Any]:
    call = channel(target.address).unary_unary(target.method)
    req = target.request
    clock = time.perf_counter_ns
    mono = time.monotonic
    lat = array("q")
    done = 0
    errors: list[str] = []
    sample: list[bytes] = []

    async def task() -> None:
        nonlocal done
        while True:
            t_start = mono()
            if t_start >= end:
                return
            t0 = clock()
            try:
                resp = await call(req, timeout=CALL_TIMEOUT_S)
            except Exception as exc:
                errors.append(str(exc)[:300])
                await asyncio.sleep(0.01)  # a failing target must not become a hot loop
                continue
            t1 = clock()
            t_end = mono()
            if start <= t_end < end:
                done += 1
                if t_start >= start:
                    lat.append(t1 - t0)
                if not sample:
                    sample.append(resp)

    delay = start - RAMP_S - mono()
    if delay > 0:
        await asyncio.sleep(delay)
    await asyncio.gather(*(task() for _ in range(concurrency)))
    return {"latencies": lat.tobytes(), "completed": done, "errors": len(errors),
            "first_error": errors[0] if errors else None, "sample": sample[0] if sample else None}


def _counter(spec: tuple[str, ...]) -> Any:
    """How many invocations one response message answers: a fixed number (an echo of a batch),
    or the length of a repeated field of a protobuf message (fnhost's batched results)."""
    if spec[0] == "fixed":
        n = int(spec[1])
        return lambda raw: n
    import importlib

    cls = getattr(importlib.import_module(spec[1]), spec[2])
    field = spec[3]
    return lambda raw: len(getattr(cls.FromString(raw), field))


async def _stream_pingpong(channel: Any, target: Target, count: int, warmup: int) -> dict[str, Any]:
    """One open bidirectional stream, one message in flight: per-message round-trip latency."""
    call = channel(target.address).stream_stream(target.method)()
    clock = time.perf_counter_ns
    lat = array("q")
    sample = None
    for i in range(warmup + count):
        t0 = clock()
        await call.write(target.request)
        resp = await call.read()
        if i >= warmup:
            lat.append(clock() - t0)
        sample = resp
    await call.done_writing()
    return {"latencies": lat.tobytes(), "sample": sample}


async def _stream_window(channel: Any, target: Target, streams: int, depth: int, batch: int,
                         count: tuple[str, ...], start: float, end: float) -> dict[str, Any]:
    """``streams`` open streams, each keeping ``depth`` invocations in flight, sent ``batch`` per
    message (``target.request`` holds one batch); answered invocations counted in the window.

    Answers may come back in any order and batched differently (a daemon runs them concurrently),
    so no per-invocation latency here: ping-pong gives that.
    """
    ch = channel(target.address)
    mono = time.monotonic
    answered = _counter(count)
    done = 0
    sample: list[bytes] = []

    async def one_stream() -> None:
        call = ch.stream_stream(target.method)()
        credit = depth
        can_send = asyncio.Event()
        can_send.set()

        async def writer() -> None:
            nonlocal credit
            while mono() < end:
                if credit < batch:
                    can_send.clear()
                    await can_send.wait()
                    continue
                credit -= batch
                await call.write(target.request)
            await call.done_writing()

        async def reader() -> None:
            nonlocal done, credit
            while True:
                resp = await call.read()
                if resp is grpc_eof():
                    return
                n = answered(resp)
                credit += n
                if credit >= batch:
                    can_send.set()
                if start <= mono() < end:
                    done += n
                    if not sample:
                        sample.append(resp)

        await asyncio.gather(writer(), reader())

    delay = start - RAMP_S - mono()
    if delay > 0:
        await asyncio.sleep(delay)
    await asyncio.gather(*(one_stream() for _ in range(streams)))
    return {"completed": done, "errors": 0, "first_error": None, "sample": sample[0] if sample else None}


def grpc_eof() -> Any:
    import grpc

    return grpc.aio.EOF


_JOBS = {
    "sequential": _sequential,
    "warm": _warm,
    "window": _window,
    "stream_pingpong": _stream_pingpong,
    "stream_window": _stream_window,
}


# --- the parent's side --------------------------------------------------------------------------


def _split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _unpack(data: bytes) -> list[int]:
    a = array("q")
    a.frombytes(data)
    return a.tolist()


class ClientPool:
    """``size`` client processes, started once and reused for every measurement."""

    def __init__(self, size: int, cwd: str, env: dict[str, str] | None = None) -> None:
        self.size = size
        self._conns: list[Connection] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        for _ in range(size):
            ours, theirs = socket.socketpair()
            proc = subprocess.Popen([sys.executable, "-m", "bench.load", str(theirs.fileno())],
                                    cwd=cwd, env=env, stdin=subprocess.DEVNULL, pass_fds=(theirs.fileno(),))
            theirs.close()
            self._conns.append(Connection(ours.detach()))
            self._procs.append(proc)

    def _run(self, jobs: list[tuple[int, str, dict[str, Any]]], timeout: float) -> list[dict[str, Any]]:
        for i, kind, args in jobs:
            self._conns[i].send({"kind": kind, "args": args})
        results = []
        deadline = time.monotonic() + timeout
        for i, _, _ in jobs:
            conn = self._conns[i]
            if not conn.poll(max(deadline - time.monotonic(), 0.0)):
                raise ClientError(f"client process {i} did not answer within {timeout:.0f} s")
            result = conn.recv()
            if "failed" in result:
                raise ClientError(result["failed"])
            results.append(result)
        return results

    def sequential(self, target: Target, count: int, warmup: int) -> tuple[list[int], bytes]:
        """``count`` calls one after another from one process; latencies in ns."""
        (r,) = self._run([(0, "sequential", {"target": target, "count": count, "warmup": warmup})],
                         timeout=CALL_TIMEOUT_S + count * 0.5)
        return _unpack(r["latencies"]), r["sample"]

    def _procs_for(self, in_flight: int) -> list[int]:
        return _split(in_flight, min(in_flight, self.size))

    def warm(self, target: Target, in_flight: int, per_task: int = 3) -> tuple[int, str | None]:
        jobs = [(i, "warm", {"target": target, "concurrency": n, "per_task": per_task})
                for i, n in enumerate(self._procs_for(in_flight))]
        results = self._run(jobs, timeout=CALL_TIMEOUT_S * (per_task + 2))
        errors = sum(r["errors"] for r in results)
        first = next((r["first_error"] for r in results if r["first_error"]), None)
        return errors, first

    def window(self, target: Target, in_flight: int, window_s: float) -> WindowResult:
        """Closed loop: ``in_flight`` requests outstanding at all times, for ``window_s``."""
        start = time.monotonic() + RAMP_S + 0.05
        end = start + window_s
        jobs = [(i, "window", {"target": target, "concurrency": n, "start": start, "end": end})
                for i, n in enumerate(self._procs_for(in_flight))]
        results = self._run(jobs, timeout=window_s + CALL_TIMEOUT_S + 5)
        lat: list[int] = []
        for r in results:
            lat.extend(_unpack(r["latencies"]))
        return WindowResult(
            in_flight=in_flight,
            window_s=window_s,
            completed=sum(r["completed"] for r in results),
            errors=sum(r["errors"] for r in results),
            latencies_ns=lat,
            first_error=next((r["first_error"] for r in results if r["first_error"]), None),
            sample_response=next((r["sample"] for r in results if r["sample"] is not None), None),
        )

    def stream_pingpong(self, target: Target, count: int, warmup: int) -> tuple[list[int], bytes]:
        (r,) = self._run([(0, "stream_pingpong", {"target": target, "count": count, "warmup": warmup})],
                         timeout=CALL_TIMEOUT_S + count * 0.5)
        return _unpack(r["latencies"]), r["sample"]

    def stream_window(self, target: Target, streams: int, depth: int, batch: int, count: tuple[str, ...],
                      window_s: float) -> WindowResult:
        """``streams`` streams (spread over the processes), ``depth`` invocations in flight on each."""
        start = time.monotonic() + RAMP_S + 0.05
        end = start + window_s
        jobs = [(i, "stream_window", {"target": target, "streams": n, "depth": depth, "batch": batch,
                                      "count": count, "start": start, "end": end})
                for i, n in enumerate(_split(streams, min(streams, self.size)))]
        results = self._run(jobs, timeout=window_s + CALL_TIMEOUT_S + 5)
        return WindowResult(in_flight=streams * depth, window_s=window_s,
                            completed=sum(r["completed"] for r in results), errors=0, latencies_ns=[],
                            first_error=None,
                            sample_response=next((r["sample"] for r in results if r["sample"] is not None), None))

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def close(self) -> None:
        for conn in self._conns:
            try:
                conn.send(None)
            except OSError:
                pass
        for proc in self._procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for conn in self._conns:
            conn.close()


if __name__ == "__main__":
    _child_main(Connection(int(sys.argv[1])))
