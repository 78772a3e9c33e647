"""Prometheus metrics, served over HTTP by prometheus-client on ``--metrics-listen``.

Counts and worker states are not kept twice: the collector reads the pools' snapshots (the same
numbers ``GetStats`` returns) when Prometheus scrapes. The scrape runs on prometheus-client's HTTP
thread, so it asks the event loop for the snapshots instead of reading pools mid-change.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import psutil
from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from ..control.async_model import AsyncStats
from ..execution.accounting import PoolSnapshot
from ..execution.states import State
from ..control.zygote_stats import ZygoteReport
from ..execution.stemcell import CellStats

Snapshots = Callable[[], list[PoolSnapshot]]
AsyncSnapshots = Callable[[], dict[str, AsyncStats]]
ZygoteReports = Callable[[], Awaitable[list[ZygoteReport]]]
CellReports = Callable[[], Awaitable[list[CellStats]]]

# Every state a live worker can be in: the gauge shows zeros too, so a series never vanishes.
_LIVE_STATES = [s.value for s in State if s is not State.DEAD]


def _on_loop(loop: asyncio.AbstractEventLoop, read: Callable[[], Any]) -> Any:
    """``read()`` run on the event loop, from the scraping thread: state is read between changes."""
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def take() -> None:
        try:
            future.set_result(read())
        except BaseException as exc:  # noqa: BLE001 - handed to the scraping thread
            future.set_exception(exc)

    loop.call_soon_threadsafe(take)
    return future.result(timeout=5)


class PoolCollector(Collector):
    def __init__(self, snapshots: Snapshots, loop: asyncio.AbstractEventLoop) -> None:
        self.snapshots = snapshots
        self.loop = loop

    def _take(self) -> list[PoolSnapshot]:
        return _on_loop(self.loop, self.snapshots)

    def collect(self) -> Iterator[Any]:
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
        for pool in self._take():
            name = pool.function
            for outcome, n in pool.counters.outcomes().items():
                invocations.add_metric([name, outcome], n)
            throttles.add_metric([name], pool.counters.throttles)
            cold.add_metric([name], pool.counters.cold_starts)
            for state in _LIVE_STATES:
                workers.add_metric([name, state], pool.workers.get(state, 0))
            queued.add_metric([name], pool.queued)
            memory.add_metric([name], _rss(pool.pids))
            durations.add_metric([name], *pool.durations)
            inits.add_metric([name], *pool.inits)
        yield from (invocations, throttles, cold, workers, queued, memory, durations, inits)


class AsyncQueueCollector(Collector):
    """Each function's asynchronous queue, under Lambda's metric names where one applies
    (AsyncEventsReceived, AsyncEventAge, AsyncEventsDropped) in Prometheus' spelling."""

    def __init__(self, stats: AsyncSnapshots, loop: asyncio.AbstractEventLoop) -> None:
        self.stats = stats
        self.loop = loop

    def collect(self) -> Iterator[Any]:
        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> CounterMetricFamily:
            return CounterMetricFamily(f"fnhost_async_{name}", doc, labels=["function", *labels])

        received = counter("events_received", "Lambda's AsyncEventsReceived: events accepted (stored) for the function.")
        dropped = counter("events_dropped", "Lambda's AsyncEventsDropped (by age): events whose maximum age ran out "
                          "before they ran (again).")
        retries = counter("retries", "Attempts after an event's first (function errors, throttles, platform failures).")
        throttled = counter("throttled", "Attempts that found no worker within async_max_share and waited.")
        dead = counter("dead_lettered", "Events moved to the function's dead-letter queue.")
        delivered = counter("destination_records", "Invocation records sent to a destination.", ("condition",))
        depth = GaugeMetricFamily("fnhost_async_queue_depth", "Events stored and not yet done (waiting, running or "
                                  "retrying).", labels=["function"])
        age = GaugeMetricFamily("fnhost_async_event_age_seconds", "Lambda's AsyncEventAge: age of the oldest event "
                                "not yet done (0 when none).", labels=["function"])
        for name, s in sorted(_on_loop(self.loop, self.stats).items()):
            received.add_metric([name], s.received)
            dropped.add_metric([name], s.dropped_age)
            retries.add_metric([name], s.retries)
            throttled.add_metric([name], s.throttled)
            dead.add_metric([name], s.dead_lettered)
            delivered.add_metric([name, "success"], s.delivered_success)
            delivered.add_metric([name, "failure"], s.delivered_failure)
            depth.add_metric([name], s.depth)
            age.add_metric([name], s.oldest_age_s)
        yield from (received, dropped, retries, throttled, dead, delivered, depth, age)


