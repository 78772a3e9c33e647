"""fnhost's Lambda Invoke over HTTP against the reference emulator: ``python -m bench.lambda_http``.

Three series, the same Python echo (``app.echo`` of tests/fixtures/python), measured in the same
run and interleaved within every repetition:

- ``fnhost-http``: fnhost's Lambda REST API (``fnhost serve --http-listen 127.0.0.1:PORT``),
  ``POST /2015-03-31/functions/echo/invocations``, the function kept at ``--workers`` warm workers
  (``min_warm``) so no cold start is measured;
- ``sls-offline``: serverless-offline 13.10.1 (serverless 3.40.0), the same path on its lambda
  port (``slsoffline.py``), its handler processes warmed by ``--clients`` calls at once first;
- ``fnhost-grpc``: fnhost's gRPC unary Invoke on the same daemon (its unix socket), from
  ``load.py``'s grpc.aio client processes — a different client by necessity, so read it beside
  the HTTP pair, not as part of it.

The HTTP series share ``httpload.py``'s keep-alive ``http.client`` client. Per repetition:
sequential 100 B and 64 KiB (``--calls``), then ``--clients`` clients over ``--procs`` processes
for ``--seconds`` (req/s, latency under load, the server's CPU per call: fnhost's daemon and
workers, serverless-offline's node and Python processes). Then hey (Go) against both HTTP
servers, alternately. Ratios against ``sls-offline`` are taken per repetition; the issue's
targets: fnhost HTTP p50 ≤ 0.5 ×, req/s ≥ 2 ×, p99 under load ≤ 1 ×.
Writes ``<out>/<date>-vm-lambda-http.{md,json}``; nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fnhost.control.runtimes import RuntimeRegistry
from fnhost.testing.fixtures import readable_copy

from . import hey, http_profile, slsoffline
from .daemon import bench_daemon
from .functions import ROOT, child_env, discover, json_payload
from .httpload import HttpPool, HttpTarget
from .load import ClientPool, Target
from .machine import LoadMonitor
from .report_http import markdown_table, ratio_cell, ratio_rows, series_summary, today, write_report
from .targets import INVOKE_METHOD, check_invoke, cpu_seconds, invoke_request

FUNCTION = "echo"
INVOKE_PATH = f"/2015-03-31/functions/{FUNCTION}/invocations"
SERIES = ("fnhost-http", "sls-offline", "fnhost-grpc")
FLOORS = {"uvicorn-echo": "uvicorn", "bare-echo": "bare"}  # httpservers' raw echoes, --floors
TARGETS = {"p50": ("≤", 0.5), "rps": ("≥", 2.0), "loaded_p99": ("≤", 1.0)}


def fnhost_http_supported() -> bool:
    """Whether this checkout's ``fnhost serve`` has ``--http-listen`` (issue 11's front end)."""
    out = subprocess.run([sys.executable, "-m", "fnhost", "serve", "--help"], capture_output=True, text=True,
                         timeout=60, env=child_env(), cwd=ROOT)
    return "--http-listen" in out.stdout


def start_fnhost(stack: ExitStack, work: Path, workers: int, http: bool) -> tuple[Any, int]:
    """A bench daemon with the Python echo at ``workers`` warm workers; (daemon, HTTP port or 0).
    Raises ``RuntimeError`` when the workers are not all warm within 120 s."""
    work.chmod(0o711)  # the workers' own users pass through to the state directory
    fns, skipped = discover(RuntimeRegistry(), ["python"], fixtures=readable_copy(work / "fixtures"))
    if not fns:
        raise RuntimeError(f"no Python echo: {skipped}")
    daemon = bench_daemon(work)
    if http:  # port 0: the daemon binds a free port and logs it (the harness's http_url)
        daemon.args += ["--http-listen", "127.0.0.1:0"]
    stack.callback(daemon.stop)  # safe before a start, and stops a daemon whose start failed half-way
    daemon.start()
    with daemon.client() as client:
        client.create_function(FUNCTION, runtime="python", handler=fns[0].handler, code=str(fns[0].code_dir),
                               min_warm=workers, max_concurrency=workers)
        deadline = time.monotonic() + 120
        while True:  # provisioned: every worker warm before anything is measured
            stats = {f.function_name: f for f in client.stats().functions}[FUNCTION]
            if stats.workers.get("idle", 0) >= workers:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {stats.workers} of {workers} workers warm after 120 s")
            time.sleep(0.1)
    if not http:
        return daemon, 0
    url = urlsplit(daemon.http_url)
    assert url.hostname and url.port, daemon.http_url
    return daemon, url.port


class Series:
    """One thing measured: how to call it (HTTP or gRPC) and whose CPU serves it."""

    def __init__(self, name: str, server_pid: int, http: tuple[str, int] | None = None,
                 grpc_address: str | None = None, path: str = INVOKE_PATH) -> None:
        self.name = name
        self.path = path
        self.server_pid = server_pid
        self.http = http
        self.grpc_address = grpc_address
        self.raw: dict[str, Any] = {"sequential": [], "sequential_64KiB": [], "throughput": [],
                                    "window_latencies": [], "errors": 0, "first_error": None,
                                    "server_cpu_us": [], "children_cpu_us": [], "client_cpu_us": []}

    def http_target(self, payload: bytes) -> HttpTarget:
        assert self.http is not None
        return HttpTarget(self.name, self.http[0], self.http[1], self.path, payload, expect=payload)

    def grpc_target(self, payload: bytes) -> Target:
        assert self.grpc_address is not None
        return Target(self.name, self.grpc_address, INVOKE_METHOD, invoke_request(FUNCTION, payload))

    def sequential(self, hp: HttpPool, gp: ClientPool, payload: bytes, calls: int) -> list[int]:
        if self.http:
            return hp.sequential(self.http_target(payload), calls)
        lat, sample = gp.sequential(self.grpc_target(payload), calls, 20)
        check_invoke(payload)(sample)
        return lat

    def warm(self, hp: HttpPool, gp: ClientPool, payload: bytes, clients: int) -> tuple[int, str | None]:
        if self.http:
            return hp.warm(self.http_target(payload), clients)
        return gp.warm(self.grpc_target(payload), clients)

    def window(self, hp: HttpPool, gp: ClientPool, payload: bytes, clients: int, seconds: float) -> None:
        own0, kids0 = cpu_seconds(self.server_pid, True)
        # On 2 cores the clients' CPU is taken from the servers': it bounds every req/s figure.
        client_pids = hp.pids() if self.http else gp.pids()
        client0 = sum(cpu_seconds(pid, False)[0] for pid in client_pids)
        if self.http:
            w = hp.window(self.http_target(payload), clients, seconds)
        else:
            w = gp.window(self.grpc_target(payload), clients, seconds)
            if w.sample_response is not None:
                check_invoke(payload)(w.sample_response)
        own1, kids1 = cpu_seconds(self.server_pid, True)
        client1 = sum(cpu_seconds(pid, False)[0] for pid in client_pids)
        calls = max(w.completed, 1)
        self.raw["client_cpu_us"].append((client1 - client0) / calls * 1e6)
        self.raw["children_cpu_us"].append((kids1 - kids0) / calls * 1e6)  # fnhost's workers; sls's python3s
        self.raw["throughput"].append(w.throughput)
        self.raw["window_latencies"].append(w.latencies_ns)
        self.raw["errors"] += w.errors
        self.raw["first_error"] = self.raw["first_error"] or w.first_error
        self.raw["server_cpu_us"].append((own1 + kids1 - own0 - kids0) / calls * 1e6)


def measure(series: list[Series], args: argparse.Namespace, note: Any) -> dict[str, Any]:
    """Fill every series' ``raw``; returns the profile (``--profile``) or why there is none."""
    small, big = json_payload(100), json_payload(64 * 1024)
    with HttpPool(args.procs, str(ROOT), child_env()) as hp:
        gp = ClientPool(args.procs, str(ROOT), env=child_env())
        try:
            for s in series:
                errors, first = s.warm(hp, gp, small, args.clients)
                if errors:
                    note(f"{s.name}: {errors} errors while warming: {first}")
            for rep in range(args.reps):
                order = series if rep % 2 == 0 else list(reversed(series))  # nobody always goes first
                for s in order:
                    s.raw["sequential"].append(s.sequential(hp, gp, small, args.calls))
                    s.raw["sequential_64KiB"].append(s.sequential(hp, gp, big, args.calls_64k))
                for s in order:
                    s.window(hp, gp, small, args.clients, args.seconds)
            fh = next((s for s in series if s.name == "fnhost-http"), None)
            if args.profile and fh is not None:
                return http_profile.profile_http(hp, fh.http_target(small), fh.server_pid, args.clients,
                                                 args.profile, args.out, args.name or f"{today()}-vm-lambda-http",
                                                 note)
        finally:
            gp.close()
    return {"measured": False, "reason": "not asked for (--profile SECONDS)" if not args.profile
            else "no fnhost-http series"}


