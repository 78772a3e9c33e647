"""Soak (issue #10): ``python -m bench.soak [--minutes 10]``.

One daemon (the bench's, ``bench.daemon.bench_daemon``) and the Python echo of
tests/hostile/functions. First its maximum throughput: ``--in-flight`` (32) requests outstanding
from the bench's client processes (``bench.load.ClientPool``) for ``--probe-seconds`` (20). Then
``--load`` (80 %) of that rate, open loop, for ``--minutes`` from client processes of this module
(``python -m bench.soak --client-job JSON``: the answers on stdout) — each
sends on a fixed schedule whatever the answers do, so a daemon that slows down shows as latency
instead of as fewer requests. Meanwhile the daemon's RSS, open fds, threads and workers are
sampled every second (``bench.watch.ResourceSampler``).

The report (<date>-<host>-soak.json/.md): per minute, latency percentiles from the moment each
request was sent, requests and errors, how late the clients sent, the outside load; for RSS, fds
and threads their least-squares slope per minute over the whole load and over all but its first
minute (a flat daemon: ~0). Nothing is asserted: it reports.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

from . import watch
from .functions import ROOT, child_env, json_payload
from .stats import percentile
from .watch import (
    ResourceSampler,
    collect,
    log_findings,
    log_markdown,
    release,
    slope_per_minute,
    start_clients,
    stop_clients,
    wait_for_start,
)

FUNCTION_CODE = ROOT / "tests" / "hostile" / "functions"
RESULTS = ROOT / "bench" / "results"
CALL_TIMEOUT_S = 60.0
MAX_OUTSTANDING = 512  # per client process; past it a due request is not sent, and counted (the daemon fell behind)


# --- the client process ---------------------------------------------------------------------------


async def _paced(job: dict[str, Any]) -> dict[str, Any]:
    """Send one request every 1/rate s for ``seconds`` from the start; answers by bucket of ``bucket_s``."""
    import grpc
    from fnhost.api.grpc_wire import MESSAGE_OPTIONS
    from fnhost.v1 import fnhost_pb2 as pb

    from .targets import INVOKE_METHOD

    request = base64.b64decode(job["request"])
    bucket_s, interval = job["bucket_s"], 1 / job["rate"]
    n = max(math.ceil(job["seconds"] / bucket_s), 1)
    lat = [array("q") for _ in range(n)]
    errors, sent, late, unsent = [0] * n, [0] * n, [0] * n, [0] * n
    lag = [0.0] * n
    first: list[str | None] = [None] * n
    mono, clock = time.monotonic, time.perf_counter_ns
    channel = grpc.aio.insecure_channel(job["address"], options=MESSAGE_OPTIONS)
    call = channel.unary_unary(INVOKE_METHOD)
    expected = pb.InvokeResponse.FromString(await call(request, timeout=CALL_TIMEOUT_S)).payload  # connects
    start = wait_for_start()
    end = start + job["seconds"]

    def error(b: int, what: str) -> None:
        errors[b] += 1
        first[b] = first[b] or what[:300]

    async def one(b: int) -> None:
        t0 = clock()
        try:
            response = pb.InvokeResponse.FromString(await call(request, timeout=CALL_TIMEOUT_S))
        except grpc.RpcError as exc:
            return error(b, f"{exc.code().name}: {exc.details()}")
        if response.function_error or response.payload != expected:
            return error(b, f"{response.function_error or 'wrong echo'}: {response.payload[:200]!r}")
        lat[b].append(clock() - t0)

    pending: set[asyncio.Task[None]] = set()
    i = 0
    while (due := start + job["offset"] + i * interval) < end:
        i += 1
        if due > mono():
            await asyncio.sleep(due - mono())
        b = min(int((due - start) // bucket_s), n - 1)
        behind = mono() - due
        lag[b] = max(lag[b], behind)
        late[b] += behind > 0.01
        sent[b] += 1
        if len(pending) >= MAX_OUTSTANDING:
            unsent[b] += 1
            continue
        task = asyncio.create_task(one(b))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.gather(*pending)
    await channel.close()
    return {"buckets": [{"lat": base64.b64encode(lat[b].tobytes()).decode(), "errors": errors[b],
                         "first_error": first[b], "sent": sent[b], "late_10ms": late[b], "not_sent": unsent[b],
                         "lag_max_ms": round(lag[b] * 1000, 2)} for b in range(n)]}


def _client_main(job: str) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    json.dump(asyncio.run(_paced(json.loads(job))), sys.stdout)
    return 0


# --- the run -------------------------------------------------------------------------------------


def run(minutes: float = 10.0, *, probe_s: float = 20.0, in_flight: int = 32, load: float = 0.8,
        client_procs: int = 4, bucket_s: float = 60.0, out_dir: Path | None = None,
        log: Any = lambda _: None) -> dict[str, Any]:
    """One soak; returns the results (written to ``out_dir`` as JSON and Markdown if given)."""
    from fnhost.testing.fixtures import readable_copy

    from .daemon import bench_daemon
    from .load import ClientPool
    from .machine import LoadMonitor, machine_info, source_info
    from .targets import fnhost_aim

    monitor = LoadMonitor()
    r: dict[str, Any] = {"schema": "fnhost-soak/1", "mode": "soak", "started_at": watch.now(),
                         "settings": {"minutes": minutes, "probe_s": probe_s, "in_flight": in_flight, "load": load,
                                      "client_procs": client_procs, "bucket_s": bucket_s},
                         "machine": machine_info(), "source": source_info(str(ROOT))}
    work = Path(tempfile.mkdtemp(prefix="fnhs-", dir="/tmp"))  # short: unix socket paths ≤ 108 bytes
    os.chmod(work, 0o711)  # workers of their own uids must reach the state directory and the code
    daemon = bench_daemon(work)
    procs: list[subprocess.Popen[str]] = []
    sampler: ResourceSampler | None = None
    try:
        daemon.start()
        code = readable_copy(work / "functions", FUNCTION_CODE)
        name = "soak-echo"
        payload = json_payload(100)
        with daemon.client() as client:
            # The same workers in both phases: the maximum is measured with ``in_flight`` of them, so the
            # soak may not grow the pool past that (64 workers on 2 CPUs serve less than 32 do, and an
            # open loop that outruns the daemon then never catches up); a burst queues instead.
            client.create_function(name, runtime="python", handler="app.handler", code=str(code / "echo"),
                                   min_warm=in_flight, max_concurrency=in_flight)
        aim = fnhost_aim(daemon.address, name, payload, daemon.pid, "soak")
        pool = ClientPool(client_procs, str(ROOT), child_env())
        try:
            log(f"maximum throughput: {in_flight} in flight for {probe_s:g} s")
            errors, first = pool.warm(aim.target, in_flight)
            if errors:
                raise RuntimeError(f"warming the echo failed: {first}")
            probe = pool.window(aim.target, in_flight, probe_s)
            aim.check(probe.sample_response)
        finally:
            pool.close()
        lat = sorted(probe.latencies_ns)
        r["max_throughput"] = {"rps": round(probe.throughput, 1), "errors": probe.errors,
                               "first_error": probe.first_error, "p50_ms": _ms(lat, 50), "p99_ms": _ms(lat, 99)}
        rate = probe.throughput * load
        log(f"maximum {probe.throughput:,.0f} req/s; soaking at {rate:,.0f} req/s for {minutes:g} min")
        jobs = [{"address": daemon.address, "request": base64.b64encode(aim.target.request).decode(),
                 "rate": rate / client_procs, "offset": k / rate, "seconds": minutes * 60, "bucket_s": bucket_s}
                for k in range(client_procs)]
        procs = start_clients([[sys.executable, "-m", "bench.soak", "--client-job", json.dumps(j)] for j in jobs])
        start = time.monotonic() + 0.2
        end = start + minutes * 60
        sampler = ResourceSampler(daemon.pid, start)
        sampler.start()
        release(procs, start)
        time.sleep(max(start - time.monotonic(), 0))
        monitor.mark("load")
        boundary = start
        while (boundary := boundary + bucket_s) < end + bucket_s / 2:
            time.sleep(max(min(boundary, end) - time.monotonic(), 0))
            monitor.mark(f"bucket {len(monitor.marks) - 1}")  # per bucket: how busy the rest of the machine was
        outputs = collect(procs, CALL_TIMEOUT_S + 30)
        sampler.stop()
        r["daemon_exit"] = daemon.stop(timeout=30.0)
        r["daemon_log"] = log_findings(daemon.log_path)
        r["leftovers"] = daemon.leftovers
        r["rate_rps"] = round(rate, 1)
        r["pids"] = {"daemon": daemon.pid, "clients": [p.pid for p in procs]}
        r["outside_load"] = monitor.summary()
        r.update(analyse(outputs, sampler.samples, bucket_s, minutes * 60, r["outside_load"].get("phases", [])))
    finally:
        try:
            if sampler is not None and sampler.is_alive():
                sampler.stop()
            stop_clients(procs)
        finally:  # the daemon is stopped whatever went wrong above
            daemon.stop(timeout=30.0)
            shutil.rmtree(work, ignore_errors=True)
    r["finished_at"] = watch.now()
    if out_dir is not None:
        r["files"] = [str(p) for p in watch.write_report(r, out_dir, markdown)]
    return r


def _ms(sorted_ns: list[int], q: float) -> float | None:
    return round(percentile(sorted_ns, q) / 1e6, 3) if sorted_ns else None


def analyse(outputs: list[dict[str, Any]], samples: list[dict[str, float]], bucket_s: float, total_s: float,
            phases: list[dict[str, Any]]) -> dict[str, Any]:
    """Per bucket: latency percentiles, requests, errors, the daemon's last sample; resource slopes."""
    samples = [s for s in samples if s["t"] <= total_s]  # the load's, not the wait for its last answers
    buckets = []
    for b in range(len(outputs[0]["buckets"])):
        parts = [o["buckets"][b] for o in outputs]
        lat: list[int] = []
        for part in parts:
            a = array("q")
            a.frombytes(base64.b64decode(part["lat"]))
            lat.extend(a)
        lat.sort()
        end_sample = [s for s in samples if s["t"] <= (b + 1) * bucket_s]
        buckets.append({
            "bucket": b, "sent": sum(p["sent"] for p in parts), "ok": len(lat),
            "errors": sum(p["errors"] for p in parts), "not_sent": sum(p["not_sent"] for p in parts),
            "first_error": next((p["first_error"] for p in parts if p["first_error"]), None),
            "ok_per_s": round(len(lat) / min(bucket_s, total_s - b * bucket_s), 1),
            **{f"p{q}_ms".replace(".", "_"): _ms(lat, q) for q in (50, 90, 99, 99.9)}, "max_ms": _ms(lat, 100),
            "sent_late_10ms": sum(p["late_10ms"] for p in parts),
            "send_lag_max_ms": max(p["lag_max_ms"] for p in parts),
            "daemon": end_sample[-1] if end_sample else None,
            "outside_share": phases[b]["outside_share"] if b < len(phases) else None,
        })
    resources: dict[str, Any] = {}
    for key in ("rss_mib", "fds", "threads", "workers"):
        values = [s[key] for s in samples]
        if not values:
            continue
        after_first = [(s["t"], s[key]) for s in samples if s["t"] >= bucket_s]
        resources[key] = {"first": values[0], "last": values[-1], "min": min(values), "max": max(values),
                          "slope_per_min": _round(slope_per_minute([(s["t"], s[key]) for s in samples])),
                          "slope_per_min_after_first_bucket": _round(slope_per_minute(after_first))}
    return {"buckets": buckets, "errors": sum(b["errors"] for b in buckets),
            "not_sent": sum(b["not_sent"] for b in buckets), "resources": resources,
            "daemon_samples": samples}


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


