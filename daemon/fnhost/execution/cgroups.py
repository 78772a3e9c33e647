"""Control groups for workers: one group per worker, in every hierarchy the daemon can write.

A worker's group holds its whole process tree, whatever the tree does. A process leaves a
cgroup only by writing its pid into another group's ``cgroup.procs``, which only root may do,
so a child that calls ``setsid``, double-forks or changes process group still counts against
the worker's memory and process limits, and dies with the worker. The limits (limits.py) ride
on that.

Hosts differ:

* cgroup v2 (a ``cgroup2`` mount): ``memory``, ``pids`` and ``cpu`` where the daemon's own group
  can hand them down, and in every case ``cgroup.kill`` (Linux 5.14), which kills a whole group
  in one write, forks in flight included. On a hybrid host the controller-less v2 mount is used
  for that kill alone.
* cgroup v1: one hierarchy per controller, each with its own directory for the worker and its
  own ``cgroup.procs``. A kill there SIGKILLs every listed process until a reading lists none
  that was not killed yet.

Everything of one daemon lives under ``fnhost-<daemon pid>`` below the daemon's own group in
each hierarchy. A daemon that died without cleaning up (SIGKILL) leaves its directories; the
next daemon on the host kills what they still hold and removes them (``remove_stale``).
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import structlog

log = structlog.get_logger("fnhost.cgroups")

CONTROLLERS = frozenset({"memory", "pids", "cpu"})
PREFIX = "fnhost-"
V2_DAEMON_LEAF = "daemon"  # where a v2 daemon moves itself to hand controllers down


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """One mounted hierarchy and this daemon's directory in it."""

    version: int  # 1 or 2
    root: Path  # <mount>/<the daemon's own group>/fnhost-<daemon pid>
    controllers: frozenset[str]  # those of CONTROLLERS that the groups under root have
    kill_file: bool  # v2's cgroup.kill is there


def _mounts() -> list[tuple[str, str, set[str]]]:
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 4:
            out.append((parts[1], parts[2], set(parts[3].split(","))))
    return out


def _own_group(controller: str | None) -> str | None:
    """This process's group for a v1 controller, or its v2 group when controller is None."""
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


def _v2_base(mountpoint: str) -> Path | None:
    own = _own_group(None)
    if own is None:
        return None
    base = Path(mountpoint) / own.lstrip("/")
    # A daemon that moved itself into its leaf keeps its workers beside the leaf.
    return base.parent if base.name == V2_DAEMON_LEAF else base


# --- discovery --------------------------------------------------------------------------------


def discover(wanted: frozenset[str]) -> list[Hierarchy]:
    """This daemon's directory in each hierarchy worth using, created; [] where none is writable.

    ``wanted``: the controllers to use where the host has them (the psutil memory backend leaves
    out ``memory``). v2 comes first; v1 supplies what v2 cannot.
    """
    found: list[Hierarchy] = []
    v2 = _discover_v2(wanted)
    missing = set(wanted)
    if v2 is not None:
        found.append(v2)
        missing -= v2.controllers
    for controller in sorted(missing):
        if any(controller in h.controllers for h in found):
            continue  # co-mounted with one found already
        v1 = _discover_v1(controller, wanted)
        if v1 is not None:
            found.append(v1)
    return found


def _probe(directory: Path, controllers: frozenset[str], version: int) -> None:
    """Write the limit files a worker's group will get, in a throw-away group: raises OSError."""
    probe = directory / "probe"
    probe.mkdir(exist_ok=True)
    try:
        for controller in sorted(controllers):
            if controller == "memory":
                name = "memory.max" if version == 2 else "memory.limit_in_bytes"
                (probe / name).write_text(str(64 * 1024 * 1024))
            elif controller == "pids":
                (probe / "pids.max").write_text("1024")
            elif controller == "cpu":
                if version == 2:
                    (probe / "cpu.max").write_text("50000 100000")
                else:
                    (probe / "cpu.cfs_quota_us").write_text("50000")
    finally:
        probe.rmdir()


def _discover_v1(controller: str, wanted: frozenset[str]) -> Hierarchy | None:
    for mountpoint, fstype, options in _mounts():
        if fstype != "cgroup" or controller not in options:
            continue
        own = _own_group(controller) or "/"
        root = Path(mountpoint) / own.lstrip("/") / f"{PREFIX}{os.getpid()}"
        controllers = frozenset(options & wanted)
        try:
            root.mkdir(exist_ok=True)
            _probe(root, controllers, 1)
        except OSError as exc:
            log.info("cgroup_unavailable", hierarchy=mountpoint, error=exc.strerror)
            _rmdir(root)
            return None
        return Hierarchy(1, root, controllers, kill_file=False)
    return None


