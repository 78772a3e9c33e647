"""One worker's limits (limits.py's MemoryBackend makes them): its control group, its memory
accounting (Max Memory Used: the largest of its group's peak, the sampler's and the kernel's VmHWM)
and the kill that ends its whole tree."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import structlog

from . import cgroups, sampling

log = structlog.get_logger("fnhost.limits")

HWM_REFRESH_S = 0.25  # on the invoke path, VmHWM is read at least this often (see peak_bytes)


class Backend(Protocol):
    """What a worker's limits ask of the backend that made them (limits.MemoryBackend)."""

    def set_limits(self, group: cgroups.Group, limit_bytes: int, previous: int | None = None) -> None: ...
    def set_cpu(self, group: cgroups.Group | None, limit_bytes: int, *, initial: bool) -> None: ...
    def count_uid(self, worker: WorkerLimits) -> None: ...
    def watch(self, worker: WorkerLimits) -> None: ...
    def unwatch(self, worker: WorkerLimits) -> None: ...
    def strays(self, uid: int) -> set[int]: ...
    def bury(self, group: cgroups.Group) -> None: ...


class Identity(Protocol):
    """What limits needs of sandbox.Identity (which imports this module's types: no import back)."""

    uid: int
    own: bool  # the function's own uid: every process of it is the function's


def _pread_int(fd: int) -> int:
    return int(os.pread(fd, 64, 0))


def _status_hwm(fd: int) -> int:
    """VmHWM (peak RSS) from an open /proc/<pid>/status, in bytes; 0 once the process is gone."""
    try:
        data = os.pread(fd, 4096, 0)
    except OSError:
        return 0
    i = data.find(b"VmHWM:")
    if i < 0:
        return 0
    return int(data[i + 6 : data.index(b"kB", i)]) * 1024


