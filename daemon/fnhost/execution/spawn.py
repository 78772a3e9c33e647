"""Starting a worker process: its pipes, its identity, its environment; and writing to it.

Kept apart from worker.py, which owns the conversation and the state machine: this is the part
that touches file descriptors and exec.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import anyio
import structlog

from . import isolation, protocol, sandbox
from .cellkey import CellKey
from .limits import MemoryBackend
from .logcapture import LOG_MAX_BYTES
from .sandbox import Identity
from .spare import AHEAD_AFTER_S, HeldSpare, SpareLost
from .worker_limits import WorkerLimits
from .zygote import Forked, Zygote, ZygoteKey, ZygoteUnavailable
from .zygotes import Zygotes

log = structlog.get_logger("fnhost.worker")

PIPE_SIZE = 1024 * 1024  # a 64 KiB default pipe makes large frames 3x slower (DESIGN.md)

# A worker that must join control groups starts as this shell, waiting at a gate (one line on
# its stdin) while the daemon writes its pid into every cgroup.procs of its group; only then
# does it exec the worker, so every process the worker ever starts is born inside the group.
# The shell runs as the function's uid already (setpriv or Popen's user=), never as root.
# Nothing of the function runs before the gate opens — not even a library its environment
# preloads: the shell gets the worker's environment under other names (LD_PRELOAD as
# FNHOST_ENV_LD_PRELOAD) and puts the real names back only for the exec after the gate. eval
# sees names only (checked against _SHELL_NAME), never values. Exit status 125: the daemon
# never opened the gate.
#
# In its own namespaces (isolation.py) the gate shell runs as root instead, because bubblewrap
# must: it only waits, and the environment is restored by a second shell that runs after
# setpriv has dropped to the function's uid — no root process ever sees LD_PRELOAD and friends.
_SH = "/bin/sh"
_WAIT = 'read -r x || exit 125\n'
_RESTORE = (
    'unset PWD\n'  # the shell's own; the worker has exactly the environment it was given
    'for k in $FNHOST_GATE_KEYS; do eval "export $k=\\"\\$FNHOST_ENV_$k\\""; unset "FNHOST_ENV_$k"; done\n'
    'unset FNHOST_GATE_KEYS\n'
    'exec "$@" </dev/null\n'
)
_GATE = _WAIT + _RESTORE
_SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# Without namespaces, the uid is dropped by util-linux setpriv in front of the gate shell rather
# than by Popen's user=/group=: CPython will not vfork a child that changes its uid, so user=
# copies the daemon's whole address space (fork: 3.2 ms for a small daemon, more for a big one,
# against 0.3 ms vforked, bench/spawnsteps.py). setpriv runs as root for one exec, on the same
# shifted environment the namespaced path gives it (no LD_PRELOAD of the function's in force),
# and does what user= did: uid, gid, no supplementary groups. Only behind the gate, whose
# environment is shifted; an ungated worker (no control groups) and a host without setpriv
# keep user=.
_SETPRIV = shutil.which("setpriv")

_scratch_ids = itertools.count(1)

# The threads that spawn workers (fork/exec blocks its caller: never on the event loop). They
# live as long as the daemon: a namespaced worker dies with the thread that forked it
# (bubblewrap's --die-with-parent), which is what makes it die with the daemon.
SPAWN_THREADS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fnhost-spawn")


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Everything needed to start a worker of one function version; computed once at deploy."""

    function: str
    argv: list[str]
    env: dict[str, str]
    cwd: str
    init_frame: bytes
    memory_limit_bytes: int
    init_timeout_s: float
    kill_grace_s: float
    identity: Identity | None = None  # a root daemon's workers run as this uid/gid
    view: isolation.View | None = None  # its own mount and pid namespaces (needs an identity)
    scratch_root: Path | None = None  # where each worker gets its private TMPDIR/HOME
    log_max_bytes: int = LOG_MAX_BYTES  # output logged per invocation; the rest is discarded
    zygote: ZygoteKey | None = None  # the zygote that can fork it (zygote.py); None: always spawned
    # Forked from ``zygote`` only to be set up (namespaces, view, groups, uid), then exec'ing its
    # argv: another runtime's worker without bubblewrap, setpriv, shells and prlimit in between.
    exec_after_fork: bool = False
    # The stem cells that can become its worker (stemcell.py); None: it has none.
    stem_cell: CellKey | None = None
    # This is a stem cell's spec (no function yet): forked, exec'd as root holding only
    # CAP_SETUID and CAP_SETGID (``identity`` is None), and given its function by SPECIALISE.
    cell: bool = False
    own_uid: bool = False  # a cell: the function that takes it runs as a uid of its own (RLIMIT_NPROC)


