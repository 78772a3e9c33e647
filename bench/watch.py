"""What the chaos and soak suites run beside the load: their client processes' start, and what
watches the daemon from threads of the suite's own process (so what they time is the daemon, not
a client process's GIL).

- ``start_clients`` / ``release`` / ``collect``: client processes that say "ready" once imported
  and connected, and begin together at a start time the suite sends them;
- ``HealthProbe``: a grpc.health.v1 Check every 50 ms on a channel of its own;
- ``ResourceSampler``: the daemon's RSS, open fds, threads and workers, once a second;
- ``WorkerWatch``: the daemon's workers by function (its children, told apart by the function name
  in their environment), SIGKILLing a random one of a victim function's on a period; and
  afterwards, any process of the run that survived it.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from .functions import ROOT, child_env
from .stats import percentile

HEALTH_INTERVAL_S = 0.05


def start_clients(argvs: list[list[str]]) -> list[subprocess.Popen[str]]:
    """Start one client process per argv and wait until each has printed "ready".

    Starting a Python process that imports gRPC takes about a second of CPU; on two cores a load
    whose clients are still importing when it opens would begin with their catch-up burst. Raises
    RuntimeError (with the failed client's stderr) when one exits instead; then none is left running.
    """
    procs = [subprocess.Popen(argv, cwd=ROOT, env=child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for argv in argvs]
    try:
        for p in procs:
            if p.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
                _, err = p.communicate(timeout=30)
                raise RuntimeError(f"a client process failed to start (exit status {p.returncode}):\n{err[-3000:]}")
    except BaseException:
        stop_clients(procs)
        raise
    return procs


def release(procs: list[subprocess.Popen[str]], start: float) -> None:
    """Tell every client its start time (CLOCK_MONOTONIC: the same clock in every process)."""
    for p in procs:
        p.stdin.write(f"{start!r}\n")  # type: ignore[union-attr]
        p.stdin.flush()  # type: ignore[union-attr]


def wait_for_start() -> float:
    """The client's side: say "ready", then wait for the start time."""
    print("ready", flush=True)
    return float(sys.stdin.readline())


def collect(procs: list[subprocess.Popen[str]], timeout: float) -> list[dict[str, Any]]:
    """Each client's JSON answer, in order. Raises RuntimeError (with its stderr) if one failed."""
    answers = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"a client process failed (exit status {p.returncode}):\n{err[-3000:]}")
        answers.append(json.loads(out))
    return answers


def stop_clients(procs: list[subprocess.Popen[str]]) -> None:
    """Kill (by pid) the clients still running, reap them, close their pipes; safe after ``collect``."""
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
        for f in (p.stdin, p.stdout, p.stderr):
            try:
                if f is not None and not f.closed:
                    f.close()
            except OSError:
                pass


class HealthProbe(threading.Thread):
    """grpc.health.v1 Check every 50 ms on a channel of its own: (t, latency s, SERVING)."""

    def __init__(self, address: str, t0: float) -> None:
        super().__init__(name="health-probe", daemon=True)
        self.address, self.t0 = address, t0
        self.samples: list[tuple[float, float, bool]] = []
        self.first_error: str | None = None
        self.ready = threading.Event()
        self._halt = threading.Event()

    def run(self) -> None:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        request, serving = health_pb2.HealthCheckRequest(), health_pb2.HealthCheckResponse.SERVING
        with grpc.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                stub.Check(request, timeout=10)  # connects: not a sample
            except grpc.RpcError:
                pass
            self.ready.set()
            due = time.monotonic()
            while not self._halt.is_set():
                started = time.perf_counter()
                try:
                    ok = stub.Check(request, timeout=5).status == serving
                except grpc.RpcError as exc:
                    ok = False
                    self.first_error = self.first_error or f"{exc.code().name}: {exc.details()}"
                self.samples.append((time.monotonic() - self.t0, time.perf_counter() - started, ok))
                due = max(due + HEALTH_INTERVAL_S, time.monotonic())
                self._halt.wait(due - time.monotonic())

    def stop(self) -> None:
        self._halt.set()
        self.join()


