"""Where fnhost's HTTP Invoke spends the daemon's time: py-spy while ``httpload``'s clients keep
the Lambda API busy (``python -m bench.lambda_http --profile SECONDS``).

Three captures: two as ``profile.py`` makes for the gRPC path — Python frames with idle samples
(how busy the event loop is, and in what), then native frames (the C under uvloop, httptools and
the syscalls) — under ``clients`` clients; and Python frames with idle samples at 1 kHz while one
client calls one call at a time ("sequential": where a lone call's time goes). The raw collapsed stacks are kept beside the report; ``profile.summarise`` attributes
the event-loop thread's samples to parts (the HTTP server, fnhost by module, asyncio, logging…).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from .httpload import HttpPool, HttpTarget
from .profile import _record, parse, summarise


def profile_http(pool: HttpPool, target: HttpTarget, daemon_pid: int, clients: int, seconds: float,
                 results_dir: Path, prefix: str, note: Any) -> dict[str, Any]:
    """{"python": summary, "native": summary} of the daemon under ``clients`` HTTP clients;
    ``{"measured": False, ...}`` without py-spy. Failures of one capture are noted, not raised."""
    if shutil.which("py-spy") is None:
        return {"measured": False, "reason": "py-spy is not installed (pip install py-spy)"}
    out: dict[str, Any] = {"measured": True, "clients": clients, "seconds": seconds}
    results_dir.mkdir(parents=True, exist_ok=True)
    # "sequential": one call at a time, every sample of the loop thread (idle too) at a high rate:
    # its busy share × the wall time per call is the daemon's own time per call, by part.
    for label, extra, rate in (("python", ["--idle", "--nonblocking"], 200), ("native", ["--native"], 50),
                               ("sequential", ["--idle", "--nonblocking"], 1000)):
        raw = results_dir / f"{prefix}-profile-{label}.txt"  # the evidence PROFILE.md cites
        spy = _record(daemon_pid, seconds, raw, extra, rate)
        time.sleep(0.3)  # py-spy attaches before the load opens
        if label == "sequential":
            t0 = time.monotonic()
            calls = 0
            while time.monotonic() - t0 < seconds:
                calls += len(pool.sequential(target, 500, warmup=0))
            rps = calls / (time.monotonic() - t0)
        else:
            rps = pool.window(target, clients, seconds).throughput
        _, err = spy.communicate(timeout=seconds + 60)
        if spy.returncode != 0 or not raw.exists():
            note(f"py-spy ({label}) failed: {err.decode(errors='replace')[-300:]}")
            continue
        summary = summarise(parse(raw.read_text(errors="replace")))
        summary["throughput_rps_while_sampled"] = round(rps, 1)
        summary["raw_stacks"] = raw.name
        out[label] = summary
    return out


def markdown(prof: dict[str, Any]) -> list[str]:
    if not prof.get("measured"):
        return [f"Profile: not measured ({prof.get('reason', 'no fnhost-http series')})."]
    lines = [f"## Where fnhost's HTTP Invoke spends the daemon's event loop (py-spy, {prof['clients']} clients, "
             f"{prof['seconds']:g} s per capture)", ""]
    for label in ("python", "native", "sequential"):
        s = prof.get(label)
        if not s:
            continue
        lines += [f"**{label}** capture ({s['samples_main_thread']} samples of the event-loop thread, "
                  f"{s['throughput_rps_while_sampled']:,.0f} req/s while sampled; raw stacks: `{s['raw_stacks']}`):", "",
                  "| part | share |", "|---|---|"]
        lines += [f"| {k} | {v * 100:.1f} % |" for k, v in s["categories"].items()]
        lines += ["", "fnhost functions, inclusive: " + ", ".join(
            f"`{k}` {v * 100:.1f} %" for k, v in list(s["fnhost_inclusive"].items())[:12]), ""]
    return lines
