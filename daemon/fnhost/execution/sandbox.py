"""Who a worker runs as, and what it may see, when the daemon runs as root.

A root daemon never runs user code as root: each function gets its own uid and gid (``base +
slot``, no passwd entry needed, as systemd's DynamicUser does), or every function runs as the
configured ``worker_user``. Each worker also gets ``umask 077``, resource limits, and a private
scratch directory (``TMPDIR`` and ``HOME``) that it owns and that is removed when it exits.

Which slot (so which uid) a new function gets, so that no two functions alive at once on the
host ever share one, is uids.py's business.

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
import select
import shutil
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from .limits import MemoryBackend
    from .worker_limits import WorkerLimits

log = structlog.get_logger("fnhost.sandbox")

NOFILE = 1024  # Lambda's file descriptor limit
NPROC = 4096  # per uid, so per function: room for a few dozen JVMs' threads


@dataclass(frozen=True, slots=True)
class Identity:
    uid: int
    gid: int
    own: bool = False  # the function's own uid (not a shared worker_user): all its processes are the function's


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
    return Identity(uid_base + slot, uid_base + slot, own=True)


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


# --- one short-lived untrusted command (a deploy-time build) ---------------------------------

OUTPUT_TAIL = 64 * 1024  # what is kept of its output: enough for the compiler's last errors


@dataclass(frozen=True, slots=True)
class Ran:
    """How a command run by ``run_confined`` ended."""

    returncode: int | None  # None: killed at its deadline
    output: str  # the last OUTPUT_TAIL bytes of its stdout and stderr
    out_of_memory: bool


def run_confined(argv: list[str], *, identity: Identity | None, cwd: Path, env: dict[str, str],
                 timeout_s: float, memory_limit_bytes: int = 0,
                 backend: MemoryBackend | None = None, umask: int = 0o077) -> Ran:
    """Run ``argv`` as a worker runs, wait for it (blocking the calling thread), and clean up.

    As ``identity`` (None: this process's own user), no supplementary groups, ``umask``, the
    workers' rlimits (``limited_argv``), its own process group; given a backend and a limit, in a
    memory group of its own that it is in before its first instruction: it starts behind a shell
    that waits for one line on stdin, written once the group holds it. Its output is read as it
    comes and only the tail kept, so a flood cannot grow the daemon. When the leader exits, or at
    the deadline, the whole process group and every process left in the memory group are killed:
    nothing it started outlives it. Raises OSError if it cannot start (or join its group).
    """
    gate = backend is not None and memory_limit_bytes > 0
    if gate:
        argv = ["/bin/sh", "-c", 'read -r _ && exec "$@"', "fnhost-confined", *argv]
    proc = subprocess.Popen(
        limited_argv(argv, identity is not None and identity.own),
        bufsize=0,
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE if gate else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        user=identity.uid if identity else None,
        group=identity.gid if identity else None,
        extra_groups=[] if identity else None,
        umask=umask,
    )
    memory: WorkerLimits | None = None
    tail = bytearray()
    over_limit = False
    try:
        if gate:
            assert backend is not None and proc.stdin is not None
            memory = backend.attach(proc.pid, memory_limit_bytes)
            try:
                proc.stdin.write(b"go\n")
            except BrokenPipeError:
                pass  # it ended already (prlimit failed, say): its status tells why
            proc.stdin.close()
        timed_out = _follow(proc, tail, time.monotonic() + timeout_s)
    finally:
        # The leader is still unreaped here, so its pid is still this group's id and cannot
        # have been reused: killpg reaches only what the command started.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if memory is not None:
            memory.kill()  # descendants that left the process group are still in the memory group
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()
        if memory is not None:
            over_limit = memory.oom_killed()  # the kernel's OOM kill, or the psutil sampler's
            memory.close()
    return Ran(None if timed_out else proc.returncode, tail.decode(errors="replace"), over_limit)


def _follow(proc: subprocess.Popen[bytes], tail: bytearray, deadline: float) -> bool:
    """Keep the output's tail until the leader exits; True if the deadline came first."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    open_ = True

    def read() -> None:
        nonlocal open_
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not chunk:
            open_ = False  # a descendant may still run: the leader's exit ends the wait
            poller.unregister(fd)
        tail.extend(chunk)
        del tail[:-OUTPUT_TAIL]

    while True:
        now = time.monotonic()
        if now >= deadline:
            return True
        if open_:
            if poller.poll(min(deadline - now, 0.1) * 1000):
                read()
        else:
            time.sleep(min(deadline - now, 0.05))
        # WNOWAIT: notice the leader's exit without reaping it (see run_confined).
        if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            for _ in range(16):  # what it wrote last; a descendant still flooding is cut off
                if not (open_ and poller.poll(0)):
                    break
                read()
            return False
