"""Prometheus metrics, served over HTTP by prometheus-client on ``--metrics-listen``.

Counts and worker states are not kept twice: a collector reads the pools' own counters (the same
numbers ``GetStats`` returns) when Prometheus scrapes. The scrape runs on prometheus-client's HTTP
thread, so it asks the event loop for the snapshot instead of reading pools mid-change.
Durations are kept per pool in ``Durations`` (see why there) and read the same way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import psutil
from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .supervisor import Supervisor

# Lambda-sized buckets: sub-millisecond warm calls up to the 900 s maximum.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
INIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Durations:
    """One function's histogram of durations in seconds, observed on the invoke path.

    prometheus-client's ``Histogram.observe`` takes a lock and walks the buckets in Python on
    every call (about 8 µs here, a tenth of what fnhost spends per warm invoke); this is one
    ``bisect`` and two additions. Only the event loop observes, and scrapes read it through the
    loop (``PoolCollector``), so it needs no lock. prometheus-client still does the exposition.
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    def snapshot(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative ``(le, count)`` buckets as Prometheus wants them, and the sum."""
        buckets, total = [], 0
        for bound, n in zip((*map(floatToGoString, self.bounds), "+Inf"), self.counts):
            total += n
            buckets.append((bound, total))
        return buckets, self.sum


class PoolCollector(Collector):
    def __init__(self, sup: Supervisor, loop: asyncio.AbstractEventLoop) -> None:
        self.sup = sup
        self.loop = loop

    def _snapshot(self) -> list[dict[str, Any]]:
        future: concurrent.futures.Future[list[dict[str, Any]]] = concurrent.futures.Future()

        def take() -> None:
            try:
                future.set_result(self.sup.metrics_snapshot())
            except BaseException as exc:  # noqa: BLE001 - handed to the scraping thread
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(take)
        return future.result(timeout=5)

    def collect(self) -> Iterator[Any]:
        snap = self._snapshot()
        invocations = CounterMetricFamily("fnhost_invocations", "Invocations by outcome.",
                                          labels=["function", "outcome"])
        throttles = CounterMetricFamily("fnhost_throttles", "Invocations refused at the concurrency limit.",
                                        labels=["function"])
        cold = CounterMetricFamily("fnhost_cold_starts", "Invocations that started a worker.", labels=["function"])
        workers = GaugeMetricFamily("fnhost_workers", "Workers by state.", labels=["function", "state"])
        queued = GaugeMetricFamily("fnhost_queue_depth", "Invocations waiting for a worker.", labels=["function"])
        memory = GaugeMetricFamily("fnhost_worker_memory_bytes", "Resident memory of a function's workers.",
                                   labels=["function"])
        durations = HistogramMetricFamily("fnhost_invocation_duration_seconds",
                                          "Time from INVOKE to the worker's reply.", labels=["function"])
        inits = HistogramMetricFamily("fnhost_init_duration_seconds", "Cold start: spawn to INIT_OK.",
                                      labels=["function"])
        for f in snap:
            name = f["function"]
            for outcome, n in f["outcomes"].items():
                invocations.add_metric([name, outcome], n)
            throttles.add_metric([name], f["throttles"])
            cold.add_metric([name], f["cold_starts"])
            for state in ("starting", "idle", "busy", "stopping"):
                workers.add_metric([name, state], f["workers"].get(state, 0))
            queued.add_metric([name], f["queued"])
            memory.add_metric([name], _rss(f["pids"]))
            durations.add_metric([name], *f["durations"])
            inits.add_metric([name], *f["inits"])
        yield from (invocations, throttles, cold, workers, queued, memory, durations, inits)


def _rss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.Error:
            pass
    return total


def serve_metrics(sup: Supervisor, listen: str, registry: CollectorRegistry) -> Any:
    """Start the HTTP listener (``HOST:PORT``); returns the server, whose ``shutdown()`` stops it."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"metrics_listen {listen!r} is not HOST:PORT")
    registry.register(PoolCollector(sup, asyncio.get_running_loop()))
    ProcessCollector(namespace="fnhost", registry=registry)
    server, _thread = start_http_server(int(port), addr=host.strip("[]"), registry=registry)
    return server