@dataclass(slots=True)
class Spawned:
    """A started worker process and the daemon's ends of its pipes (non-blocking)."""

    proc: subprocess.Popen[bytes] | Forked
    to_worker: int
    from_worker: int
    stdout: int
    stderr: int
    scratch: Path | None
    # The process started leads a pid namespace (bubblewrap, or a forked worker's init) and
    # reports its worker's death by signal N as status 128 + N; its worker is a descendant.
    has_init: bool = False


class _Pipes:
    """A worker's control pipes and stdout/stderr: ``ours`` (the daemon's ends, and whatever the
    start adds) and ``theirs`` (the child's, closed once it has them); ``abandon`` when the
    start fails closes ours and removes the scratch directory."""

    def __init__(self) -> None:
        child_in, self.to_worker = os.pipe()
        self.from_worker, child_out = os.pipe()
        self.out_r, out_w = os.pipe()
        self.err_r, err_w = os.pipe()
        self.ours = [self.to_worker, self.from_worker, self.out_r, self.err_r]
        self.theirs = [child_in, child_out, out_w, err_w]
        self.scratch: Path | None = None
        for fd in (self.to_worker, self.from_worker):
            _set_pipe_size(fd)

    def abandon(self) -> None:
        for fd in self.ours:
            os.close(fd)
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def close_theirs(self) -> None:
        for fd in self.theirs:
            os.close(fd)

    def spawned(self, proc: subprocess.Popen[bytes] | Forked, *, has_init: bool) -> Spawned:
        for fd in (self.to_worker, self.from_worker):
            os.set_blocking(fd, False)
        return Spawned(proc, self.to_worker, self.from_worker, self.out_r, self.err_r, self.scratch, has_init)


def _set_pipe_size(fd: int) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass  # an unprivileged daemon over /proc/sys/fs/pipe-max-size keeps the default


def _shifted(env: dict[str, str]) -> dict[str, str]:
    """``env`` under other names, for the shell of _RESTORE to put back."""
    keys = [k for k in env if _SHELL_NAME.match(k)]
    shifted = {k: v for k, v in env.items() if not _SHELL_NAME.match(k)}  # odd names: no loader reads them
    shifted.update({f"FNHOST_ENV_{k}": env[k] for k in keys})
    shifted["FNHOST_GATE_KEYS"] = " ".join(keys)
    return shifted


