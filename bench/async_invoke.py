"""Asynchronous invocation against the synchronous path: ``python -m bench.async_invoke``.

One daemon per queue backend (``bench_daemon``: its own state directory, unix socket and limits),
each with a no-op Python function kept at ``--workers`` warm workers. In every repetition, on the
same daemon and interleaved:

- ``sync``: ``Invoke`` (RequestResponse) of the no-op, one call at a time (``--calls``): p50/p99;
- ``accept``: ``Invoke`` with ``InvocationType=Event`` of the same no-op, one at a time: the time
  until the daemon answers 202, i.e. until the event is durably stored (p50/p99). The dispatcher
  runs the events meanwhile, as it would in production; the queue is drained before the next
  phase so no phase pays for another's backlog;
- ``sync_rps`` and ``accept_rps``: ``--in-flight`` calls outstanding for ``--seconds``;
- ``end_to_end``: ``--events`` events accepted as fast as ``--in-flight`` callers can, and the
  time from the first send until the pool has completed all of them (its ``invocations`` counter,
  polled every 10 ms): events/s accepted → handler done.

Backends: the embedded SQLite queue, and with ``--nats`` JetStream on a nats-server this bench
starts on a free loopback port with a temporary store and stops at the end (``--queue URL`` uses
one that is already running instead). The issue's target: an event's acceptance costs no more
than a synchronous invoke of a no-op (``accept p50 / sync p50 ≤ 1``). Writes
``<out>/<date>-vm-async-invoke.{md,json}``; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from fnhost.client import AsyncClient
from fnhost.control.async_model import QueuedEvent
from fnhost.control.async_sqlite import SqliteQueue

from .daemon import DAEMON_CONFIG, bench_daemon
from .functions import ROOT
from .report_http import today
from .stats import latency_summary, percentile, value_summary

FUNCTION = "noop"
APP = "import time\n\ndef handler(event, context):\n    time.sleep(event.get('sleep', 0))\n"
# The same handler at one worker, kept busy by one sleeping event while the "accept_parked" phase
# runs: the dispatcher then has no room to lease its events, so acceptance is measured alone.
PARKED = "parked"
PARK_S = 5.0
PAYLOAD = b'{"bench": true}'


@contextmanager
def nats_server(work: Path):  # type: ignore[no-untyped-def]
    """nats-server -js on a free loopback port with a store under ``work``; stopped by its pid."""
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = work / "nats.conf"
    conf.write_text("max_payload: 2MB\n")  # a 1 MB event and its headers
    log = open(work / "nats.log", "ab")  # noqa: SIM115 - the child writes to it
    proc = subprocess.Popen([binary, "-c", str(conf), "-js", "-sd", str(work / "jetstream"), "-a", "127.0.0.1",
                             "-p", str(port)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
                    if c.recv(5) == b"INFO ":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nats-server did not start: {(work / 'nats.log').read_text()[-1000:]}")
            time.sleep(0.05)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _invocations(client: AsyncClient, function: str = FUNCTION) -> int:
    stats = await client.stats()
    return next((f.invocations for f in stats.functions if f.function_name == function), 0)


async def _drain(client: AsyncClient, target: int, timeout: float = 300.0, function: str = FUNCTION) -> float:
    """Wait until the pool has completed ``target`` invocations; the monotonic time it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await _invocations(client, function) >= target:
            return time.monotonic()
        await asyncio.sleep(0.01)
    raise RuntimeError(f"the queue did not drain within {timeout} s")


async def _parked_accepts(client: AsyncClient, calls: int) -> list[int]:
    """Acceptance with no dispatch beside it: PARKED's one worker sleeps through the phase."""
    base = await _invocations(client, PARKED)
    await client.invoke(PARKED, json.dumps({"sleep": PARK_S}).encode(), invocation_type="Event")
    while True:  # until the sleeper runs: from then on, nothing of PARKED is leased
        stats = await client.stats()
        if any(f.function_name == PARKED and f.workers.get("busy") for f in stats.functions):
            break
        await asyncio.sleep(0.005)
    t_start = time.monotonic()
    out = await _sequential(client, calls, "Event", PARKED)
    if time.monotonic() - t_start > PARK_S * 0.8:
        print(f"warning: the parked phase took longer than the sleeper ({PARK_S} s)", file=sys.stderr)
    await _drain(client, base + calls + 1, function=PARKED)
    return out


