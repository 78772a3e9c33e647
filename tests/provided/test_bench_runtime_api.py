"""bench.runtime_api (bench/PROFILE.md §12) runs end to end: its own daemon, the go runtime's echo
and an aws-lambda-go bootstrap behind the Runtime API adapter, interleaved, and a ratio."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_runtime_api_bench_runs(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, "-m", "bench.runtime_api", "--rounds", "2", "--per-round", "20",
                           "--warmup", "5", "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out.read_text())
    assert "aws-lambda-go" in result["bootstrap"]
    for label in ("go", "provided"):
        assert result["latency"][label]["n"] == 40
        assert result["latency"][label]["p50_us"] > 0
    assert result["p50_ratio_provided_over_go"] > 0
    # Each function warmed once and stayed warm: warm-up + 2 rounds of 20 calls, one cold start.
    assert {name: tuple(v) for name, v in result["cold_starts_and_invocations"].items()} == {
        "go-echo": (1, 45), "provided-awslambdago": (1, 45)}
