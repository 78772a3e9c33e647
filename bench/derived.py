"""The issue's targets as computed figures — reported, never asserted.

Each figure says how it was computed; where the inputs come from interleaved repetitions, the
per-repetition values are given too, since on a shared machine a pooled p50 can hide a burst. An
own cost (fnhost − its floors) is paired by repetition: the median of per-repetition differences.
"""

from __future__ import annotations

import statistics
from typing import Any

from .stats import paired_difference, ratio

# Issue 4's targets and the reference figure it quotes (a local Lambda emulator, 2 vCPU).
TARGETS = {
    "own_cost_us": 80.0,
    "throughput_ratio_32": 0.8,
    "stream_throughput_ratio": 2.5,
    "stream_p50_ratio": 0.5,
    "scale_ratio": 1.2,
}
REFERENCE = {"python_noop_p50_ms": 0.60, "python_noop_rps": 4500}


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _rps(summary: Any) -> float | None:
    return _get(summary, "throughput", "median_rps")


def own_cost(r: dict[str, Any], runtime: str, payload: str) -> dict[str, Any] | None:
    """fnhost's own cost for one runtime and payload, paired by repetition (``stats.paired_difference``).

    ``us`` is the median over repetitions of (fnhost p50 − gRPC floor p50 − worker-hop p50), all
    three from the same repetition; ``spread_us`` gives min, quartiles and max of those. The
    difference of the pooled p50s is kept beside it for comparison only.
    """
    fn = _get(r, "fnhost", runtime, "sequential", payload)
    floor = _get(r, "floors", "grpc", "sequential", payload)
    hop = _get(r, "floors", "worker_hop", runtime, payload)
    if not (fn and floor and hop) or not all(x.get("p50_us") for x in (fn, floor, hop)):
        return None
    paired = paired_difference(fn.get("run_p50_us", []), floor.get("run_p50_us", []), hop.get("run_p50_us", []))
    if not paired["n"]:
        return None
    pooled = fn["p50_us"] - (floor["p50_us"] + hop["p50_us"])
    return {
        "us": paired["median_us"],
        "repetitions": paired["n"],
        "per_repetition_us": paired["per_repetition_us"],
        "spread_us": {k: paired[f"{k}_us"] for k in ("min", "q1", "q3", "max")},
        "pooled_difference_us": round(pooled, 1),
        "inputs_p50_us": {"fnhost": fn["p50_us"], "grpc_floor": floor["p50_us"], "worker_hop": hop["p50_us"]},
    }


def derive(r: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"targets": TARGETS, "reference": REFERENCE}
    cost = own_cost(r, "python", "100B")
    out["own_cost_python_100B"] = {
        **(cost or {"us": None}),
        "formula": "median over repetitions of (fnhost python warm p50 − gRPC floor p50 − python worker-hop p50), "
                   "each term from the same repetition; 100 B, sequential",
        "target_max_us": TARGETS["own_cost_us"],
    }
    out["own_cost_by_runtime"] = {
        rt: {p: (own_cost(r, rt, p) or {}).get("us") for p in ("100B", "64KiB")}
        for rt in (r.get("fnhost") or {})
    }
    fn_levels = _get(r, "fnhost", "python", "in_flight") or {}
    floor_levels = _get(r, "floors", "grpc", "in_flight") or {}
    by_level = {lvl: ratio(_rps(fn_levels.get(lvl)), _rps(floor_levels.get(lvl))) for lvl in floor_levels}
    out["throughput_ratio"] = {
        "at_32": by_level.get("32"),
        "by_in_flight": by_level,
        "formula": "fnhost python median req/s ÷ gRPC floor median req/s, same in-flight count, interleaved",
        "target_min_at_32": TARGETS["throughput_ratio_32"],
    }
    g = r.get("ghz") or {}
    if g.get("measured"):
        rps = {k: statistics.median([run["rps"] for run in v]) for k, v in g["runs"].items() if v}
        out["ghz_throughput_ratio"] = {"ratio": ratio(rps.get("fnhost:python"), rps.get("grpc_floor")),
                                       "median_rps": rps, "in_flight": g["in_flight"]}
    s = r.get("scale") or {}
    out["scale_ratio"] = {
        "ratio_p50": s.get("ratio_p50"),
        "ratio_p50_rotating": s.get("ratio_p50_rotating"),
        "functions": s.get("functions"),
        "warm_workers": s.get("warm_workers_seen"),
        "formula": "invoke p50 with every scale function registered and warm ÷ p50 with one function, one worker",
        "target_max": TARGETS["scale_ratio"],
    }
    inv = _get(r, "stream", "invoke_stream") or {}
    floor_seq = _get(r, "floors", "grpc", "sequential", "100B", "p50_us")
    floor_32 = _rps(floor_levels.get("32"))
    if inv.get("measured"):
        best = max((v.get("median_rps") or 0 for v in inv["pipelined"].values()), default=None)
        out["stream"] = {
            "throughput_ratio": ratio(best, floor_32),
            "p50_ratio": ratio(_get(inv, "pingpong", "p50_us"), floor_seq),
            "formula": "InvokeStream best pipelined req/s ÷ unary floor req/s at 32; ping-pong p50 ÷ unary floor p50",
            "target_min_throughput_ratio": TARGETS["stream_throughput_ratio"],
            "target_max_p50_ratio": TARGETS["stream_p50_ratio"],
        }
    else:
        out["stream"] = {"throughput_ratio": None, "p50_ratio": None,
                         "reason": inv.get("reason", "not measured")}
    floor_stream = _get(r, "stream", "floor") or {}
    if floor_stream:
        best = max((v.get("median_rps") or 0 for v in floor_stream.get("pipelined", {}).values()), default=None)
        out["stream_floor"] = {
            "throughput_ratio_vs_unary_floor": ratio(best, floor_32),
            "p50_ratio_vs_unary_floor": ratio(_get(floor_stream, "pingpong", "p50_us"), floor_seq),
            "note": "a bare grpc.aio bidirectional echo: the most InvokeStream could reach on this stack",
        }
    py_p50 = _get(r, "fnhost", "python", "sequential", "100B", "p50_us")
    py_best = max((_rps(v) or 0 for v in fn_levels.values()), default=None) or None
    out["vs_reference"] = {
        "python_p50_ms": round(py_p50 / 1000, 3) if py_p50 else None,
        "reference_p50_ms": REFERENCE["python_noop_p50_ms"],
        "python_best_rps": py_best,
        "reference_rps": REFERENCE["python_noop_rps"],
    }
    return out
