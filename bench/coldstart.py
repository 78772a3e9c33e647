"""Cold starts and deploys.

Cold start: the first invoke of a freshly created function (min_warm 0), so the client waits for
spawn → HELLO → INIT → INVOKE. Reported two ways: the client's wall time for that first call,
and the daemon's REPORT Init Duration (spawn to INIT_OK). The build is not in it: each cold-start
function reuses the code already built for the runtime, as a redeploy of the same code would.

Deploy: CreateFunction with code the daemon has never seen (a copy with a nonce file), for
runtimes that compile at deploy (Go, Java, C#): hashing, building, registering. The toolchains'
own caches (Go's build cache, for one) stay warm, as they would on a build host.

``python -m bench.coldstart``: cold starts alone, on daemons side by side that differ in one
setting each, alternating call by call so that outside load hits them alike:

- ``forked``: the default: each worker in its own namespaces (bubblewrap, where the host allows
  it), and forked from a warm zygote where its runtime has one (Python; execution/zygote.py);
- ``spawned``: the same namespaces, every worker started afresh (``zygote = false``);
- ``shared``: spawned, in the host's filesystem view (``worker_namespaces = false``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from fnhost.client import Client
from fnhost.control.runtimes import RuntimeRegistry
from fnhost.testing.fixtures import readable_copy

from . import functions
from .daemon import DAEMON_CONFIG, Daemon
from .functions import EchoFunction, fresh_copy
from .stats import value_summary


def _name(kind: str, runtime: str) -> str:
    return f"bench-{kind}-{runtime}-{uuid.uuid4().hex[:8]}"


def cold_starts(client: Client, fn: EchoFunction, payload: bytes, reps: int,
                deadline_ok: Callable[[], bool]) -> dict[str, object]:
    first_ms, init_ms, warm_ms = [], [], []
    for i in range(reps):
        if i >= 2 and not deadline_ok():
            break
        name = _name("cold", fn.runtime)
        client.create_function(name, runtime=fn.runtime, handler=fn.handler, code=str(fn.code_dir),
                               timeout_s=60)
        try:
            t0 = time.perf_counter()
            cold = client.invoke(name, payload)
            t1 = time.perf_counter()
            warm = client.invoke(name, payload)
            t2 = time.perf_counter()
        finally:
            client.delete_function(name)
        if cold.function_error or warm.function_error:
            raise RuntimeError(f"echo failed: {(cold.payload if cold.function_error else warm.payload)[:300]!r}")
        if cold.report is None or cold.report.init_duration_ms is None:
            raise RuntimeError("the first invoke of a new function carried no Init Duration")
        first_ms.append((t1 - t0) * 1000)
        init_ms.append(cold.report.init_duration_ms)
        warm_ms.append((t2 - t1) * 1000)
    return {
        "first_invoke_ms": value_summary(first_ms, "ms"),
        "init_duration_ms": value_summary(init_ms, "ms"),
        "second_invoke_ms": value_summary(warm_ms, "ms"),
    }


def deploys(client: Client, fn: EchoFunction, scratch: Path, reps: int,
            deadline_ok: Callable[[], bool]) -> dict[str, object]:
    """CreateFunction wall time with new code each time (the build included)."""
    seconds = []
    for i in range(reps):
        if i >= 2 and not deadline_ok():
            break
        code = fresh_copy(fn.code_dir, scratch)
        name = _name("deploy", fn.runtime)
        try:
            t0 = time.perf_counter()
            client.create_function(name, runtime=fn.runtime, handler=fn.handler, code=str(code),
                                   timeout_s=60)
            seconds.append(time.perf_counter() - t0)
            client.delete_function(name)
        finally:
            shutil.rmtree(code, ignore_errors=True)
    return {"deploy_s": value_summary(seconds, "s", 3)}


def _one_cold(client: Client, fn: EchoFunction, payload: bytes) -> tuple[float, float]:
    """One new function's first invoke: (client ms, Init Duration ms)."""
    name = _name("cold", fn.runtime)
    client.create_function(name, runtime=fn.runtime, handler=fn.handler, code=str(fn.code_dir), timeout_s=60)
    try:
        t0 = time.perf_counter()
        cold = client.invoke(name, payload)
        first = (time.perf_counter() - t0) * 1000
    finally:
        client.delete_function(name)
    if cold.function_error or cold.report is None or cold.report.init_duration_ms is None:
        raise RuntimeError(f"echo failed: {cold.payload[:300]!r}")
    return first, cold.report.init_duration_ms


