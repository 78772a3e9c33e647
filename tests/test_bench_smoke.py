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


def test_idle_costs_run(tmp_path: Path) -> None:
    """bench.idle times a call after each pause on every path, real servers and a real worker."""
    out = _run_tool("bench.idle", "--samples", "3", "--out", str(tmp_path / "idle.json"))
    paths = json.loads((tmp_path / "idle.json").read_text())["paths"]
    assert set(paths) == {"grpc", "worker", "fnhost", "fnhost-http"}, out
    for path, by_pause in paths.items():
        assert set(by_pause) == {"0", "2", "20", "200"}, (path, by_pause)
        assert all(v["p50_us"] > 0 and v["p90_us"] >= v["p50_us"] for v in by_pause.values()), (path, by_pause)
        assert by_pause["0"]["excess_p50_us"] == 0.0, (path, by_pause)


def test_http_server_comparison_runs(tmp_path: Path) -> None:
    """bench.httpservers serves the raw echo on uvicorn and on the bare httptools protocol, drives
    both with the keep-alive http.client pool, and reports ratios to the floor."""
    out = _run_tool("bench.httpservers", "--kinds", "uvicorn,bare", "--reps", "2", "--calls", "40",
                    "--seconds", "0.3", "--clients", "4", "--procs", "2", "--out", str(tmp_path), "--name", "servers")
    r = json.loads((tmp_path / "servers.json").read_text())
    assert set(r["summary"]) == {"uvicorn", "bare"}, out
    for s in r["summary"].values():
        assert s["errors"] == 0 and s["sequential"]["n"] == 80 and s["throughput"]["n"] == 2, s
        assert s["throughput"]["median_rps"] > 0 and s["loaded_latency"]["p99_us"] > 0, s
    assert r["ratios"]["uvicorn"]["p50"]["median"] > 0, r["ratios"]
    assert (tmp_path / "servers.md").read_text().count("| uvicorn |") == 2  # figures and ratios


def test_lambda_http_comparison_runs_fnhost_side(tmp_path: Path) -> None:
    """bench.lambda_http measures fnhost's HTTP Invoke and its gRPC Invoke on one daemon with warm
    workers (serverless-offline is left out here: npm and node are not the test suite's)."""
    out = _run_tool("bench.lambda_http", "--series", "fnhost-http,fnhost-grpc", "--no-hey", "--reps", "2",
                    "--calls", "30", "--calls-64k", "10", "--seconds", "0.3", "--clients", "2", "--procs", "2",
                    "--workers", "2", "--out", str(tmp_path), "--name", "lambda")
    r = json.loads((tmp_path / "lambda.json").read_text())
    assert set(r["summary"]) == {"fnhost-http", "fnhost-grpc"}, out
    for s in r["summary"].values():
        assert s["errors"] == 0 and s["sequential"]["n"] == 60 and s["sequential_64KiB"]["n"] == 20, s
        assert s["throughput"]["n"] == 2 and s["throughput"]["median_rps"] > 0, s
        assert s["server_cpu_per_call_us"] > 0, s
    assert r["notes"] == [], r["notes"]
    assert "## 64 KiB" in (tmp_path / "lambda.md").read_text()


def test_hey_csv_is_summarised() -> None:
    """bench.hey reads hey's per-request CSV: only 200s answered within the window count as
    throughput, every non-200 is counted, percentiles come from the 200s."""
    from bench.hey import parse_csv

    head = "response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,status-code,offset\n"
    rows = [f"{(i + 1) / 10000:.4f},0,0,0,0,0,200,{i / 200:.4f}\n" for i in range(100)]
    rows.append("0.0500,0,0,0,0,0,429,0.5\n")
    rows.append("0.5000,0,0,0,0,0,200,0.9\n")  # answered after the 1 s window
    s = parse_csv(head + "".join(rows), 1.0)
    assert (s["n"], s["non_200"], s["first_status"], s["rps"]) == (102, 1, "429", 100.0), s
    assert s["p50_us"] == 5_100.0 and s["max_us"] == 500_000.0, s
