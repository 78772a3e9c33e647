"""The provided runtime's Runtime API against the go runtime: ``python -m bench.runtime_api``.

Issue 14's target: a warm invoke of a function behind the Runtime API adapter
(fnhost-runtime-api serving a bootstrap over HTTP on loopback) stays within 1.5 × the go
runtime's warm invoke p50 (a Go function that is its own worker through fnhost.Start), measured in
the same run. Both go through the same daemon and fnhost's gRPC client on a unix socket, one call
at a time, in interleaved rounds so that drift on this shared machine hits both alike:

- ``go``: tests/fixtures/go echo (fnhost.Start), runtime go;
- ``provided``: the aws-lambda-go program of tests/fixtures/lambda-libraries/go (lambda.Start,
  AWS's own library, unmodified), built here as an executable named bootstrap and deployed with
  runtime provided.al2023's fnhost name, provided. Each of its invocations is one answer to the
  bootstrap's long-poll GET /next and one POST /response on a kept-alive connection, on top of
  what the go runtime does.

Nothing is asserted: the figures go to bench/PROFILE.md (§12). The bench daemon runs functions
without the CPU throttle (bench/daemon.py), as every bench does. Loopback and a unix socket only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from fnhost.client import Client
from fnhost.testing.fixtures import SOURCE as FIXTURES
from fnhost.testing.fixtures import readable_copy

from .daemon import bench_daemon
from .stats import latency_summary, ratio

GO_LIBRARY = FIXTURES / "lambda-libraries" / "go"
# Where tests/lambda_libraries keeps the Go module cache it fetched aws-lambda-go into.
GO_HOME = Path("/var/cache/fnhost-tests/go-home")
PAYLOAD = json.dumps({"name": "bench", "pad": "x" * 60}).encode()  # ~100 B, as the other benches


def build_aws_lambda_go(out_dir: Path) -> Path:
    """tests/fixtures/lambda-libraries/go built as ``out_dir/bootstrap``: from the module cache
    the library tests filled if there is one, else through the Go module proxy (its ordinary
    client). Raises RuntimeError with go's output when it cannot be built."""
    out = out_dir / "bootstrap"
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local", "GOWORK": "off", "GOENV": "off",
           "CGO_ENABLED": "0"}
    if GO_HOME.is_dir():
        env["HOME"] = str(GO_HOME)
    with tempfile.TemporaryDirectory() as scratch:
        # A copy: go may complete go.sum, and the fixture stays untouched.
        src = Path(scratch) / "src"
        shutil.copytree(GO_LIBRARY, src)
        for proxy in ("off", "https://proxy.golang.org"):
            done = subprocess.run(["go", "build", "-trimpath", "-ldflags=-s -w", "-o", str(out), "."], cwd=src,
                                  env={**env, "GOPROXY": proxy}, capture_output=True, text=True, timeout=600)
            if done.returncode == 0:
                out.chmod(0o755)
                return out
    raise RuntimeError(f"cannot build the aws-lambda-go bootstrap:\n{done.stderr[-2000:]}")


def measure(client: Client, names: dict[str, str], rounds: int, per_round: int, warmup: int) -> dict[str, list[list[int]]]:
    """Per label, one list of latencies (ns) per round; rounds interleave the functions, the
    order alternating so neither always goes first."""
    for name in names.values():
        for _ in range(warmup):
            client.invoke(name, PAYLOAD)
    samples: dict[str, list[list[int]]] = {label: [] for label in names}
    labels = list(names)
    for r in range(rounds):
        for label in labels if r % 2 == 0 else reversed(labels):
            run = []
            for _ in range(per_round):
                t = time.perf_counter_ns()
                result = client.invoke(names[label], PAYLOAD)
                run.append(time.perf_counter_ns() - t)
                if result.function_error:
                    raise RuntimeError(f"{label}: {result.payload[:300]!r}")
            samples[label].append(run)
    return samples


def run(rounds: int, per_round: int, warmup: int) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="fnh-rapi-", dir="/tmp"))
    work.chmod(0o755)
    try:
        fixtures = readable_copy(work / "fixtures")
        provided_code = work / "provided-code"
        provided_code.mkdir(mode=0o755)
        build_aws_lambda_go(provided_code)
        daemon = bench_daemon(work)
        daemon.start()
        try:
            with daemon.client() as client:
                client.create_function("go-echo", runtime="go", handler="echo", code=str(fixtures / "go"),
                                       memory_mb=512)
                client.create_function("provided-awslambdago", runtime="provided", handler="bootstrap",
                                       code=str(provided_code), memory_mb=512)
                samples = measure(client, {"go": "go-echo", "provided": "provided-awslambdago"},
                                  rounds, per_round, warmup)
                stats = {f.function_name: (f.cold_starts, f.invocations) for f in client.stats().functions}
        finally:
            daemon.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {label: latency_summary(runs, cdf=False) for label, runs in samples.items()}
    go_p50, pr_p50 = summary["go"]["p50_us"], summary["provided"]["p50_us"]  # type: ignore[index]
    return {
        "bootstrap": "aws-lambda-go (tests/fixtures/lambda-libraries/go), lambda.Start, unmodified",
        "rounds": rounds, "per_round": per_round, "payload_bytes": len(PAYLOAD),
        "latency": summary,
        "p50_ratio_provided_over_go": ratio(pr_p50, go_p50),
        "p99_ratio_provided_over_go": ratio(summary["provided"]["p99_us"], summary["go"]["p99_us"]),  # type: ignore[index]
        "cold_starts_and_invocations": stats,
        "target": "p50 ratio ≤ 1.5",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--per-round", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    result = run(args.rounds, args.per_round, args.warmup)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
