"""An external HTTP load generator that is not Python: hey (github.com/rakyll/hey, Go).

Found on PATH, in Go's bin directories or in ``/var/cache/fnhost-bench/go/bin``; ``install()``
runs ``go install github.com/rakyll/hey@latest`` (the Go module proxy) into that cache, bounded in
time. ``run()`` POSTs one body with ``-c`` keep-alive connections for ``-z`` seconds and asks for
hey's per-request CSV, from which the figures are taken here (hey's own summary prints no p99
when a run is short and counts failed requests in its rate).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .ghz import _go_bin_dirs, ghz_version
from .stats import percentile

HEY_MODULE = "github.com/rakyll/hey@latest"
CACHE_BIN = Path(os.environ.get("FNHOST_BENCH_GOBIN", "/var/cache/fnhost-bench/go/bin"))


def find_hey() -> str | None:
    found = shutil.which("hey")
    if found:
        return found
    for d in [CACHE_BIN, *_go_bin_dirs()]:
        if (d / "hey").is_file() and os.access(d / "hey", os.X_OK):
            return str(d / "hey")
    return None


def install(timeout_s: float = 300) -> tuple[str | None, str]:
    """(path, message): ``go install`` hey into ``CACHE_BIN``."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not os.path.exists(go):
        return None, "go is not installed, so hey cannot be installed"
    CACHE_BIN.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run([go, "install", HEY_MODULE], capture_output=True, timeout=timeout_s, text=True,
                              env={**os.environ, "GOBIN": str(CACHE_BIN)}, cwd=tempfile.gettempdir())
    except subprocess.TimeoutExpired:
        return None, f"go install {HEY_MODULE} took longer than {timeout_s:.0f} s"
    if proc.returncode != 0:
        return None, f"go install {HEY_MODULE} failed: {proc.stderr[-800:]}"
    path = find_hey()
    return path, "installed" if path else "go install succeeded but no hey binary was found"


def version(path: str) -> str | None:
    return ghz_version(path)  # the module version Go stamped into the binary


def run(path: str, url: str, body: bytes, *, clients: int, seconds: float,
        headers: dict[str, str] | None = None) -> dict[str, Any]:
    """One hey run; {"rps", "n", "non_200", "p50_us", "p90_us", "p99_us", "max_us", "first_status"}.

    Raises ``RuntimeError`` when hey fails or answers nothing.
    """
    with tempfile.NamedTemporaryFile(prefix="fnhost-bench-hey-", suffix=".json") as f:
        f.write(body)
        f.flush()
        argv = [path, "-z", f"{seconds:g}s", "-c", str(clients), "-m", "POST", "-T", "application/json",
                "-D", f.name, "-o", "csv", "-t", "30"]
        for k, v in (headers or {}).items():
            argv += ["-H", f"{k}: {v}"]
        proc = subprocess.run([*argv, url], capture_output=True, text=True, timeout=seconds + 60,
                              stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"hey failed ({proc.returncode}): {proc.stderr[-500:]}")
    return parse_csv(proc.stdout, seconds)


def parse_csv(text: str, seconds: float) -> dict[str, Any]:
    """hey's ``-o csv``: response-time (s), …, status-code, offset (s) per request."""
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        raise RuntimeError(f"hey answered no requests: {text[:300]!r}")
    ok = sorted(float(r["response-time"]) * 1e6 for r in rows if r["status-code"] == "200")
    statuses = [r["status-code"] for r in rows if r["status-code"] != "200"]
    # Requests sent within the window, answered 200; what finished after it is dropped, like
    # httpload's window (hey stops sending at -z and lets the calls in flight finish).
    in_window = sum(1 for r in rows if r["status-code"] == "200"
                    and float(r["offset"]) + float(r["response-time"]) <= seconds)
    return {
        "n": len(rows),
        "rps": round(in_window / seconds, 1),
        "non_200": len(statuses),
        "first_status": statuses[0] if statuses else None,
        "p50_us": round(percentile(ok, 50), 1),
        "p90_us": round(percentile(ok, 90), 1),
        "p99_us": round(percentile(ok, 99), 1),
        "max_us": round(ok[-1], 1) if ok else None,
    }
