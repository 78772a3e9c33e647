"""Which Python gRPC stack to serve on: ``python -m bench.stacks``.

The issue leaves the server flavour and the event loop to the numbers. This measures each
candidate twice, in the same run and interleaved: as a bare echo (the gRPC floor on that stack)
and as the least a daemon on that stack can do per invocation — a handler that sends the payload
to one of 32 Python echo shims (``--workers``) over the worker protocol and waits for the
reply ("hop"):

- ``aio``: grpc.aio on asyncio's default loop (what fnhost served on before §7);
- ``uvloop``: grpc.aio on uvloop (a well-kept libuv loop; what fnhost serves on now);
- ``sync``: grpc's thread-pool server (DESIGN.md: 33–70 % more echo throughput than grpc.aio),
  whose hop handler blocks its thread on the worker's pipe.

- ``fnhost``: the real daemon (``python -m fnhost serve``, on uvloop) with a Python echo function
  kept at 32 warm workers: what the ``uvloop-hop`` handler is the lower bound of. Issue #9's
  targets are its ratios to ``uvloop-hop`` in the same repetition: p50 ≤ 1.15 ×, requests/s at 32
  in flight ≥ 0.9 ×.

Per variant: sequential p50 (one client, 100 B), requests/s and server CPU per call at 32 in
flight (the bench's client processes; for fnhost, the daemon and its workers). Nothing is
asserted; the table goes to bench/PROFILE.md.
A variant's server is ``python -m bench.stacks serve VARIANT ADDRESS WORKERS``; it exits when
its stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
from fnhost.api.grpc_server import SERVER_OPTIONS
from fnhost.control.runtimes import RuntimeRegistry
from fnhost.execution import protocol
from fnhost.testing.fixtures import readable_copy

from .daemon import bench_daemon
from .echo_server import SERVICE, UNARY
from .floors import LoopHop, WorkerHop, blob
from .functions import child_env, discover, json_payload
from .load import ClientPool, Target
from .stats import paired_difference
from .targets import INVOKE_METHOD, cpu_seconds, invoke_request

VARIANTS = ("aio", "aio-hop", "uvloop", "uvloop-hop", "sync", "sync-hop", "fnhost")
FNHOST_FUNCTION = "echo"
REQUEST_ID = b"bench-stacks"


def _payload(request: bytes) -> bytes:
    """The payload inside ``bench.Blob{data}`` (field 1, a varint length)."""
    length, shift, i = 0, 0, 1
    while True:
        byte = request[i]
        i += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return request[i:i + length]


def _invoke_frame(request: bytes) -> list[bytes]:
    return protocol.encode_invoke(REQUEST_ID, int(time.time() * 1000) + 60_000, _payload(request))


def _start_workers(work: Path, workers: int) -> list[WorkerHop]:
    fns, skipped = discover(RuntimeRegistry(), ["python"], fixtures=readable_copy(work / "fixtures"))
    if not fns:
        raise RuntimeError(f"no Python echo: {skipped}")
    runtime = RuntimeRegistry().get("python")
    hops = []
    for _ in range(workers):
        hop = WorkerHop(runtime, fns[0], work)
        hop.start()
        hops.append(hop)
    return hops


def _serve_sync(address: str, hops: list[WorkerHop]) -> None:
    idle = list(hops)
    free = threading.Condition()

    def echo(request: bytes, context: Any) -> bytes:
        if not hops:
            return request
        with free:
            while not idle:
                free.wait()
            hop = idle.pop()
        try:
            hop.roundtrip(_invoke_frame(request))
        finally:
            with free:
                idle.append(hop)
                free.notify()
        return request

    server = grpc.server(ThreadPoolExecutor(max_workers=64), options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(echo)}),))
    server.add_insecure_port(address)
    server.start()
    print("ready", flush=True)
    sys.stdin.read()
    server.stop(0)


async def _serve_aio(address: str, hops: list[WorkerHop]) -> None:
    loop = asyncio.get_running_loop()
    idle = [LoopHop(hop, loop) for hop in hops]
    waiting: list[asyncio.Future[LoopHop]] = []

    async def echo(request: bytes, context: Any) -> bytes:
        if not hops:
            return request
        if idle:
            hop = idle.pop()
        else:
            waiter: asyncio.Future[LoopHop] = loop.create_future()
            waiting.append(waiter)
            hop = await waiter
        await hop.roundtrip(_invoke_frame(request))
        if waiting:
            waiting.pop(0).set_result(hop)
        else:
            idle.append(hop)
        return request

    server = grpc.aio.server(options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(echo)}),))
    server.add_insecure_port(address)
    await server.start()
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    await server.stop(0)


def serve(variant: str, address: str, workers: int) -> None:
    with tempfile.TemporaryDirectory(prefix="fnhost-stacks-") as tmp:
        os.chmod(tmp, 0o755)
        hops = _start_workers(Path(tmp), workers) if variant.endswith("-hop") else []
        try:
            if variant.startswith("sync"):
                _serve_sync(address, hops)
            elif variant.startswith("uvloop"):
                import uvloop

                uvloop.run(_serve_aio(address, hops))
            else:
                asyncio.run(_serve_aio(address, hops))
        finally:
            for hop in hops:
                hop.close()


def _measure(pool: ClientPool, target: Target, pid: int, calls: int, window_s: float) -> dict[str, float]:
    latencies, _ = pool.sequential(target, calls, warmup=calls // 10)
    pool.warm(target, 32)
    before = sum(cpu_seconds(pid, children=True))
    window = pool.window(target, 32, window_s)
    after = sum(cpu_seconds(pid, children=True))
    return {"p50_us": statistics.median(latencies) / 1000, "rps_32": window.throughput,
            "cpu_us_per_call_32": (after - before) / max(window.completed, 1) * 1e6}


def _one(pool: ClientPool, variant: str, work: Path, calls: int, window_s: float, workers: int) -> dict[str, float]:
    if variant == "fnhost":
        return _fnhost(pool, work, calls, window_s, workers)
    address = f"unix:{work / variant}.sock"
    proc = subprocess.Popen([sys.executable, "-m", "bench.stacks", "serve", variant, address, str(workers)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_env(),
                            cwd=Path(__file__).resolve().parents[1])
    try:
        assert proc.stdout is not None
        while (line := proc.stdout.readline()) and line.strip() != b"ready":
            pass
        if not line:
            raise RuntimeError(f"the {variant} server did not start")
        return _measure(pool, Target(variant, address, UNARY, blob(json_payload(100))), proc.pid, calls, window_s)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _fnhost(pool: ClientPool, work: Path, calls: int, window_s: float, workers: int) -> dict[str, float]:
    """The real daemon, its Python echo kept at ``workers`` warm workers like the hop servers'."""
    work.chmod(0o711)  # the workers' own users pass through to the state directory
    run = work / f"fnhost-{time.monotonic_ns()}"
    run.mkdir()
    run.chmod(0o711)
    fns, skipped = discover(RuntimeRegistry(), ["python"], fixtures=readable_copy(run / "fixtures"))
    if not fns:
        raise RuntimeError(f"no Python echo: {skipped}")
    daemon = bench_daemon(run)
    daemon.start()
    try:
        with daemon.client() as client:
            client.create_function(FNHOST_FUNCTION, runtime="python", handler=fns[0].handler,
                                   code=str(fns[0].code_dir), min_warm=workers, max_concurrency=workers)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # provisioned: every worker warm before measuring
                stats = {f.function_name: f for f in client.stats().functions}[FNHOST_FUNCTION]
                if stats.workers.get("idle", 0) >= workers:
                    break
                time.sleep(0.1)
        payload = json_payload(100)
        target = Target("fnhost", daemon.address, INVOKE_METHOD, invoke_request(FNHOST_FUNCTION, payload))
        return _measure(pool, target, daemon.pid, calls, window_s)
    finally:
        daemon.stop()