def _c(v: Any) -> str:
    return watch.cell(v, 2)


def _share(r: dict[str, Any]) -> str:
    whole = r["outside_load"].get("whole_run") or {}
    return f"{whole['outside_share'] * 100:.0f} %" if "outside_share" in whole else "an unknown share"


def markdown(r: dict[str, Any]) -> str:
    s, m, mt = r["settings"], r["machine"], r["max_throughput"]
    out = [f"# fnhost soak — {r['started_at'][:16]} UTC, {m['host']}", "",
           f"Python echo (100 B). Maximum throughput, {s['in_flight']} in flight from {s['client_procs']} client "
           f"processes for {s['probe_s']:g} s: **{mt['rps']:,.0f} req/s** (p50 {_c(mt['p50_ms'])} ms, p99 "
           f"{_c(mt['p99_ms'])} ms, {mt['errors']} errors). Then {s['load'] * 100:.0f} % of it, "
           f"**{r['rate_rps']:,.0f} req/s** open loop, for {s['minutes']:g} min. Machine: {m['logical_cpus']} CPUs "
           f"({m['cpu_model']}); the rest of the machine used {_share(r)} of it during the soak (loadavg "
           f"{r['outside_load'].get('loadavg_before')} before, {r['outside_load'].get('loadavg_after')} after). "
           f"Daemon exit status {r['daemon_exit']}; {len(r['leftovers'])} workers outlived it.", "",
           f"**Errors: {r['errors']:,}** of {sum(b['sent'] for b in r['buckets']):,} requests; not sent because "
           f"{MAX_OUTSTANDING} were outstanding in a client (the daemon fell behind the rate): {r['not_sent']:,}.", "",
           "| daemon | first | last | min | max | slope per min | slope per min after the first bucket |",
           "|---|---|---|---|---|---|---|"]
    for key, x in r["resources"].items():
        out.append(f"| {key} | {_c(x['first'])} | {_c(x['last'])} | {_c(x['min'])} | {_c(x['max'])} | "
                   f"{_c(x['slope_per_min'])} | {_c(x['slope_per_min_after_first_bucket'])} |")
    out += ["", f"Per {s['bucket_s']:g} s (latency from the moment each request was sent, ms):", "",
            "| bucket | due | ok/s | errors | not sent | p50 | p90 | p99 | p99.9 | max | sent >10 ms late | "
            "daemon RSS MiB | "
            "fds | threads | workers | outside load |", "|" + "---|" * 16]
    for b in r["buckets"]:
        d = b["daemon"] or {}
        share = b["outside_share"]
        out.append(f"| {b['bucket']} | {b['sent']:,} | {_c(b['ok_per_s'])} | {b['errors']} | {b['not_sent']} | "
                   f"{_c(b['p50_ms'])} | "
                   f"{_c(b['p90_ms'])} | {_c(b['p99_ms'])} | {_c(b['p99_9_ms'])} | {_c(b['max_ms'])} | "
                   f"{b['sent_late_10ms']:,} | {_c(d.get('rss_mib'))} | {_c(d.get('fds'))} | {_c(d.get('threads'))} | "
                   f"{_c(d.get('workers'))} | {'–' if share is None else f'{share * 100:.0f} %'} |")
    out += log_markdown(r["daemon_log"])
    firsts = [f"bucket {b['bucket']}: {b['first_error']}" for b in r["buckets"] if b["first_error"]]
    if firsts:
        out += ["", "First error per bucket:", ""] + [f"- `{f}`" for f in firsts]
    return "\n".join(out) + "\n"


