"""Where a warm invoke's time goes in the daemon: py-spy under load, summarised.

``--profile SECONDS`` records the daemon while the client pool keeps 32 Python invokes in flight,
twice: Python frames with idle samples (to see how busy the event loop thread is), and native
frames (Cython/C: the gRPC core under the Python code; py-spy must pause the process for those,
so that capture runs at a lower rate). The raw collapsed stacks are kept; the summary attributes
each sample of the event-loop thread to a category by its frames — fnhost's code by module,
gRPC, protobuf, structlog, asyncio/anyio machinery, idle — which is what bench/PROFILE.md cites.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from .load import ClientPool
from .targets import Aim

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*)\)$")
IDLE = "idle (event loop waiting in epoll)"
CALLBACK = "C/Cython event-loop callbacks (gRPC's aio server; resolved in the native capture)"

# The innermost frame that belongs to a known part decides a sample's category; frames of libc
# and of the interpreter itself belong to nobody, so a syscall counts for whoever made it.
CATEGORIES: list[tuple[str, Callable[[str, str], bool]]] = [
    ("Python GC", lambda fn, f: fn.startswith("gc_collect")),
    ("logging (structlog)", lambda fn, f: "structlog" in f or "/logging/" in f),
    ("protobuf", lambda fn, f: "protobuf" in f or "_upb" in f),
    ("gRPC", lambda fn, f: "grpc" in f or "grpc" in fn),
    ("HTTP server (uvicorn, httptools)", lambda fn, f: "uvicorn" in f or "httptools" in f or "h11" in f),
    ("fnhost", lambda fn, f: "/fnhost/" in f),
    ("anyio", lambda fn, f: "/anyio/" in f),
    ("asyncio", lambda fn, f: "/asyncio/" in f or "_asynciomodule" in f),
    ("uuid", lambda fn, f: "uuid" in f),
    ("json", lambda fn, f: "/json/" in f or "_json.c" in f),
]


def parse(text: str) -> list[tuple[str, list[tuple[str, str]], int]]:
    """Raw collapsed stacks → (thread, [(function, file), …] outermost first, count)."""
    out = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        parts = stack.split(";")
        thread = parts[0]
        frames = []
        for p in parts[1:]:
            m = _FRAME.match(p)
            frames.append((m["func"], m["file"]) if m else (p, ""))
        out.append((thread, frames, int(count)))
    return out


def _category(frames: list[tuple[str, str]]) -> str:
    if not frames:
        return "other"
    if any(func.endswith("Selector.select") for func, _ in frames):
        return IDLE  # everything below the selector is the epoll_wait call itself
    if frames[-1][0] == "Handle._run":
        return CALLBACK  # Python-only capture: the callback's own frames are not Python
    for func, file in reversed(frames):
        for name, test in CATEGORIES:
            if test(func, file):
                return name
    return "other"


Stacks = list[tuple[str, list[tuple[str, str]], int]]


def summarise(stacks: Stacks, main_thread: str = "MainThread") -> dict[str, object]:
    """Shares of the event-loop thread's samples by category, and fnhost functions inclusive."""
    by_thread: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for thread, frames, n in stacks:
        by_thread[thread] += n
        if main_thread not in thread:
            continue
        total += n
        cat = _category(frames)
        categories[cat] += n
        if frames:
            leaves[f"{frames[-1][0]} ({Path(frames[-1][1]).name})"] += n
        seen = set()
        for func, file in frames:
            if "/fnhost/" in file and Path(file).stem not in ("__main__", "cli"):
                key = f"{Path(file).stem}.{func}"
                if key not in seen:
                    seen.add(key)
                    inclusive[key] += n
    share = (lambda c: {k: round(v / total, 4) for k, v in c.most_common(25)}) if total else (lambda c: {})
    return {
        "samples_main_thread": total,
        "samples_by_thread": dict(by_thread.most_common()),
        "categories": share(categories),
        "fnhost_inclusive": share(inclusive),
        "top_leaves": share(leaves),
    }


def _record(pid: int, seconds: float, out: Path, extra: list[str], rate: int) -> subprocess.Popen[bytes]:
    py_spy = shutil.which("py-spy")
    assert py_spy is not None
    return subprocess.Popen([py_spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate",
                             str(rate), "--format", "raw", "--nolineno", "--full-filenames", "--threads", *extra,
                             "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def profile_daemon(pool: ClientPool, aim: Aim, daemon_pid: int, seconds: float, workdir: Path,
                   note: Callable[[str], None], results_dir: Path, prefix: str) -> dict[str, object]:
    if shutil.which("py-spy") is None:
        return {"measured": False, "reason": "py-spy is not installed (pip install py-spy)"}
    pool.warm(aim.target, 32, per_task=10)  # every worker the window will use is started now
    out: dict[str, object] = {"measured": True, "in_flight": 32, "seconds": seconds}
    for label, extra, rate in (("python", ["--idle", "--nonblocking"], 200), ("native", ["--native"], 50)):
        raw = workdir / f"daemon-{label}.txt"
        spy = _record(daemon_pid, seconds, raw, extra, rate)
        time.sleep(0.3)  # py-spy attaches before the load window opens
        window = pool.window(aim.target, 32, seconds)
        _, err = spy.communicate(timeout=seconds + 60)
        if spy.returncode != 0 or not raw.exists():
            note(f"py-spy ({label}) failed: {err.decode(errors='replace')[-300:]}")
            continue
        text = raw.read_text(errors="replace")
        summary = summarise(parse(text))
        summary["throughput_rps_while_sampled"] = round(window.throughput, 1)
        out[label] = summary
        results_dir.mkdir(parents=True, exist_ok=True)
        kept = results_dir / f"{prefix}-profile-{label}.txt"  # the evidence PROFILE.md cites
        kept.write_text(text)
        summary["raw_stacks"] = kept.name
    if "python" in out:
        out["categories"] = out["python"]["categories"]  # type: ignore[index]
    return out
