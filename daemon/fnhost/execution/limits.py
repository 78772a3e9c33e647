"""What each worker may use — memory, processes, CPU — and the kill that ends its whole tree.

Chosen once at start-up by what the host allows, and logged (``memory_backend``, ``containment``):

* Where the daemon can write a control group (cgroups.py), each worker gets its own, entered
  before the worker runs one instruction of function code (spawn.py holds the child at a gate
  until the daemon has written its pid into every ``cgroup.procs``). The group caps the
  worker's memory (the kernel OOM-kills inside it), its processes and threads
  (``worker_pids_max``: Lambda's 1,024) and its CPU (one vCPU per ``cpu_mb_per_vcpu`` of memory,
  Lambda's 1,769 MB; a full vCPU at least until INIT_OK, so a cold start is not throttled), and
  it is killed whole when the worker ends: ``setsid`` and double forks do not leave it.
* Without a memory controller, the psutil backend (sampling.py) samples every worker — idle
  ones too — from a thread, every ``memory_sample_interval_s``: everything in its group, or
  without a group its process tree plus the processes of its function's own uid outside every
  worker's session (children that called ``setsid``); and kills what is over its limit.
* Without any group, the kill is the worker's process group, and when the last worker of a
  function's own uid ends, every process of that uid (``kill(-1)`` as that uid).

Max Memory Used is the largest of the group's (or the sampled tree's) high-water mark and the
kernel's VmHWM for the worker: a cgroup charges shared pages (the interpreter's libraries) to
whoever touched them first, so its figure alone said 3 MB for a Python worker with 11 MB resident.

Reads on the invoke path go through descriptors kept open and ``pread`` at offset 0, which makes
the kernel regenerate the file: a microsecond for a group's counter, no open/close per call.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from pathlib import Path

import structlog

from . import cgroups, sampling
from .sampling import kill_uid
from .worker_limits import Identity, WorkerLimits

log = structlog.get_logger("fnhost.limits")

MiB = 1024 * 1024
CPU_PERIOD_US = 100_000  # the kernel's default CFS period
CPU_MIN_QUOTA_US = 1_000  # the kernel refuses less


_group_names = itertools.count(1)
DEFAULT_LIMIT_BYTES = 128 * MiB  # Lambda's default memory size: the first group made ahead has it


@dataclass(frozen=True, slots=True)
class LimitSettings:
    pids_max: int = 1024  # processes and threads per worker (Lambda: 1,024)
    cpu_mb_per_vcpu: int = 1769  # one vCPU per this much memory (Lambda); 0: no CPU limit
    sample_interval_s: float = 0.05  # psutil backend


def cpu_quota_us(memory_mb: int, mb_per_vcpu: int, period_us: int = CPU_PERIOD_US) -> int:
    """CFS quota per period for ``memory_mb``: 128 MB gets 7,235 µs of each 100 ms."""
    return max(CPU_MIN_QUOTA_US, period_us * memory_mb // mb_per_vcpu)


class MemoryBackend:
    """The host's limits for workers: each new worker's group, and how its memory is measured."""

    def __init__(self, hierarchies: list[cgroups.Hierarchy], settings: LimitSettings) -> None:
        self.hierarchies = hierarchies
        self.settings = settings
        memory = next((h for h in hierarchies if "memory" in h.controllers), None)
        self.kernel_enforced = memory is not None  # False: the sampler enforces the limit
        self.name = f"cgroup-v{memory.version}" if memory is not None else "psutil"
        self.root = memory.root if memory is not None else None
        self.has_pids = any("pids" in h.controllers for h in hierarchies)
        self.has_cpu = settings.cpu_mb_per_vcpu > 0 and any("cpu" in h.controllers for h in hierarchies)
        if any(h.kill_file for h in hierarchies):
            self.kill_method = "cgroup.kill"
        elif hierarchies:
            self.kill_method = "cgroup.procs"
        else:
            self.kill_method = "process group, then the function's uid"
        self._sampler = None if self.kernel_enforced else sampling.Sampler(settings.sample_interval_s)
        self._graveyard: list[cgroups.Group] = []  # killed groups whose processes were still leaving
        # A zygote lost in a thread lets go of its held spare's group there (zygote.py, _lost).
        self._graveyard_lock = threading.Lock()
        self._by_uid: dict[int, set[WorkerLimits]] = {}  # live workers of each function's own uid
        self._uid_processes = sampling.UidProcesses(lambda: set(self._by_uid))
        # The next worker's group, made ahead with the limits of the last one (make_ready): a
        # cold start takes it instead of waiting for 4 mkdirs and 6 writes (0.3-0.7 ms).
        self._ready: tuple[cgroups.Group, int] | None = None
        self._ready_lock = threading.Lock()
        self._last_limit = DEFAULT_LIMIT_BYTES

    def prepare(self, limit_bytes: int, identity: Identity | None) -> WorkerLimits:
        """A new worker's group with its limits set, before the worker exists: the one made
        ahead when there is one (its limits changed if they differ). Raises OSError."""
        self._sweep()
        with self._ready_lock:
            ready, self._ready = self._ready, None
            self._last_limit = limit_bytes
        group = None
        if ready is not None:
            group, ready_limit = ready
            if ready_limit != limit_bytes:
                try:
                    self.set_limits(group, limit_bytes, ready_limit)
                except OSError:
                    group.remove()
                    raise
        elif self.hierarchies:
            group = self._new_group(limit_bytes)
        worker = WorkerLimits(self, limit_bytes, identity, group)
        self.count_uid(worker)
        return worker

    def make_ready(self) -> None:
        """Make the next worker's group now, with the last worker's limits, unless one is ready
        (blocking, for a thread: called as each worker starts, off its path). Logs rather than
        raises: the next worker then makes its own, and says why if it cannot."""
        if not self.hierarchies or self._ready is not None:
            return
        limit = self._last_limit
        try:
            group = self._new_group(limit)
        except OSError as exc:
            log.warning("control_group_not_made_ahead", error=str(exc))
            return
        with self._ready_lock:
            if self._ready is None:
                self._ready, group = (group, limit), None
        if group is not None:  # another thread was first
            group.remove()

    def _new_group(self, limit_bytes: int) -> cgroups.Group:
        try:
            group = cgroups.Group(self.hierarchies, f"w{next(_group_names)}")
        except OSError as exc:
            raise OSError(exc.errno, f"cannot create its control group {exc.filename}: {exc.strerror}") from exc
        try:
            self.set_limits(group, limit_bytes)
        except OSError:
            group.remove()
            raise
        return group

    @property
    def last_limit(self) -> int:
        """The memory limit of the last worker prepared: the likeliest next one."""
        return self._last_limit

    def set_limits(self, group: cgroups.Group, limit_bytes: int, previous: int | None = None) -> None:
        """The memory limit and the start-up CPU allowance of a group no process is in yet
        (``previous``: the limit it has; None: a new group, which gets the process limit too);
        raises OSError naming the file."""
        try:
            pids = group.dir_for("pids") if previous is None else None
            if pids is not None:
                _write(pids[1] / "pids.max", str(self.settings.pids_max))
            memory = group.dir_for("memory")
            if memory is not None:
                h, path = memory
                if h.version == 1:
                    # memory + swap may never be under memory alone: raised, it goes first.
                    writes = [(_write, "memory.limit_in_bytes"), (_try_write, "memory.memsw.limit_in_bytes")]
                    if previous is not None and limit_bytes > previous:
                        writes.reverse()
                    for write, name in writes:  # memsw: no escape by swapping
                        write(path / name, str(limit_bytes))
                else:
                    _write(path / "memory.max", str(limit_bytes))
                    _try_write(path / "memory.swap.max", "0")
            self.set_cpu(group, limit_bytes, initial=True)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot set its limits in {exc.filename}: {exc.strerror}") from exc

    def count_uid(self, worker: WorkerLimits) -> None:
        """``worker`` runs as its function's own uid: a live worker of that uid from now on."""
        if worker.identity is not None and worker.identity.own:
            self._by_uid.setdefault(worker.identity.uid, set()).add(worker)

    def attach(self, pid: int, limit_bytes: int) -> WorkerLimits:
        """A group for a process already started and held at a gate of its own until this returns
        (how a deploy-time build gets in). Raises OSError.

        A group of its own, never the one made ahead, and its limit is not the next worker's: a
        build's (Go's 2 GiB) is no worker's, and every cold start after a deploy would otherwise
        resize the group it takes back down, on its path (0.2 ms measured)."""
        self._sweep()
        limits = WorkerLimits(self, limit_bytes, None, self._new_group(limit_bytes) if self.hierarchies else None)
        try:
            if limits.join is not None:
                limits.join(pid)
            limits.started(pid)
        except OSError:
            limits.close()
            raise
        return limits

    def set_cpu(self, group: cgroups.Group | None, limit_bytes: int, *, initial: bool) -> None:
        cpu = group.dir_for("cpu") if self.has_cpu and group is not None else None
        if cpu is None:
            return
        h, path = cpu
        quota = cpu_quota_us(limit_bytes // MiB, self.settings.cpu_mb_per_vcpu)
        if initial:
            quota = max(quota, CPU_PERIOD_US)
        if h.version == 1:
            if initial:
                _write(path / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(path / "cpu.cfs_quota_us", str(quota))
        else:
            _write(path / "cpu.max", f"{quota} {CPU_PERIOD_US}")

    def watch(self, worker: WorkerLimits) -> None:
        if self._sampler is not None:
            self._sampler.add(worker)

    def unwatch(self, worker: WorkerLimits) -> None:
        if self._sampler is not None:
            self._sampler.discard(worker)
        identity = worker.identity
        if identity is None or not identity.own:
            return
        live = self._by_uid.get(identity.uid)
        if live is not None:
            live.discard(worker)
            if not live:
                del self._by_uid[identity.uid]
                if worker.group is None:
                    # No group to kill: what the function left behind (setsid'd children, daemons)
                    # dies with its last worker, before the uid can serve a new one.
                    kill_uid(identity.uid)

    def strays(self, uid: int) -> set[int]:
        """Processes of ``uid`` outside every live worker's session (they called setsid)."""
        sessions = {w.pid for w in list(self._by_uid.get(uid, ()))}  # list(): one step under the GIL
        return self._uid_processes.outside(uid, sessions)

    def bury(self, group: cgroups.Group) -> None:
        if not group.remove():
            with self._graveyard_lock:
                self._graveyard.append(group)  # its killed processes are still leaving

    def _sweep(self) -> None:
        if self._graveyard:
            with self._graveyard_lock:
                self._graveyard = [g for g in self._graveyard if not g.remove()]

    def close(self) -> None:
        """Shutdown: stop sampling; kill whatever any group still holds and remove them all."""
        if self._sampler is not None:
            self._sampler.close()
        for uid in list(self._by_uid):
            if not self.hierarchies:
                kill_uid(uid)
        self._by_uid.clear()
        for h in self.hierarchies:
            cgroups.remove_tree(h.root)


def _write(path: Path, value: str) -> None:
    """Write a control file; its OSError names it (a refused write() does not, by itself)."""
    try:
        path.write_text(value)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


def _try_write(path: Path, value: str) -> None:
    if path.exists():
        try:
            path.write_text(value)
        except OSError:
            pass


def choose_backend(preference: str = "auto", settings: LimitSettings | None = None) -> MemoryBackend:
    """The host's worker limits; ``preference`` (auto, cgroup or psutil) picks the memory backend.

    Raises RuntimeError when ``cgroup`` is asked for and no memory controller is writable.
    """
    settings = settings or LimitSettings()
    cgroups.remove_stale()
    wanted = cgroups.CONTROLLERS if preference != "psutil" else cgroups.CONTROLLERS - {"memory"}
    if settings.cpu_mb_per_vcpu <= 0:
        wanted -= {"cpu"}
    hierarchies = cgroups.discover(wanted)
    dynmods = cgroups.favordynmods(hierarchies) if hierarchies else "no cgroup hierarchy in use"
    backend = MemoryBackend(hierarchies, settings)
    if preference == "cgroup" and not backend.kernel_enforced:
        backend.close()
        raise RuntimeError("memory_backend = cgroup, but no writable memory cgroup was found")
    log.info("memory_backend", backend=backend.name, root=str(backend.root or ""))
    log.info("containment", groups=[str(h.root) for h in hierarchies], kill=backend.kill_method,
             pids_max=settings.pids_max if backend.has_pids else None,
             cpu_mb_per_vcpu=settings.cpu_mb_per_vcpu if backend.has_cpu else None, favordynmods=dynmods)
    backend.make_ready()  # the first worker's group
    if not hierarchies:
        log.warning("no_cgroups", note="workers' descendants are found by process tree and uid, "
                                       "and have no process or CPU limit beyond RLIMIT_NPROC")
    return backend
