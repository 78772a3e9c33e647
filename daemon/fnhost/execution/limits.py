"""Memory limits for workers' process trees, and the peak memory each invocation reports.

Two backends, chosen once at start-up by what the host allows (and logged):

* ``cgroup-v1`` / ``cgroup-v2``: each worker gets its own memory cgroup with the function's limit;
  the kernel holds the whole tree to it and OOM-kills inside it. Peak usage comes from the
  cgroup's own high-water mark.
* ``psutil``: where no cgroup is writable. A sampler (``Sampler``) sums the RSS of each busy
  worker's tree every few tens of milliseconds and kills a tree that is over its limit; the peak
  is the larger of the kernel's VmHWM for the worker and the largest sampled tree.

Reads on the invoke path go through descriptors kept open and ``pread`` at offset 0, which makes
the kernel regenerate the file: a few microseconds, no open/close per call.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import psutil
import structlog

log = structlog.get_logger("fnhost.limits")

MiB = 1024 * 1024


class WorkerMemory(Protocol):
    """One worker's memory accounting."""

    limit_bytes: int

    def peak_bytes(self) -> int: ...
    def oom_killed(self) -> bool: ...
    def tree_rss(self) -> int: ...
    def close(self) -> None: ...


class MemoryBackend(Protocol):
    name: str
    kernel_enforced: bool  # False: a Sampler must enforce the limit

    def attach(self, pid: int, limit_bytes: int) -> WorkerMemory: ...
    def close(self) -> None: ...


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


def _tree_rss(pid: int) -> int:
    try:
        proc = psutil.Process(pid)
        total = proc.memory_info().rss
        for child in proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return total
    except psutil.Error:
        return 0


# --- psutil -----------------------------------------------------------------------------------


