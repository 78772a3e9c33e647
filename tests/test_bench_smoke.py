"""The benchmark suite's smallest case runs end to end and writes a complete report.

Benchmarks are not tests: this asserts that the bench works (it starts its own daemon and floors,
measures, writes the JSON and Markdown, and leaves no process behind), never how fast anything is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def test_bench_smoke_writes_a_report(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=110, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    (report,) = tmp_path.glob("*-smoke.json")
    assert report.with_suffix(".md").is_file()
    r = json.loads(report.read_text())

    assert r["mode"] == "smoke"
    assert {"logical_cpus", "cpu_model", "python"} <= r["machine"].keys()
    assert r["machine"]["toolchains"]["python"]["version"]
    assert {"loadavg_before", "loadavg_after", "whole_run", "phases"} <= r["outside_load"].keys()

    def latency(summary: dict) -> None:
        assert summary["n"] > 0 and summary["runs"] >= 2, summary
        assert {"p50_us", "p90_us", "p99_us", "max_us", "cdf_us"} <= summary.keys()

    for payload in ("100B", "64KiB"):
        latency(r["floors"]["grpc"]["sequential"][payload])
        latency(r["floors"]["worker_hop"]["python"][payload])
        latency(r["fnhost"]["python"]["sequential"][payload])
    for series in (r["floors"]["grpc"]["in_flight"], r["fnhost"]["python"]["in_flight"]):
        assert set(series) == {"1", "4"}
        assert all(level["throughput"]["n"] >= 2 and level["errors"] == 0 for level in series.values())

    py = r["fnhost"]["python"]
    assert py["cold_start"]["init_duration_ms"]["n"] >= 2
    assert py["worker_memory"]["workers"] >= 1 and py["worker_memory"]["uss"]["n"] >= 1
    assert r["daemon_memory"]["idle_rss"]["n"] > 0
    assert r["scale"]["warm_workers_seen"] == r["scale"]["warm_workers_wanted"]
    assert r["stream"]["floor"]["pingpong"]["n"] > 0
    assert r["stream"]["invoke_stream"]["measured"] in (True, False)

    d = r["derived"]
    for key in ("own_cost_python_100B", "throughput_ratio", "scale_ratio", "stream", "vs_reference"):
        assert key in d
    assert isinstance(d["own_cost_python_100B"]["us"], float)
    assert isinstance(d["scale_ratio"]["ratio_p50"], float)

    # Everything the run started is gone: the daemon (whose workers die with it) and the floor.
    for pid in (r["pids"]["daemon"], r["pids"]["grpc_floor"]):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def _run_tool(*argv: str) -> str:
    proc = subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=100, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def test_inprocess_costs_run() -> None:
    """bench.inprocess (bench/PROFILE.md §7) measures every mode, with a real worker behind it."""
    out = _run_tool("bench.inprocess", "--calls", "40", "--reps", "2", "--concurrent", "2")
    modes, differences = out.split("\n\n")
    rows = {line.rsplit(None, 2)[0]: float(line.split()[-2]) for line in modes.splitlines()[2:]}
    assert set(rows) == {"fnhost sequential", "loop sequential", "blocking sequential",
                         "fnhost 2 at once", "loop 2 at once"}, out
    assert all(v > 0 for v in rows.values()), out
    paired = {line.rsplit(None, 3)[0] for line in differences.splitlines()[2:]}
    assert paired == {"fnhost - loop sequential", "fnhost - loop 2 at once", "loop - blocking sequential"}, out


def test_stacks_comparison_runs() -> None:
    """bench.stacks serves the echo and the worker hop on each stack and tabulates them."""
    out = _run_tool("bench.stacks", "--reps", "1", "--calls", "30", "--window", "0.3", "--workers", "2",
                    "--variants", "aio-hop,uvloop,sync-hop")
    table = [line for line in out.splitlines() if line.startswith("| ") and "variant" not in line]
    assert [row.split("|")[1].strip() for row in table] == ["aio-hop", "uvloop", "sync-hop"], out
    assert all(float(row.split("|")[4]) > 0 for row in table), out  # req/s at 32 in flight
