"""Scale: does a warm invoke stay as cheap with 1,000 registered functions and 200 warm workers?

The one-worker case is measured first on a function whose pool holds one warm worker and is the
only pool with a worker; then the daemon is filled up (functions registered, the first ``warm`` of
them with min_warm 1, Python workers as the cheapest to keep) and the same function is measured
again. A second figure rotates over every warm function, so each call lands on a different worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from fnhost.client import Client

from .functions import EchoFunction
from .load import ClientPool
from .memory import idle_rss
from .stats import latency_summary, ratio
from .targets import fnhost_aim

PREFIX = "bench-scale-"


def _idle_workers(client: Client) -> int:
    return sum(f.workers.get("idle", 0) for f in client.stats().functions
               if f.function_name.startswith(PREFIX))


def _wait_idle(client: Client, want: int, timeout_s: float) -> tuple[int, float]:
    t0 = time.monotonic()
    have = 0
    while time.monotonic() - t0 < timeout_s:
        have = _idle_workers(client)
        if have >= want:
            break
        time.sleep(0.25)
    return have, time.monotonic() - t0


def run_scale(client: Client, pool: ClientPool, address: str, daemon_pid: int, fn: EchoFunction,
              payload: bytes, functions: int, warm: int, reps: int, calls: int,
              note: Callable[[str], None]) -> dict[str, object]:
    names = [f"{PREFIX}{i:04d}" for i in range(functions)]

    def create(i: int) -> None:
        client.create_function(names[i], runtime=fn.runtime, handler=fn.handler, code=str(fn.code_dir),
                               min_warm=1 if i < warm else 0, timeout_s=60)

    create(0)
    _wait_idle(client, 1, 60)
    aim = fnhost_aim(address, names[0], payload, daemon_pid, "scale")
    one = []
    for _ in range(reps):
        lat, sample = pool.sequential(aim.target, calls, 20)
        aim.check(sample)
        one.append(lat)
    rss_one = idle_rss(daemon_pid)

    t0 = time.perf_counter()
    # Registration is the daemon's work (hash the code, write SQLite, build a pool); a few client
    # threads keep it busy instead of measuring our own round trips.
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(create, range(1, functions)))
    register_s = time.perf_counter() - t0
    have, waited = _wait_idle(client, warm, 60 + warm * 0.5)
    if have < warm:
        note(f"scale: only {have} of {warm} workers warm after {waited:.0f} s")
    rss_many = idle_rss(daemon_pid)

    many = []
    for _ in range(reps):
        lat, sample = pool.sequential(aim.target, calls, 20)
        aim.check(sample)
        many.append(lat)
    # Rotating: a few calls on each warm function in turn, every one on a different worker.
    per_fn = max(2, calls // max(warm, 1))
    rotating: list[list[int]] = []
    for _ in range(reps):
        run: list[int] = []
        for name in names[:warm]:
            a = fnhost_aim(address, name, payload, daemon_pid, "scale-rotating")
            lat, _ = pool.sequential(a.target, per_fn, 1)
            run.extend(lat)
        rotating.append(run)
    one_s, many_s, rot_s = latency_summary(one), latency_summary(many), latency_summary(rotating)
    return {
        "functions": functions,
        "warm_workers_wanted": warm,
        "warm_workers_seen": have,
        "register_s": round(register_s, 2),
        "register_ms_per_function": round(register_s / max(functions - 1, 1) * 1000, 2),
        "warm_up_s": round(waited, 2),
        "daemon_rss_one_function_mib": rss_one,
        "daemon_rss_scaled_mib": rss_many,
        "one_worker": one_s,
        "scaled_same_function": many_s,
        "scaled_rotating": rot_s,
        "ratio_p50": ratio(many_s.get("p50_us"), one_s.get("p50_us")),  # type: ignore[arg-type]
        "ratio_p50_rotating": ratio(rot_s.get("p50_us"), one_s.get("p50_us")),  # type: ignore[arg-type]
    }