class _SampledMemory:
    def __init__(self, pid: int, limit_bytes: int) -> None:
        self.pid = pid
        self.limit_bytes = limit_bytes
        self.sampled_peak = 0
        self.killed_for_memory = False
        try:
            self._status = os.open(f"/proc/{pid}/status", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self._status = -1

    def peak_bytes(self) -> int:
        hwm = _status_hwm(self._status) if self._status >= 0 else 0
        return max(hwm, self.sampled_peak)

    def oom_killed(self) -> bool:
        return self.killed_for_memory

    def tree_rss(self) -> int:
        rss = _tree_rss(self.pid)
        if rss > self.sampled_peak:
            self.sampled_peak = rss
        return rss

    def close(self) -> None:
        if self._status >= 0:
            os.close(self._status)
            self._status = -1


class PsutilBackend:
    name = "psutil"
    kernel_enforced = False

    def attach(self, pid: int, limit_bytes: int) -> _SampledMemory:
        return _SampledMemory(pid, limit_bytes)

    def close(self) -> None:
        pass


# --- cgroups ----------------------------------------------------------------------------------


class _CgroupMemory:
    def __init__(self, path: Path, limit_bytes: int, peak_file: str, oom_file: str, oom_key: bytes) -> None:
        self.path = path
        self.limit_bytes = limit_bytes
        self._peak = os.open(path / peak_file, os.O_RDONLY | os.O_CLOEXEC)
        self._oom_file = path / oom_file
        self._oom_key = oom_key

    def peak_bytes(self) -> int:
        try:
            return _pread_int(self._peak)
        except (OSError, ValueError):
            return 0

    def oom_killed(self) -> bool:
        try:
            text = self._oom_file.read_bytes()
        except OSError:
            return False
        for line in text.splitlines():
            key, _, value = line.partition(b" ")
            if key == self._oom_key:
                return int(value) > 0
        return False

    def tree_rss(self) -> int:
        return self.peak_bytes()

    def close(self) -> None:
        os.close(self._peak)
        # The group empties once its processes are reaped; rmdir then frees it.
        try:
            os.rmdir(self.path)
        except OSError as exc:
            log.debug("cgroup_rmdir_failed", path=str(self.path), error=exc.strerror)


class CgroupV1Backend:
    name = "cgroup-v1"
    kernel_enforced = True

    def __init__(self, root: Path) -> None:
        self.root = root

    def attach(self, pid: int, limit_bytes: int) -> _CgroupMemory:
        path = self.root / f"w{pid}"
        path.mkdir(exist_ok=True)
        (path / "memory.limit_in_bytes").write_text(str(limit_bytes))
        if (path / "memory.memsw.limit_in_bytes").exists():
            try:  # also cap swap, so a worker cannot escape the limit by swapping
                (path / "memory.memsw.limit_in_bytes").write_text(str(limit_bytes))
            except OSError:
                pass
        (path / "cgroup.procs").write_text(str(pid))
        return _CgroupMemory(path, limit_bytes, "memory.max_usage_in_bytes", "memory.oom_control", b"oom_kill")

    def close(self) -> None:
        _remove_tree(self.root)


class CgroupV2Backend:
    name = "cgroup-v2"
    kernel_enforced = True

    def __init__(self, root: Path) -> None:
        self.root = root

    def attach(self, pid: int, limit_bytes: int) -> _CgroupMemory:
        path = self.root / f"w{pid}"
        path.mkdir(exist_ok=True)
        (path / "memory.max").write_text(str(limit_bytes))
        if (path / "memory.swap.max").exists():
            (path / "memory.swap.max").write_text("0")
        (path / "cgroup.procs").write_text(str(pid))
        peak = "memory.peak" if (path / "memory.peak").exists() else "memory.current"
        return _CgroupMemory(path, limit_bytes, peak, "memory.events", b"oom_kill")

    def close(self) -> None:
        _remove_tree(self.root)


def _remove_tree(root: Path) -> None:
    for child in sorted(root.glob("w*"), reverse=True):
        try:
            child.rmdir()
        except OSError:
            pass
    try:
        root.rmdir()
    except OSError:
        pass


def _remove_stale(parent: Path) -> None:
    """Groups left by daemons that were killed (SIGKILL skips their clean-up)."""
    for stale in parent.glob("fnhost-*"):
        pid = stale.name.removeprefix("fnhost-")
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            _remove_tree(stale)


def _own_cgroup(controller: str | None) -> str | None:
    """This process's cgroup path for a v1 controller, or the v2 path when controller is None."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller is None and controllers == "":
            return path
        if controller is not None and controller in controllers.split(","):
            return path
    return None


def _mounts() -> list[tuple[str, str, str]]:
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        out.append((parts[1], parts[2], parts[3]))
    return out


def _try_v1() -> CgroupV1Backend | None:
    for mountpoint, fstype, options in _mounts():
        if fstype == "cgroup" and "memory" in options.split(","):
            own = _own_cgroup("memory") or "/"
            parent = Path(mountpoint) / own.lstrip("/")
            _remove_stale(parent)
            root = parent / f"fnhost-{os.getpid()}"
            try:
                root.mkdir(exist_ok=True)
                # Children inherit hierarchical accounting; needed for limits to hold on trees.
                probe = root / "probe"
                probe.mkdir(exist_ok=True)
                (probe / "memory.limit_in_bytes").write_text(str(64 * MiB))
                probe.rmdir()
            except OSError as exc:
                log.info("cgroup_v1_unavailable", path=str(root), error=exc.strerror)
                try:
                    root.rmdir()
                except OSError:
                    pass
                return None
            return CgroupV1Backend(root)
    return None


def _try_v2() -> CgroupV2Backend | None:
    for mountpoint, fstype, _ in _mounts():
        if fstype != "cgroup2":
            continue
        own = _own_cgroup(None)
        if own is None:
            return None
        base = Path(mountpoint) / own.lstrip("/")
        try:
            if "memory" not in (base / "cgroup.controllers").read_text().split():
                return None
            # cgroup v2 forbids processes in a group that distributes controllers to children,
            # so the daemon moves itself into a leaf first (systemd's Delegate=yes allows this).
            leaf = base / "daemon"
            leaf.mkdir(exist_ok=True)
            (leaf / "cgroup.procs").write_text(str(os.getpid()))
            (base / "cgroup.subtree_control").write_text("+memory")
            root = base / "workers"
            root.mkdir(exist_ok=True)
            (root / "cgroup.subtree_control").write_text("+memory")
        except OSError as exc:
            log.info("cgroup_v2_unavailable", path=str(base), error=exc.strerror)
            return None
        return CgroupV2Backend(root)
    return None


def choose_backend(preference: str = "auto") -> MemoryBackend:
    """The best memory backend this host allows; ``preference`` is auto, cgroup or psutil."""
    backend: MemoryBackend | None = None
    if preference in ("auto", "cgroup"):
        backend = _try_v2() or _try_v1()
        if backend is None and preference == "cgroup":
            raise RuntimeError("memory_backend = cgroup, but no writable memory cgroup was found")
    if backend is None:
        backend = PsutilBackend()
    log.info("memory_backend", backend=backend.name, root=str(getattr(backend, "root", "")))
    return backend
