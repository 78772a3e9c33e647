"""The psutil backend's eyes: one thread sampling every worker, and what it needs of /proc.

Used where the memory limit is not the kernel's (limits.py). Every worker is sampled — idle
ones too, since a function's background thread or escaped child does not wait for an
invocation to grow — each ``memory_sample_interval_s``, from a thread, so the event loop never
walks /proc. A worker with a control group is its group's processes; without one, its process
tree plus the processes of its function's uid outside every worker's session, which is where a
child that called ``setsid`` and was reparented to init ends up.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Protocol

import psutil
import structlog

log = structlog.get_logger("fnhost.limits")

STRAY_SCAN_INTERVAL_S = 1.0  # how often the functions' uids' processes are listed
_PAGE = os.sysconf("SC_PAGE_SIZE")
_SETPRIV = shutil.which("setpriv")
_KILL = shutil.which("kill", path="/usr/bin:/bin")


class Sampled(Protocol):
    """A worker as the sampler sees it (limits.WorkerLimits)."""

    pid: int
    group: object | None

    def sample(self, children: dict[int, list[int]]) -> None: ...


def rss(pids: set[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                total += int(f.read().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            pass
    return total


def children_map() -> dict[int, list[int]]:
    """Every process's children, from one pass over /proc (shared by all workers of a sample)."""
    children: dict[int, list[int]] = {}
    for proc in psutil.process_iter(["ppid"]):
        children.setdefault(proc.info["ppid"], []).append(proc.pid)
    return children


def tree(pid: int, children: dict[int, list[int]]) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        if p not in found:
            found.add(p)
            todo.extend(children.get(p, ()))
    return found


def kill_pids(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def kill_uid(uid: int) -> None:
    """SIGKILL every process of ``uid``, which must be a function's own.

    ``kill(-1)`` made as that uid reaches exactly the processes it may signal — its own — in one
    pass during which the kernel lets none of them fork, so nothing slips between a scan and a
    kill. Without setpriv, processes are listed and killed until none is left.
    """
    if _SETPRIV and _KILL:
        try:
            subprocess.run([_SETPRIV, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--",
                            _KILL, "-KILL", "-1"], env={"PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=5, check=False)
            return
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("kill_uid_failed", uid=uid, error=str(exc))
    for _ in range(16):
        pids = {p.pid for p in psutil.process_iter(["uids"]) if p.info["uids"] and uid in p.info["uids"]}
        if not pids:
            return
        kill_pids(pids)


class Sampler:
    """psutil backend: a thread measuring every watched worker each interval."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.watched: set[Sampled] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, worker: Sampled) -> None:
        with self._lock:
            self.watched.add(worker)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fnhost-memory-sampler", daemon=True)
                self._thread.start()

    def discard(self, worker: Sampled) -> None:
        with self._lock:
            self.watched.discard(worker)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            with self._lock:
                workers = list(self.watched)
            children = children_map() if any(w.group is None for w in workers) else {}
            for worker in workers:
                try:
                    worker.sample(children)
                except Exception as exc:  # noqa: BLE001 - one odd /proc read must not end the sampling of all
                    log.warning("memory_sample_failed", pid=worker.pid, error=repr(exc))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class UidProcesses:
    """The processes of the functions' own uids, listed in one pass over /proc at most every
    STRAY_SCAN_INTERVAL_S, however many workers ask."""

    def __init__(self, uids: Callable[[], set[int]]) -> None:
        self._uids = uids
        self._when = 0.0
        self._by_uid: dict[int, set[int]] = {}

    def outside(self, uid: int, sessions: set[int]) -> set[int]:
        """Processes of ``uid`` in none of ``sessions`` (the workers' own)."""
        now = time.monotonic()
        if now - self._when >= STRAY_SCAN_INTERVAL_S:
            own = self._uids()
            by_uid: dict[int, set[int]] = {}
            for proc in psutil.process_iter(["uids"]):
                uids = proc.info["uids"]
                if uids and uids.real in own:
                    by_uid.setdefault(uids.real, set()).add(proc.pid)
            self._when, self._by_uid = now, by_uid
        strays = set()
        for pid in self._by_uid.get(uid, ()):
            try:
                if os.getsid(pid) not in sessions:
                    strays.add(pid)
            except OSError:
                pass  # gone
        return strays