def _gated(argv: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """``argv`` and ``env`` behind the gate shell (see _GATE)."""
    return [_SH, "-c", _GATE, "fnhost-worker", *argv], _shifted(env)


def _isolated(argv: list[str], env: dict[str, str], spec: WorkerSpec, scratch: Path | None,
              gated: bool) -> tuple[list[str], dict[str, str]]:
    """``argv`` in its own namespaces (isolation.py), started as root, the uid dropped inside."""
    assert spec.view is not None and spec.identity is not None
    view = spec.view if scratch is None else replace(spec.view, writable=(*spec.view.writable, str(scratch)))
    inner = [_SH, "-c", _RESTORE, "fnhost-worker", *argv]
    outer = isolation.wrap(inner, view, spec.identity.uid, spec.identity.gid)
    if gated:
        outer = [_SH, "-c", _WAIT + 'exec "$@" </dev/null\n', "fnhost-gate", *outer]
    return outer, _shifted(env)


def _environment(spec: WorkerSpec, child_in: int, child_out: int) -> tuple[dict[str, str], Path | None]:
    """The worker's environment (but its control fds) and its scratch directory, if it gets one."""
    env = dict(spec.env)
    scratch = None
    if spec.identity is not None:
        # Shims reopen their pipes through /proc/self/fd to get close-on-exec, and the pipe's
        # inode (mode 0600, owned by its creator) must let the worker's uid do that.
        for fd in (child_in, child_out):
            os.fchown(fd, spec.identity.uid, spec.identity.gid)
    if spec.view is None and spec.scratch_root is not None:
        scratch = sandbox.prepare_scratch(spec.scratch_root, f"w{next(_scratch_ids)}", spec.identity)
    env.update(private_dirs(spec, scratch))
    return env, scratch


def private_dirs(spec: WorkerSpec, scratch: Path | None) -> dict[str, str]:
    """A worker's TMPDIR and HOME: its own /tmp in a mount namespace (of ephemeral_storage_mb:
    nothing else to write), else its ``scratch`` directory; nothing without either."""
    path = "/tmp" if spec.view is not None else str(scratch) if scratch is not None else None
    return {"TMPDIR": path, "HOME": path} if path is not None else {}


def spawn(spec: WorkerSpec, join: Callable[[int], None] | None = None) -> Spawned:
    """Start the worker as ``spec`` says; raises OSError with nothing left open or behind.

    ``join``: called with the child's pid while the child waits at its gate, before it runs any
    of the worker (limits.WorkerLimits.join puts it in its control groups); if it raises, the
    child is killed and the OSError propagates.
    """
    pipes = _Pipes()
    child_in, child_out, out_w, err_w = pipes.theirs
    identity = spec.identity
    gate = -1
    try:
        env, pipes.scratch = _environment(spec, child_in, child_out)
        scratch = pipes.scratch
        env[protocol.CONTROL_FDS_ENV] = f"{child_in},{child_out}"
        argv = sandbox.limited_argv(spec.argv, identity is not None and identity.own)
        stdin: int = subprocess.DEVNULL
        if join is not None:
            stdin, gate = os.pipe()
            pipes.theirs.append(stdin)
        as_root = spec.view is not None  # bubblewrap needs root; setpriv drops to the uid inside
        if as_root:
            argv, env = _isolated(argv, env, spec, scratch, gated=join is not None)
        elif join is not None:
            argv, env = _gated(argv, env)
        drop = identity if identity is not None and not as_root else None
        if drop is not None and join is not None and _SETPRIV is not None:  # gated: env shifted
            argv = [_SETPRIV, f"--reuid={drop.uid}", f"--regid={drop.gid}", "--clear-groups", "--", *argv]
            drop = None
        proc = subprocess.Popen(
            argv,
            cwd=spec.cwd,
            env=env,
            stdin=stdin,
            stdout=out_w,
            stderr=err_w,
            pass_fds=(child_in, child_out),
            start_new_session=True,  # its own process group: kills reach every descendant
            user=drop.uid if drop else None,
            group=drop.gid if drop else None,
            extra_groups=[] if drop else None,
            umask=0o077,
        )
        if join is not None:
            try:
                join(proc.pid)
            except BaseException:
                proc.kill()  # still at its gate: nothing of it ran
                proc.wait()
                raise
            try:
                os.write(gate, b"go\n")
            except BrokenPipeError:
                pass  # it died at its gate already: its exit says why
    except BaseException:
        pipes.abandon()
        raise
    finally:
        pipes.close_theirs()
        if gate >= 0:
            os.close(gate)
    return pipes.spawned(proc, has_init=spec.view is not None)


async def fork(spec: WorkerSpec, zygote: Zygote, enters: WorkerLimits | None, spare: HeldSpare | None = None) -> Spawned:
    """The worker forked by ``zygote`` (given to ``spare``, when the daemon holds one: spare.py),
    entering the groups of ``enters`` itself (those ``spawn``'s ``join`` would put it in); raises
    ZygoteUnavailable, SpareLost or OSError with nothing left open.

    On the event loop, not in a spawn thread: nothing here blocks (a thread hop costs more than
    the fork), and the zygote's answer is awaited. The spec goes to the worker in a pipe of its
    own that the zygote passes on unread: no function's environment ever enters the zygote."""
    pipes = _Pipes()
    child_in, child_out = pipes.theirs[:2]
    status_r, status_w = os.pipe()
    spec_r, spec_w = os.pipe()
    pipes.ours.append(status_r)
    pipes.theirs += [status_w, spec_r]
    try:
        if enters is not None:
            pipes.theirs += enters.open_procs()  # the worker writes itself in
        env, pipes.scratch = _environment(spec, child_in, child_out)
        scratch = pipes.scratch
        identity = spec.identity
        view = spec.view
        if view is not None and scratch is not None:
            view = replace(view, writable=(*view.writable, str(scratch)))
        request = json.dumps({
            "argv": spec.argv,  # what it execs, or what /proc shows as its command line
            "exec": spec.exec_after_fork,
            "cwd": spec.cwd,
            "env": env,
            "identity": {"cell": True, "own": spec.own_uid} if spec.cell else None if identity is None else {
                "uid": identity.uid, "gid": identity.gid, "own": identity.own},
            "view": None if view is None else {
                "hidden": list(view.hidden), "readable": list(view.readable), "writable": list(view.writable),
                "tmp_mb": view.tmp_mb, "opt": view.opt},
        }).encode()
        if len(request) > 65536:
            _set_pipe_size(spec_w)
        if os.write(spec_w, request) != len(request):  # an empty pipe takes it whole (64 KiB, or 1 MiB)
            raise OSError(errno.E2BIG, "the worker's spec does not fit its pipe")
        os.close(spec_w)
        spec_w = -1
        pid = await zygote.fork({"namespaced": view is not None}, pipes.theirs, spare)
    except BaseException:
        pipes.abandon()
        raise
    finally:
        pipes.close_theirs()
        if spec_w >= 0:
            os.close(spec_w)
    return pipes.spawned(Forked(pid, status_r, zygote), has_init=True)


async def start_process(spec: WorkerSpec, backend: MemoryBackend | None, zygotes: Zygotes | None, *,
                        forked_only: bool = False) -> tuple[Spawned, WorkerLimits | None]:
    """A worker's process, forked by its zygote (``fork``) or spawned (``spawn``), born into a
    control group of its own with its limits set (``backend``); and that group's limits. Raises
    OSError, or ZygoteUnavailable with ``forked_only`` (a stem cell, which is never spawned);
    nothing is left behind."""
    loop = asyncio.get_running_loop()
    limits = None
    zygote = zygotes.get(spec.zygote) if zygotes is not None and spec.zygote is not None else None
    spare = zygote.take_spare(spec.view is not None) if zygote is not None else None
    try:
        if spare is not None and spare.limits is not None:
            try:
                limits = spare.take(spec.memory_limit_bytes, spec.identity)  # joined while it waited
            except OSError as exc:
                log.warning("spare_group_refused", function=spec.function, error=str(exc))
                zygote.let_go(spare)  # type: ignore[union-attr]
                spare = None
        joined = limits is not None
        if backend is not None and limits is None:
            # Its control group exists, limits set, before it does: it is born into it.
            limits = backend.prepare(spec.memory_limit_bytes, spec.identity)
        spawned = None
        # Shielded: a process started for a caller that went away meanwhile is still ours to stop.
        with anyio.CancelScope(shield=True):
            if zygote is not None:
                try:
                    try:
                        spawned = await fork(spec, zygote, None if joined else limits, spare)
                    except SpareLost:  # the zygote forks another, into a group of its own
                        spare = None
                        if joined and backend is not None:
                            limits.close()  # type: ignore[union-attr]
                            limits = backend.prepare(spec.memory_limit_bytes, spec.identity)
                        spawned = await fork(spec, zygote, limits)
                    spare = None
                except ZygoteUnavailable as exc:
                    if forked_only:
                        raise
                    log.warning("zygote_fallback", function=spec.function, reason=str(exc),
                                note="this worker is spawned")
                    if not zygote.running:  # started again in the background, for the next one
                        loop.run_in_executor(SPAWN_THREADS, zygotes.warm, spec.zygote)  # type: ignore[union-attr]
            elif forked_only:
                raise ZygoteUnavailable("no zygote is running")
            if spawned is None:
                # Off the event loop: fork/exec blocks its caller until the child has exec'd,
                # measured at 35-80 ms when both cores are busy.
                spawned = await loop.run_in_executor(
                    SPAWN_THREADS, partial(spawn, spec, join=limits.join if limits is not None else None))
    except BaseException:
        if spare is not None:  # never given its request
            zygote.let_go(spare)  # type: ignore[union-attr]
        if limits is not None:
            limits.close()
        raise
    if backend is not None:  # the next worker's group, made once this start is under way (spare.py)
        loop.call_later(AHEAD_AFTER_S, loop.run_in_executor, SPAWN_THREADS, backend.make_ready)
    return spawned, limits


def describe_exit(returncode: int, namespaced: bool = False) -> str:
    """Lambda's words for how a worker ended ("signal: kill", "exit status 1"); ``namespaced``:
    ``returncode`` is bubblewrap's."""
    if namespaced and returncode > 128:
        returncode = 128 - returncode  # bubblewrap reports its worker's death by signal N as 128 + N
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"signal: {name.removeprefix('SIG').lower()}" if name.startswith("SIG") else name
    return f"exit status {returncode}"


def write_now(fd: int, parts: list[bytes]) -> list[bytes]:
    """Write what the pipe takes without waiting; return what is left (usually nothing).

    An INVOKE up to the pipe's 1 MiB goes out in this one writev, so the invoke path needs no
    await (and no event-loop turn) to send it.
    """
    try:
        n = os.writev(fd, parts)
    except BlockingIOError:
        return parts
    while parts and n >= len(parts[0]):
        n -= len(parts[0])
        parts = parts[1:]
    if parts and n:
        parts = [memoryview(parts[0])[n:], *parts[1:]]
    return parts


async def write_all(fd: int, parts: list[bytes]) -> None:
    """Write ``parts`` to a non-blocking pipe, a ``write_now`` each time it has room.

    Raises OSError (EPIPE) when the reader is gone.
    """
    while parts := write_now(fd, parts):
        await anyio.wait_writable(fd)