def _discover_v2(wanted: frozenset[str]) -> Hierarchy | None:
    for mountpoint, fstype, _ in _mounts():
        if fstype != "cgroup2":
            continue
        base = _v2_base(mountpoint)
        if base is None:
            return None
        root = base / f"{PREFIX}{os.getpid()}"
        try:
            available = set((base / "cgroup.controllers").read_text().split())
        except OSError:
            return None
        enabled = _delegate(base, frozenset(wanted & available))
        try:
            root.mkdir(exist_ok=True)
        except OSError as exc:
            log.info("cgroup_unavailable", hierarchy=mountpoint, error=exc.strerror)
            return None
        try:
            if enabled:
                (root / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in sorted(enabled)))
                _probe(root, enabled, 2)
        except OSError as exc:
            log.info("cgroup_v2_controllers_unavailable", path=str(root), error=exc.strerror)
            enabled = frozenset()
        kill_file = (root / "cgroup.kill").exists()
        if not enabled and not kill_file:
            _rmdir(root)
            return None
        return Hierarchy(2, root, enabled, kill_file)
    return None


def favordynmods(hierarchies: list[Hierarchy]) -> str:
    """Whether the cgroup file system of ``hierarchies`` is mounted with ``favordynmods``: "on",
    "off" (with what it costs), or "no cgroup hierarchy in use".

    Moving a process into a group takes a kernel-wide lock (``cgroup_threadgroup_rwsem``) whose
    writer first waits for an RCU grace period unless ``favordynmods`` is set: measured at 4.7-13
    ms for the first write into a ``cgroup.procs`` of each spawn against 0.2 ms with it (2-core
    VM, Linux 6.18; bench/spawnsteps.py). Every worker starts with one such move (spawn.py's
    gate), so without it the grace period is most of a Go cold start. The daemon only reports it:
    the option is the whole host's (every fork and exit takes the lock's slower read path, says
    the kernel's documentation) and, from Linux 6.18, what it turns on stays until reboot. An
    operator who wants it remounts (README: Cold starts).
    """
    used = {h.root for h in hierarchies}
    mounts = [(mp, opts) for mp, fstype, opts in _mounts()
              if fstype in ("cgroup", "cgroup2") and any(Path(mp) in r.parents for r in used)]
    if not mounts:
        return "no cgroup hierarchy in use"
    if any("favordynmods" in opts for _, opts in mounts):
        return "on"
    return (f"off: each worker start waits 5-13 ms for the kernel to move it into its group; "
            f"`mount -o remount,favordynmods {mounts[0][0]}` (Linux 6.0+, host-wide) removes the wait")


def _delegate(base: Path, controllers: frozenset[str]) -> frozenset[str]:
    """Enable ``controllers`` for ``base``'s children; returns those that are."""
    if not controllers:
        return controllers
    try:
        current = set((base / "cgroup.subtree_control").read_text().split())
        missing = controllers - current
        if missing:
            # cgroup v2 forbids processes in a group that hands controllers down, so the daemon
            # moves itself into a leaf first (systemd's Delegate=yes allows this).
            leaf = base / V2_DAEMON_LEAF
            leaf.mkdir(exist_ok=True)
            (leaf / "cgroup.procs").write_text(str(os.getpid()))
            (base / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in sorted(missing)))
    except OSError as exc:
        log.info("cgroup_v2_delegation_unavailable", path=str(base), error=exc.strerror)
        try:
            return frozenset(controllers & set((base / "cgroup.subtree_control").read_text().split()))
        except OSError:
            return frozenset()
    return controllers


# --- one worker's group -----------------------------------------------------------------------