class ResourceSampler(threading.Thread):
    """The daemon's RSS, open fds, threads and workers (its children), once per ``interval_s``."""

    def __init__(self, pid: int, t0: float, interval_s: float = 1.0) -> None:
        super().__init__(name="resource-sampler", daemon=True)
        self.proc, self.t0, self.interval_s = psutil.Process(pid), t0, interval_s
        self.samples: list[dict[str, float]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        due = time.monotonic()
        while not self._halt.is_set():
            try:
                with self.proc.oneshot():
                    self.samples.append({"t": round(time.monotonic() - self.t0, 2),
                                         "rss_mib": round(self.proc.memory_info().rss / 2**20, 2),
                                         "fds": self.proc.num_fds(), "threads": self.proc.num_threads(),
                                         "workers": len(self.proc.children())})
            except psutil.Error:
                return
            due += self.interval_s
            self._halt.wait(max(due - time.monotonic(), 0))

    def stop(self) -> None:
        self._halt.set()
        self.join()


class WorkerWatch(threading.Thread):
    """Every ``every_s``: list the daemon's descendants, SIGKILL a random one of those that run
    ``victim``'s code. Every descendant seen is remembered, to check afterwards that none survived.

    A process runs a function's code when ``AWS_LAMBDA_FUNCTION_NAME`` in its environment names it:
    the worker itself (the shim and the handler in it) and whatever it starts, however deep below
    the daemon it sits (a sandbox such as bubblewrap puts processes of its own in between).
    """

    def __init__(self, daemon_pid: int, roles_by_function: dict[str, str], victim: str, every_s: float,
                 rng: random.Random, start: float, min_age_s: float = 0.0) -> None:
        super().__init__(name="worker-watch", daemon=True)
        self.min_age_s = min_age_s  # spare processes younger than this (most likely still starting)
        self.daemon = psutil.Process(daemon_pid)
        self.roles, self.victim, self.every_s, self.rng = roles_by_function, victim, every_s, rng
        self.start_at = start  # kills begin with the load (CLOCK_MONOTONIC)
        # (pid, started) of every descendant seen: its function's role ("" for a process of the
        # daemon's own, such as a sandbox), its uid, the process.
        self.seen: dict[tuple[int, float], tuple[str, int, psutil.Process]] = {}
        self.kills: list[float] = []
        self._halt = threading.Event()

    def role_of(self, p: psutil.Process) -> str | None:
        return self.roles.get(p.environ().get("AWS_LAMBDA_FUNCTION_NAME", ""))

    def scan(self) -> list[tuple[psutil.Process, str]]:
        """The descendants that run a function's code, with its role."""
        found = []
        try:
            descendants = self.daemon.children(recursive=True)
        except psutil.Error:
            return found
        for p in descendants:
            try:
                key = (p.pid, p.create_time())
                known = self.seen.get(key)
                if known is None or not known[0]:
                    # Re-read until it names a function: between fork and exec a process still
                    # has its parent's environment.
                    known = self.seen[key] = (self.role_of(p) or "", p.uids().real, p)
                if known[0]:
                    found.append((p, known[0]))
            except psutil.Error:
                pass
        return found

    def run(self) -> None:
        due = max(time.monotonic(), self.start_at)
        period = self.every_s or 0.1
        while not self._halt.is_set():
            due += period
            if self._halt.wait(max(due - time.monotonic(), 0)):
                return
            now = time.time()
            victims = [p for p, role in self.scan()
                       if role == self.victim and now - p.create_time() >= self.min_age_s]
            if self.every_s and victims:
                try:
                    self.rng.choice(victims).send_signal(signal.SIGKILL)  # checks the pid was not reused
                    self.kills.append(time.monotonic())
                except psutil.Error:
                    pass

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def survivors(self) -> list[str]:
        """Processes still running that were this run's workers, or carry one of its functions' names.

        By name, not by uid: a root daemon gives a function the uid ``worker_uid_base`` + its slot in
        that daemon's registry, so another daemon on the host runs its first functions under the
        very same uids; a function's name is in the environment of every process it starts.
        """
        alive = [f"pid {p.pid} ({role or 'daemon-side'} process seen under the daemon)"
                 for role, _, p in self.seen.values() if _running(p)]
        for p in psutil.process_iter():
            try:
                role = self.role_of(p)
                if role is not None and _running(p):
                    alive.append(f"pid {p.pid} ({p.name()}, uid {p.uids().real}) runs as the {role} function")
            except psutil.Error:
                pass
        return sorted(set(alive))


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def ms(sorted_s: list[float], q: float) -> float | None:
    return round(percentile(sorted_s, q) * 1000, 2) if sorted_s else None


def summary_ms(values_s: list[float], seconds: float | None = None) -> dict[str, Any]:
    s = sorted(values_s)
    out: dict[str, Any] = {"n": len(s), "p50_ms": ms(s, 50), "p99_ms": ms(s, 99),
                           "max_ms": round(s[-1] * 1000, 2) if s else None}
    if seconds:
        out["per_s"] = round(len(s) / seconds, 1)
    return out


def slope_per_minute(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per minute; None under two points."""
    if len(points) < 2:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        return None
    return sum((t - mt) * (v - mv) for t, v in points) / var * 60


def log_findings(log_path: Path, keep: int = 5) -> dict[str, Any]:
    """The daemon's warnings and errors: counts by event, and the first few of each, as logged.

    Read line by line: a soak's log holds a REPORT per invocation, hundreds of MB.
    """
    counts: dict[str, int] = {}
    first: dict[str, list[Any]] = {}
    try:
        f = open(log_path, "rb")
    except OSError:
        return {"counts": {}, "first": {}}
    with f:
        for line in f:
            if b'"level": "warning"' not in line and b'"level": "error"' not in line \
                    and b'"level": "critical"' not in line and not line.startswith(b"Traceback"):
                continue
            try:
                e = json.loads(line)
            except ValueError:
                e = {"level": "error", "event": "unparsed line", "line": line[:500].decode(errors="replace")}
            name = f"{e.get('level')}: {e.get('event')}"
            counts[name] = counts.get(name, 0) + 1
            if len(first.setdefault(name, [])) < keep:
                first[name].append(e)
    return {"counts": counts, "first": first}


def log_markdown(findings: dict[str, Any]) -> list[str]:
    """The daemon log's warnings and errors as report lines: each kind, its count, its first line."""
    if not findings["counts"]:
        return ["", "The daemon logged no warning or error."]
    out = ["", "## The daemon's warnings and errors", "", "| event | count | first |", "|---|---|---|"]
    for name, n in sorted(findings["counts"].items(), key=lambda kv: -kv[1]):
        first = json.dumps(findings["first"][name][0])[:400].replace("|", "\\|")
        out.append(f"| {name} | {n:,} | `{first}` |")
    return out


# --- the reports both suites write ---------------------------------------------------------------


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_report(r: dict[str, Any], out_dir: Path, markdown: Callable[[dict[str, Any]], str]) -> tuple[Path, Path]:
    """``r`` as JSON and as Markdown in ``out_dir``, named as the bench names its reports."""
    from .report import stem

    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{stem(r)}.json", out_dir / f"{stem(r)}.md"
    json_path.write_text(json.dumps(r, indent=1) + "\n")
    md_path.write_text(markdown(r))
    return json_path, md_path


def cell(v: Any, digits: int = 1) -> str:
    """A table cell: – for nothing, thousands separators, ``digits`` decimals for floats."""
    return "–" if v is None else f"{v:,}" if isinstance(v, int) else f"{v:,.{digits}f}" if isinstance(v, float) else str(v)
