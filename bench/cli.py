"""``python -m bench`` (and, once wired, ``fnhost bench``): parse options, run, write the report.

``run(argv)`` is the whole entry point; it returns the process exit status (0: report written,
1: the run could not produce one, 130: interrupted) and never calls sys.exit itself, so another
CLI can call it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .functions import ROOT

RESULTS = ROOT / "bench" / "results"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="fnhost's hot-path benchmark: fnhost per runtime against the gRPC and worker-hop "
                    "floors, measured in the same run. Writes <date>-<host>[-mode].json/.md and PNG plots.")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="smaller counts, under 3 minutes")
    mode.add_argument("--smoke", action="store_true",
                      help="the smallest case (Python only, tiny counts), for the test suite")
    p.add_argument("--runtimes", help="comma-separated runtimes to measure (default: every one that can run here)")
    p.add_argument("--out", type=Path, default=None, help=f"output directory (default {RESULTS})")
    p.add_argument("--profile", type=float, default=0.0, metavar="SECONDS",
                   help="also record the daemon with py-spy for this long under load (32 in flight, Python)")
    p.add_argument("--install-ghz", action="store_true",
                   help="go install ghz from the Go module proxy when it is not found")
    p.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                   help="skip phases that would start after this many seconds (default per mode)")
    p.add_argument("--client-procs", type=int, default=None, help="client processes for in-flight runs")
    p.add_argument("--render", type=Path, metavar="JSON",
                   help="measure nothing: redraw the Markdown and plots of an earlier run from its JSON")
    return p


def _write(results: dict, out_dir: Path, log: Callable[[str], None]) -> None:
    from . import derived, plots, report

    results["derived"] = derived.derive(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    names, why = plots.draw(results, out_dir, report.stem(results))
    if why and why not in results["notes"]:
        results["notes"].append(why)
    latest = results["mode"] == "full" and out_dir.resolve() == RESULTS.resolve()
    json_path, md_path = report.write(results, out_dir, names, update_latest=latest)
    d = results["derived"]
    log(f"wrote {json_path} and {md_path}" + (f" and {len(names)} plots" if names else ""))
    log(f"own cost (python, 100 B): {d['own_cost_python_100B'].get('us')} µs; "
        f"throughput ratio at 32: {d['throughput_ratio'].get('at_32')}; "
        f"scale ratio: {d['scale_ratio'].get('ratio_p50')}")


def run(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from fnhost.observability import logs

    from .plan import PLANS
    from .runner import Interrupted, Runner

    plan = PLANS["smoke" if args.smoke else "quick" if args.quick else "full"]
    changes: dict[str, object] = {}
    if args.runtimes:
        changes["runtimes"] = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    if args.budget is not None:
        changes["budget_s"] = args.budget
    if args.client_procs:
        changes["client_procs"] = args.client_procs
    plan = dataclasses.replace(plan, **changes)
    out_dir = args.out or RESULTS

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    if args.render:
        _write(json.loads(args.render.read_text()), args.out or args.render.parent, log)
        return 0

    logs.configure("warning")  # fnhost's modules log at import and first use; keep the bench's output ours
    runner = Runner(plan, out_dir, profile_s=args.profile, install_ghz=args.install_ghz, log=log)
    try:
        results = runner.run()
    except (KeyboardInterrupt, Interrupted):
        log("interrupted: everything the bench started has been stopped; no report written")
        return 130
    except Exception as exc:
        log(f"the benchmark could not run: {type(exc).__name__}: {exc}")
        return 1
    _write(results, out_dir, log)
    return 0
