"""fnhost's function URLs against serverless-offline's API Gateway emulation: ``python -m bench.function_urls``.

The same Python handler, written for API Gateway's REST proxy event (serverless' ``http`` events),
served two ways and measured in the same run, interleaved within every repetition:

- ``fnhost-url``: a function URL with payload format 1.0 on ``--url-listen 127.0.0.1:0``, reached
  by path (``/web/bench``), the function at ``--workers`` warm workers (min_warm) so no cold start
  is measured;
- ``sls-http``: serverless-offline 13.10.1 (serverless 3.40.0) serving it as an ``http`` event
  (``/{proxy+}``, any method) on its HTTP port, ``/dev/bench`` (``slsoffline.py``), its handler
  processes warmed by ``--clients`` calls at once first.

Both with ``httpload.py``'s keep-alive ``http.client`` client: sequential GET and POST (100 B JSON)
p50/p99 (``--calls``), then ``--clients`` clients over ``--procs`` processes for ``--seconds``
(POST): requests/s and p99 under load. Ratios are per repetition. The issue's targets: p50 ≤ 0.5 ×
serverless-offline's (GET and POST), requests/s ≥ 2 ×, p99 under load ≤ 1 ×.
Writes ``<out>/<date>-vm-function-urls.{md,json}``; nothing is asserted.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import slsoffline
from .daemon import bench_daemon
from .functions import ROOT, child_env, json_payload
from .httpload import HttpPool, HttpTarget
from .report_http import today, write_report
from .stats import percentile

FUNCTION = "web"
# The handler under test: answers the request's body (POST) or a fixed JSON (GET), as a REST proxy result.
APP = '''\
import json

OK = json.dumps({"ok": True})


def web(event, context):
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "body": event.get("body") or OK}
'''
SERVERLESS_YML = """\
service: fnhost-bench-web
frameworkVersion: "3"
provider:
  name: aws
  runtime: python3.11
  region: us-east-1
  stage: dev
  memorySize: 128
  timeout: 30
functions:
  web:
    handler: app.web
    events:
      - http:
          path: /{proxy+}
          method: any
plugins:
  - serverless-offline