class WorkerLimits:
    """One worker's group (where the host has one), its memory accounting, and its kill."""

    def __init__(self, backend: Backend, limit_bytes: int, identity: Identity | None,
                 group: cgroups.Group | None) -> None:
        self.backend = backend
        self.limit_bytes = limit_bytes
        self.identity = identity
        self.group = group
        self.pid = 0
        self.over_limit = False  # the psutil sampler killed it for memory
        self.last_rss = 0
        self._sampled_peak = 0
        self._hwm = 0
        self._measured_seen = 0  # the group's (or sampler's) peak when VmHWM was last read
        self._hwm_due = 0.0
        self._status = self._peak = -1
        self._on_over_limit: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def join(self) -> Callable[[int], None] | None:
        """What spawn calls with the child's pid before letting it run: None without a group."""
        return self.group.join if self.group is not None else None

    def open_procs(self) -> list[int]:
        """Each directory's ``cgroup.procs``, opened for writing: what a forked worker (or a held
        spare) writes itself into, from a view where /sys is read-only. Raises OSError with none
        left open; none without a group."""
        fds: list[int] = []
        try:
            for _, path in self.group.dirs if self.group is not None else ():
                fds.append(os.open(path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        return fds

    @property
    def path(self) -> Path | None:
        """A directory of the group (each lists every process of the worker); None without one."""
        return self.group.dirs[0][1] if self.group is not None and self.group.dirs else None

    def resize(self, limit_bytes: int) -> None:
        """A group prepared ahead (a held spare's) gets its worker's memory limit and start-up
        CPU allowance. Raises OSError."""
        if limit_bytes != self.limit_bytes and self.group is not None:
            self.backend.set_limits(self.group, limit_bytes, self.limit_bytes)
        self.limit_bytes = limit_bytes

    def adopt(self, identity: Identity) -> None:
        """A stem cell's group now holds ``identity``'s worker (it was prepared with none)."""
        self.identity = identity
        self.backend.count_uid(self)

    def started(self, pid: int, on_over_limit: Callable[[], None] | None = None) -> None:
        """The worker runs as ``pid``; ``on_over_limit`` runs on this (running) loop if the sampler kills it."""
        self.pid = pid
        if on_over_limit is not None:
            self._on_over_limit = on_over_limit
            self._loop = asyncio.get_running_loop()
        try:
            self._status = os.open(f"/proc/{pid}/status", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self._status = -1
        memory = self.group.dir_for("memory") if self.group is not None else None
        if memory is not None:
            h, path = memory
            try:
                self._peak = os.open(path / ("memory.max_usage_in_bytes" if h.version == 1 else _v2_peak(path)),
                                     os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                self._peak = -1  # the peak falls back to VmHWM
        self.backend.watch(self)

    def measure(self, pid: int) -> None:
        """Read VmHWM from ``pid`` from now on: the worker itself, when ``started`` got the
        process that leads its tree (bubblewrap, whose own peak is a few hundred kB)."""
        try:
            status = os.open(f"/proc/{pid}/status", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return  # gone: its exit is on its way, and the group's peak still stands
        if self._status >= 0:
            os.close(self._status)
        self._status = status
        self._hwm = 0
        self._hwm_due = 0.0

    def init_done(self) -> None:
        """INIT_OK: from the start-up allowance (a full vCPU at least) to the function's CPU share."""
        try:
            self.backend.set_cpu(self.group, self.limit_bytes, initial=False)
        except OSError as exc:  # the group is still capped at its start-up allowance
            log.warning("cpu_limit_failed", pid=self.pid, error=str(exc))

    # --- memory -------------------------------------------------------------------------------

    def peak_bytes(self) -> int:
        """The worker's high-water mark: the largest of its group's, the sampler's and VmHWM.

        /proc/PID/status costs ~8 µs to generate against ~1 µs for the group's counter, so on the
        invoke path VmHWM is read again only when the other figures grew (the worker grew) or
        HWM_REFRESH_S after the last reading (it mapped pages the group does not charge it for).
        """
        measured = self._sampled_peak
        if self._peak >= 0:
            try:
                measured = max(measured, _pread_int(self._peak))
            except (OSError, ValueError):
                pass
        if self._status >= 0:
            now = time.monotonic()
            if measured > self._measured_seen or now >= self._hwm_due:
                self._hwm = max(self._hwm, _status_hwm(self._status))
                self._measured_seen = measured
                self._hwm_due = now + HWM_REFRESH_S
        return max(measured, self._hwm)

    def oom_killed(self) -> bool:
        if self.over_limit:
            return True
        memory = self.group.dir_for("memory") if self.group is not None else None
        if memory is None:
            return False
        h, path = memory
        try:
            text = (path / ("memory.oom_control" if h.version == 1 else "memory.events")).read_bytes()
        except OSError:
            return False
        for line in text.splitlines():
            key, _, value = line.partition(b" ")
            if key == b"oom_kill":
                return int(value) > 0
        return False

    def tree_rss(self) -> int:
        """The memory that counts against the limit: the group's peak, or the latest sample."""
        return self.peak_bytes() if self._peak >= 0 else self.last_rss

    def members(self, children: dict[int, list[int]] | None = None) -> set[int]:
        """Every process of the worker: its group, or its tree plus its uid's strays."""
        if self.group is not None:
            return self.group.pids()
        if children is None:
            children = sampling.children_map()
        pids = sampling.tree(self.pid, children) if self.pid else set()
        if self.identity is not None and self.identity.own:
            pids |= self.backend.strays(self.identity.uid)
        return pids

    def sample(self, children: dict[int, list[int]] | None = None) -> None:
        """psutil backend, from the sampler thread: measure, and kill the worker if it is over."""
        members = self.members(children)
        rss = sampling.rss(members)
        self.last_rss = rss
        self._sampled_peak = max(self._sampled_peak, rss)
        if rss <= self.limit_bytes or self.over_limit or self._closed:
            return
        self.over_limit = True
        log.warning("memory_limit_exceeded", pid=self.pid, rss=rss, limit=self.limit_bytes)
        if self.group is not None:
            self.group.kill()
        else:
            sampling.kill_pids(members)
        if self._loop is not None and self._on_over_limit is not None:
            self._loop.call_soon_threadsafe(self._on_over_limit)

    # --- the end ------------------------------------------------------------------------------

    def kill(self) -> None:
        """SIGKILL every process of the worker's group (a no-op without one)."""
        if self.group is not None:
            self.group.kill()

    def close(self) -> None:
        """The worker is dead: kill whatever it left in its group, and release the group."""
        if self._closed:
            return
        self._closed = True
        self.backend.unwatch(self)
        for fd in (self._status, self._peak):
            if fd >= 0:
                os.close(fd)
        self._status = self._peak = -1
        if self.group is not None:
            self.group.kill()
            self.backend.bury(self.group)




def _v2_peak(path: Path) -> str:
    return "memory.peak" if (path / "memory.peak").exists() else "memory.current"
