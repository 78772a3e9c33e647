"""Memory: the daemon's RSS (idle and under load) and each runtime's per-worker RSS and USS.

USS (memory unique to a process) is what one more worker really costs; RSS counts shared pages
(the interpreter's text, a JVM's CDS archive) in every process that maps them.
"""

from __future__ import annotations

import threading
import time

import psutil

from .stats import value_summary

MiB = 2**20


class RssSampler:
    """Samples one process's RSS from a thread every ``interval_s`` until stopped."""

    def __init__(self, pid: int, interval_s: float = 0.1) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        try:
            proc = psutil.Process(self.pid)
            while not self._stop.is_set():
                self.samples.append(proc.memory_info().rss)
                self._stop.wait(self.interval_s)
        except psutil.Error:
            pass

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join(5)
        return self.samples


def idle_rss(pid: int, samples: int = 10, interval_s: float = 0.05) -> dict[str, object]:
    """The daemon's RSS while nothing is asked of it, as a median of a few samples."""
    values = []
    try:
        proc = psutil.Process(pid)
        for _ in range(samples):
            values.append(proc.memory_info().rss / MiB)
            time.sleep(interval_s)
    except psutil.Error:
        pass
    return value_summary(values, "mib", 1)


def _tree_memory(proc: psutil.Process) -> tuple[int, int, int]:
    """(rss, uss, pss) of a worker and anything it started."""
    rss = uss = pss = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            m = p.memory_full_info()
        except psutil.Error:
            continue
        rss += m.rss
        uss += m.uss
        pss += getattr(m, "pss", 0)
    return rss, uss, pss


def worker_memory(workers: list[psutil.Process], function: str) -> dict[str, object]:
    """Per-worker memory of one function's workers, found by the environment fnhost gives them."""
    rss, uss, pss = [], [], []
    for proc in workers:
        try:
            # In its own namespaces the daemon's child is bubblewrap, which carries the worker's
            # environment under other names (spawn.py); a forked worker's is its init, whose
            # environment is the zygote's. Each tree (a small process or two more) counts whole.
            tree = [proc, *proc.children(recursive=True)]
            names = {p.environ().get("AWS_LAMBDA_FUNCTION_NAME", p.environ().get("FNHOST_ENV_AWS_LAMBDA_FUNCTION_NAME"))
                     for p in tree[:3]}
            if function not in names:
                continue
            r, u, p = _tree_memory(proc)
        except psutil.Error:
            continue
        rss.append(r / MiB)
        uss.append(u / MiB)
        pss.append(p / MiB)
    return {
        "workers": len(rss),
        "rss": value_summary(rss, "mib", 1),
        "uss": value_summary(uss, "mib", 1),
        "pss": value_summary(pss, "mib", 1),
    }
