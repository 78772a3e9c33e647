"""Chaos under load (issue #10): ``python -m bench.chaos [--seconds 60] [--clients 32] [--kill-every 0.1]``.

One daemon (``fnhost.testing.harness.Daemon``) and the functions of tests/hostile/functions: an
echo (max_concurrency 8) that ``--clients`` tasks invoke in a loop while a chaos thread SIGKILLs
one of its workers at random every ``--kill-every`` seconds; and, each invoked in a loop of its
own, a printer that floods stdout until its 1 s timeout, a leaker that allocates until it is
killed at 128 MB, and a sleeper that ignores SIGTERM past its 1 s timeout. A health checker
(grpc.health.v1) asks every 50 ms.

What must hold, checked on every answer: each call gets exactly one answer, and the right one —
the echo its own payload back, or ``Runtime.ExitError`` / ``Runtime.InvalidResponse`` (its worker
was killed) or ``TooManyRequestsException``; the printer and the sleeper ``Sandbox.Timeout``; the
leaker ``Runtime.OutOfMemory`` — within the function's timeout + the queue wait + 2 s (the call's
gRPC deadline: passing it is a hang); no request id answers twice; the daemon counted as many
invocations as the clients made; the health check always answers SERVING (how fast is reported
against the issue's 100 ms); and once the daemon is stopped, no process of it survives.

The load runs in a client process of its own (``python -m bench.chaos --client-job JSON``: every
answer as JSON on stdout), so the health checker and the killer, threads of this process, time
the daemon and not a client's GIL. tests/hostile/test_chaos.py runs the same ``run()`` for a few
seconds and asserts the invariants; this writes <date>-<host>-chaos.json/.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import watch
from .functions import ROOT, child_env
from .watch import (
    HEALTH_INTERVAL_S,
    HealthProbe,
    ResourceSampler,
    WorkerWatch,
    collect,
    log_findings,
    log_markdown,
    ms,
    release,
    start_clients,
    stop_clients,
    summary_ms,
    wait_for_start,
)

FUNCTIONS = ROOT / "tests" / "hostile" / "functions"
RESULTS = ROOT / "bench" / "results"
HANG_MARGIN_S = 2.0  # an answer later than timeout + queue wait + this is a hang
HEALTH_BOUND_S = 0.1  # the bound on a health check's answer
CONFIG = "[daemon]\nqueue_timeout_s = {queue}\ninit_timeout_s = 10.0\nkill_grace_s = 0.5\n"


@dataclass(frozen=True, slots=True)
class Settings:
    seconds: float = 60.0
    clients: int = 32
    kill_every_s: float = 0.1  # 0: no kills
    spare_younger_than_s: float = 0.0  # kill only workers at least this old (0: any, starting ones too)
    echo_concurrency: int = 8
    queue_timeout_s: float = 1.0
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class Role:
    """One function of the run: how it is deployed, invoked, and what its answers may be."""

    name: str
    options: dict[str, int]
    payload: dict[str, Any] | None  # None: numbered payloads the echo must return as sent
    expected: frozenset[str]
    tasks: int

    def bound_s(self, settings: Settings) -> float:
        return self.options["timeout_s"] + settings.queue_timeout_s + HANG_MARGIN_S


def roles(settings: Settings) -> list[Role]:
    return [
        Role("echo", {"timeout_s": 3, "max_concurrency": settings.echo_concurrency}, None,
             frozenset({"success", "Runtime.ExitError", "Runtime.InvalidResponse", "TooManyRequestsException"}),
             settings.clients),
        Role("printer", {"timeout_s": 1}, {}, frozenset({"Sandbox.Timeout"}), 1),
        Role("leaker", {"timeout_s": 5, "memory_mb": 128}, {}, frozenset({"Runtime.OutOfMemory"}), 1),
        Role("sleeper", {"timeout_s": 1}, {"ignore_sigterm": True}, frozenset({"Sandbox.Timeout"}), 1),
    ]


# --- the client process ---------------------------------------------------------------------------


def _label(result: Any, sent: dict[str, Any]) -> tuple[str, str]:
    if not result.function_error:
        try:
            same = json.loads(result.payload) == sent
        except ValueError:
            same = False
        return ("success", "") if same else ("wrong answer", result.payload[:200].decode(errors="replace"))
    try:
        return str(json.loads(result.payload)["errorType"]), result.payload[:300].decode(errors="replace")
    except (ValueError, KeyError, TypeError):
        return "unreadable error", result.payload[:200].decode(errors="replace")


async def _client_job(job: dict[str, Any]) -> dict[str, Any]:
    import grpc
    from fnhost import errors
    from fnhost.client import AsyncClient

    mono = time.monotonic
    records: list[list[Any]] = []  # [role, started (s after start), latency (s), label]
    problems: list[str] = []
    seen_ids: set[str] = set()
    duplicates = 0

    async def loop(role: dict[str, Any], client: AsyncClient, k: int) -> None:
        nonlocal duplicates
        i = 0
        while (t0 := mono()) < end:
            sent = role["payload"] if role["payload"] is not None else {"c": k, "i": i}
            i += 1
            try:
                result = await client.invoke(role["function"], json.dumps(sent).encode())
            except errors.FnhostError as exc:
                label = "hang" if exc.status == grpc.StatusCode.DEADLINE_EXCEEDED else exc.code
                detail = exc.message
            else:
                label, detail = _label(result, sent)
                duplicates += result.request_id in seen_ids
                seen_ids.add(result.request_id)
            records.append([role["role"], round(t0 - start, 4), round(mono() - t0, 5), label])
            if label not in role["expected"] and len(problems) < 50:
                problems.append(f"{role['role']}: {label}: {detail[:300]}")

    clients = [AsyncClient(job["address"], timeout=r["bound_s"]) for r in job["roles"]]
    start = wait_for_start()
    end = start + job["seconds"]
    await asyncio.sleep(max(start - mono(), 0))
    try:
        await asyncio.gather(*(loop(r, c, k) for r, c in zip(job["roles"], clients) for k in range(r["tasks"])))
    finally:
        for c in clients:
            await c.close()
    return {"records": records, "problems": problems, "duplicates": duplicates}


def _client_main(job: str) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    json.dump(asyncio.run(_client_job(json.loads(job))), sys.stdout)
    return 0


# --- the run -------------------------------------------------------------------------------------


def run(settings: Settings, out_dir: Path | None = None, log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """One chaos run; returns the results (written to ``out_dir`` as JSON and Markdown if given).

    Raises DaemonFailed when the daemon does not start; everything started is stopped either way.
    """
    from fnhost.testing.fixtures import readable_copy

    from .daemon import Daemon
    from .machine import LoadMonitor, machine_info, source_info

    rng = random.Random(settings.seed)
    monitor = LoadMonitor()
    monitor.mark("start")
    mode = "chaos" if not settings.spare_younger_than_s else "chaos-spare-young"
    r: dict[str, Any] = {"schema": "fnhost-chaos/1", "mode": mode, "started_at": watch.now(),
                         "settings": asdict(settings), "machine": machine_info(), "source": source_info(str(ROOT))}
    work = Path(tempfile.mkdtemp(prefix="fnhc-", dir="/tmp"))  # short: unix socket paths ≤ 108 bytes
    os.chmod(work, 0o711)  # workers of their own uids must reach the state directory and the code
    daemon = Daemon(work / "state", config=CONFIG.format(queue=settings.queue_timeout_s), base_env=child_env())
    observers: list[Any] = []
    clients: list[subprocess.Popen[str]] = []
    try:
        daemon.start()
        code = readable_copy(work / "functions", FUNCTIONS)
        the_roles = roles(settings)
        names = {role.name: f"chaos-{role.name}-{work.name[5:]}" for role in the_roles}  # unique on the host
        with daemon.client() as client:
            for role in the_roles:
                client.create_function(names[role.name], runtime="python", handler="app.handler",
                                       code=str(code / role.name), **role.options)
            warm = client.invoke(names["echo"], b'{"warm": 1}')  # the first worker, outside the chaos
            if warm.function_error:
                raise RuntimeError(f"the echo does not work: {warm.payload[:300]!r}")
        job = {"address": daemon.address, "seconds": settings.seconds,
               "roles": [{"role": role.name, "function": names[role.name], "payload": role.payload,
                          "expected": sorted(role.expected), "tasks": role.tasks, "bound_s": role.bound_s(settings)}
                         for role in the_roles]}
        clients = start_clients([[sys.executable, "-m", "bench.chaos", "--client-job", json.dumps(job)]])
        start = time.monotonic() + 1.0  # the health probe connects meanwhile
        chaos = WorkerWatch(daemon.pid, {n: role for role, n in names.items()}, "echo", settings.kill_every_s, rng,
                            start, settings.spare_younger_than_s)
        observers = [HealthProbe(daemon.address, start), ResourceSampler(daemon.pid, start), chaos]
        for o in observers:
            o.start()
        observers[0].ready.wait(10)
        log(f"load for {settings.seconds:g} s: {settings.clients} echo clients, a kill every "
            f"{settings.kill_every_s:g} s, printer, leaker, sleeper")
        monitor.mark("setup")
        release(clients, start)
        load, missing = _answers(clients, settings.seconds + max(x.bound_s(settings) for x in the_roles) + 30)
        for o in observers:
            o.stop()
        monitor.mark("load")
        with daemon.client() as client:
            served = {f.function_name: f.invocations for f in client.stats().functions}
        r["daemon_exit"] = daemon.stop(timeout=30.0)
        r["daemon_log"] = log_findings(daemon.log_path)
        r["leftovers"] = daemon.leftovers
        r["survivors"] = chaos.survivors()
        r["function_uids"] = sorted({uid for role, uid, _ in chaos.seen.values() if role})
        monitor.mark("stop")
        served = {role: served.get(n, 0) - (role == "echo") for role, n in names.items()}  # less the warm-up
        r.update(analyse(settings, the_roles, load, missing, served, chaos, observers[0], observers[1], r))
    finally:
        try:
            stop_clients(clients)
            for o in observers:
                if o.is_alive():
                    o.stop()
        finally:  # the daemon is stopped whatever went wrong above
            daemon.stop(timeout=30.0)
            shutil.rmtree(work, ignore_errors=True)
    r["finished_at"] = watch.now()
    r["outside_load"] = monitor.summary()
    if out_dir is not None:
        r["files"] = [str(p) for p in watch.write_report(r, out_dir, markdown)]
    return r


def _answers(clients: list[subprocess.Popen[str]], timeout: float) -> tuple[dict[str, Any], str | None]:
    """The client process's answers, or an empty load and why it has none (a missing answer)."""
    try:
        return collect(clients, timeout)[0], None
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        stop_clients(clients)
        return {"records": [], "problems": [], "duplicates": 0}, str(exc)


