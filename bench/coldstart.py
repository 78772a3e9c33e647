"""Cold starts and deploys.

Cold start: the first invoke of a freshly created function (min_warm 0), so the client waits for
spawn → HELLO → INIT → INVOKE. Reported two ways: the client's wall time for that first call,
and the daemon's REPORT Init Duration (spawn to INIT_OK). The build is not in it: each cold-start
function reuses the code already built for the runtime, as a redeploy of the same code would.

Deploy: CreateFunction with code the daemon has never seen (a copy with a nonce file), for
runtimes that compile at deploy (Go, Java, C#): hashing, building, registering. The toolchains'
own caches (Go's build cache, for one) stay warm, as they would on a build host.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from fnhost.client import Client

from .functions import EchoFunction, fresh_copy
from .stats import value_summary


def _name(kind: str, runtime: str) -> str:
    return f"bench-{kind}-{runtime}-{uuid.uuid4().hex[:8]}"


def cold_starts(client: Client, fn: EchoFunction, payload: bytes, reps: int,
                deadline_ok: Callable[[], bool]) -> dict[str, object]:
    first_ms, init_ms, warm_ms = [], [], []
    for i in range(reps):
        if i >= 2 and not deadline_ok():
            break
        name = _name("cold", fn.runtime)
        client.create_function(name, runtime=fn.runtime, handler=fn.handler, code=str(fn.code_dir),
                               timeout_s=60)
        try:
            t0 = time.perf_counter()
            cold = client.invoke(name, payload)
            t1 = time.perf_counter()
            warm = client.invoke(name, payload)
            t2 = time.perf_counter()
        finally:
            client.delete_function(name)
        if cold.function_error or warm.function_error:
            raise RuntimeError(f"echo failed: {(cold.payload if cold.function_error else warm.payload)[:300]!r}")
        if cold.report is None or cold.report.init_duration_ms is None:
            raise RuntimeError("the first invoke of a new function carried no Init Duration")
        first_ms.append((t1 - t0) * 1000)
        init_ms.append(cold.report.init_duration_ms)
        warm_ms.append((t2 - t1) * 1000)
    return {
        "first_invoke_ms": value_summary(first_ms, "ms"),
        "init_duration_ms": value_summary(init_ms, "ms"),
        "second_invoke_ms": value_summary(warm_ms, "ms"),
    }


def deploys(client: Client, fn: EchoFunction, scratch: Path, reps: int,
            deadline_ok: Callable[[], bool]) -> dict[str, object]:
    """CreateFunction wall time with new code each time (the build included)."""
    seconds = []
    for i in range(reps):
        if i >= 2 and not deadline_ok():
            break
        code = fresh_copy(fn.code_dir, scratch)
        name = _name("deploy", fn.runtime)
        try:
            t0 = time.perf_counter()
            client.create_function(name, runtime=fn.runtime, handler=fn.handler, code=str(code),
                                   timeout_s=60)
            seconds.append(time.perf_counter() - t0)
            client.delete_function(name)
        finally:
            shutil.rmtree(code, ignore_errors=True)
    return {"deploy_s": value_summary(seconds, "s", 3)}