MODES = {
    "forked": "worker_namespaces = true\nzygote = true\n",
    "spawned": "worker_namespaces = true\nzygote = false\n",
    "shared": "worker_namespaces = false\nzygote = false\n",
}


def modes_compared(runtimes: list[str], reps: int, modes: list[str] | None = None) -> dict[str, object]:
    """Cold starts in each of ``modes`` (MODES), alternating; per runtime and mode, the client's
    first-invoke ms and Init Duration ms."""
    work = Path(tempfile.mkdtemp(prefix="fnhc-", dir="/tmp"))  # short: unix socket paths
    os.chmod(work, 0o711)
    daemons: dict[str, Daemon] = {}
    try:
        fns, skipped = functions.discover(RuntimeRegistry(), runtimes, fixtures=readable_copy(work / "fixtures"))
        for mode in modes or list(MODES):
            daemons[mode] = Daemon(work / mode, config=DAEMON_CONFIG + MODES[mode],
                                   base_env=functions.child_env()).start()
        views = {}
        for mode, d in daemons.items():
            event = next(e for e in d.log_events() if e.get("event") == "worker_isolation")
            views[mode] = event["view"] + (f" ({event['reason']})" if event.get("reason") else "")
        payload = functions.json_payload(100)
        raw: dict[str, dict[str, list[tuple[float, float]]]] = {f.runtime: {m: [] for m in daemons} for f in fns}
        clients = {m: d.client(timeout=120.0) for m, d in daemons.items()}
        for fn in fns:  # a first, unmeasured cold start per daemon: page cache, lazy imports
            for mode, client in clients.items():
                _one_cold(client, fn, payload)
        for _ in range(reps):
            for fn in fns:
                for mode, client in clients.items():
                    raw[fn.runtime][mode].append(_one_cold(client, fn, payload))
        for client in clients.values():
            client.close()
        out: dict[str, object] = {"views": views, "reps": reps, "skipped": skipped, "runtimes": {}}
        for runtime, modes in raw.items():
            out["runtimes"][runtime] = {  # type: ignore[index]
                mode: {"first_invoke_ms": value_summary([a for a, _ in runs], "ms"),
                       "init_duration_ms": value_summary([b for _, b in runs], "ms")}
                for mode, runs in modes.items()}
        return out
    finally:
        for d in daemons.values():
            d.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.coldstart", description=__doc__.split("\n\n")[-1])
    parser.add_argument("--runtimes", default="python,node,go", help="comma-separated (default: python,node,go)")
    parser.add_argument("--reps", type=int, default=10, help="cold starts per runtime and mode (default 10)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()
    r = modes_compared(args.runtimes.split(","), args.reps, args.modes.split(","))
    if args.out:
        args.out.write_text(json.dumps(r, indent=1) + "\n")
    print(f"{'runtime':8} {'mode':11} {'first invoke p50 (min-max) ms':32} init duration p50 ms")
    for runtime, modes in r["runtimes"].items():  # type: ignore[attr-defined]
        for mode, f in modes.items():
            a, b = f["first_invoke_ms"], f["init_duration_ms"]
            print(f"{runtime:8} {mode:11} {a['p50_ms']:7.1f} ({a['min_ms']:.1f}-{a['max_ms']:.1f}){'':14} {b['p50_ms']:7.1f}")
    for mode, view in r["views"].items():  # type: ignore[attr-defined]
        print(f"{mode}: {view}")


if __name__ == "__main__":
    main()
