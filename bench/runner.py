"""One benchmark run: start everything, measure phase by phase, always clean up.

Everything started here — the daemon (and through it every worker), the floor server, the worker
hop shims, the client processes — is registered with an ExitStack the moment it exists, so an
error, Ctrl-C or SIGTERM unwinds it all. A phase that fails is recorded as a note and the run goes
on; a phase that would start past the time budget is skipped with a note, so a run always ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fnhost.control.runtimes import RuntimeRegistry
from fnhost.testing.fixtures import readable_copy

from . import coldstart, functions, ghz, memory, scale, sequential, stream, throughput
from .daemon import Daemon, bench_daemon
from .echo_server import STREAM
from .floors import GrpcFloor, WorkerHop
from .functions import PAYLOAD_SIZES, ROOT, EchoFunction, json_payload
from .load import ClientPool
from .machine import LoadMonitor, machine_info, source_info
from .plan import Plan
from .targets import Aim, check_same, fnhost_aim


class Interrupted(Exception):
    """SIGTERM arrived; unwinds like Ctrl-C so everything started gets stopped."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Interrupted("SIGTERM")


class Runner:
    def __init__(self, plan: Plan, out_dir: Path, *, profile_s: float = 0.0, install_ghz: bool = False,
                 log: Callable[[str], None] = print) -> None:
        self.plan = plan
        self.out_dir = out_dir
        self.profile_s = profile_s
        self.install_ghz = install_ghz
        self.log = log
        self.notes: list[str] = []
        self.monitor = LoadMonitor()
        self.started = time.monotonic()
        self.results: dict[str, Any] = {"schema": "fnhost-bench/1", "mode": plan.mode}
        self.fns: list[EchoFunction] = []
        self.deployed: dict[str, str] = {}  # runtime -> function name of its load echo
        self.payloads = {label: json_payload(size) for label, size in PAYLOAD_SIZES.items()}

    # --- helpers ------------------------------------------------------------------------------

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.log(f"  note: {text}")

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def budget_ok(self) -> bool:
        return self.elapsed() < self.plan.budget_s

    def phase(self, name: str, fn: Callable[[], Any], *, essential: bool = False) -> Any:
        if not essential and not self.budget_ok():
            self.note(f"phase {name} skipped: the {self.plan.budget_s:.0f} s budget was spent")
            return None
        self.log(f"[{self.elapsed():6.1f}s] {name}")
        try:
            return fn()
        except (KeyboardInterrupt, Interrupted):
            raise
        except Exception as exc:
            self.note(f"phase {name} failed: {type(exc).__name__}: {exc}")
            self.log(traceback.format_exc())
            return None
        finally:
            self.monitor.mark(name)

    # --- the run ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
        self.results["started_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.monitor.mark("start")
        try:
            with contextlib.ExitStack() as stack:
                self._run(stack)
        finally:
            signal.signal(signal.SIGTERM, previous)
        self.monitor.mark("teardown")
        self.results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.results["duration_s"] = round(self.elapsed(), 1)
        self.results["outside_load"] = self.monitor.summary()
        self.results["notes"] = self.notes
        return self.results

    def _run(self, stack: contextlib.ExitStack) -> None:
        plan, r = self.plan, self.results
        work = Path(tempfile.mkdtemp(prefix="fnhb-", dir="/tmp"))  # short: unix socket paths ≤ 108 bytes
        # The daemon may run workers as unprivileged users, who must be able to reach its state dir.
        os.chmod(work, 0o711)
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        r["machine"] = machine_info()
        r["source"] = source_info(str(ROOT))
        r["plan"] = {k: getattr(plan, k) for k in plan.__slots__}
        registry = RuntimeRegistry()
        self.fns, skipped = functions.discover(registry, plan.runtimes,
                                               fixtures=readable_copy(work / "fixtures"))
        r["runtimes"] = {"measured": [f.runtime for f in self.fns], "skipped": skipped}
        for name, why in skipped.items():
            self.note(f"runtime {name} skipped: {why}")

        floor = GrpcFloor(work)
        floor.start()
        stack.callback(floor.stop)
        daemon = bench_daemon(work)
        stack.callback(self._stop_daemon, daemon)
        daemon.start()
        pool = ClientPool(plan.client_procs, str(ROOT), functions.child_env())
        stack.callback(pool.close)
        client = daemon.client(timeout=120.0)
        stack.callback(client.close)
        self.daemon, self.floor, self.pool, self.client, self.work = daemon, floor, pool, client, work
        r["pids"] = {"bench": os.getpid(), "daemon": daemon.pid, "grpc_floor": floor.pid, "clients": pool.pids()}
        r["fnhost"] = {f.runtime: {} for f in self.fns}
        r["floors"] = {"grpc": {}, "worker_hop": {}}

        self.phase("deploy", self._deploy, essential=True)
        hops: dict[str, WorkerHop] = {}
        hop_stack = stack.enter_context(contextlib.ExitStack())
        self.phase("worker_hop_start", lambda: self._start_hops(registry, hops, hop_stack), essential=True)
        self.phase("daemon_idle_rss", lambda: r.setdefault("daemon_memory", {}).update(
            idle_rss=memory.idle_rss(daemon.pid)), essential=True)
        self.phase("sequential", lambda: self._sequential(hops), essential=True)
        hop_stack.close()  # the shims are done; free their CPU and memory for the load phases
        self.phase("in_flight_python", self._in_flight_python, essential=True)
        for fn in self.fns:
            if fn.runtime != "python":
                self.phase(f"in_flight_{fn.runtime}", lambda fn=fn: self._in_flight_other(fn))
        self.phase("ghz", self._ghz)
        self.phase("stream", self._stream)
        if self.profile_s:
            from .profile import profile_daemon
            from .report import stem

            self.phase("profile", lambda: r.__setitem__("profile", profile_daemon(
                pool, self._python_aim(self.payloads["100B"]), daemon.pid, self.profile_s, work, self.note,
                self.out_dir, stem(r))))
        self.phase("cold_start", self._cold_starts)
        if "python" in self.deployed:
            self.phase("cleanup_python_load", lambda: client.delete_function(self.deployed["python"]),
                       essential=True)
        py = next((f for f in self.fns if f.runtime == "python"), None)
        if py is not None:
            self.phase("scale", lambda: r.__setitem__("scale", scale.run_scale(
                client, pool, daemon.address, daemon.pid, py, self.payloads["100B"], plan.scale_functions,
                plan.scale_warm, plan.scale_reps, plan.scale_calls, self.note)), essential=True)

    def _stop_daemon(self, daemon: Daemon) -> None:
        daemon.stop(timeout=20.0)
        if daemon.leftovers:
            self.note(f"{len(daemon.leftovers)} worker processes outlived the daemon and were killed")

    # --- phases -------------------------------------------------------------------------------

    def _deploy(self) -> None:
        for fn in list(self.fns):
            name = f"bench-echo-{fn.runtime}"
            t0 = time.perf_counter()
            try:
                self.client.create_function(name, runtime=fn.runtime, handler=fn.handler,
                                            code=str(fn.code_dir), timeout_s=60)
                warm = self.client.invoke(name, self.payloads["100B"])  # starts its first worker
                if warm.function_error:
                    raise RuntimeError(f"echo failed: {warm.payload[:300]!r}")
            except Exception as exc:
                self.note(f"runtime {fn.runtime} dropped: deploying its echo failed: {exc}")
                self.fns.remove(fn)
                self.results["fnhost"].pop(fn.runtime, None)
                continue
            self.deployed[fn.runtime] = name
            # First deploy of this code on this daemon: includes a cold build for compiled runtimes.
            self.results["fnhost"][fn.runtime]["first_deploy_and_invoke_s"] = round(time.perf_counter() - t0, 3)

    def _start_hops(self, registry: RuntimeRegistry, hops: dict[str, WorkerHop],
                    stack: contextlib.ExitStack) -> None:
        toolchains = self.results["machine"].setdefault("toolchains", {})
        for fn in self.fns:
            runtime = registry.get(fn.runtime)
            hop = WorkerHop(runtime, fn, self.work)
            stack.callback(hop.close)
            try:
                hop.start()
            except Exception as exc:
                self.note(f"worker-hop floor {fn.runtime} could not start: {exc}")
                continue
            hops[fn.runtime] = hop
            variant, paths = runtime.select()
            toolchains[fn.runtime] = {"version": hop.hello.get("runtime_version"),
                                      "variant": variant.name, "paths": paths}
            self.results["floors"]["worker_hop"][fn.runtime] = {
                "spawn_to_init_ok_ms": round(hop.spawn_to_ready_ms, 2),
                "build_s": round(hop.build_s, 3) if hop.build_s is not None else None,
            }

    def _floor_aim(self, payload: bytes) -> Aim:
        target = self.floor.target(payload)
        return Aim(target, check_same(target.request), self.floor.pid)

    def _python_aim(self, payload: bytes) -> Aim:
        return fnhost_aim(self.daemon.address, self.deployed["python"], payload, self.daemon.pid, "fnhost:python")

    def _sequential(self, hops: dict[str, WorkerHop]) -> None:
        plan = self.plan
        makers = {rt: (lambda p, name=name, rt=rt: fnhost_aim(self.daemon.address, name, p, self.daemon.pid,
                                                             f"fnhost:{rt}"))
                  for rt, name in self.deployed.items()}
        runs = sequential.run_sequential(
            self.pool, sequential.SeqPlan(plan.reps, plan.seq_calls, plan.warmup, plan.hop_calls),
            self.payloads, self._floor_aim, makers, hops, self.note, self.budget_ok)
        floors = self.results["floors"]
        floors["grpc"]["sequential"] = {p: runs.summary("grpc_floor", p) for p in self.payloads}
        for rt in hops:
            floors["worker_hop"][rt].update({p: runs.summary(f"hop:{rt}", p) for p in self.payloads})
        for rt in self.deployed:
            self.results["fnhost"][rt]["sequential"] = {p: runs.summary(f"fnhost:{rt}", p) for p in self.payloads}

    def _in_flight_python(self) -> None:
        plan, payload = self.plan, self.payloads["100B"]
        aims: dict[str, Aim] = {"grpc_floor": self._floor_aim(payload)}
        if "python" in self.deployed:
            aims["fnhost:python"] = self._python_aim(payload)
        out = throughput.run_levels(self.pool, aims, plan.levels, plan.reps, plan.window_s, self.note,
                                    self.budget_ok, rss_series="fnhost:python")
        self.results["floors"]["grpc"]["in_flight"] = out["grpc_floor"]
        if "python" in self.deployed:
            self.results["fnhost"]["python"]["in_flight"] = out["fnhost:python"]
            self.results["fnhost"]["python"]["worker_memory"] = memory.worker_memory(
                self.daemon.workers(), self.deployed["python"])
            self.results.setdefault("daemon_memory", {})["under_load_rss"] = {
                level: s["server_rss_mib"] for level, s in out["fnhost:python"].items() if "server_rss_mib" in s}

    def _in_flight_other(self, fn: EchoFunction) -> None:
        name = self.deployed.get(fn.runtime)
        if name is None:
            return
        aim = fnhost_aim(self.daemon.address, name, self.payloads["100B"], self.daemon.pid, f"fnhost:{fn.runtime}")
        try:
            out = throughput.run_levels(self.pool, {fn.runtime: aim}, self.plan.levels, self.plan.other_reps,
                                        self.plan.window_s, self.note, self.budget_ok)
            self.results["fnhost"][fn.runtime]["in_flight"] = out[fn.runtime]
            self.results["fnhost"][fn.runtime]["worker_memory"] = memory.worker_memory(self.daemon.workers(), name)
        finally:
            # Up to 64 workers of this runtime: stop them before the next runtime starts its own.
            self.client.delete_function(name)
            self.deployed.pop(fn.runtime)

    def _ghz(self) -> None:
        plan = self.plan
        path = ghz.find_ghz()
        if path is None and self.install_ghz:
            path, message = ghz.install_ghz()
            if path is None:
                self.note(f"ghz: {message}")
        if path is None:
            self.results["ghz"] = {"measured": False, "reason": "ghz not found (install it with "
                                   f"`go install {ghz.GHZ_MODULE}`, or pass --install-ghz)"}
            return
        if "python" not in self.deployed:
            self.results["ghz"] = {"measured": False, "reason": "no Python echo deployed"}
            return
        payload, level = self.payloads["100B"], 32 if 32 in plan.levels else max(plan.levels)
        floor_set = ghz.protoset(ROOT / "bench" / "echo.proto", ROOT / "bench", self.work / "echo.protoset")
        fnhost_set = ghz.protoset(ROOT / "protos" / "fnhost" / "v1" / "fnhost.proto", ROOT / "protos",
                                  self.work / "fnhost.protoset")
        runs: dict[str, list[dict[str, object]]] = {"grpc_floor": [], "fnhost:python": []}
        for _ in range(plan.ghz_reps):
            runs["grpc_floor"].append(ghz.run_ghz(
                path, self.floor.address, protoset=floor_set, call="bench.Echo.Echo",
                data=ghz.floor_data(payload), concurrency=level, duration_s=plan.ghz_s, workdir=self.work))
            runs["fnhost:python"].append(ghz.run_ghz(
                path, self.daemon.address, protoset=fnhost_set,
                call="fnhost.v1.Fnhost.Invoke", data=ghz.invoke_data(self.deployed["python"], payload),
                concurrency=level, duration_s=plan.ghz_s, workdir=self.work))
        self.results["ghz"] = {"measured": True, "path": path, "version": ghz.ghz_version(path),
                               "in_flight": level, "duration_s": plan.ghz_s, "connections": 1, "runs": runs}

    def _stream(self) -> None:
        plan, payload = self.plan, self.payloads["100B"]
        out: dict[str, object] = {"floor": stream.measure_stream_floor(
            self.pool, self.floor.address, STREAM, payload, plan.stream_calls, plan.reps, plan.window_s)}
        if "python" in self.deployed:
            out["invoke_stream"] = stream.measure_invoke_stream(
                self.pool, self.daemon.address, self.deployed["python"], payload, plan.stream_calls,
                plan.reps, plan.window_s)
        self.results["stream"] = out

    def _cold_starts(self) -> None:
        for fn in self.fns:
            if not self.budget_ok():
                self.note(f"cold start {fn.runtime} and later skipped: time budget")
                break
            entry = self.results["fnhost"][fn.runtime]
            try:
                entry["cold_start"] = coldstart.cold_starts(self.client, fn, self.payloads["100B"],
                                                            self.plan.cold_reps, self.budget_ok)
                if fn.compiled:
                    entry["deploy"] = coldstart.deploys(self.client, fn, self.work, self.plan.deploy_reps,
                                                        self.budget_ok)
            except Exception as exc:
                self.note(f"cold start/deploy {fn.runtime}: {exc}")
