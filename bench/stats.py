"""Summaries of repeated measurements: percentiles over pooled samples, spread across runs.

Every figure the suite reports comes from here, so "p50" means the same thing everywhere: the
nearest-rank percentile of all samples of all runs, with the per-run p50s kept beside it to show
how much the runs disagreed (on a shared 2-core machine, they do). A difference between series
measured in the same repetitions (fnhost − its floors) is taken per repetition and then summarised
(``paired_difference``), never as a difference of pooled figures.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

CDF_POINTS = 101  # 0th..100th percentile: enough to redraw a CDF from the JSON alone


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def latency_summary(runs: Sequence[Sequence[int]], *, cdf: bool = True) -> dict[str, object]:
    """Latencies in nanoseconds, one sequence per run → percentiles in microseconds."""
    pooled = sorted(v for run in runs for v in run)
    if not pooled:
        return {"n": 0, "runs": len(runs)}
    us = [v / 1000 for v in pooled]
    run_p50 = [percentile(sorted(r), 50) / 1000 for r in runs if r]
    out: dict[str, object] = {
        "n": len(us),
        "runs": len(runs),
        "p50_us": round(percentile(us, 50), 2),
        "p90_us": round(percentile(us, 90), 2),
        "p99_us": round(percentile(us, 99), 2),
        "max_us": round(us[-1], 2),
        "mean_us": round(statistics.fmean(us), 2),
        "run_p50_us": [round(v, 2) for v in run_p50],
    }
    if cdf:
        out["cdf_us"] = [round(percentile(us, q), 2) for q in range(CDF_POINTS)]
    return out


def value_summary(values: Sequence[float], unit: str, digits: int = 2) -> dict[str, object]:
    """A handful of per-run values (throughputs, cold starts): median, min, max, all of them."""
    vals = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return {"n": 0}
    s = sorted(vals)
    return {
        "n": len(s),
        f"p50_{unit}": round(percentile(s, 50), digits),
        f"median_{unit}": round(statistics.median(s), digits),
        f"min_{unit}": round(s[0], digits),
        f"max_{unit}": round(s[-1], digits),
        **({f"runs_{unit}": [round(v, digits) for v in vals]} if len(vals) <= 30 else {}),
    }


def paired_difference(minuend: Sequence[float], *subtrahends: Sequence[float],
                      unit: str = "us", digits: int = 1) -> dict[str, object]:
    """An own cost across repetitions, paired: per repetition i, ``minuend[i] − Σ subtrahends[k][i]``
    (each from that same repetition), then the median of those differences and their spread.

    Not the difference of pooled medians: a burst of outside load during one repetition raises every
    series measured in it alike, and subtracting within the repetition cancels it, where pooling
    lets it move one median and not the other by hundreds of µs. Series that stopped early (a
    runtime that failed mid-run) are paired over the repetitions all of them have, which
    ``run_sequential`` keeps aligned from the first. ``{"n": 0}`` when there is no such repetition.
    """
    per_rep = [float(m) - sum(float(v) for v in subs) for m, *subs in zip(minuend, *subtrahends)]
    if not per_rep:
        return {"n": 0, f"median_{unit}": None}
    s = sorted(per_rep)
    return {
        "n": len(s),
        f"median_{unit}": round(statistics.median(s), digits),
        f"min_{unit}": round(s[0], digits),
        f"q1_{unit}": round(_quantile(s, 0.25), digits),
        f"q3_{unit}": round(_quantile(s, 0.75), digits),
        f"max_{unit}": round(s[-1], digits),
        f"per_repetition_{unit}": [round(v, digits) for v in per_rep],
    }


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), so a handful of values spreads."""
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def ratio(a: float | None, b: float | None, digits: int = 3) -> float | None:
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return None
    return round(a / b, digits)
