"""PNG plots drawn from the results JSON alone: latency CDFs per runtime with both floors drawn
in, throughput against requests in flight, cold start per runtime.

matplotlib is optional: without it the run still writes its JSON and Markdown and says so.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .derived import _get

QUANTILES = [q / 100 for q in range(101)]


def draw(results: dict[str, Any], out_dir: Path, stem: str) -> tuple[list[str], str | None]:
    """(file names written, or why none were)."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display: files only
        import matplotlib.pyplot as plt
    except ImportError:
        return [], "matplotlib is not installed: no plots (pip install matplotlib)"
    written = []
    for name, fn in (("latency", _latency), ("throughput", _throughput), ("coldstart", _coldstart)):
        fig = fn(plt, results)
        if fig is None:
            continue
        path = out_dir / f"{stem}-{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(path.name)
    return written, None


def _cdf(ax: Any, s: Any, label: str, **style: Any) -> None:
    cdf = (s or {}).get("cdf_us")
    if cdf:
        ax.plot(cdf, QUANTILES, label=f"{label} (p50 {s['p50_us']:.0f} µs)", **style)


def _latency(plt: Any, r: dict[str, Any]) -> Any:
    runtimes = [rt for rt in r.get("fnhost", {}) if _get(r, "fnhost", rt, "sequential")]
    if not runtimes:
        return None
    payloads = ["100B", "64KiB"]
    fig, axes = plt.subplots(len(payloads), len(runtimes), figsize=(3.6 * len(runtimes), 3.2 * len(payloads)),
                             squeeze=False, sharey=True)
    for i, p in enumerate(payloads):
        floor = _get(r, "floors", "grpc", "sequential", p)
        for j, rt in enumerate(runtimes):
            ax = axes[i][j]
            _cdf(ax, _get(r, "fnhost", rt, "sequential", p), "fnhost", color="C0", lw=2)
            _cdf(ax, floor, "gRPC floor", color="C1", ls="--")
            _cdf(ax, _get(r, "floors", "worker_hop", rt, p), "worker hop", color="C2", ls=":")
            ax.set_xscale("log")
            ax.set_title(f"{rt}, {p}", fontsize=10)
            ax.set_xlabel("latency (µs, log)")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7, loc="lower right")
        axes[i][0].set_ylabel("fraction of calls ≤ x")
    fig.suptitle("Warm invoke latency, sequential: fnhost vs its floors", fontsize=12)
    fig.tight_layout()
    return fig


def _throughput(plt: Any, r: dict[str, Any]) -> Any:
    series = [("gRPC floor", _get(r, "floors", "grpc", "in_flight"), "k--")]
    series += [(f"fnhost {rt}", _get(r, "fnhost", rt, "in_flight"), "o-") for rt in r.get("fnhost", {})]
    series = [s for s in series if s[1]]
    if not series:
        return None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, levels, style in series:
        xs = [int(k) for k in levels]
        med = [_get(v, "throughput", "median_rps") or math.nan for v in levels.values()]
        lo = [m - (_get(v, "throughput", "min_rps") or m) for m, v in zip(med, levels.values())]
        hi = [(_get(v, "throughput", "max_rps") or m) - m for m, v in zip(med, levels.values())]
        a1.errorbar(xs, med, yerr=[lo, hi], fmt=style, capsize=3, label=name)
        a2.plot(xs, [_get(v, "latency", "p50_us") or math.nan for v in levels.values()], style, label=name)
    g = r.get("ghz") or {}
    if g.get("measured"):
        for name, runs in g["runs"].items():
            rps = sorted(x["rps"] for x in runs)
            a1.plot([g["in_flight"]] * len(rps), rps, "x", ms=8, label=f"ghz → {name}")
    for ax, label in ((a1, "requests/s (median, min–max)"), (a2, "p50 latency (µs)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("requests in flight")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    a2.set_yscale("log")
    a1.legend(fontsize=7)
    fig.suptitle("Throughput and latency vs requests in flight (100 B)", fontsize=12)
    fig.tight_layout()
    return fig


def _coldstart(plt: Any, r: dict[str, Any]) -> Any:
    rows = [(rt, e["cold_start"]) for rt, e in r.get("fnhost", {}).items() if e.get("cold_start")]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(1.4 * len(rows) + 3, 4))
    xs = range(len(rows))
    for offset, key, label in ((-0.2, "first_invoke_ms", "first invoke, client"),
                               (0.2, "init_duration_ms", "Init Duration (REPORT)")):
        med = [cs[key].get("median_ms", math.nan) for _, cs in rows]
        lo = [m - cs[key].get("min_ms", m) for m, (_, cs) in zip(med, rows)]
        hi = [cs[key].get("max_ms", m) - m for m, (_, cs) in zip(med, rows)]
        ax.bar([x + offset for x in xs], med, 0.4, yerr=[lo, hi], capsize=3, label=label)
    ax.set_xticks(list(xs), [rt for rt, _ in rows])
    ax.set_ylabel("ms (median, min–max)")
    ax.set_title("Cold start: first invoke of a new function (spawn → init → invoke)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
