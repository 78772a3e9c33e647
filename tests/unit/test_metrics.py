"""metrics.Durations: the invoke path's histogram, exposed the way Prometheus expects."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from fnhost.observability.metrics import DURATION_BUCKETS, Durations


def test_buckets_are_cumulative_and_bounds_inclusive() -> None:
    h = Durations((0.001, 0.01, 1.0))
    for seconds in (0.0005, 0.001, 0.002, 0.5, 7.0):  # 0.001 sits in the le="0.001" bucket
        h.observe(seconds)
    buckets, total = h.snapshot()
    assert buckets == [("0.001", 2), ("0.01", 3), ("1.0", 4), ("+Inf", 5)]
    assert total == 0.0005 + 0.001 + 0.002 + 0.5 + 7.0


def test_exposition_matches_what_prometheus_client_writes() -> None:
    h = Durations(DURATION_BUCKETS)
    h.observe(0.0003)
    h.observe(42.0)

    class One(Collector):
        def collect(self):  # type: ignore[no-untyped-def]
            family = HistogramMetricFamily("d_seconds", "help", labels=["function"])
            family.add_metric(["f"], *h.snapshot())
            yield family

    registry = CollectorRegistry()
    registry.register(One())
    text = generate_latest(registry).decode()
    assert 'd_seconds_bucket{function="f",le="0.0005"} 1.0' in text
    assert 'd_seconds_bucket{function="f",le="30.0"} 1.0' in text
    assert 'd_seconds_bucket{function="f",le="60.0"} 2.0' in text
    assert 'd_seconds_bucket{function="f",le="+Inf"} 2.0' in text
    assert 'd_seconds_count{function="f"} 2.0' in text
    assert 'd_seconds_sum{function="f"} 42.0003' in text