def analyse(settings: Settings, the_roles: list[Role], load: dict[str, Any], missing: str | None,
            served: dict[str, int], chaos: WorkerWatch, health: HealthProbe, sampler: ResourceSampler,
            stopped: dict[str, Any]) -> dict[str, Any]:
    """Outcomes by function, the invariants' verdicts, health figures and a per-second timeline."""
    seconds = settings.seconds
    by_role = {role.name: role for role in the_roles}
    lat: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    wrong: Counter[str] = Counter()
    late: Counter[str] = Counter()
    for role, _, latency, label in load["records"]:
        lat[role][label].append(latency)
        if label not in by_role[role].expected:
            wrong[f"{role}: {label}"] += 1
        elif latency > by_role[role].bound_s(settings):
            late[role] += 1
    calls = {role.name: sum(len(v) for v in lat[role.name].values()) for role in the_roles}
    violations = [f"{n} answers of {what} (not an answer it may get)" for what, n in sorted(wrong.items())]
    violations += [f"{n} {role} answers came after their bound" for role, n in late.items()]
    violations += [f"{role}: the clients made {calls[role]} calls, the daemon counted {served[role]} invocations"
                   for role in calls if calls[role] != served[role]]
    if missing:
        violations.append(f"missing answers: {missing}")
    if load["duplicates"]:
        violations.append(f"{load['duplicates']} request ids answered more than once")
    bad_health = [s for s in health.samples if not s[2]]
    if bad_health:
        violations.append(f"{len(bad_health)} health checks did not answer SERVING ({health.first_error})")
    if stopped["daemon_exit"] != 0:
        violations.append(f"the daemon exited with status {stopped['daemon_exit']} on SIGTERM")
    if stopped["leftovers"]:
        violations.append(f"{len(stopped['leftovers'])} workers outlived the daemon (killed by the harness)")
    violations += [f"outlived the run: {s}" for s in stopped["survivors"]]
    health_s = [s[1] for s in health.samples]
    hs = summary_ms(health_s)
    hs["over_bound"] = sum(1 for v in health_s if v > HEALTH_BOUND_S)
    hs["not_serving"] = len(bad_health)
    hs["bound_ms"] = HEALTH_BOUND_S * 1000
    workers_seen = Counter(role or "daemon-side (sandbox)" for role, _, _ in chaos.seen.values())
    return {
        "ok": not violations,
        "violations": violations,
        "problems": load["problems"],
        "calls": {role: {"made": calls[role], "served": served[role]} for role in calls},
        "late": dict(late), "duplicates": load["duplicates"], "missing": missing,
        "outcomes": {role: {label: summary_ms(v, seconds) for label, v in sorted(labels.items())}
                     for role, labels in lat.items()},
        "health": hs,
        "kills": {"sent": len(chaos.kills), "per_s": round(len(chaos.kills) / seconds, 1),
                  "workers_seen": dict(workers_seen)},
        "daemon_resources": sampler.samples,
        "timeline": _timeline(seconds, load["records"], chaos.kills, health.samples, health.t0),
    }


