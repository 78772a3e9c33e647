"""One external load run with ghz (a Go gRPC load tool), so no figure rests on Python clients alone.

ghz is found on PATH or in Go's bin directory; with ``--install-ghz`` the bench installs it with
``go install github.com/bojand/ghz/cmd/ghz@latest`` (the Go module proxy), bounded in time. It runs
against the floor (bench/echo.proto) and against fnhost's Invoke (protos/fnhost/v1/fnhost.proto)
at the same concurrency, alternately, for the same duration.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path


GHZ_MODULE = "github.com/bojand/ghz/cmd/ghz@latest"


def _go_bin_dirs() -> list[Path]:
    dirs = []
    go = shutil.which("go") or ("/usr/local/go/bin/go" if os.path.exists("/usr/local/go/bin/go") else None)
    if go:
        try:
            out = subprocess.run([go, "env", "GOBIN", "GOPATH"], capture_output=True, timeout=20, text=True)
            gobin, gopath = (out.stdout.splitlines() + ["", ""])[:2]
            if gobin:
                dirs.append(Path(gobin))
            for p in gopath.split(":"):
                if p:
                    dirs.append(Path(p) / "bin")
        except (OSError, subprocess.SubprocessError):
            pass
    dirs.append(Path.home() / "go" / "bin")
    return dirs


def find_ghz() -> str | None:
    found = shutil.which("ghz")
    if found:
        return found
    for d in _go_bin_dirs():
        if (d / "ghz").is_file() and os.access(d / "ghz", os.X_OK):
            return str(d / "ghz")
    return None


def install_ghz(timeout_s: float = 300) -> tuple[str | None, str]:
    """(path, message): ``go install`` ghz from the Go module proxy."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not os.path.exists(go):
        return None, "go is not installed, so ghz cannot be installed"
    try:
        proc = subprocess.run([go, "install", GHZ_MODULE], capture_output=True, timeout=timeout_s, text=True)
    except subprocess.TimeoutExpired:
        return None, f"go install {GHZ_MODULE} took longer than {timeout_s:.0f} s"
    if proc.returncode != 0:
        return None, f"go install {GHZ_MODULE} failed: {proc.stderr[-800:]}"
    path = find_ghz()
    return path, "installed" if path else "go install succeeded but no ghz binary was found"


def ghz_version(path: str) -> str | None:
    """The module version Go stamped into the binary (``ghz --version`` says "dev" for go install)."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    try:
        out = subprocess.run([go, "version", "-m", path], capture_output=True, timeout=20, text=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        parts = line.split()
        if parts[:1] == ["mod"] and len(parts) >= 3:
            return f"{parts[1]} {parts[2]}"
    return None


def protoset(proto: Path, include: Path, out: Path) -> Path:
    """Compile ``proto`` to a descriptor set with grpcio-tools.

    ghz's own .proto parser (and its reflection client) predate proto3 ``optional`` and reject
    fnhost.proto; a compiled descriptor set is read fine.
    """
    try:
        from grpc_tools import protoc
    except ImportError as exc:
        raise RuntimeError("grpcio-tools is needed to compile the proto for ghz (pip install grpcio-tools)") from exc
    rc = protoc.main(["protoc", f"-I{include}", "--include_imports", f"--descriptor_set_out={out}", str(proto)])
    if rc != 0:
        raise RuntimeError(f"protoc could not compile {proto} (exit status {rc})")
    return out


def run_ghz(path: str, address: str, *, protoset: Path, call: str, data: dict[str, object],
            concurrency: int, duration_s: float, workdir: Path) -> dict[str, object]:
    """One ghz run; its summary in the bench's units (µs, requests/s)."""
    data_file = workdir / f"ghz-{call.replace('.', '_')}.json"
    data_file.write_text(json.dumps(data))
    target = "unix://" + address.removeprefix("unix:")
    argv = [path, "--insecure", "--protoset", str(protoset),
            "--call", call, "-D", str(data_file), "-c", str(concurrency), "--connections", "1",
            "-z", f"{duration_s}s", "--duration-stop", "wait", "--cpus", str(os.cpu_count() or 1),
            "-O", "json", target]
    proc = subprocess.run(argv, capture_output=True, timeout=duration_s + 60, text=True)
    if proc.returncode != 0 and not proc.stdout.strip():
        raise RuntimeError(f"ghz failed ({proc.returncode}): {proc.stderr[-500:]}")
    r = json.loads(proc.stdout)
    dist = {int(d["percentage"]): d["latency"] / 1000 for d in r.get("latencyDistribution") or []}
    return {
        "count": r.get("count"),
        "rps": round(r.get("rps", 0.0), 1),
        "p50_us": round(dist.get(50, float("nan")), 1),
        "p90_us": round(dist.get(90, float("nan")), 1),
        "p99_us": round(dist.get(99, float("nan")), 1),
        "max_us": round((r.get("slowest") or 0) / 1000, 1),
        "status": r.get("statusCodeDistribution"),
        "errors": r.get("errorDistribution") or {},
    }


def floor_data(payload: bytes) -> dict[str, object]:
    return {"data": base64.b64encode(payload).decode()}


def invoke_data(function: str, payload: bytes) -> dict[str, object]:
    return {"function_name": function, "payload": base64.b64encode(payload).decode()}
