"""Warm-worker density and pool growth, with and without the zygote (issue #13).

``python -m bench.density``:

- **Density.** ``--functions N`` different Python functions (the echo fixture under N names, so
  N uids and N workers), each invoked once and left warm; then the unique memory (USS, what the
  kernel would free if the process went) of every process each worker is made of — the worker,
  and what stands between it and the daemon (a forked worker's namespace init; a spawned one's
  bubblewrap and its init) — summed per worker, plus the zygote's own. Run once forking from the
  zygote, once spawning (``zygote = false``), on two daemons one after the other.
  ``--runtimes`` adds every other runtime's USS per warm worker at a smaller count, in each of
  the three modes: exec'd by the zygote's spare (``forked``), spawned, and a specialised stem
  cell where the runtime has them (``stemcell``).
- **Growth.** One function (``--growth-runtime``, Python by default), no warm worker, then
  ``--inflight`` callers (16 and 32) invoking it back to back for ``--seconds``: the pool grows
  as the callers need; its latency percentiles and the cold starts after the first second (the
  warm-up), in each of ``--growth-modes``, the daemons alternating round by round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import psutil

from fnhost.client import AsyncClient
from fnhost.control.runtimes import RuntimeRegistry
from fnhost.testing.fixtures import readable_copy

from . import functions
from .daemon import DAEMON_CONFIG, Daemon
from .stats import percentile

MiB = 1024 * 1024
MODES = {"forked": "zygote = true\nstem_cells = 0\n", "spawned": "zygote = false\n",
         "stemcell": "zygote = true\nstem_cells = 1\n"}


def _daemon(work: Path, mode: str, extra: str = "") -> Daemon:
    config = DAEMON_CONFIG + MODES[mode] + "max_functions = 5000\nmemory_sample_interval_s = 5.0\n" + extra
    return Daemon(work / mode, config=config, base_env=functions.child_env()).start(timeout=120)


def _uss(p: psutil.Process) -> int:
    try:
        return p.memory_full_info().uss
    except psutil.Error:
        return 0


def _uid(p: psutil.Process) -> int:
    try:
        return p.uids().real
    except psutil.Error:
        return 0


def _worker_trees(daemon: Daemon, names: set[str]) -> tuple[dict[str, int], int]:
    """USS per function (its worker's whole tree below the daemon or the zygote), and the zygotes'."""
    per_function: dict[str, int] = {}
    zygotes = 0
    try:
        top = psutil.Process(daemon.pid).children()
    except psutil.Error:
        return per_function, zygotes
    for child in top:
        try:
            cmd = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "zygote.py" in cmd:
            zygotes += _uss(child)
            trees = child.children()  # each a worker's init (or a spare's, which has no function yet)
        else:
            trees = [child]  # a spawned worker: its gate, bubblewrap, init and shim
        for root in trees:
            try:
                procs = [root, *root.children(recursive=True)]
                name = next((p.environ().get("AWS_LAMBDA_FUNCTION_NAME") for p in procs
                             if p.environ().get("AWS_LAMBDA_FUNCTION_NAME") in names), None)
            except psutil.Error:
                continue
            if name is None:
                # A specialised stem cell's /proc/PID/environ is the one it started with: its
                # function's own uid names it (a cell still waiting runs as root).
                uid = next((u for p in procs if (u := _uid(p)) and u >= 1000), None)
                if uid is not None:
                    name = f"uid-{uid}"
            if name is None:
                if "zygote.py" in cmd:
                    zygotes += sum(_uss(p) for p in procs)  # a spare or a waiting cell: part of what they cost
                continue
            per_function[name] = per_function.get(name, 0) + sum(_uss(p) for p in procs)
    return per_function, zygotes


def density(work: Path, mode: str, fn: functions.EchoFunction, n: int) -> dict[str, object]:
    d = _daemon(work, mode)
    try:
        names = {f"dens-{fn.runtime}-{i}-{uuid.uuid4().hex[:6]}" for i in range(n)}
        with d.client(timeout=300) as client:
            started = time.perf_counter()
            for name in names:
                client.create_function(name, runtime=fn.runtime, handler=fn.handler, code=str(fn.code_dir),
                                       timeout_s=60, memory_mb=128, idle_ttl_s=3600)
            deployed = time.perf_counter()
            firsts = []
            for name in names:
                t0 = time.perf_counter()
                result = client.invoke(name, b'{"a": 1}')
                firsts.append((time.perf_counter() - t0) * 1000)
                if not result.ok:
                    raise RuntimeError(f"{name}: {result.payload[:300]!r}")
            invoked = time.perf_counter()
            time.sleep(1.0)  # the workers settle (the spare is made, logs flushed)
            per_function, zygote_uss = _worker_trees(d, names)
            stats = client.stats()
        daemon_uss = _uss(psutil.Process(d.pid))
        values = sorted(per_function.values())
        firsts.sort()
        return {
            "mode": mode, "runtime": fn.runtime, "functions": n, "workers_measured": len(values),
            "uss_total_mib": round((sum(values) + zygote_uss) / MiB, 1),
            "uss_per_worker_mib": {"p50": round(percentile(values, 50) / MiB, 3) if values else None,
                                   "mean": round(sum(values) / len(values) / MiB, 3) if values else None},
            "zygote_uss_mib": round(zygote_uss / MiB, 2), "daemon_uss_mib": round(daemon_uss / MiB, 1),
            "first_invoke_ms": {"p50": round(percentile(firsts, 50), 2), "p99": round(percentile(firsts, 99), 2)},
            "deploy_s": round(deployed - started, 1), "invoke_all_s": round(invoked - deployed, 1),
            "zygote_forks": sum(z.forks for z in stats.zygotes),
            "stem_cells_taken": sum(c.taken for c in stats.stem_cells),
        }
    finally:
        d.stop(timeout=120)


async def _cold_starts(client: AsyncClient, name: str) -> int:
    stats = await client.stats()
    return next((f.cold_starts for f in stats.functions if f.function_name == name), 0)


async def _callers(address: str, name: str, inflight: int, seconds: float) -> tuple[list[float], list[float], int]:
    """(latencies in ms, start times) of every call, ``inflight`` callers back to back; and the
    cold starts a second into the load (the warm-up)."""
    latencies: list[float] = []
    starts: list[float] = []
    end = time.perf_counter() + seconds
    async with AsyncClient(address, timeout=120) as client:
        async def after_warmup() -> int:
            await asyncio.sleep(1.0)
            return await _cold_starts(client, name)

        async def caller() -> None:
            while (now := time.perf_counter()) < end:
                result = await client.invoke(name, b'{"a": 1}')
                if not result.ok:
                    raise RuntimeError(result.payload[:300])
                latencies.append((time.perf_counter() - now) * 1000)
                starts.append(now)

        warmed, *_ = await asyncio.gather(after_warmup(), *(caller() for _ in range(inflight)))
    return latencies, starts, warmed


def growth(work: Path, fn: functions.EchoFunction, inflights: list[int], seconds: float,
           rounds: int, modes: list[str]) -> list[dict[str, object]]:
    daemons = {mode: _daemon(work, mode) for mode in modes}
    out: list[dict[str, object]] = []
    try:
        raw: dict[tuple[str, int], list[dict[str, float]]] = {}
        for _ in range(rounds):
            for inflight in inflights:
                for mode, d in daemons.items():
                    name = f"grow-{mode}-{inflight}-{uuid.uuid4().hex[:6]}"
                    with d.client(timeout=120) as client:
                        client.create_function(name, runtime=fn.runtime, handler=fn.handler,
                                               code=str(fn.code_dir), timeout_s=60, idle_ttl_s=600)
                        time.sleep(1.0)  # its kind's stem cell, if any, is born as it would be on a host
                        latencies, starts, warmed = asyncio.run(_callers(d.address, name, inflight, seconds))
                        t0 = min(starts)
                        warm = sorted(lat for lat, s in zip(latencies, starts) if s - t0 >= 1.0)
                        [stats] = [f for f in client.stats().functions if f.function_name == name]
                        cold_starts = stats.cold_starts
                        late = cold_starts - warmed
                        client.delete_function(name)
                    raw.setdefault((mode, inflight), []).append({
                        "p50_ms": percentile(warm, 50), "p99_ms": percentile(warm, 99),
                        "calls_per_s": len(warm) / max(seconds - 1.0, 0.001),
                        "cold_starts": cold_starts, "cold_starts_after_warmup": late})
        for (mode, inflight), runs in sorted(raw.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            med = lambda k: sorted(r[k] for r in runs)[len(runs) // 2]  # noqa: E731
            out.append({"runtime": fn.runtime, "mode": mode, "inflight": inflight, "rounds": len(runs),
                        "p50_ms": round(med("p50_ms"), 2), "p99_ms": round(med("p99_ms"), 2),
                        "calls_per_s": round(med("calls_per_s")), "cold_starts": med("cold_starts"),
                        "cold_starts_after_warmup": med("cold_starts_after_warmup")})
        return out
    finally:
        for d in daemons.values():
            d.stop(timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.density", description=__doc__.split("\n\n")[0])
    parser.add_argument("--functions", type=int, default=1000, help="warm Python workers (default 1000)")
    parser.add_argument("--runtimes", default="", help="also each of these at --others workers (comma-separated)")
    parser.add_argument("--others", type=int, default=20, help="workers per other runtime (default 20)")
    parser.add_argument("--inflight", default="16,32", help="callers for the growth run (default 16,32)")
    parser.add_argument("--seconds", type=float, default=6.0, help="per growth run (default 6)")
    parser.add_argument("--rounds", type=int, default=3, help="growth runs per mode and in-flight count (default 3)")
    parser.add_argument("--growth-runtime", default="python", help="the growth run's function (default python)")
    parser.add_argument("--growth-modes", default="forked,spawned", help=f"of {', '.join(MODES)} (default forked,spawned)")
    parser.add_argument("--skip", default="", help="density or growth: leave that part out")
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fnhd-", dir="/tmp"))
    os.chmod(work, 0o711)
    result: dict[str, object] = {"density": [], "growth": []}
    try:
        wanted = ["python", *[r for r in {*args.runtimes.split(","), args.growth_runtime} if r and r != "python"]]
        fns, skipped = functions.discover(RuntimeRegistry(), wanted, fixtures=readable_copy(work / "fixtures"))
        result["skipped"] = skipped
        by_runtime = {f.runtime: f for f in fns}
        if "density" not in args.skip:
            for mode in ("forked", "spawned"):
                result["density"].append(density(work, mode, by_runtime["python"], args.functions))  # type: ignore[union-attr]
            for runtime, fn in by_runtime.items():
                if runtime != "python" and runtime in args.runtimes.split(","):
                    for mode in MODES:
                        result["density"].append(density(work, mode, fn, args.others))  # type: ignore[union-attr]
        if "growth" not in args.skip:
            result["growth"] = growth(work, by_runtime[args.growth_runtime], [int(x) for x in args.inflight.split(",")],
                                      args.seconds, args.rounds, args.growth_modes.split(","))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
