"""What single steps of a warm invoke cost in isolation: ``python -m bench.microcosts``.

Evidence for bench/PROFILE.md beside the py-spy captures: each line times one thing the daemon
does per invocation (the same library calls, in this interpreter), as the median of several
repetitions of a tight loop. Costs are per call, in microseconds; they add up to a lower bound
of the daemon's own Python work per invoke, before gRPC.
"""

from __future__ import annotations

import asyncio
import io
import os
import statistics
import time
import uuid
from collections.abc import Callable

import anyio
import structlog

from fnhost.execution.invocation import LATEST
from fnhost.observability.report import Report
from fnhost.v1 import fnhost_pb2 as pb


def _time(fn: Callable[[], object], n: int = 20000, reps: int = 5) -> float:
    runs = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(runs)


async def _atime(fn: Callable[[], object], n: int = 20000, reps: int = 5) -> float:
    runs = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(n):
            await fn()  # type: ignore[misc]
        runs.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(runs)


def _structlog_json(sink: io.StringIO) -> structlog.BoundLogger:
    # fnhost.logs.configure's chain (JSON, ISO timestamp), writing to memory instead of a file.
    return structlog.wrap_logger(
        structlog.WriteLogger(sink),
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True),
                    structlog.processors.format_exc_info, structlog.processors.JSONRenderer()],
    )


async def _async_costs(out: dict[str, float]) -> None:
    loop = asyncio.get_running_loop()

    async def scope() -> None:
        with anyio.move_on_after(3.0):
            pass

    async def future_roundtrip() -> None:
        fut = loop.create_future()
        loop.call_soon(fut.set_result, None)
        await fut

    out["anyio.move_on_after enter+exit (Worker.invoke's timeout scope)"] = await _atime(scope)
    out["one event-loop wake-up: future set by a callback, awaited"] = await _atime(future_roundtrip)
    out["asyncio.get_running_loop() (getpid inside; anyio calls it often)"] = _time(asyncio.get_running_loop)


def measure() -> dict[str, float]:
    out: dict[str, float] = {}
    payload = b'{"data":"' + b"x" * 89 + b'"}'
    req = pb.InvokeRequest(function_name="bench-echo-python", payload=payload).SerializeToString()
    out["protobuf: parse InvokeRequest (100 B)"] = _time(lambda: pb.InvokeRequest.FromString(req))

    def response() -> bytes:
        r = pb.InvokeResponse(status_code=200, payload=payload, request_id=str(uuid.uuid4()),
                              executed_version=LATEST)
        r.report.duration_ms = 0.3
        r.report.billed_duration_ms = 1
        r.report.memory_size_mb = 128
        r.report.max_memory_used_mb = 9
        return r.SerializeToString()

    out["protobuf: build + serialize InvokeResponse (with uuid4)"] = _time(response)
    out["uuid4() + str (request id)"] = _time(lambda: str(uuid.uuid4()))
    report = Report.of("6f1c0000-0000-0000-0000-000000000000", 0.31, 128, 9 * 2**20, None, 1)
    out["Report.of(...)"] = _time(lambda: Report.of("id", 0.31, 128, 9 * 2**20, None, 1))
    out["Report.line() (the REPORT text)"] = _time(report.line)
    sink = io.StringIO()
    log = _structlog_json(sink)

    def log_report() -> None:
        log.info("REPORT", function="bench-echo-python", request_id=report.request_id, report=report.line())
        sink.seek(0)
        sink.truncate()

    out["structlog JSON REPORT event (rendering only, no write)"] = _time(log_report)
    r, w = os.pipe()
    os.set_blocking(r, False)

    def empty_read() -> None:
        try:
            os.read(r, 65536)
        except BlockingIOError:
            pass

    out["os.read on an empty log pipe (EAGAIN), ×2 per invoke in LogCapture.drain"] = _time(empty_read)
    os.close(r)
    os.close(w)
    fd = os.open("/proc/self/statm", os.O_RDONLY)
    out["os.pread of a small /proc file (like the cgroup peak read per invoke)"] = _time(lambda: os.pread(fd, 64, 0))
    os.close(fd)
    clocks = (time.time, time.perf_counter, time.perf_counter)
    out["time.time() + time.perf_counter() ×2"] = _time(lambda: [c() for c in clocks])
    anyio.run(_async_costs, out)
    return out


def main() -> None:
    for name, us in measure().items():
        print(f"{us:8.2f} µs  {name}")


if __name__ == "__main__":
    main()
