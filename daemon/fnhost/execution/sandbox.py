"""Who a worker runs as, and what it may see, when the daemon runs as root.

A root daemon never runs user code as root: each function gets its own uid and gid (``base +
slot``, no passwd entry needed, as systemd's DynamicUser does), or every function runs as the
configured ``worker_user``. Each worker also gets ``umask 077``, resource limits, and a private
scratch directory (``TMPDIR`` and ``HOME``) that it owns and that is removed when it exits.

What a function cannot reach follows from ownership and modes: the state directory, ``code/``
and ``builds/`` are 0711 (enter, never list), the registry and the pid lock are 0600, the socket
is 0660 with the daemon's group, and a stored function's code sits under an unlistable 256-bit
content hash. Everything a worker must read (the runtime shims, toolchains, code directories)
is checked at start-up or deploy with ``readable_by_others``, so a wrong mode is an error that
names the path, not an ImportModuleError later.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger("fnhost.sandbox")

NOFILE = 1024  # Lambda's file descriptor limit
NPROC = 4096  # per uid, so per function: room for a few dozen JVMs' threads


@dataclass(frozen=True, slots=True)
class Identity:
    uid: int
    gid: int


def privilege_drop_enabled(worker_user: str) -> bool:
    """Workers change identity only when the daemon is root and not told to keep root."""
    return os.geteuid() == 0 and worker_user != "root"


def identity_for(slot: int, worker_user: str, uid_base: int) -> Identity | None:
    if not privilege_drop_enabled(worker_user):
        return None
    if worker_user:
        try:
            entry = pwd.getpwnam(worker_user)
        except KeyError:
            raise ValueError(f"daemon.worker_user: no such user {worker_user!r}") from None
        return Identity(entry.pw_uid, entry.pw_gid)
    return Identity(uid_base + slot, uid_base + slot)


def readable_by_others(path: Path, *, directory: bool) -> str | None:
    """None if a process of another uid can read ``path``; else the path component in the way."""
    path = path.resolve()
    for ancestor in reversed(path.parents):
        if not os.stat(ancestor).st_mode & stat.S_IXOTH:
            return str(ancestor)
    mode = os.stat(path).st_mode
    needed = (stat.S_IROTH | stat.S_IXOTH) if directory else stat.S_IROTH
    if mode & needed != needed:
        return str(path)
    return None


def executable_by_others(path: str) -> bool:
    p = Path(path).resolve()
    blocked = readable_by_others(p, directory=False)
    return blocked is None and bool(os.stat(p).st_mode & stat.S_IXOTH)


def publish_runtimes(source: Path, state_dir: Path) -> Path:
    """Copy the shims where unprivileged workers can read them, wherever fnhost is installed.

    A pip install under /root (pyenv) or a checkout under a 0700 directory would otherwise hide
    the shims from every worker.
    """
    target = state_dir / "runtimes"
    staging = state_dir / ".runtimes-new"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    make_readable(staging)
    shutil.rmtree(target, ignore_errors=True)
    os.rename(staging, target)
    return target


def make_readable(root: Path) -> None:
    """Directories 0755, files 0644 (0755 if executable by their owner): for code and builds."""
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, 0o755 if os.stat(p).st_mode & stat.S_IXUSR else 0o644)


def prepare_scratch(root: Path, name: str, identity: Identity | None) -> Path:
    """A private directory for one worker: its TMPDIR and HOME."""
    path = root / name
    path.mkdir(mode=0o700)
    if identity is not None:
        os.chown(path, identity.uid, identity.gid)
    return path


def limited_argv(argv: list[str], own_uid: bool) -> list[str]:
    """``argv`` behind util-linux's prlimit, which sets the limits on itself and then execs.

    The parent cannot set them afterwards: once the child has switched to its uid it is no longer
    the daemon's to change (prlimit(2) answers EPERM), and preexec_fn is unsafe in a threaded
    daemon. Without the prlimit tool, workers keep the daemon's limits, and the log says so.
    """
    if _PRLIMIT is None:
        return argv
    # RLIMIT_NPROC counts every process of the uid: only meaningful when the function has its own.
    nproc = [f"--nproc={NPROC}:{NPROC}"] if own_uid else []
    return [_PRLIMIT, f"--nofile={NOFILE}:{NOFILE}", *nproc, "--", *argv]


_PRLIMIT = shutil.which("prlimit")
if _PRLIMIT is None:
    log.warning("prlimit_missing", note="workers keep the daemon's resource limits (util-linux's prlimit is absent)")