def _timeline(seconds: float, records: list[list[Any]], kills: list[float], health: list[tuple[float, float, bool]],
              t0: float) -> list[dict[str, Any]]:
    n = math.ceil(seconds)
    rows = [{"s": i, "answers": Counter(), "kills": 0, "health_s": []} for i in range(n)]
    for role, started, _, label in records:
        if 0 <= started < n:
            rows[int(started)]["answers"][f"{role}: {label}"] += 1
    for k in kills:
        if 0 <= k - t0 < n:
            rows[int(k - t0)]["kills"] += 1
    for t, latency, _ in health:
        if 0 <= t < n:
            rows[int(t)]["health_s"].append(latency)
    for row in rows:
        h = sorted(row.pop("health_s"))
        row["answers"] = dict(row["answers"])
        row["health_p50_ms"], row["health_max_ms"] = ms(h, 50), ms(h, 100)
    return rows


def _spared(s: dict[str, Any]) -> str:
    age = s.get("spare_younger_than_s")
    return f" at least {age:g} s old (younger ones, likely still starting, are spared)" if age else ""


def markdown(r: dict[str, Any]) -> str:
    s, h, m = r["settings"], r["health"], r["machine"]
    ol = next((x for x in r.get("outside_load", {}).get("phases", []) if x["phase"] == "load"), {})
    out = [f"# fnhost chaos under load — {r['started_at'][:16]} UTC, {m['host']}", "",
           f"{s['seconds']:g} s; {s['clients']} clients invoking an echo (max_concurrency {s['echo_concurrency']}) "
           f"while one of its workers{_spared(s)} is SIGKILLed every {s['kill_every_s']:g} s; a printer (1 s "
           f"timeout), a "
           f"leaker (128 MB) and a sleeper ignoring SIGTERM (1 s timeout) invoked in a loop each; "
           f"queue_timeout_s {s['queue_timeout_s']:g}. Machine: {m['logical_cpus']} CPUs ({m['cpu_model']}); "
           f"outside load during the run: {ol.get('outside_share', 0) * 100:.0f} % of the machine, steal "
           f"{ol.get('steal_share', 0) * 100:.0f} %, loadavg {ol.get('loadavg_end')}.", "",
           "**Invariants: " + ("all held.**" if r["ok"] else "VIOLATED:**"), ""]
    out += [f"- {v}" for v in r["violations"]] + ([""] if r["violations"] else [])
    out += [f"Health checks (every {HEALTH_INTERVAL_S * 1000:.0f} ms): {h['n']:,}, p50 {watch.cell(h['p50_ms'])} ms, "
            f"p99 {watch.cell(h['p99_ms'])} ms, worst {watch.cell(h['max_ms'])} ms; {h['over_bound']} over "
            f"{h['bound_ms']:.0f} ms; {h['not_serving']} not SERVING.",
            f"Kills: {r['kills']['sent']:,} ({r['kills']['per_s']}/s); workers seen: {r['kills']['workers_seen']}. "
            f"After the daemon stopped (exit {r['daemon_exit']}): {len(r['leftovers'])} workers had to be "
            f"killed by the harness, {len(r['survivors'])} processes of the run alive.", "",
            "| function | answer | count | per s | p50 ms | p99 ms | max ms |", "|---|---|---|---|---|---|---|"]
    for role, labels in r["outcomes"].items():
        for label, x in labels.items():
            out.append(f"| {role} | {label} | {x['n']:,} | {watch.cell(x['per_s'])} | {watch.cell(x['p50_ms'])} | "
                       f"{watch.cell(x['p99_ms'])} | {watch.cell(x['max_ms'])} |")
    res = r["daemon_resources"]
    if res:
        out += ["", "Daemon, first → last sample (max): " + "; ".join(
            f"{k} {res[0][k]:g} → {res[-1][k]:g} ({max(x[k] for x in res):g})"
            for k in ("rss_mib", "fds", "threads", "workers")) + "."]
    out += ["", "## Per second", "", "| s | echo success | echo errors | throttled | other answers | kills | "
            "health p50 ms | health max ms |", "|---|---|---|---|---|---|---|---|"]
    for row in r["timeline"]:
        a = row["answers"]
        ok = a.get("echo: success", 0)
        throttled = a.get("echo: TooManyRequestsException", 0)
        errs = sum(v for k, v in a.items() if k.startswith("echo: ")) - ok - throttled
        other = ", ".join(f"{k} {v}" for k, v in sorted(a.items()) if not k.startswith("echo: "))
        out.append(f"| {row['s']} | {ok} | {errs} | {throttled} | {other or '–'} | {row['kills']} | "
                   f"{watch.cell(row['health_p50_ms'])} | {watch.cell(row['health_max_ms'])} |")
    out += log_markdown(r["daemon_log"])
    if r["problems"]:
        out += ["", "## First unexpected answers", ""] + [f"- `{p[:300]}`" for p in r["problems"][:20]]
    return "\n".join(out) + "\n"


