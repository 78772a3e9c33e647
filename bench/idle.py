"""What a pause costs the next call: ``python -m bench.idle``.

A build host's invocations are sporadic: most arrive after the daemon has been quiet for a while,
and every cold start does. This times one call after pauses of 0, 2, 20 and 200 ms, interleaved
(so the machine's noise lands on every pause alike), on three paths:

- ``grpc``: the bare gRPC echo on the daemon's own stack (``bench.echo_server``: grpc.aio on
  uvloop, the daemon's server options, a unix socket), called by grpcio's blocking client, as the
  bench's clients and ``fnhost invoke`` call;
- ``worker``: a Python echo shim spoken to over its control pipes (``bench.floors.WorkerHop``), a
  blocking write and read: what one process waking another costs;
- ``fnhost``: the real daemon (``bench.daemon``) invoking a warm Python echo function over gRPC;
- ``fnhost-http``: the same daemon and function over Lambda's HTTP API (a keep-alive
  ``http.client`` connection to ``POST /2015-03-31/functions/NAME/invocations`` on loopback).

The report is the median and p90 per path and pause (µs) and each pause's excess over no pause.
Nothing is asserted; bench/PROFILE.md §19 reads it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import grpc

from fnhost.control.runtimes import RuntimeRegistry
from fnhost.execution import protocol
from fnhost.testing.fixtures import readable_copy

from .daemon import bench_daemon
from .echo_server import UNARY
from .floors import GrpcFloor, WorkerHop, blob
from .functions import discover, json_payload

PAUSES_MS = (0, 2, 20, 200)
FUNCTION = "idle-echo"


def _measure(calls: dict[str, Callable[[], object]], samples: int) -> dict[str, dict[int, list[float]]]:
    """µs per call, by path and pause; the (path, pause) pairs are shuffled in every round."""
    out: dict[str, dict[int, list[float]]] = {path: {p: [] for p in PAUSES_MS} for path in calls}
    pairs = [(path, pause) for path in calls for pause in PAUSES_MS]
    clock = time.perf_counter_ns
    for _ in range(samples):
        random.shuffle(pairs)
        for path, pause in pairs:
            call = calls[path]
            call()  # a call right before: the pause below is the only quiet
            time.sleep(pause / 1000)
            t0 = clock()
            call()
            out[path][pause].append((clock() - t0) / 1000)
    return out


def _summary(lat: dict[str, dict[int, list[float]]]) -> dict[str, dict[str, dict[str, float]]]:
    report: dict[str, dict[str, dict[str, float]]] = {}
    for path, by_pause in lat.items():
        base = statistics.median(by_pause[0])
        report[path] = {}
        for pause, values in by_pause.items():
            values = sorted(values)
            p50 = statistics.median(values)
            report[path][str(pause)] = {"p50_us": round(p50, 1),
                                        "p90_us": round(values[int(len(values) * 0.9)], 1),
                                        "excess_p50_us": round(p50 - base, 1)}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=40, help="calls per path and pause (default 40)")
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="fnhi-", dir="/tmp"))  # short: unix socket paths
    os.chmod(work, 0o711)  # the function's uid reads its code below
    registry = RuntimeRegistry()
    echo = discover(registry, ["python"], fixtures=readable_copy(work / "fixtures"))[0][0]
    floor = GrpcFloor(work)
    hop = WorkerHop(registry.get("python"), echo, work)
    daemon = bench_daemon(work)
    try:
        floor.start()
        hop.start()
        daemon.args += ["--http-listen", "127.0.0.1:0"]
        daemon.start()
        client = daemon.client()
        client.create_function(FUNCTION, runtime="python", handler=echo.handler, code=str(echo.code_dir),
                               timeout_s=60)
        payload = json_payload(100)
        frame = protocol.encode_invoke(b"bench-idle", int(time.time() * 1000) + 3_600_000, payload)
        channel = grpc.insecure_channel(floor.address)
        echo_call = channel.unary_unary(UNARY)
        request = blob(payload)
        conn = http.client.HTTPConnection(urlsplit(daemon.http_url).netloc, timeout=60)
        path = f"/2015-03-31/functions/{FUNCTION}/invocations"

        def http_invoke() -> bytes:
            conn.request("POST", path, body=payload, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP invoke answered {response.status}: {body[:300]!r}")
            return body

        calls: dict[str, Callable[[], object]] = {
            "grpc": lambda: echo_call(request),
            "worker": lambda: hop.roundtrip(frame),
            "fnhost": lambda: client.invoke(FUNCTION, payload),
            "fnhost-http": http_invoke,
        }
        for call in calls.values():
            for _ in range(20):
                call()
        report = _summary(_measure(calls, args.samples))
        channel.close()
        client.close()
        conn.close()
    finally:
        daemon.stop()
        hop.close()
        floor.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'path':12} " + " ".join(f"{f'{p} ms pause':>22}" for p in PAUSES_MS))
    for path, by_pause in report.items():
        cells = [f"{v['p50_us']:8.0f} µs (+{v['excess_p50_us']:5.0f})" for v in by_pause.values()]
        print(f"{path:12} " + " ".join(f"{c:>22}" for c in cells))
    if args.out:
        args.out.write_text(json.dumps({"samples": args.samples, "paths": report}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