# --- command line --------------------------------------------------------------------------------


class _Interrupted(Exception):
    """SIGTERM: unwinds like Ctrl-C, so everything started is stopped."""


def main(argv: list[str] | None = None) -> int:
    """0: report written, every request sent and answered; 1: report written, with errors or unsent
    requests; 2: no report; 130: interrupted."""
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=(
        "Soak: the echo at 80 % of its measured maximum throughput for N minutes; the daemon's RSS, fds and "
        "threads per second, latency per minute. Writes <date>-<host>-soak.json/.md."))
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--probe-seconds", type=float, default=20.0, help="the maximum-throughput measurement")
    p.add_argument("--in-flight", type=int, default=32, help="requests outstanding while measuring the maximum")
    p.add_argument("--load", type=float, default=0.8, help="the soak's rate, as a fraction of the maximum")
    p.add_argument("--client-procs", type=int, default=4)
    p.add_argument("--bucket-seconds", type=float, default=60.0, help="report latency per this many seconds")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--client-job", metavar="JSON", help=argparse.SUPPRESS)  # a client process's job
    args = p.parse_args(argv)
    if args.client_job:
        return _client_main(args.client_job)
    from fnhost.observability import logs

    logs.configure("warning")

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def on_sigterm(signum: int, frame: Any) -> None:
        raise _Interrupted

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        r = run(args.minutes, probe_s=args.probe_seconds, in_flight=args.in_flight, load=args.load,
                client_procs=args.client_procs, bucket_s=args.bucket_seconds, out_dir=args.out, log=say)
    except (KeyboardInterrupt, _Interrupted):
        say("interrupted: everything the soak started has been stopped; no report written")
        return 130
    except Exception as exc:
        say(f"the soak could not run: {type(exc).__name__}: {exc}")
        return 2
    res = r["resources"]
    say(f"wrote {' and '.join(r['files'])}")
    say(f"errors {r['errors']}, not sent {r['not_sent']}; slope per minute: RSS "
        f"{res['rss_mib']['slope_per_min']} MiB, fds "
        f"{res['fds']['slope_per_min']}, threads {res['threads']['slope_per_min']}")
    return 0 if r["errors"] == 0 and r["not_sent"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
