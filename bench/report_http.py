"""Summaries, ratios and report files shared by the HTTP benchmarks (``httpservers.py``,
``lambda_http.py``): one series' raw figures in, ``stats.py``'s percentiles out, and per-repetition
ratios between series measured in the same repetition (never a ratio of pooled figures alone).
"""

from __future__ import annotations

import json
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .stats import latency_summary, percentile, value_summary


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def series_summary(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw``: {"sequential": [[ns…] per rep], "throughput": [rps per rep],
    "window_latencies": [[ns…] per rep], "errors": n, "first_error": str | None}."""
    out: dict[str, Any] = {
        "sequential": latency_summary(raw["sequential"], cdf=False),
        "throughput": value_summary(raw["throughput"], "rps", 1),
        "loaded_latency": latency_summary(raw["window_latencies"], cdf=False),
        "errors": raw["errors"],
    }
    if raw.get("first_error"):
        out["first_error"] = raw["first_error"]
    return out


def _per_rep(raw: dict[str, Any], what: str) -> list[float]:
    if what == "p50":
        return [percentile(sorted(r), 50) for r in raw["sequential"] if r]
    if what == "p99":
        return [percentile(sorted(r), 99) for r in raw["sequential"] if r]
    if what == "rps":
        return list(raw["throughput"])
    if what == "p50_64KiB":
        return [percentile(sorted(r), 50) for r in raw.get("sequential_64KiB", []) if r]
    if what == "loaded_p99":
        return [percentile(sorted(r), 99) for r in raw["window_latencies"] if r]
    raise ValueError(what)


FIGURES = {"p50": "sequential p50", "p99": "sequential p99", "rps": "requests/s",
           "loaded_p99": "p99 under load"}
EXTRA_FIGURES = {**FIGURES, "p50_64KiB": "64 KiB p50"}


def paired_ratios(a: dict[str, Any], b: dict[str, Any], figures: dict[str, str] = FIGURES) -> dict[str, dict[str, Any]]:
    """{figure: {"median", "min", "max", "per_rep"}} of a / b within each repetition."""
    out = {}
    for what in figures:
        pairs = [x / y for x, y in zip(_per_rep(a, what), _per_rep(b, what)) if y]
        if pairs:
            out[what] = {"median": round(statistics.median(pairs), 3), "min": round(min(pairs), 3),
                         "max": round(max(pairs), 3), "per_rep": [round(v, 3) for v in pairs]}
    return out


def ratio_rows(raw: dict[str, dict[str, Any]], base: str, extra: bool = False) -> dict[str, Any]:
    """Every series against ``base``: values for the JSON and Markdown table rows (``extra``: with
    the 64 KiB p50 too)."""
    figures = EXTRA_FIGURES if extra else FIGURES
    values = {k: paired_ratios(v, raw[base], figures) for k, v in raw.items() if k != base}
    md = ["| series | " + " | ".join(f"{figures[f]} ×" for f in figures) + " |",
          "|---|" + "---|" * len(figures)]
    for k, figs in values.items():
        md.append(f"| {k} | " + " | ".join(ratio_cell(figs.get(f)) for f in figures) + " |")
    return {"values": values, "markdown": md}


def ratio_cell(r: dict[str, Any] | None) -> str:
    if not r:
        return "—"
    return f"{r['median']:.2f} ({r['min']:.2f}–{r['max']:.2f})"


def _num(v: Any, digits: int = 0) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


def markdown_table(summary: dict[str, dict[str, Any]], label: str = "server") -> str:
    rows = [f"| {label} | seq p50 µs | seq p99 µs | per-rep p50 µs | req/s (median, range) | p50 / p99 under load µs | errors |",
            "|---|---|---|---|---|---|---|"]
    for k, s in summary.items():
        seq, thr, loaded = s["sequential"], s["throughput"], s["loaded_latency"]
        reps = ", ".join(f"{v:.0f}" for v in seq.get("run_p50_us", []))
        rps = (f"{_num(thr.get('median_rps'))} ({_num(thr.get('min_rps'))}–{_num(thr.get('max_rps'))})"
               if thr.get("n") else "—")
        rows.append(f"| {k} | {_num(seq.get('p50_us'))} | {_num(seq.get('p99_us'))} | {reps} | {rps} | "
                    f"{_num(loaded.get('p50_us'))} / {_num(loaded.get('p99_us'))} | {s['errors']} |")
    return "\n".join(rows)


def write_report(out: Path, stem: str, data: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    j, m = out / f"{stem}.json", out / f"{stem}.md"
    j.write_text(json.dumps(data, indent=1) + "\n")
    m.write_text(markdown + "\n")
    return j, m