# --- command line --------------------------------------------------------------------------------


class _Interrupted(Exception):
    """SIGTERM: unwinds like Ctrl-C, so everything started is stopped."""


def main(argv: list[str] | None = None) -> int:
    """0: the invariants held; 1: a report was written and shows violations; 2: no report; 130: interrupted."""
    p = argparse.ArgumentParser(prog="python -m bench.chaos", description=(
        "Chaos under load: clients invoke an echo whose workers are SIGKILLed at random while hostile functions "
        "flood, leak and hang; every answer is checked. Writes <date>-<host>-chaos.json/.md."))
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--clients", type=int, default=32, help="echo clients invoking in a loop")
    p.add_argument("--kill-every", type=float, default=0.1, metavar="SECONDS", help="0: no kills")
    p.add_argument("--spare-younger-than", type=float, default=0.0, metavar="SECONDS",
                   help="kill only echo workers at least this old, sparing those still starting (default: any)")
    p.add_argument("--echo-concurrency", type=int, default=8)
    p.add_argument("--queue-timeout", type=float, default=1.0, help="the daemon's queue_timeout_s")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--client-job", metavar="JSON", help=argparse.SUPPRESS)  # the client process's job
    args = p.parse_args(argv)
    if args.client_job:
        return _client_main(args.client_job)
    from fnhost.observability import logs

    logs.configure("warning")

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def on_sigterm(signum: int, frame: Any) -> None:
        raise _Interrupted

    signal.signal(signal.SIGTERM, on_sigterm)
    settings = Settings(args.seconds, args.clients, args.kill_every, args.spare_younger_than, args.echo_concurrency,
                        args.queue_timeout, args.seed)
    try:
        r = run(settings, args.out, say)
    except (KeyboardInterrupt, _Interrupted):
        say("interrupted: everything the run started has been stopped; no report written")
        return 130
    except Exception as exc:
        say(f"the chaos run could not run: {type(exc).__name__}: {exc}")
        return 2
    h = r["health"]
    say(f"wrote {' and '.join(r['files'])}")
    say(f"invariants: {'held' if r['ok'] else 'VIOLATED: ' + '; '.join(r['violations'])}; health p99 "
        f"{h['p99_ms']} ms, worst {h['max_ms']} ms; kills {r['kills']['sent']}")
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