def run_hey(series: list[Series], args: argparse.Namespace, note: Any) -> dict[str, Any]:
    path = hey.find_hey()
    if path is None and args.install:
        path, msg = hey.install()
        note(f"hey: {msg}")
    if path is None:
        note("hey: not installed (go install github.com/rakyll/hey@latest, or --install)")
        return {}
    out: dict[str, Any] = {"version": hey.version(path), "runs": {}}
    body = json_payload(100)
    for rep in range(args.hey_reps):
        for s in (series if rep % 2 == 0 else list(reversed(series))):
            if not s.http or s.name in FLOORS:
                continue
            url = f"http://{s.http[0]}:{s.http[1]}{INVOKE_PATH}"
            try:
                out["runs"].setdefault(s.name, []).append(
                    hey.run(path, url, body, clients=args.clients, seconds=args.hey_seconds))
            except (RuntimeError, subprocess.SubprocessError) as exc:
                note(f"hey {s.name}: {exc}")
    return out


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in runs if r.get(key) is not None]
    return round(statistics.median(vals), 1) if vals else None


def _targets(fh: dict[str, Any] | None) -> str:
    """The issue's three targets for fnhost-http ÷ sls-offline, each met or missed on its median."""
    if fh is None:
        return "Targets (fnhost-http ÷ sls-offline): not measured (no fnhost-http series)."
    cells = []
    for fig, (op, lim) in TARGETS.items():
        r = fh.get(fig)
        met = r is not None and (r["median"] <= lim if op == "≤" else r["median"] >= lim)
        cells.append(f"{fig} {op} {lim:g}: {ratio_cell(r)} → **{'met' if met else 'missed'}**")
    return "Targets (fnhost-http ÷ sls-offline): " + "; ".join(cells)


