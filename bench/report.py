"""The run's outputs: <date>-<host>[-mode].json, the Markdown summary beside it, LATEST.md.

The JSON holds everything (CDFs as 101 percentiles, so plots can be redrawn from it alone); the
Markdown is what a person reads. Full runs update LATEST.md (a copy of their summary, so relative
links to the plots keep working); quick and smoke runs carry their mode in the file name and
leave LATEST.md alone.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from .derived import _get

Lines = list[str]


def stem(results: dict[str, Any]) -> str:
    date = datetime.fromisoformat(results["started_at"]).strftime("%Y-%m-%d")
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", results["machine"]["host"])
    suffix = "" if results["mode"] == "full" else f"-{results['mode']}"
    return f"{date}-{host}{suffix}"


def _f(v: Any, digits: int = 1) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _spread(s: Any, unit: str, digits: int = 1) -> str:
    if not s or not s.get("n"):
        return "—"
    return f"{_f(s[f'median_{unit}'], digits)} ({_f(s[f'min_{unit}'], digits)}–{_f(s[f'max_{unit}'], digits)})"


def _row(*cells: Any) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _header(*names: str) -> Lines:
    return [_row(*names), _row(*["---"] * len(names))]


def _machine(r: dict[str, Any]) -> Lines:
    m, ol = r["machine"], r.get("outside_load") or {}
    whole = ol.get("whole_run") or {}
    tools = ", ".join(f"{rt} {t.get('version')}" for rt, t in (m.get("toolchains") or {}).items())
    out = [
        f"Machine: {m['logical_cpus']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, Linux {m['kernel']}; "
        f"Python {m['python']}, grpcio {m['packages'].get('grpcio')}, protobuf {m['packages'].get('protobuf')}.  ",
        f"Toolchains: {tools}.  ",
        f"Outside load: loadavg {ol.get('loadavg_before')} before, {ol.get('loadavg_after')} after; other "
        f"processes used {_f((whole.get('outside_share') or 0) * 100)} % of the machine's CPU during the run, "
        f"steal {_f((whole.get('steal_share') or 0) * 100)} % (per phase: `outside_load` in the JSON).",
        "",
    ]
    src = r.get("source") or {}
    if src.get("commit"):
        dirty = len(src.get("uncommitted_changes") or [])
        out += [f"fnhost measured: commit {src['commit'][:12]}"
                + (f" plus {dirty} uncommitted file(s) under daemon/, runtimes/, protos/" if dirty else "")
                + f" (package at {src.get('fnhost_package')}).", ""]
    skipped = (r.get("runtimes") or {}).get("skipped") or {}
    if skipped:
        out += ["Runtimes not measured: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()), ""]
    return out


def _headline(d: dict[str, Any]) -> Lines:
    cost, tput, sc, st, ref = (d["own_cost_python_100B"], d["throughput_ratio"], d["scale_ratio"],
                               d["stream"], d["vs_reference"])
    per_rep = ", ".join(_f(v) for v in cost.get("per_repetition_us", [])) or "—"
    spread = cost.get("spread_us") or {}
    inputs = cost.get("inputs_p50_us") or {}
    out = ["## Issue 4's targets, as measured (figures, not assertions)", "",
           *_header("figure", "value", "issue 4 target")]
    out.append(_row(
        "fnhost's own cost: Python warm p50 − (gRPC floor p50 + worker-hop p50), 100 B, "
        "per repetition, median of the repetitions",
        f"**{_f(cost.get('us'))} µs** (IQR {_f(spread.get('q1'))}–{_f(spread.get('q3'))}; per repetition: "
        f"{per_rep}; difference of the pooled p50s, for comparison: {_f(cost.get('pooled_difference_us'))} = "
        f"{_f(inputs.get('fnhost'))} − ({_f(inputs.get('grpc_floor'))} + {_f(inputs.get('worker_hop'))}))",
        "≤ 80 µs"))
    out.append(_row("throughput at 32 in flight ÷ gRPC floor's", f"**{_f(tput.get('at_32'), 3)}**", "≥ 0.8"))
    g = d.get("ghz_throughput_ratio")
    if g:
        rps = g["median_rps"]
        out.append(_row(f"same with ghz (Go client), {g['in_flight']} in flight",
                        f"**{_f(g['ratio'], 3)}** ({_f(rps.get('fnhost:python'), 0)} ÷ "
                        f"{_f(rps.get('grpc_floor'), 0)} req/s)", "≥ 0.8"))
    out.append(_row(
        f"scale: p50 at {_f(sc.get('functions'))} functions / {_f(sc.get('warm_workers'))} warm workers "
        "÷ one-worker p50",
        f"**{_f(sc.get('ratio_p50'), 3)}** (rotating over the warm functions: {_f(sc.get('ratio_p50_rotating'), 3)})",
        "≤ 1.2"))
    reason = f" ({st['reason']})" if st.get("reason") else ""
    out.append(_row("InvokeStream throughput ÷ unary floor throughput", f"{_f(st.get('throughput_ratio'), 3)}{reason}",
                    "≥ 2.5"))
    out.append(_row("InvokeStream sequential p50 ÷ unary floor p50", _f(st.get("p50_ratio"), 3), "≤ 0.5"))
    sf = d.get("stream_floor")
    if sf:
        out.append(_row("(bound) bare grpc.aio stream echo: throughput ÷ unary floor; ping-pong p50 ÷ unary p50",
                        f"{_f(sf['throughput_ratio_vs_unary_floor'], 3)}; {_f(sf['p50_ratio_vs_unary_floor'], 3)}",
                        "—"))
    out.append(_row(f"Python no-op warm p50 / best req/s (reference emulator: {ref['reference_p50_ms']} ms / "
                    f"{ref['reference_rps']:,})",
                    f"{_f(ref.get('python_p50_ms'), 3)} ms / {_f(ref.get('python_best_rps'), 0)}", "—"))
    return out + [""]


def _lat_row(name: str, payload: str, s: Any) -> str:
    if not s or not s.get("n"):
        return _row(name, payload, *["—"] * 5)
    runs = ", ".join(_f(v, 0) for v in s.get("run_p50_us", []))
    return _row(name, payload, _f(s["p50_us"]), _f(s["p90_us"]), _f(s["p99_us"]), _f(s["max_us"], 0), runs)


def _sequential(r: dict[str, Any], d: dict[str, Any]) -> Lines:
    out = ["## Warm invoke, one at a time (µs)", "",
           *_header("series", "payload", "p50", "p90", "p99", "max", "p50 of each repetition")]
    runtimes = list(r.get("fnhost", {}))
    for p in ("100B", "64KiB"):
        out.append(_lat_row("gRPC floor", p, _get(r, "floors", "grpc", "sequential", p)))
        out += [_lat_row(f"worker hop: {rt}", p, _get(r, "floors", "worker_hop", rt, p)) for rt in runtimes]
        out += [_lat_row(f"**fnhost: {rt}**", p, _get(r, "fnhost", rt, "sequential", p)) for rt in runtimes]
    costs = d.get("own_cost_by_runtime") or {}
    out += ["", "fnhost's own cost per runtime (p50 − both floors, per repetition; median), µs: " + "; ".join(
        f"{rt} {_f(v.get('100B'))} (100 B), {_f(v.get('64KiB'))} (64 KiB)" for rt, v in costs.items()), ""]
    return out


def _in_flight(r: dict[str, Any]) -> Lines:
    out = ["## Requests in flight (100 B; multi-process Python client)", "",
           *_header("series", "in flight", "req/s median (min–max)", "p50 µs", "p99 µs", "server CPU µs/call",
                    "workers' CPU µs/call", "client CPU µs/call", "errors")]
    series = [("gRPC floor", _get(r, "floors", "grpc", "in_flight"))]
    series += [(f"fnhost: {rt}", _get(r, "fnhost", rt, "in_flight")) for rt in r.get("fnhost", {})]
    for name, levels in series:
        for lvl, s in (levels or {}).items():
            lat = s.get("latency") or {}
            out.append(_row(name, lvl, _spread(s.get("throughput"), "rps", 0), _f(lat.get("p50_us")),
                            _f(lat.get("p99_us")), _f(_get(s, "server_cpu_per_call", "median_us")),
                            _f(_get(s, "worker_cpu_per_call", "median_us")),
                            _f(_get(s, "client_cpu_per_call", "median_us")), s.get("errors", 0)))
    g = r.get("ghz") or {}
    out += ["", "## ghz (external Go load generator)", ""]
    if not g.get("measured"):
        return out + [f"Not measured: {g.get('reason', 'phase skipped')}.", ""]
    out += [f"ghz {g.get('version') or ''}, {g['in_flight']} in flight, one connection, {g['duration_s']} s per run:",
            "", *_header("target", "req/s per run", "p50 µs", "p99 µs", "errors")]
    for name, runs in g["runs"].items():
        out.append(_row(name, ", ".join(_f(x["rps"], 0) for x in runs), ", ".join(_f(x["p50_us"]) for x in runs),
                        ", ".join(_f(x["p99_us"]) for x in runs), sum(sum(x["errors"].values()) for x in runs)))
    return out + [""]


def _stream(r: dict[str, Any]) -> Lines:
    st = r.get("stream") or {}
    floor, inv = st.get("floor") or {}, st.get("invoke_stream") or {}
    if not floor:
        return []
    out = ["## Streaming (100 B): fnhost InvokeStream vs a bare grpc.aio stream echo", ""]
    if not inv.get("measured"):
        out += [f"InvokeStream not measured: {inv.get('reason', 'no Python echo deployed')}.", ""]
    out += _header("configuration", "bare stream echo", "fnhost InvokeStream")
    out.append(_row("ping-pong p50 µs (one invocation in flight)", _f(_get(floor, "pingpong", "p50_us")),
                    _f(_get(inv, "pingpong", "p50_us"))))
    for key, s in (floor.get("pipelined") or {}).items():
        label = key.replace("_in_flight_batch_", " in flight, per message: ").replace("x", " stream(s) × ", 1)
        out.append(_row(f"{label} — invocations/s", _spread(s, "rps", 0),
                        _spread(_get(inv, "pipelined", key), "rps", 0)))
    return out + [""]


def _cold(r: dict[str, Any]) -> Lines:
    out = ["## Cold start and deploy", "",
           *_header("runtime", "first invoke ms, client (median, min–max)", "Init Duration ms (REPORT)",
                    "second invoke ms", "deploy s (new code, compiled)", "first deploy + invoke s",
                    "worker hop: spawn → INIT_OK ms")]
    for rt, e in (r.get("fnhost") or {}).items():
        cs = e.get("cold_start") or {}
        out.append(_row(rt, _spread(cs.get("first_invoke_ms"), "ms"), _spread(cs.get("init_duration_ms"), "ms"),
                        _spread(cs.get("second_invoke_ms"), "ms", 2), _spread(_get(e, "deploy", "deploy_s"), "s", 2),
                        _f(e.get("first_deploy_and_invoke_s"), 2),
                        _f(_get(r, "floors", "worker_hop", rt, "spawn_to_init_ok_ms"))))
    return out + [""]


def _memory(r: dict[str, Any]) -> Lines:
    dm = r.get("daemon_memory") or {}
    loaded = ", ".join(f"{k} in flight: {_spread(v, 'mib')}" for k, v in (dm.get("under_load_rss") or {}).items())
    out = ["## Memory", "", f"Daemon RSS idle: {_spread(dm.get('idle_rss'), 'mib')} MiB; under load (Python): "
           f"{loaded or '—'} MiB.", "",
           *_header("runtime", "workers sampled", "RSS MiB median (min–max)", "USS MiB median (min–max)")]
    for rt, e in (r.get("fnhost") or {}).items():
        wm = e.get("worker_memory") or {}
        out.append(_row(rt, wm.get("workers", "—"), _spread(wm.get("rss"), "mib"), _spread(wm.get("uss"), "mib")))
    return out + [""]


def _scale(r: dict[str, Any]) -> Lines:
    s = r.get("scale")
    if not s:
        return []
    out = ["## Scale", "",
           f"{s['functions']} functions registered in {s['register_s']} s ({s['register_ms_per_function']} ms "
           f"each), {s['warm_workers_seen']} of {s['warm_workers_wanted']} warm workers. Daemon RSS "
           f"{_spread(s['daemon_rss_one_function_mib'], 'mib')} MiB with one function, "
           f"{_spread(s['daemon_rss_scaled_mib'], 'mib')} MiB scaled.", "",
           *_header("case", "p50 µs", "p90 µs", "p99 µs", "n")]
    for label, key in (("one function, one worker", "one_worker"), ("scaled, same function", "scaled_same_function"),
                       ("scaled, rotating over the warm functions", "scaled_rotating")):
        x = s.get(key) or {}
        out.append(_row(label, _f(x.get("p50_us")), _f(x.get("p90_us")), _f(x.get("p99_us")), x.get("n", 0)))
    return out + [""]


def _profile(r: dict[str, Any]) -> Lines:
    prof = r.get("profile") or {}
    if not prof.get("measured"):
        return []
    out = ["## Daemon profile under load (py-spy, 32 in flight, Python echo)", ""]
    for label in ("native", "python"):
        p = prof.get(label)
        if not p:
            continue
        out.append(f"- {label} frames ({p['samples_main_thread']} event-loop samples, "
                   f"{_f(p['throughput_rps_while_sampled'], 0)} req/s meanwhile, stacks in `{p['raw_stacks']}`): "
                   + ", ".join(f"{k} {v * 100:.1f} %" for k, v in p["categories"].items()))
        top = list(p["fnhost_inclusive"].items())[:8]
        out.append("  - fnhost functions, inclusive: " + ", ".join(f"{k} {v * 100:.1f} %" for k, v in top))
    return out + ["- What this means and what to do about it: bench/PROFILE.md.", ""]


def markdown(r: dict[str, Any], plots: list[str]) -> str:
    d = r["derived"]
    out = [f"# fnhost benchmark — {r['started_at'][:10]}, {r['machine']['host']} "
           f"({r['mode']} run, {r['duration_s']} s)", ""]
    out += _machine(r) + _headline(d) + _sequential(r, d) + _in_flight(r) + _stream(r) + _cold(r) + _memory(r)
    out += _scale(r)
    out += _profile(r)
    if plots:
        out += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    if r.get("notes"):
        out += ["## Notes", ""] + [f"- {n}" for n in r["notes"]]
    return "\n".join(out).rstrip() + "\n"


def write(results: dict[str, Any], out_dir: Path, plots: list[str], update_latest: bool) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    base = stem(results)
    json_path = out_dir / f"{base}.json"
    md_path = out_dir / f"{base}.md"
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    text = markdown(results, plots)
    md_path.write_text(text)
    if update_latest:
        (out_dir / "LATEST.md").write_text(f"<!-- a copy of {md_path.name}; all data: {json_path.name} -->\n" + text)
    return json_path, md_path
