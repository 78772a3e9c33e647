"""bench.function_urls runs end to end on fnhost's side and writes its report (serverless-offline is
left out: npm and node packages are not the test suite's). Asserts that the bench works, not speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_function_urls_bench_runs_fnhost_side(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.function_urls", "--series", "fnhost-url", "--reps", "1",
                           "--calls", "20", "--seconds", "0.3", "--clients", "2", "--procs", "2", "--workers", "2",
                           "--out", str(tmp_path), "--name", "urls"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-4000:]
    r = json.loads((tmp_path / "urls.json").read_text())
    s = r["summary"]["fnhost-url"]
    assert s["errors"] == 0 and s["get_p50_us"] > 0 and s["post_p50_us"] > 0 and s["rps"] > 0, s
    assert "| fnhost-url |" in (tmp_path / "urls.md").read_text()
