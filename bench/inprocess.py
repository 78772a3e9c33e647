"""fnhost's own cost per warm invoke, without gRPC: ``python -m bench.inprocess``.

The full run compares whole RPCs, where gRPC's ~500 µs of CPU per call and the machine's noise
hide a 10 µs change. This runs the daemon's ``Supervisor`` in this process, with a real Python
echo worker behind it, and charges each invocation with the CPU this process spent (user +
system, so the syscalls and the event loop's wake-ups count), against two floors run here too:

- ``loop``: a shim launched as the worker-hop floor launches it (``bench.floors.WorkerHop``), spoken
  to by the least an event loop can do: one ``writev``, a reader callback, one future;
- ``blocking``: the same shim with a blocking ``writev`` + ``read`` and no loop (the worker-hop floor).

Each mode runs sequentially and with 32 callers at once (32 workers), interleaved, several times,
on the daemon's event loop (``--asyncio`` for asyncio's own);
the report gives the minimum (the least noise got in) and the median. ``fnhost - loop`` is what
fnhost's own Python costs per invocation; ``loop - blocking`` is what waiting on an event loop
costs, which any asyncio daemon pays. Both are taken within each repetition (the modes run back to
back in it) and then summarised: the median of the per-repetition differences, with their range.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
from fnhost.control.config import FunctionConfig, Settings
from fnhost.control.deploy import CodeSource
from fnhost.control.runtimes import RuntimeRegistry
from fnhost.control.supervisor import Supervisor
from fnhost.daemon import EVENT_LOOP
from fnhost.execution import protocol
from fnhost.execution.invocation import Invocation
from fnhost.observability import logs
from fnhost.testing.fixtures import readable_copy

from .floors import LoopHop, WorkerHop
from .functions import EchoFunction, discover, json_payload
from .stats import paired_difference

# Own costs, each paired by repetition (stats.paired_difference): (label, minuend mode, subtrahend mode).
DIFFERENCES = (
    ("fnhost - loop sequential", "fnhost sequential", "loop sequential"),
    ("fnhost - loop {n} at once", "fnhost {n} at once", "loop {n} at once"),
    ("loop - blocking sequential", "loop sequential", "blocking sequential"),
)


async def _measure(fn: EchoFunction, work: Path, calls: int, reps: int, concurrent: int) -> dict[str, list[float]]:
    """CPU µs of this process per invocation, one value per repetition, for every mode."""
    payload = json_payload(100)
    settings = Settings(state_dir=work / "state", queue_timeout_s=60.0, init_timeout_s=60.0)
    settings.state_dir.mkdir(mode=0o711)
    sup = Supervisor(settings)
    loop = asyncio.get_running_loop()
    frame = protocol.encode_invoke(b"bench-inprocess", int(time.time() * 1000) + 3_600_000, payload)
    runtime = RuntimeRegistry().get("python")
    hops: list[LoopHop] = []
    blocking: WorkerHop | None = None
    samples: dict[str, list[float]] = {}
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        try:
            await sup.create_function(
                FunctionConfig(name="echo", runtime="python", handler=fn.handler, timeout_s=60,
                               min_warm=concurrent),
                CodeSource(directory=str(fn.code_dir)),
            )
            for _ in range(concurrent):
                hop = WorkerHop(runtime, fn, work)
                hop.start()
                hops.append(LoopHop(hop, loop))
            blocking = WorkerHop(runtime, fn, work)
            blocking.start()

            async def fnhost(n: int) -> None:
                for _ in range(n):  # a new Invocation per call, as every front end makes one
                    await sup.invoke(Invocation("echo", payload))

            async def looped(hop: LoopHop, n: int) -> None:
                for _ in range(n):
                    await hop.roundtrip(frame)

            async def blocked(hop: WorkerHop, n: int) -> None:
                for _ in range(n):
                    hop.roundtrip(frame)

            async def together(each: object) -> None:
                async with anyio.create_task_group() as g:
                    for i in range(concurrent):
                        g.start_soon(each, i)  # type: ignore[arg-type]

            modes = {
                "fnhost sequential": lambda: fnhost(calls),
                "loop sequential": lambda: looped(hops[0], calls),
                "blocking sequential": lambda: blocked(blocking, calls),
                f"fnhost {concurrent} at once": lambda: together(lambda i: fnhost(calls // 4)),
                f"loop {concurrent} at once": lambda: together(lambda i: looped(hops[i], calls // 4)),
            }
            per_mode = {name: calls if "sequential" in name else calls // 4 * concurrent for name in modes}
            await together(lambda i: fnhost(20))  # every worker warm, every code path run once
            first = await sup.invoke(Invocation("echo", payload))
            if not first.ok or json.loads(first.payload) != json.loads(payload):
                raise RuntimeError(f"the echo answered {first.function_error or 'wrongly'}: {first.payload[:300]!r}")
            for _ in range(reps):
                for name, run in modes.items():
                    t0 = time.process_time()
                    await run()
                    samples.setdefault(name, []).append((time.process_time() - t0) / per_mode[name] * 1e6)
        finally:
            for hop in hops:
                hop.close()
            if blocking is not None:
                blocking.close()
            tg.cancel_scope.cancel()
    return samples


def summarise(samples: dict[str, list[float]], concurrent: int) -> tuple[dict[str, dict[str, float]],
                                                                          dict[str, dict[str, object]]]:
    """Per mode min and median over repetitions; and the own costs of ``DIFFERENCES``, paired."""
    modes = {name: {"min_us": round(min(v), 1), "median_us": round(statistics.median(v), 1)}
             for name, v in samples.items()}
    costs = {}
    for label, a, b in DIFFERENCES:
        a, b = a.format(n=concurrent), b.format(n=concurrent)
        if a in samples and b in samples:
            costs[label.format(n=concurrent)] = paired_difference(samples[a], samples[b])
    return modes, costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4000, help="invocations per mode and repetition")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--concurrent", type=int, default=32, help="callers (and workers) at once")
    parser.add_argument("--asyncio", action="store_true",
                        help="run on asyncio's own loop instead of the daemon's (uvloop)")
    args = parser.parse_args()
    # As the service logs: JSON at info level, so each invocation's REPORT costs what it costs
    # there. The lines themselves go nowhere.
    stderr, sys.stderr = sys.stderr, open(os.devnull, "w")  # noqa: SIM115
    logs.configure("info", json=True)
    try:
        samples = _run(args.calls, args.reps, args.concurrent, {} if args.asyncio else EVENT_LOOP)
    finally:
        sys.stderr.close()
        sys.stderr = stderr
    modes, costs = summarise(samples, args.concurrent)
    print(f"CPU of this process per invocation, µs ({args.reps} repetitions of {args.calls} calls):")
    print(f"{'mode':<22} {'min':>8} {'median':>8}")
    for name, r in modes.items():
        print(f"{name:<22} {r['min_us']:>8} {r['median_us']:>8}")
    print()
    print("Differences, paired by repetition (each repetition's a - b; their median and range), µs:")
    print(f"{'difference':<28} {'median':>8} {'min':>8} {'max':>8}")
    for label, c in costs.items():
        print(f"{label:<28} {c['median_us']:>8} {c['min_us']:>8} {c['max_us']:>8}")


def _run(calls: int, reps: int, concurrent: int, loop: dict[str, object]) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="fnhost-inprocess-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # a root daemon's workers run as other users and must reach the code
        fns, skipped = discover(RuntimeRegistry(), ["python"], fixtures=readable_copy(work / "fixtures"))
        if not fns:
            raise RuntimeError(f"no Python echo to run: {skipped}")
        return anyio.run(_measure, fns[0], work, calls, reps, concurrent, backend_options=loop)


if __name__ == "__main__":
    main()
