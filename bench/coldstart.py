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

- ``stemcell``: the default: each worker in its own namespaces (bubblewrap, where the host
  allows it); Python's forked from a warm zygote, every other runtime's a stem cell given its
  function by SPECIALISE where the runtime has them (execution/stemcell.py; one of each kind
  kept ready, as ``stem_cells = 1``), else set up by the zygote's spare and exec'd;
- ``zygote``: the same without stem cells (``stem_cells = 0``): Python's forked, the others'
  set up by a spare and exec'd (execution/zygote.py);
- ``no-zygote``: the same namespaces, every worker started afresh (``zygote = false``);
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


WARM_CALLS = 20  # after each cold start, on the worker it started: the warm path of each mode


def _one_cold(client: Client, fn: EchoFunction, payload: bytes) -> tuple[float, float, float]:
    """One new function's first invoke: (client ms, Init Duration ms, median ms of WARM_CALLS after it)."""
    name = _name("cold", fn.runtime)
    client.create_function(name, runtime=fn.runtime, handler=fn.handler, code=str(fn.code_dir), timeout_s=60)
    try:
        t0 = time.perf_counter()
        cold = client.invoke(name, payload)
        first = (time.perf_counter() - t0) * 1000
        warm = []
        for _ in range(WARM_CALLS):
            t0 = time.perf_counter()
            client.invoke(name, payload)
            warm.append((time.perf_counter() - t0) * 1000)
    finally:
        client.delete_function(name)
    if cold.function_error or cold.report is None or cold.report.init_duration_ms is None:
        raise RuntimeError(f"echo failed: {cold.payload[:300]!r}")
    return first, cold.report.init_duration_ms, sorted(warm)[len(warm) // 2]


MODES = {
    "stemcell": "worker_namespaces = true\nzygote = true\nstem_cells = 1\n",
    "zygote": "worker_namespaces = true\nzygote = true\nstem_cells = 0\n",
    "no-zygote": "worker_namespaces = true\nzygote = false\n",
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
        raw: dict[str, dict[str, list[tuple[float, float, float]]]] = {f.runtime: {m: [] for m in daemons} for f in fns}
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
                mode: {"first_invoke_ms": value_summary([a for a, _, _ in runs], "ms"),
                       "init_duration_ms": value_summary([b for _, b, _ in runs], "ms"),
                       "warm_invoke_ms": value_summary([c for _, _, c in runs], "ms")}
                for mode, runs in modes.items()}
        return out
    finally:
        for d in daemons.values():
            d.stop()
        shutil.rmtree(work, ignore_errors=True)


def plot(r: dict[str, object], path: Path) -> str | None:
    """A PNG of the first-invoke p50 (min-max) per runtime and mode; None, or why there is none."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot (pip install matplotlib)"
    runtimes = list(r["runtimes"])  # type: ignore[call-overload]
    modes = list(next(iter(r["runtimes"].values())))  # type: ignore[attr-defined]
    fig, ax = plt.subplots(figsize=(1.5 * len(runtimes) + 3, 4.5))
    width = 0.8 / len(modes)
    for i, mode in enumerate(modes):
        cells = [r["runtimes"][rt][mode]["first_invoke_ms"] for rt in runtimes]  # type: ignore[index]
        med = [c["p50_ms"] for c in cells]
        ax.bar([x + (i - (len(modes) - 1) / 2) * width for x in range(len(runtimes))], med, width,
               yerr=[[m - c["min_ms"] for m, c in zip(med, cells)], [c["max_ms"] - m for m, c in zip(med, cells)]],
               capsize=3, label=mode)
        for x, m in enumerate(med):
            ax.annotate(f"{m:.1f}", (x + (i - (len(modes) - 1) / 2) * width, m), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(runtimes)), runtimes)
    ax.set_ylabel("ms, p50 (min-max)")
    ax.set_title("First invoke of a never-seen function, end to end over gRPC")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.coldstart", description=__doc__.split("\n\n")[-1])
    parser.add_argument("--runtimes", default="python,node,go", help="comma-separated (default: python,node,go)")
    parser.add_argument("--reps", type=int, default=10, help="cold starts per runtime and mode (default 10)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    parser.add_argument("--plot", type=Path, help="also draw them into this PNG")
    args = parser.parse_args()
    r = modes_compared(args.runtimes.split(","), args.reps, args.modes.split(","))
    if args.out:
        args.out.write_text(json.dumps(r, indent=1) + "\n")
    if args.plot and (why := plot(r, args.plot)):
        print(why)
    print(f"{'runtime':8} {'mode':9} {'first invoke p50 (min-max) ms':31} {'init p50 ms':12} warm p50 ms")
    for runtime, modes in r["runtimes"].items():  # type: ignore[attr-defined]
        for mode, f in modes.items():
            a, b, c = f["first_invoke_ms"], f["init_duration_ms"], f["warm_invoke_ms"]
            print(f"{runtime:8} {mode:9} {a['p50_ms']:7.1f} ({a['min_ms']:.1f}-{a['max_ms']:.1f}){'':14} "
                  f"{b['p50_ms']:7.1f}      {c['p50_ms']:7.2f}")
    for mode, view in r["views"].items():  # type: ignore[attr-defined]
        print(f"{mode}: {view}")
    for runtime, why in r["skipped"].items():  # type: ignore[attr-defined]
        print(f"{runtime}: not measured: {why}")


if __name__ == "__main__":
    main()