def markdown(result: dict[str, Any]) -> str:
    a, summary, ratios = result["params"], result["summary"], result["ratios"]
    lines = [f"# fnhost's Lambda Invoke over HTTP against serverless-offline ({today()}, `python -m bench.lambda_http`)",
             "", f"Python echo (`app.echo`), fnhost at {a['workers']} warm workers; {a['reps']} repetitions "
             f"interleaved; sequential {a['calls']} calls (100 B) and {a['calls_64k']} (64 KiB) on one keep-alive "
             f"connection; load: {a['clients']} clients over {a['procs']} client processes for {a['seconds']:g} s. "
             f"HTTP series: `http.client`; fnhost-grpc: grpc.aio on fnhost's unix socket. "
             f"Load average before/after: {a['loadavg_before']} / {a['loadavg_after']}; "
             + "; ".join(f"other processes took {p['outside_share'] * 100:.0f} % of the machine during {p['phase']}"
                         for p in result["outside_load"].get("phases", [])) + ".", "",
             "## 100 B", "", markdown_table(summary, "series"), "", "## 64 KiB, sequential", "",
             "| series | p50 µs | p99 µs | per-rep p50 µs |", "|---|---|---|---|"]
    for k, s in summary.items():
        b = s["sequential_64KiB"]
        lines.append(f"| {k} | {b.get('p50_us', 0):,.0f} | {b.get('p99_us', 0):,.0f} | "
                     + ", ".join(f"{v:.0f}" for v in b.get("run_p50_us", [])) + " |")
    lines += ["", "CPU per call under load (µs, median of the windows): the server's processes (of which its "
              "children: fnhost's workers, serverless-offline's python3 handlers), then the client processes':", ""]
    lines += [f"- {k}: {s['server_cpu_per_call_us']} (children {s['children_cpu_per_call_us']}) + "
              f"{s['client_cpu_per_call_us']}" for k, s in summary.items()]
    lines += [""]
    if ratios:
        lines += ["## Ratios to sls-offline (per repetition: median, range)", "", *result["ratio_markdown"], "",
                  _targets(ratios.get("fnhost-http")), ""]
    if result.get("hey", {}).get("runs"):
        h = result["hey"]
        lines += [f"## hey ({h['version']}), {a['clients']} connections, {a['hey_seconds']:g} s × {a['hey_reps']}", "",
                  "| series | req/s (median) | p50 µs | p99 µs | non-200 |", "|---|---|---|---|---|"]
        for k, runs in h["runs"].items():
            lines.append(f"| {k} | {_median(runs, 'rps')} | {_median(runs, 'p50_us')} | {_median(runs, 'p99_us')} | "
                         f"{sum(r['non_200'] for r in runs)} |")
        lines += ["", "(hey reports times in 0.1 ms steps.)", ""]
    if result["profile"].get("measured"):
        lines += [*http_profile.markdown(result["profile"]), ""]
    if result["notes"]:
        lines += ["## Notes", "", *(f"- {n}" for n in result["notes"]), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.lambda_http", description=__doc__.split("\n\n")[0])
    p.add_argument("--series", default=",".join(SERIES))
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--calls-64k", type=int, default=300)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--procs", type=int, default=4)
    p.add_argument("--workers", type=int, default=16, help="fnhost's warm workers (min_warm)")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--hey-seconds", type=float, default=5.0)
    p.add_argument("--hey-reps", type=int, default=2)
    p.add_argument("--floors", action="store_true",
                   help="also measure httpservers' raw uvicorn and bare httptools echoes (no Lambda, no worker)")
    p.add_argument("--no-hey", action="store_true")
    p.add_argument("--profile", type=float, default=0, metavar="SECONDS",
                   help="then record the daemon with py-spy under the HTTP load, twice (Python, native)")
    p.add_argument("--install", action="store_true", help="npm-install serverless-offline and go-install hey if missing")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--name", default="", help="file name stem (default <date>-vm-lambda-http)")
    a = p.parse_args(argv)
    wanted = a.series.split(",")
    notes: list[str] = []

    def note(msg: str) -> None:
        notes.append(msg)
        print(msg, file=sys.stderr)

    load0 = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    monitor = LoadMonitor()
    series: list[Series] = []
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="fnhost-lambda-http-") as tmp:
        http = "fnhost-http" in wanted and fnhost_http_supported()
        if "fnhost-http" in wanted and not http:
            note("fnhost-http: this fnhost has no --http-listen yet; not measured")
        if http or "fnhost-grpc" in wanted:
            daemon, port = start_fnhost(stack, Path(tmp), a.workers, http)
            if http:
                series.append(Series("fnhost-http", daemon.pid, http=("127.0.0.1", port)))
            if "fnhost-grpc" in wanted:
                series.append(Series("fnhost-grpc", daemon.pid, grpc_address=daemon.address))
        if "sls-offline" in wanted:
            if not slsoffline.installed() and a.install:
                slsoffline.install()
            sls = slsoffline.SlsOffline()
            stack.callback(sls.stop)
            try:
                sls.start()
                series.insert(1 if http else 0, Series("sls-offline", sls.node_pid(), http=("127.0.0.1", sls.port)))
            except slsoffline.SlsUnavailable as exc:
                note(f"sls-offline: {exc}")
        if a.floors:
            from .httpservers import ServerProcess

            for name, kind in FLOORS.items():
                server = ServerProcess(kind)
                stack.callback(server.stop)
                series.append(Series(name, server.proc.pid, http=("127.0.0.1", server.port), path="/echo"))
        if not series:
            note("nothing to measure")
            return 1
        monitor.mark("start")
        prof = measure(series, a, note)
        monitor.mark("measure (and profile)")
        hey_out = {} if a.no_hey else run_hey(series, a, note)
        monitor.mark("hey")
    summary = {}
    for s in series:
        summary[s.name] = series_summary(s.raw)
        summary[s.name]["sequential_64KiB"] = series_summary({**s.raw, "sequential": s.raw["sequential_64KiB"]})["sequential"]
        for kind in ("server", "children", "client"):
            cpu = sorted(s.raw[f"{kind}_cpu_us"])
            summary[s.name][f"{kind}_cpu_per_call_us"] = round(cpu[len(cpu) // 2], 1) if cpu else None
    raw = {s.name: s.raw for s in series}
    ratios = ratio_rows(raw, "sls-offline", extra=True) if "sls-offline" in raw else {"values": {}, "markdown": []}
    params = {k: getattr(a, k) for k in ("reps", "calls", "calls_64k", "clients", "procs", "workers", "seconds",
                                         "hey_seconds", "hey_reps")}
    params |= {"loadavg_before": load0, "loadavg_after": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
               "serverless": slsoffline.SLS_VERSION, "serverless_offline": slsoffline.OFFLINE_VERSION}
    result = {"params": params, "summary": summary, "ratios": ratios["values"], "ratio_markdown": ratios["markdown"],
              "hey": hey_out, "profile": prof, "outside_load": monitor.summary(), "notes": notes}
    md = markdown(result)
    write_report(a.out, a.name or f"{today()}-vm-lambda-http", result, md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
