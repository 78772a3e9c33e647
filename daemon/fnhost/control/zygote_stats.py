"""What each zygote costs and does, for ``GetStats``, ``fnhost stats`` and Prometheus: its own
unique memory (USS, the pages its workers share with it are counted here once), forks, failures
and restarts, and the live workers it forked with their unique memory (each worker's with its
namespace init's); and each kind of stem cell, with its waiting cells' unique memory.

USS comes from /proc/PID/smaps_rollup: a few hundred microseconds a process, so ``report`` runs
in a thread, on a list of workers taken on the event loop (``forked_workers``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import psutil

from ..execution.stemcell import CellSnapshot, CellStats
from ..execution.worker import Worker
from ..execution.zygote import ZygoteKey
from ..execution.zygotes import Zygotes


@dataclass(frozen=True, slots=True)
class ZygoteReport:
    runtime: str
    command: str
    pid: int
    forks: int
    failures: int
    restarts: int
    uss_bytes: int
    workers: int
    workers_uss_bytes: int


def forked_workers(workers: Iterable[Worker]) -> list[tuple[ZygoteKey, tuple[int, ...]]]:
    """Each live forked worker's zygote and processes (init, worker); on the event loop."""
    return [(w.spec.zygote, (w.leader, w.pid)) for w in workers
            if w.forked and w.spec.zygote is not None and w.returncode is None]


def uss(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_full_info().uss
        except psutil.Error:
            pass  # gone meanwhile
    return total


def report(zygotes: Zygotes, workers: list[tuple[ZygoteKey, tuple[int, ...]]]) -> list[ZygoteReport]:
    """Blocking (reads /proc): in a thread."""
    out = []
    for z in zygotes.stats():
        mine = [pids for key, pids in workers if key == z.key]
        out.append(ZygoteReport(
            runtime=z.key.runtime, command=z.key.describe(), pid=z.pid, forks=z.forks, failures=z.failures,
            restarts=z.restarts, uss_bytes=z.uss_bytes, workers=len(mine),
            workers_uss_bytes=sum(uss(set(pids)) for pids in mine)))
    return out


def cell_report(snapshot: list[CellSnapshot]) -> list[CellStats]:
    """Each kind of stem cell's counts and its ready cells' unique memory (blocking: in a thread)."""
    return [CellStats(key, len(pids), cells.starting, cells.taken, cells.failures, cells.given_up, uss(pids))
            for key, cells, pids in snapshot]
