"""Prometheus metrics of event source mappings, on the supervisor's registry (served with the
others on ``--metrics-listen``): records and batches by mapping, concurrent batches, backlog."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

# (uuid, function, poller stats) for each running poller.
Snapshot = Callable[[], list[tuple[str, str, dict[str, int]]]]


class EsmCollector(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        labels = ["mapping", "function"]
        records = CounterMetricFamily("fnhost_esm_records", "Records polled, by what became of them: received "
                                      "(each delivery), failed (a delivery that failed), exhausted (deliveries ran "
                                      "out), to_destination (sent to the on-failure destination).",
                                      labels=[*labels, "outcome"])
        batches = CounterMetricFamily("fnhost_esm_batches", "Invocations with a batch of records.", labels=labels)
        running = GaugeMetricFamily("fnhost_esm_concurrent_batches", "Batch pollers running now.", labels=labels)
        backlog = GaugeMetricFamily("fnhost_esm_backlog", "Records in the consumer not yet delivered (last look).",
                                    labels=labels)
        for uuid, function, s in self.snapshot():
            for outcome, key in (("received", "records"), ("failed", "failed_records"),
                                 ("exhausted", "exhausted_records"), ("to_destination", "sent_to_destination")):
                records.add_metric([uuid, function, outcome], s[key])
            batches.add_metric([uuid, function], s["batches"])
            running.add_metric([uuid, function], s["pollers"])
            backlog.add_metric([uuid, function], s["backlog"])
        yield from (records, batches, running, backlog)
