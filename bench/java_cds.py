"""Java cold starts with and without class-data sharing, and with the JVM's start-up flags.

``python -m bench.java_cds``: a never-seen Java function's first invoke, measured at the worker
hop (``bench.floors.WorkerHop``: the daemon's own argv, environment, spawn and INIT frame, no
daemon in between): spawn → HELLO → INIT_OK → the first INVOKE's RESULT, for each launch variant
below, the variants alternating start by start so outside load hits all alike. Each variant is
runtime.toml's [launch] argv with JVM options taken out or put in:

- ``shipped``: the argv as runtime.toml has it (the shim's AppCDS archive if the cache has one);
- ``no-appcds``: the same without the shim's archive (the JDK's default CDS archive only);
- ``no-cds``: ``-Xshare:off``, no archive at all;
- ``+c1`` / ``+serial`` / ``+xss``: ``shipped`` plus -XX:TieredStopAtLevel=1, Serial GC
  instead of G1, or a 256 KB thread stack (the candidate flags, each alone).

The archive is the one the runtime's prepare step writes (``Runtime.prepare``, as ``fnhost
prepare`` does) into a cache directory of this run's own.

``python -m bench.java_cds --daemons``: end to end instead (``daemons_compared``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import psutil

from fnhost.control.runtimes import Runtime, RuntimeRegistry
from fnhost.testing.fixtures import readable_copy

from . import functions
from .floors import WorkerHop
from .stats import value_summary

SHIM_ARCHIVE = "-XX:SharedArchiveFile="


def _without(argv: list[str], prefix: str) -> list[str]:
    return [a for a in argv if not a.startswith(prefix)]


def _variants(shipped: list[str]) -> dict[str, list[str]]:
    """Launch argv templates by name (see the module's docstring)."""
    at = shipped.index("-cp")  # JVM options go before the class path

    def plus(*opts: str, drop: tuple[str, ...] = ()) -> list[str]:
        kept = [a for a in shipped[:at] if not (drop and a.startswith(drop))]
        return kept + list(opts) + shipped[at:]
    return {
        "shipped": shipped,
        "no-appcds": plus(drop=(SHIM_ARCHIVE,)),
        "no-cds": plus("-Xshare:off", drop=(SHIM_ARCHIVE, "-Xshare")),
        "+c1": plus("-XX:TieredStopAtLevel=1"),
        "+serial": plus("-XX:+UseSerialGC", drop=("-XX:+UseG1GC",)),
        "+xss": plus("-Xss256k"),
    }


def _with_argv(runtime: Runtime, argv: list[str]) -> Runtime:
    """A copy of ``runtime`` that launches with ``argv`` (its toolchains already found)."""
    variant, paths = runtime.select()
    return dataclasses.replace(runtime, _chosen=(dataclasses.replace(variant, launch_argv=tuple(argv)), paths))


def _one(runtime: Runtime, fn: functions.EchoFunction, workdir: Path,
         payload: bytes) -> tuple[float, float, float, float]:
    """One new worker: (spawn → INIT_OK ms, spawn → first RESULT ms, then its USS and RSS in
    MiB). Raises RuntimeError."""
    hop = WorkerHop(runtime, fn, workdir)
    try:
        started = time.perf_counter()
        hop.start(timeout=60.0)
        hop.roundtrips(payload, 1, 0)
        first = (time.perf_counter() - started) * 1000
        mem = psutil.Process(hop.pids()[0]).memory_full_info()
        return hop.spawn_to_ready_ms, first, mem.uss / 2**20, mem.rss / 2**20
    finally:
        hop.close()


def measure(reps: int, only: list[str] | None) -> dict[str, object]:
    """Cold starts per launch variant, alternating; raises RuntimeError when a worker fails."""
    work = Path(tempfile.mkdtemp(prefix="fnjc-", dir="/tmp"))
    os.chmod(work, 0o711)
    try:
        registry = RuntimeRegistry()
        fns, skipped = functions.discover(registry, ["java"], fixtures=readable_copy(work / "fixtures"))
        if not fns:
            raise RuntimeError(f"java cannot run here: {skipped}")
        fn, runtime = fns[0], registry.get("java")
        cache = work / "cache" / "java"
        t0 = time.perf_counter()
        runtime.prepare(cache)
        prepare_s = time.perf_counter() - t0
        archives = sorted(str(p.relative_to(cache)) for p in cache.rglob("*.jsa"))
        variants = _variants(list(runtime.select()[0].launch_argv))
        if only:
            variants = {k: v for k, v in variants.items() if k in only}
        # compose_worker_spec fills {cache_dir} from the environment, as for the daemon's workers.
        os.environ["FNHOST_CACHE_DIR"] = str(work / "cache")
        runtimes = {name: _with_argv(runtime, argv) for name, argv in variants.items()}
        payload = functions.json_payload(100)
        raw: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in runtimes}
        for name, rt in runtimes.items():  # unmeasured: the build, the page cache
            _one(rt, fn, work, payload)
        for _ in range(reps):
            for name, rt in runtimes.items():
                raw[name].append(_one(rt, fn, work, payload))
        return {
            "reps": reps, "prepare_s": round(prepare_s, 2), "archives": archives,
            "variants": {
                name: {"argv": variants[name],
                       "init_ok_ms": value_summary([r[0] for r in runs], "ms"),
                       "first_result_ms": value_summary([r[1] for r in runs], "ms"),
                       "uss_mib_p50": round(statistics.median(r[2] for r in runs), 1),
                       "rss_mib_p50": round(statistics.median(r[3] for r in runs), 1)}
                for name, runs in raw.items()},
        }
    finally:
        os.environ.pop("FNHOST_CACHE_DIR", None)
        shutil.rmtree(work, ignore_errors=True)