async def _sequential(client: AsyncClient, calls: int, kind: str, function: str = FUNCTION) -> list[int]:
    out = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        result = await client.invoke(function, PAYLOAD, invocation_type=kind)
        out.append(time.perf_counter_ns() - t0)
        if result.status_code not in (200, 202):
            raise RuntimeError(f"{kind} answered {result.status_code}")
    return out


async def _closed_loop(client: AsyncClient, kind: str, in_flight: int, seconds: float) -> tuple[float, int]:
    """(calls per second, calls) with ``in_flight`` outstanding for ``seconds``."""
    done = 0
    stop = time.monotonic() + seconds

    async def caller() -> None:
        nonlocal done
        while time.monotonic() < stop:
            await client.invoke(FUNCTION, PAYLOAD, invocation_type=kind)
            done += 1

    t0 = time.monotonic()
    await asyncio.gather(*(caller() for _ in range(in_flight)))
    return done / (time.monotonic() - t0), done


async def _end_to_end(client: AsyncClient, events: int, in_flight: int) -> dict[str, float]:
    base = await _invocations(client)
    remaining = events

    async def sender() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await client.invoke(FUNCTION, PAYLOAD, invocation_type="Event")

    t0 = time.monotonic()
    await asyncio.gather(*(sender() for _ in range(in_flight)))
    accepted = time.monotonic()
    finished = await _drain(client, base + events)
    return {"accept_s": accepted - t0, "total_s": finished - t0, "accepted_per_s": events / (accepted - t0),
            "events_per_s": events / (finished - t0)}


async def measure(address: str, args: argparse.Namespace) -> dict[str, Any]:
    raw: dict[str, Any] = {"sync": [], "accept": [], "accept_parked": [], "sync_rps": [], "accept_rps": [],
                           "end_to_end": []}
    async with AsyncClient(address, timeout=120) as client:
        await _sequential(client, 50, "RequestResponse")  # warm the channel and the workers
        for _ in range(args.reps):
            raw["sync"].append(await _sequential(client, args.calls, "RequestResponse"))
            base = await _invocations(client)
            raw["accept"].append(await _sequential(client, args.calls, "Event"))
            await _drain(client, base + args.calls)
            raw["accept_parked"].append(await _parked_accepts(client, args.calls))
            raw["sync_rps"].append((await _closed_loop(client, "RequestResponse", args.in_flight, args.seconds))[0])
            base = await _invocations(client)
            rps, accepted = await _closed_loop(client, "Event", args.in_flight, args.seconds)
            raw["accept_rps"].append(rps)
            await _drain(client, base + accepted)
            raw["end_to_end"].append(await _end_to_end(client, args.events, args.in_flight))
    return raw


