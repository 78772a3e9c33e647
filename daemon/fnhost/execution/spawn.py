"""Starting a worker process: its pipes, its identity, its environment; and writing to it.

Kept apart from worker.py, which owns the conversation and the state machine: this is the part
that touches file descriptors and exec.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import anyio

from . import protocol, sandbox
from .logcapture import LOG_MAX_BYTES
from .sandbox import Identity

PIPE_SIZE = 1024 * 1024  # a 64 KiB default pipe makes large frames 3x slower (DESIGN.md)

_scratch_ids = itertools.count(1)


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
    scratch_root: Path | None = None  # where each worker gets its private TMPDIR/HOME
    log_max_bytes: int = LOG_MAX_BYTES  # output logged per invocation; the rest is discarded


@dataclass(slots=True)
class Spawned:
    """A started worker process and the daemon's ends of its pipes (non-blocking)."""

    proc: subprocess.Popen[bytes]
    to_worker: int
    from_worker: int
    stdout: int
    stderr: int
    scratch: Path | None


def _set_pipe_size(fd: int) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass  # an unprivileged daemon over /proc/sys/fs/pipe-max-size keeps the default


def spawn(spec: WorkerSpec) -> Spawned:
    """Start the worker as ``spec`` says; raises OSError with nothing left open or behind."""
    child_in, to_worker = os.pipe()
    from_worker, child_out = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    ours = [to_worker, from_worker, out_r, err_r]
    theirs = [child_in, child_out, out_w, err_w]
    scratch: Path | None = None
    identity = spec.identity
    try:
        for fd in (to_worker, from_worker):
            _set_pipe_size(fd)
        env = dict(spec.env)
        env[protocol.CONTROL_FDS_ENV] = f"{child_in},{child_out}"
        if identity is not None:
            # Shims reopen their pipes through /proc/self/fd to get close-on-exec, and the pipe's
            # inode (mode 0600, owned by its creator) must let the worker's uid do that.
            for fd in (child_in, child_out):
                os.fchown(fd, identity.uid, identity.gid)
        if spec.scratch_root is not None:
            scratch = sandbox.prepare_scratch(spec.scratch_root, f"w{next(_scratch_ids)}", identity)
            env["TMPDIR"] = env["HOME"] = str(scratch)
        proc = subprocess.Popen(
            sandbox.limited_argv(spec.argv, identity is not None),
            cwd=spec.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
            pass_fds=(child_in, child_out),
            start_new_session=True,  # its own process group: kills reach every descendant
            user=identity.uid if identity else None,
            group=identity.gid if identity else None,
            extra_groups=[] if identity else None,
            umask=0o077,
        )
    except BaseException:
        for fd in ours:
            os.close(fd)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        raise
    finally:
        for fd in theirs:
            os.close(fd)
    for fd in (to_worker, from_worker):
        os.set_blocking(fd, False)
    return Spawned(proc, to_worker, from_worker, out_r, err_r, scratch)


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