def _hop_floor(work: Path, calls: int) -> float:
    """The worker-hop floor's p50 in µs (blocking writev + read to one shim), as the bench measures it."""
    (hop,) = _start_workers(work, 1)
    try:
        latencies, _ = hop.roundtrips(json_payload(100), calls, warmup=calls // 10)
    finally:
        hop.close()
    return statistics.median(latencies) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--calls", type=int, default=2000, help="sequential calls per repetition")
    parser.add_argument("--window", type=float, default=3.0, help="seconds at 32 in flight")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--workers", type=int, default=32, help="echo shims behind a hop server")
    args = parser.parse_args()
    variants = args.variants.split(",")
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    hop_floor: list[float] = []
    root = Path(__file__).resolve().parents[1]
    pool = ClientPool(4, str(root), env=child_env())
    try:
        with tempfile.TemporaryDirectory(prefix="fnhost-stacks-") as tmp:
            for rep in range(args.reps):
                hop_floor.append(_hop_floor(Path(tmp) / f"hop-{rep}", args.calls))
                for variant in variants:
                    runs[variant].append(_one(pool, variant, Path(tmp), args.calls, args.window, args.workers))
                    r = runs[variant][-1]
                    print(f"rep {rep} {variant:<11} p50 {r['p50_us']:7.0f} µs  {r['rps_32']:6.0f} req/s  "
                          f"{r['cpu_us_per_call_32']:5.0f} µs CPU/call", file=sys.stderr, flush=True)
    finally:
        pool.close()
    floor = statistics.median(hop_floor)
    print(f"Medians of {args.reps} repetitions; worker-hop floor p50 {floor:.0f} µs. A hop variant's own cost is "
          "its p50 − (its stack's echo p50 + the worker-hop floor), as the bench defines fnhost's: taken within "
          "each repetition, then the median of those (range in brackets).\n")
    print("| variant | sequential p50 (µs) | own cost (µs) | req/s at 32 in flight | ÷ its echo | "
          "server CPU per call (µs) |")
    print("|---|---|---|---|---|---|")
    med = {v: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for v, rs in runs.items()}
    for variant, m in med.items():
        echo_variant = variant.removesuffix("-hop") if variant.endswith("-hop") else None
        echo = med.get(echo_variant) if echo_variant else None
        own, ratio = "—", "—"
        if echo_variant and echo:
            cost = paired_difference([r["p50_us"] for r in runs[variant]],
                                     [r["p50_us"] for r in runs[echo_variant]], hop_floor, digits=0)
            own = f"{cost['median_us']:.0f} [{cost['min_us']:.0f}–{cost['max_us']:.0f}]"
            ratio = f"{m['rps_32'] / echo['rps_32']:.2f}"
        print(f"| {variant} | {m['p50_us']:.0f} | {own} | {m['rps_32']:.0f} | {ratio} | "
              f"{m['cpu_us_per_call_32']:.0f} |")

    if "fnhost" in runs and "uvloop-hop" in runs:
        # Issue #9's targets, each ratio taken within a repetition (the machine's load moves both).
        p50 = [f["p50_us"] / h["p50_us"] for f, h in zip(runs["fnhost"], runs["uvloop-hop"])]
        rps = [f["rps_32"] / h["rps_32"] for f, h in zip(runs["fnhost"], runs["uvloop-hop"])]
        print(f"\nfnhost ÷ uvloop-hop, per repetition: p50 {', '.join(f'{r:.3f}' for r in p50)} "
              f"(median {statistics.median(p50):.3f}; target ≤ 1.15); req/s at 32 in flight "
              f"{', '.join(f'{r:.3f}' for r in rps)} (median {statistics.median(rps):.3f}; target ≥ 0.9)")

if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