async def _store(path: Path, durability: str, calls: int, in_flight: int) -> dict[str, Any]:
    """The embedded queue's ``put`` alone, in this process: what acceptance pays for storage."""
    queue = SqliteQueue(path, durability=durability)
    await queue.start()
    ids = iter(range(10**9))

    def event() -> QueuedEvent:
        return QueuedEvent(f"bench-{next(ids)}", FUNCTION, "", PAYLOAD, time.time())

    try:
        sequential = []
        for _ in range(calls):
            t0 = time.perf_counter_ns()
            await queue.put(event())
            sequential.append(time.perf_counter_ns() - t0)
        t0 = time.monotonic()
        await asyncio.gather(*(queue.put(event()) for _ in range(calls * in_flight // 4)))
        concurrent_rate = calls * in_flight // 4 / (time.monotonic() - t0)
    finally:
        await queue.close()
    return {"put": latency_summary([sequential], cdf=False), "puts_per_s_concurrent": round(concurrent_rate)}


def store_figures(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``SqliteQueue.put`` with synchronous=NORMAL (the default) and FULL, on the bench's filesystem."""
    out = {}
    for durability in ("normal", "full"):
        path = work / f"store-{durability}.sqlite3"
        out[durability] = asyncio.run(_store(path, durability, args.calls, args.in_flight))
    return out


def summarise(raw: dict[str, Any]) -> dict[str, Any]:
    sync, accept = latency_summary(raw["sync"], cdf=False), latency_summary(raw["accept"], cdf=False)
    parked = latency_summary(raw["accept_parked"], cdf=False)

    def per_rep(runs: list[list[int]]) -> dict[str, object]:
        return value_summary([percentile(sorted(a), 50) / percentile(sorted(s), 50)
                              for a, s in zip(runs, raw["sync"], strict=True)], "ratio", 3)

    return {
        "sync": sync, "accept": accept, "accept_parked": parked,
        "accept_over_sync_p50": per_rep(raw["accept"]),
        "parked_over_sync_p50": per_rep(raw["accept_parked"]),
        "sync_rps": value_summary(raw["sync_rps"], "rps", 0),
        "accept_rps": value_summary(raw["accept_rps"], "rps", 0),
        "end_to_end_events_per_s": value_summary([e["events_per_s"] for e in raw["end_to_end"]], "eps", 0),
        "end_to_end_accepted_per_s": value_summary([e["accepted_per_s"] for e in raw["end_to_end"]], "eps", 0),
    }


def run_backend(label: str, queue: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o711)
    daemon = bench_daemon(work)
    daemon.config = DAEMON_CONFIG + f'queue = "{queue}"\nasync_max_share = 1.0\n'
    daemon.start()
    try:
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as z:
            z.writestr("app.py", APP)
        with daemon.client() as client:
            client.create_function(FUNCTION, runtime="python", handler="app.handler", code=code.getvalue(),
                                   min_warm=args.workers, max_concurrency=args.workers)
            client.create_function(PARKED, runtime="python", handler="app.handler", code=code.getvalue(),
                                   min_warm=1, max_concurrency=1, timeout_s=int(PARK_S * 4))
        raw = asyncio.run(measure(daemon.address, args))
    finally:
        daemon.stop()
    return {"backend": label, "queue": queue or "sqlite (state directory)", "raw": raw, "summary": summarise(raw)}


def _median(summary: dict[str, Any]) -> str:
    """A value_summary's median, with its range over the repetitions."""
    unit = next((k.removeprefix("median_") for k in summary if k.startswith("median_")), None)
    if unit is None:
        return "-"
    return f"{summary['median_' + unit]} ({summary['min_' + unit]}–{summary['max_' + unit]})"


def markdown(results: list[dict[str, Any]], args: argparse.Namespace, store: dict[str, Any] | None = None) -> str:
    lines = [f"# Asynchronous invocation, {today()}", "",
             f"{args.reps} repetitions; {args.calls} sequential calls per phase; {args.in_flight} in flight for "
             f"{args.seconds} s; {args.events} events end to end; no-op Python function at {args.workers} warm "
             "workers. Latencies in µs.", "",
             "| backend | sync p50 | sync p99 | accept p50 | accept p99 | accept/sync p50 | accept alone p50 | "
             "accept alone p99 | alone/sync p50 | sync req/s | accepts/s | end to end events/s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s = r["summary"]
        lines.append(f"| {r['backend']} | {s['sync']['p50_us']} | {s['sync']['p99_us']} | {s['accept']['p50_us']} | "
                     f"{s['accept']['p99_us']} | {_median(s['accept_over_sync_p50'])} | "
                     f"{s['accept_parked']['p50_us']} | {s['accept_parked']['p99_us']} | "
                     f"{_median(s['parked_over_sync_p50'])} | {_median(s['sync_rps'])} | "
                     f"{_median(s['accept_rps'])} | {_median(s['end_to_end_events_per_s'])} |")
    if store:
        lines += ["", "The embedded queue's `put` alone, in process (what acceptance pays to store an event; "
                  "concurrent puts share commits):", "",
                  "| SQLite synchronous | put p50 | put p99 | puts/s, many at once |", "|---|---|---|---|"]
        for durability, figures in store.items():
            lines.append(f"| {durability.upper()} | {figures['put']['p50_us']} | {figures['put']['p99_us']} | "
                         f"{figures['puts_per_s_concurrent']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.async_invoke", description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--calls", type=int, default=300, help="sequential calls per phase and repetition")
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--events", type=int, default=2000, help="events per end-to-end measurement")
    parser.add_argument("--workers", type=int, default=4, help="warm workers of the no-op function")
    parser.add_argument("--nats", action="store_true", help="also JetStream, on a nats-server the bench starts")
    parser.add_argument("--queue", default="", help="also JetStream at this nats:// URL (already running)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    results = []
    with ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="fnh-async-", dir="/tmp"))
        work.chmod(0o711)  # the workers' users must reach the state directory below it
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        results.append(run_backend("sqlite", "", work / "sqlite", args))
        print(markdown(results, args), file=sys.stderr)
        url = args.queue
        if args.nats and not url:
            (work / "nats").mkdir()
            url = stack.enter_context(nats_server(work / "nats"))
        if url:
            results.append(run_backend("jetstream", url, work / "jetstream", args))
        store = store_figures(work, args)
    report = markdown(results, args, store)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{today()}-vm-async-invoke"
    stem.with_suffix(".json").write_text(json.dumps({"backends": results, "store": store}, indent=1))
    stem.with_suffix(".md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
