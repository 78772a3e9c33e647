"""A spare held by the daemon: a Python zygote's pre-forked worker, waiting for its request.

The zygote hands each spare's socket over (runtimes/python/zygote.py, ``{"spare": ...}``), so
that a fork is one datagram from the daemon to the spare, with no hop through the zygote. While
it waits, the spare is also given the control group its worker will have (``join``, with each
``cgroup.procs`` opened here), and moves itself and its init into it: the moves, which on a
host without ``favordynmods`` wait for the kernel (5-13 ms, bench/PROFILE.md §15), are off the
worker's path. The group's limits are set at the fork, to the function's memory size (``take``).
"""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass

from .limits import MemoryBackend
from .worker_limits import WorkerLimits


# What is made ahead for the next start (a held spare, its group, the next worker's group) waits
# this long after a start: the zygote's fork and the control-group moves and mkdirs, even as
# SCHED_IDLE and off the event loop, slowed the start just begun by several milliseconds (they
# take the kernel's cgroup locks; same-run A/B, bench/PROFILE.md §18: a Python first invoke 8.3
# -> 4.5 ms p50 with the work 30 ms later, 6.7 ms with it 10 ms later). A start sooner than this
# after another is forked by the zygote itself, as it was before spares were held.
AHEAD_AFTER_S = 0.03


class SpareLost(Exception):
    """The held spare died before it got its request (killed by someone): fork it afresh."""


@dataclass(slots=True)
class HeldSpare:
    pid: int  # its init's, as the zygote forked it
    sock: socket.socket  # the one end of the spare's request socket
    limits: WorkerLimits | None = None  # the group it joined while it waited

    @classmethod
    def from_answer(cls, reply: object, fds: list[int]) -> HeldSpare | str:
        """The spare in the zygote's answer to ``{"spare": ...}``, or why there is none."""
        if not isinstance(reply, dict) or "spare" not in reply or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            return f"no spare: {reply.get('error', reply) if isinstance(reply, dict) else reply}"
        return cls(int(reply["spare"]), socket.socket(fileno=fds[0]))

    def join(self, backend: MemoryBackend) -> None:
        """Give it a group of its own to move into while it waits (with the last worker's
        limits). Raises OSError (the group is released: the spare is used without one)."""
        limits = backend.prepare(backend.last_limit, None)
        fds = []
        try:
            fds = limits.open_procs()
            if fds:
                socket.send_fds(self.sock, [b"join"], fds)
        except OSError:
            limits.close()
            raise
        finally:
            for fd in fds:
                os.close(fd)
        self.limits = limits

    def take(self, limit_bytes: int, identity: object | None) -> WorkerLimits | None:
        """Its group, for the worker it becomes: resized to ``limit_bytes``, counted as
        ``identity``'s. None if it has none. Raises OSError (the group released)."""
        limits, self.limits = self.limits, None
        if limits is not None:
            try:
                limits.resize(limit_bytes)
            except OSError:
                limits.close()
                raise
            if identity is not None:
                limits.adopt(identity)  # type: ignore[arg-type]
        return limits

    def hand(self, fds: list[int]) -> bool:
        """Give it its request: False if it is gone. Its socket is closed either way."""
        try:
            socket.send_fds(self.sock, [b"go"], fds)  # one datagram to a waiting reader: never blocks
            return True
        except OSError:
            return False
        finally:
            self.sock.close()

    def release(self) -> None:
        """Not used: its worker reads EOF and exits, and so does its init; its group goes."""
        self.sock.close()
        if self.limits is not None:
            self.limits.close()
            self.limits = None


async def receive_with_fds(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> tuple[bytes, list[int]]:
    """One datagram and the file descriptors it carries, from a non-blocking socket."""
    while True:
        try:
            raw, fds, _flags, _addr = socket.recv_fds(sock, 4096, 1)
            return raw, fds
        except BlockingIOError:
            pass
        ready = loop.create_future()
        loop.add_reader(sock.fileno(), lambda: ready.done() or ready.set_result(None))
        try:
            await ready
        finally:
            loop.remove_reader(sock.fileno())