class ZygoteCollector(Collector):
    """Each zygote: forks, failures, restarts, its memory, its live workers and theirs."""

    def __init__(self, report: ZygoteReports, loop: asyncio.AbstractEventLoop) -> None:
        self.report = report
        self.loop = loop

    def collect(self) -> Iterator[Any]:
        labels = ["runtime", "command"]
        forks = CounterMetricFamily("fnhost_zygote_forks", "Workers a zygote forked.", labels=labels)
        failures = CounterMetricFamily("fnhost_zygote_failures", "Forks a zygote could not do (the worker was "
                                       "spawned instead).", labels=labels)
        restarts = CounterMetricFamily("fnhost_zygote_restarts", "Times a zygote was started again after it died.",
                                       labels=labels)
        memory = GaugeMetricFamily("fnhost_zygote_memory_uss_bytes", "A zygote's unique memory (what its workers "
                                   "share with it is counted here once).", labels=labels)
        workers = GaugeMetricFamily("fnhost_zygote_workers", "Live workers a zygote forked.", labels=labels)
        workers_memory = GaugeMetricFamily("fnhost_zygote_workers_memory_uss_bytes", "The unique memory of a "
                                           "zygote's live workers, all together.", labels=labels)
        for z in asyncio.run_coroutine_threadsafe(self.report(), self.loop).result(timeout=30):
            values = [z.runtime, z.command]
            forks.add_metric(values, z.forks)
            failures.add_metric(values, z.failures)
            restarts.add_metric(values, z.restarts)
            memory.add_metric(values, z.uss_bytes)
            workers.add_metric(values, z.workers)
            workers_memory.add_metric(values, z.workers_uss_bytes)
        yield from (forks, failures, restarts, memory, workers, workers_memory)


class StemCellCollector(Collector):
    """Each kind of stem cell: ready, taken, failures, given up, and the ready cells' memory."""

    def __init__(self, report: CellReports, loop: asyncio.AbstractEventLoop) -> None:
        self.report = report
        self.loop = loop

    def collect(self) -> Iterator[Any]:
        labels = ["runtime", "memory_mb", "startup_env"]
        ready = GaugeMetricFamily("fnhost_stem_cells_ready", "Stem cells waiting for a function.", labels=labels)
        taken = CounterMetricFamily("fnhost_stem_cells_taken", "Stem cells that became a function's worker.",
                                    labels=labels)
        failures = CounterMetricFamily("fnhost_stem_cells_failures", "Stem cell births and specialisations that "
                                       "failed (those workers started another way).", labels=labels)
        given_up = GaugeMetricFamily("fnhost_stem_cells_given_up", "1: this kind failed too often and has no cells "
                                     "until the configuration is reloaded.", labels=labels)
        memory = GaugeMetricFamily("fnhost_stem_cells_memory_uss_bytes", "The ready stem cells' unique memory, all "
                                   "together.", labels=labels)
        for c in asyncio.run_coroutine_threadsafe(self.report(), self.loop).result(timeout=30):
            values = [c.key.runtime, str(c.key.memory_mb), ",".join(c.key.startup)]
            ready.add_metric(values, c.ready)
            taken.add_metric(values, c.taken)
            failures.add_metric(values, c.failures)
            given_up.add_metric(values, int(c.given_up))
            memory.add_metric(values, c.memory_uss_bytes)
        yield from (ready, taken, failures, given_up, memory)


def _rss(pids: tuple[int, ...]) -> int:
    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.Error:
            pass
    return total


def serve_metrics(snapshots: Snapshots, listen: str, registry: CollectorRegistry,
                  async_stats: AsyncSnapshots | None = None, zygote_report: ZygoteReports | None = None,
                  cell_report: CellReports | None = None) -> Any:
    """Start the HTTP listener (``HOST:PORT``); returns the server, whose ``shutdown()`` stops it.

    ``snapshots`` is called on the event loop at each scrape (``Supervisor.snapshot`` with
    histograms); so is ``async_stats`` (``supervisor.async_events.stats``) when given; and
    ``zygote_report`` and ``cell_report`` (``Supervisor.zygote_report``, ``cell_report``) are
    awaited there.
    """
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"metrics_listen {listen!r} is not HOST:PORT")
    registry.register(PoolCollector(snapshots, asyncio.get_running_loop()))
    if async_stats is not None:
        registry.register(AsyncQueueCollector(async_stats, asyncio.get_running_loop()))
    if zygote_report is not None:
        registry.register(ZygoteCollector(zygote_report, asyncio.get_running_loop()))
    if cell_report is not None:
        registry.register(StemCellCollector(cell_report, asyncio.get_running_loop()))
    ProcessCollector(namespace="fnhost", registry=registry)
    server, _thread = start_http_server(int(port), addr=host.strip("[]"), registry=registry)
    return server