def daemons_compared(reps: int) -> dict[str, object]:
    """End to end: a new Java function's first invoke over the API (``bench.coldstart``'s one
    cold start), on two daemons side by side, alternating: ``cds`` with the host's cache
    (/var/cache/fnhost, prepared at its first Java build, as in production) and ``default``
    with a cache it refuses (group-writable), so its workers have the JDK's default archive only.
    Both give workers their namespaces where the host allows it. Raises RuntimeError."""
    from .coldstart import _one_cold
    from .daemon import DAEMON_CONFIG, Daemon

    work = Path(tempfile.mkdtemp(prefix="fnjd-", dir="/tmp"))
    os.chmod(work, 0o711)
    refused = work / "cache-refused"
    refused.mkdir(mode=0o777)
    os.chmod(refused, 0o777)
    daemons: dict[str, Daemon] = {}
    try:
        fns, skipped = functions.discover(RuntimeRegistry(), ["java"], fixtures=readable_copy(work / "fixtures"))
        if not fns:
            raise RuntimeError(f"java cannot run here: {skipped}")
        fn = fns[0]
        caches = {"cds": os.environ.get("FNHOST_CACHE_DIR", ""), "default": str(refused)}
        for mode, cache in caches.items():
            env = functions.child_env()
            env.pop("FNHOST_CACHE_DIR", None)
            if cache:
                env["FNHOST_CACHE_DIR"] = cache
            daemons[mode] = Daemon(work / mode, config=DAEMON_CONFIG, base_env=env).start()
        clients = {m: d.client(timeout=120.0) for m, d in daemons.items()}
        payload = functions.json_payload(100)
        for client in clients.values():  # unmeasured: the prepare step, the page cache
            _one_cold(client, fn, payload)
        raw: dict[str, list[tuple[float, float, float]]] = {m: [] for m in daemons}
        for _ in range(reps):
            for mode, client in clients.items():
                raw[mode].append(_one_cold(client, fn, payload))
        for client in clients.values():
            client.close()
        return {"reps": reps, "modes": {
            mode: {"first_invoke_ms": value_summary([a for a, _, _ in runs], "ms"),
                   "init_duration_ms": value_summary([b for _, b, _ in runs], "ms")}
            for mode, runs in raw.items()}}
    finally:
        for d in daemons.values():
            d.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.java_cds", description=__doc__.split("\n\n")[1])
    parser.add_argument("--reps", type=int, default=20, help="cold starts per variant (default 20)")
    parser.add_argument("--variants", help="comma-separated subset of the variants")
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    parser.add_argument("--daemons", action="store_true",
                        help="end to end instead: first invokes over the API, with and without the archive")
    args = parser.parse_args()
    if args.daemons:
        d = daemons_compared(args.reps)
        if args.out:
            args.out.write_text(json.dumps(d, indent=1) + "\n")
        print(f"{'mode':8} {'first invoke p50 (min-max) ms':32} Init Duration p50 ms ({d['reps']} each)")
        for mode, f in d["modes"].items():  # type: ignore[attr-defined]
            a, b = f["first_invoke_ms"], f["init_duration_ms"]
            print(f"{mode:8} {a['p50_ms']:7.1f} ({a['min_ms']:.1f}-{a['max_ms']:.1f}){'':14} {b['p50_ms']:7.1f}")
        return
    r = measure(args.reps, args.variants.split(",") if args.variants else None)
    if args.out:
        args.out.write_text(json.dumps(r, indent=1) + "\n")
    print(f"prepare {r['prepare_s']} s, archives {r['archives']}, {r['reps']} cold starts each")
    print(f"{'variant':10} {'spawn→INIT_OK p50 (min-max) ms':32} {'spawn→first RESULT p50 (min-max) ms':37} USS / RSS MiB")
    for name, f in r["variants"].items():  # type: ignore[attr-defined]
        a, b = f["init_ok_ms"], f["first_result_ms"]
        print(f"{name:10} {a['p50_ms']:7.1f} ({a['min_ms']:.1f}-{a['max_ms']:.1f}){'':15} "
              f"{b['p50_ms']:7.1f} ({b['min_ms']:.1f}-{b['max_ms']:.1f}){'':17} {f['uss_mib_p50']} / {f['rss_mib_p50']}")


if __name__ == "__main__":
    main()
