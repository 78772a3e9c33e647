"""The benchmark's own-cost estimator pairs repetitions (issue #9).

fnhost's own cost is fnhost's p50 minus its floors' p50s. Taken per repetition and then the median
of those differences, a burst of outside load that lands on one repetition cancels out; the
difference of pooled medians lets it swing the figure by hundreds of µs. These cases are built so
the two disagree.
"""

from __future__ import annotations

import pytest

from bench.derived import own_cost
from bench.stats import latency_summary, paired_difference


def test_median_of_paired_differences_not_difference_of_medians() -> None:
    fnhost = [900.0, 1400.0, 1500.0]
    floor = [800.0, 810.0, 1400.0]  # the second repetition's floor ran before a burst hit fnhost
    est = paired_difference(fnhost, floor)
    assert est["per_repetition_us"] == [100.0, 590.0, 100.0]
    assert est["median_us"] == 100.0
    assert (est["min_us"], est["max_us"]) == (100.0, 590.0)
    assert est["q1_us"] == 100.0 and est["q3_us"] == 345.0
    # The pooled estimate would be median(fnhost) - median(floor) = 1400 - 810 = 590.


def test_several_subtrahends_and_series_that_stopped_early() -> None:
    est = paired_difference([1000, 1100, 1050, 990], [800, 900, 850], [50, 50, 50, 50])
    assert est["n"] == 3  # paired over the repetitions every series has
    assert est["per_repetition_us"] == [150.0, 150.0, 150.0]
    assert paired_difference([], [1.0]) == {"n": 0, "median_us": None}


def _runs(p50s: list[float], calls: int = 9) -> list[list[int]]:
    """One run per repetition, its latencies (ns) spread around the given p50 (µs)."""
    return [[int((p + d) * 1000) for d in range(-(calls // 2), calls // 2 + 1)] for p in p50s]


def test_derived_own_cost_is_paired() -> None:
    fnhost, floor, hop = [900, 1400, 1500], [800, 810, 1400], [50, 50, 50]
    r = {
        "fnhost": {"python": {"sequential": {"100B": latency_summary(_runs(fnhost))}}},
        "floors": {"grpc": {"sequential": {"100B": latency_summary(_runs(floor))}},
                   "worker_hop": {"python": {"100B": latency_summary(_runs(hop))}}},
    }
    cost = own_cost(r, "python", "100B")
    assert cost is not None
    assert cost["us"] == pytest.approx(50.0)
    assert cost["per_repetition_us"] == pytest.approx([50.0, 540.0, 50.0])
    assert cost["spread_us"]["min"] == pytest.approx(50.0) and cost["spread_us"]["max"] == pytest.approx(540.0)
    # The difference of pooled medians, which the estimate must not be: ~1400 - (810 + 50).
    assert cost["pooled_difference_us"] > 500