"""
GET_ANSWER = b'{"ok": true}'
TARGETS = (("get_p50", "≤", 0.5), ("post_p50", "≤", 0.5), ("rps", "≥", 2.0), ("loaded_p99", "≤", 1.0))


def start_fnhost(stack: ExitStack, work: Path, app: Path, workers: int) -> tuple[str, int]:
    """A bench daemon serving ``web`` at a 1.0 function URL; (host, port). Raises RuntimeError
    when its workers are not warm within 120 s."""
    work.chmod(0o711)
    daemon = bench_daemon(work)
    stack.callback(daemon.stop)
    daemon.start()
    code = work / "code"
    code.mkdir(mode=0o755)
    (code / "app.py").write_text(app.read_text())
    (code / "app.py").chmod(0o644)
    with daemon.client() as client:
        client.create_function(FUNCTION, runtime="python", handler="app.web", code=str(code), min_warm=workers,
                               max_concurrency=workers)
        client.create_url(FUNCTION, payload_format="1.0")
        deadline = time.monotonic() + 120
        while {f.function_name: f for f in client.stats().functions}[FUNCTION].workers.get("idle", 0) < workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"not {workers} warm workers after 120 s")
            time.sleep(0.1)
    url = urlsplit(daemon.url_url)
    assert url.hostname and url.port
    return url.hostname, url.port


def _wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {port}")


def _p(values: list[int], q: float) -> float:
    return percentile(sorted(values), q) / 1000 if values else 0.0  # ns → µs


def measure(targets: dict[str, tuple[str, int, str]], a: argparse.Namespace) -> dict[str, Any]:
    body = json_payload(100)
    raw: dict[str, dict[str, list[Any]]] = {k: {"get": [], "post": [], "rps": [], "loaded": [], "errors": []}
                                            for k in targets}

    def target(name: str, method: str) -> HttpTarget:
        host, port, path = targets[name]
        return HttpTarget(name, host, port, path, b"" if method == "GET" else body,
                          expect=GET_ANSWER if method == "GET" else body, method=method)

    with HttpPool(a.procs, str(ROOT), child_env()) as hp:
        for name in targets:
            hp.warm(target(name, "POST"), a.clients)
        for rep in range(a.reps):
            order = list(targets) if rep % 2 == 0 else list(reversed(targets))
            for name in order:
                raw[name]["get"].append(hp.sequential(target(name, "GET"), a.calls))
                raw[name]["post"].append(hp.sequential(target(name, "POST"), a.calls))
            for name in order:
                w = hp.window(target(name, "POST"), a.clients, a.seconds)
                raw[name]["rps"].append(w.throughput)
                raw[name]["loaded"].append(w.latencies_ns)
                raw[name]["errors"].append(w.errors)
    return raw


def summarize(raw: dict[str, dict[str, list[Any]]]) -> tuple[dict[str, Any], dict[str, Any]]:
    summary = {}
    for name, r in raw.items():
        summary[name] = {
            "get_p50_us": round(statistics.median(_p(x, 50) for x in r["get"]), 1),
            "get_p99_us": round(statistics.median(_p(x, 99) for x in r["get"]), 1),
            "post_p50_us": round(statistics.median(_p(x, 50) for x in r["post"]), 1),
            "post_p99_us": round(statistics.median(_p(x, 99) for x in r["post"]), 1),
            "rps": round(statistics.median(r["rps"]), 1),
            "loaded_p50_us": round(statistics.median(_p(x, 50) for x in r["loaded"]), 1),
            "loaded_p99_us": round(statistics.median(_p(x, 99) for x in r["loaded"]), 1),
            "errors": sum(r["errors"]),
        }
    ratios: dict[str, Any] = {}
    if "fnhost-url" in raw and "sls-http" in raw:
        f, s = raw["fnhost-url"], raw["sls-http"]
        per = {
            "get_p50": [_p(x, 50) / _p(y, 50) for x, y in zip(f["get"], s["get"], strict=True)],
            "post_p50": [_p(x, 50) / _p(y, 50) for x, y in zip(f["post"], s["post"], strict=True)],
            "rps": [x / y for x, y in zip(f["rps"], s["rps"], strict=True) if y],
            "loaded_p99": [_p(x, 99) / _p(y, 99) for x, y in zip(f["loaded"], s["loaded"], strict=True)],
        }
        ratios = {k: {"median": round(statistics.median(v), 3), "min": round(min(v), 3), "max": round(max(v), 3)}
                  for k, v in per.items() if v}
    return summary, ratios


def markdown(a: argparse.Namespace, summary: dict[str, Any], ratios: dict[str, Any], notes: list[str]) -> str:
    lines = [f"# Function URLs against serverless-offline's `http` events ({today()}, `python -m bench.function_urls`)",
             "", f"The same Python handler (REST proxy result; fnhost: a payload format 1.0 URL at {a.workers} warm "
             f"workers). {a.reps} repetitions interleaved; sequential {a.calls} GET and {a.calls} POST (100 B JSON) "
             f"on one keep-alive `http.client` connection; load: POST, {a.clients} clients over {a.procs} client "
             f"processes for {a.seconds:g} s. Load average before/after: {a.load_before} / {a.load_after}.", "",
             "| series | GET p50 µs | GET p99 µs | POST p50 µs | POST p99 µs | req/s (16 clients) | "
             "p50 / p99 under load µs | errors |", "|---|---|---|---|---|---|---|---|"]
    for k, s in summary.items():
        lines.append(f"| {k} | {s['get_p50_us']:,.0f} | {s['get_p99_us']:,.0f} | {s['post_p50_us']:,.0f} | "
                     f"{s['post_p99_us']:,.0f} | {s['rps']:,.0f} | {s['loaded_p50_us']:,.0f} / "
                     f"{s['loaded_p99_us']:,.0f} | {s['errors']} |")
    if ratios:
        lines += ["", "## fnhost-url ÷ sls-http (per repetition: median, range) against the issue's targets", ""]
        for fig, op, lim in TARGETS:
            r = ratios.get(fig)
            if r is None:
                continue
            met = r["median"] <= lim if op == "≤" else r["median"] >= lim
            lines.append(f"- {fig} {op} {lim:g}: {r['median']:.2f} ({r['min']:.2f}–{r['max']:.2f}) → "
                         f"**{'met' if met else 'missed'}**")
    if notes:
        lines += ["", "## Notes", "", *(f"- {n}" for n in notes)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.function_urls", description=__doc__.split("\n\n")[0])
    p.add_argument("--series", default="fnhost-url,sls-http", help="which to measure (comma-separated)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--procs", type=int, default=4)
    p.add_argument("--workers", type=int, default=16, help="fnhost's warm workers (min_warm)")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--name", default="", help="file name stem (default <date>-vm-function-urls)")
    a = p.parse_args(argv)
    notes: list[str] = []
    a.load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="fnhost-function-urls-") as tmp:
        work = Path(tmp)
        app = work / "app.py"
        app.write_text(APP)
        targets: dict[str, tuple[str, int, str]] = {}
        work.chmod(0o711)  # the workers' own users pass through to the daemon's state and the code
        (work / "fnhost").mkdir()
        host, port = start_fnhost(stack, work / "fnhost", app, a.workers)
        targets["fnhost-url"] = (host, port, f"/{FUNCTION}/bench")
        if "sls-http" in a.series.split(","):
            sls = slsoffline.SlsOffline(yml=SERVERLESS_YML, app=app)
            stack.callback(sls.stop)
            try:
                sls.start()
                _wait_port(sls.http_port)
                targets["sls-http"] = ("127.0.0.1", sls.http_port, "/dev/bench")
            except slsoffline.SlsUnavailable as exc:
                notes.append(f"sls-http: {exc}")
        raw = measure(targets, a)
    a.load_after = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    summary, ratios = summarize(raw)
    md = markdown(a, summary, ratios, notes)
    write_report(a.out, a.name or f"{today()}-vm-function-urls", {
        "params": {k: v for k, v in vars(a).items() if k != "out"}, "raw_seq_n": {k: len(v["get"]) for k, v in raw.items()}, "summary": summary, "ratios": ratios,
        "raw_rps": {k: v["rps"] for k, v in raw.items()}, "notes": notes}, md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
