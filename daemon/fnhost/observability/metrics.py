"""Duration histograms, kept per function on the invoke path and exposed by ``api.metrics_http``."""

from __future__ import annotations

from bisect import bisect_left

from prometheus_client.utils import floatToGoString

# Lambda-sized buckets: sub-millisecond warm calls up to the 900 s maximum.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
INIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Durations:
    """One function's histogram of durations in seconds, observed on the invoke path.

    prometheus-client's ``Histogram.observe`` takes a lock and walks the buckets in Python on
    every call (about 8 µs here, a tenth of what fnhost spends per warm invoke); this is one
    ``bisect`` and two additions. Only the event loop observes, and scrapes read it through the
    loop (``api.metrics_http``), so it needs no lock. prometheus-client still does the exposition.
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
