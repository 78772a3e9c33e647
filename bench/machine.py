"""What machine the run was on, and how busy the rest of it was meanwhile.

Outside load is measured, not guessed: /proc/stat says how much CPU the whole machine spent, our
own process tree says how much of that was us (the bench, its daemon, workers, clients, ghz), and
the difference is everybody else. Steal time is reported too: on a shared VM it is the clearest
sign that a slow figure was the neighbours' doing.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata

import psutil

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def machine_info() -> dict[str, object]:
    """Cores, CPU model, memory, kernel and the Python stack the daemon runs on."""
    vm = psutil.virtual_memory()
    try:
        governor = open("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor").read().strip()
    except OSError:
        governor = None
    return {
        "host": socket.gethostname(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "cpu_governor": governor,
        "memory_gib": round(vm.total / 2**30, 1),
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "python_executable": os.path.realpath(sys.executable),
        "packages": {p: _version(p) for p in ("grpcio", "protobuf", "anyio", "structlog", "psutil", "fnhost")},
    }


def source_info(root: str) -> dict[str, object]:
    """Which fnhost was measured: the checkout's commit, files changed since it, the package path."""
    import fnhost

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = [line[3:] for line in git("status", "--porcelain", "--", "daemon", "runtimes", "protos").splitlines()]
    return {
        "commit": git("rev-parse", "HEAD").strip() or None,
        "uncommitted_changes": changed,
        "fnhost_package": os.path.dirname(fnhost.__file__),
    }


def _proc_stat() -> tuple[float, float, float]:
    """(busy, total, steal) CPU seconds of the whole machine since boot."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice; guest is inside user.
    idle = fields[3] + fields[4]
    total = sum(fields[:8])
    steal = fields[7] if len(fields) > 7 else 0
    return (total - idle) / _CLK_TCK, total / _CLK_TCK, steal / _CLK_TCK


def our_cpu_seconds() -> float:
    """CPU used by this process and every descendant, living or already reaped."""
    me = psutil.Process()
    t = me.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in me.children(recursive=True):
        try:
            c = child.cpu_times()
            # A child's reaped children are in its children_* times; its live ones are visited too.
            total += c.user + c.system + c.children_user + c.children_system
        except psutil.Error:
            pass  # it exited between the listing and the read; its parent's figures will hold it
    return total


@dataclass(slots=True)
class _Mark:
    label: str
    wall: float
    busy: float
    total: float
    steal: float
    ours: float
    load: list[float]


@dataclass
class LoadMonitor:
    """Marks phase boundaries; reports per phase how much CPU others used while we measured."""

    marks: list[_Mark] = field(default_factory=list)

    def mark(self, label: str) -> None:
        busy, total, steal = _proc_stat()
        self.marks.append(_Mark(label, time.monotonic(), busy, total, steal, our_cpu_seconds(), loadavg()))

    def summary(self) -> dict[str, object]:
        if len(self.marks) < 2:
            return {}
        cpus = os.cpu_count() or 1
        phases = []
        for a, b in zip(self.marks, self.marks[1:]):
            phases.append(self._span(a, b, cpus, b.label))
        first, last = self.marks[0], self.marks[-1]
        return {
            "loadavg_before": first.load,
            "loadavg_after": last.load,
            "whole_run": self._span(first, last, cpus, "whole run"),
            "phases": phases,
            "method": "outside = machine busy CPU (/proc/stat) minus CPU of the bench's own process "
                      "tree (psutil, reaped children included); steal from /proc/stat",
        }

    @staticmethod
    def _span(a: _Mark, b: _Mark, cpus: int, label: str) -> dict[str, object]:
        wall = max(b.wall - a.wall, 1e-9)
        busy = b.busy - a.busy
        ours = b.ours - a.ours
        outside = max(busy - ours, 0.0)
        return {
            "phase": label,
            "wall_s": round(wall, 2),
            "machine_busy_cpu_s": round(busy, 2),
            "our_cpu_s": round(ours, 2),
            "outside_cpu_s": round(outside, 2),
            # Share of the machine's whole capacity others took while this phase ran.
            "outside_share": round(outside / (wall * cpus), 3),
            "steal_share": round((b.steal - a.steal) / (wall * cpus), 3),
            "loadavg_end": b.load,
        }