class Group:
    """One worker's directory in each hierarchy; every process of the worker is in all of them."""

    def __init__(self, hierarchies: list[Hierarchy], name: str) -> None:
        self.dirs: list[tuple[Hierarchy, Path]] = []
        try:
            for h in hierarchies:
                path = h.root / name
                path.mkdir()
                self.dirs.append((h, path))
        except OSError:
            self.remove()
            raise

    def dir_for(self, controller: str) -> tuple[Hierarchy, Path] | None:
        for h, path in self.dirs:
            if controller in h.controllers:
                return h, path
        return None

    def join(self, pid: int) -> None:
        """Move ``pid`` into every directory: raises OSError naming the one that refused."""
        for _, path in self.dirs:
            try:
                (path / "cgroup.procs").write_text(str(pid))
            except OSError as exc:
                raise OSError(exc.errno, f"cannot enter its control group {path}: {exc.strerror}") from exc

    def pids(self) -> set[int]:
        """The processes in the group (any directory lists them all: they were joined together)."""
        return _read_pids(self.dirs[0][1] / "cgroup.procs") if self.dirs else set()

    def kill(self) -> None:
        """SIGKILL every process in the group, including those forking right now."""
        for h, path in self.dirs:
            if h.kill_file:
                try:
                    (path / "cgroup.kill").write_text("1")
                    return
                except OSError:
                    pass
        if self.dirs:
            kill_listed(self.dirs[0][1] / "cgroup.procs")

    def remove(self) -> bool:
        """Remove the directories (each must be empty); True once all are gone."""
        left = []
        for h, path in self.dirs:
            if not _rmdir(path):
                left.append((h, path))
        self.dirs = left
        return not left


def _read_pids(procs: Path) -> set[int]:
    try:
        return {int(line) for line in procs.read_text().split()}
    except (OSError, ValueError):
        return set()


def kill_listed(procs: Path, rounds: int = 64) -> None:
    """SIGKILL every process listed in ``procs`` until a reading lists none not killed yet.

    A process with SIGKILL pending cannot fork any more, so the children of one that forked
    just before its signal appear in the next reading; a few rounds reach the whole tree. Each
    kill goes through a pidfd opened while the pid was listed and still listed after, so a pid
    reused by a process outside the group is never signalled.
    """
    killed: set[int] = set()
    for _ in range(rounds):
        new = _read_pids(procs) - killed
        if not new:
            return
        fds = {}
        for pid in new:
            try:
                fds[pid] = os.pidfd_open(pid)
            except OSError:
                pass
        still = _read_pids(procs)
        for pid, fd in fds.items():
            try:
                if pid in still:
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
            except OSError:
                pass
            finally:
                os.close(fd)
        killed |= new


def _rmdir(path: Path) -> bool:
    try:
        path.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


# --- clean-up ---------------------------------------------------------------------------------


def remove_tree(root: Path, wait_s: float = 2.0) -> bool:
    """Kill everything in ``root``'s groups and remove them and ``root``; True when all are gone.

    Blocks up to ``wait_s`` for killed processes to leave: for start-up and shutdown only.
    """
    if not root.is_dir():
        return True
    groups = [p for p in root.iterdir() if p.is_dir()]
    for group in groups:
        if (group / "cgroup.kill").exists():
            try:
                (group / "cgroup.kill").write_text("1")
                continue
            except OSError:
                pass
        kill_listed(group / "cgroup.procs")
    deadline = time.monotonic() + wait_s
    while True:
        groups = [g for g in groups if not _rmdir(g)]
        if not groups or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    for group in groups:
        log.warning("cgroup_not_removed", path=str(group), processes=sorted(_read_pids(group / "cgroup.procs")))
    return _rmdir(root) and not groups


def remove_stale() -> int:
    """Kill what the groups of dead daemons on this host still hold, and remove them.

    A daemon killed by SIGKILL skips its clean-up; a process of one of its functions that had
    left the worker's process group is still in the worker's group, and dies here. Returns how
    many daemons' directories were removed.
    """
    removed = 0
    for parent in _parents():
        try:
            entries = list(parent.glob(f"{PREFIX}*"))
        except OSError:
            continue
        for stale in entries:
            pid = stale.name.removeprefix(PREFIX)
            if not pid.isdigit() or int(pid) == os.getpid() or psutil.pid_exists(int(pid)):
                continue
            try:
                remove_tree(stale)
            except OSError as exc:  # a root daemon's, seen by one that is not root: not ours to remove
                log.warning("stale_cgroup_left", path=str(stale), error=exc.strerror,
                            note="this daemon may not remove it; a daemon running as its owner will")
                continue
            log.info("stale_cgroup_removed", path=str(stale))
            removed += 1
    return removed


def _parents() -> list[Path]:
    """The daemon's own group in every cgroup hierarchy: where daemons keep their directories."""
    parents = []
    for mountpoint, fstype, options in _mounts():
        if fstype == "cgroup2":
            base = _v2_base(mountpoint)
        elif fstype == "cgroup" and options & CONTROLLERS:
            controller = min(options & CONTROLLERS)
            base = Path(mountpoint) / (_own_group(controller) or "/").lstrip("/")
        else:
            continue
        if base is not None and base not in parents:
            parents.append(base)
    return parents
