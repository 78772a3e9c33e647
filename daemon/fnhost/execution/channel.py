"""The daemon's end of one worker's control pipes: frames out, frames in, and the one task waiting.

Reading is a callback on the event loop (``add_reader``), so a waiting worker costs no task. What
arrives goes through a ``protocol.Inbox``, which knows the one frame the conversation expects now
and refuses anything else; a refusal is reported to the owner (``on_violation``), which kills the
worker. The owner's task takes frames with ``receive``; when the worker is gone instead, it gets
the error its exit explains (``exit_error``), once that exit has been seen (``exited``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from ..errors import FunctionError
from . import protocol
from .spawn import PIPE_SIZE, write_all, write_now


class Channel:
    """A worker's control pipes, and the frames the conversation with it expects."""

    def __init__(self, loop: asyncio.AbstractEventLoop, exited: asyncio.Event,
                 exit_error: Callable[[], FunctionError], on_violation: Callable[[str], None]) -> None:
        self.inbox = protocol.Inbox()  # the one frame expected now, and the checks it must pass
        self.to_worker = self.from_worker = -1
        self._loop = loop
        self._exited = exited
        self._exit_error = exit_error
        self._on_violation = on_violation
        self._waiter: asyncio.Future[None] | None = None

    def attach(self, to_worker: int, from_worker: int) -> None:
        """The pipes of the process started; reading starts now."""
        self.to_worker, self.from_worker = to_worker, from_worker
        self._loop.add_reader(from_worker, self._on_readable)

    def send_now(self, parts: list[bytes]) -> list[bytes]:
        """Write what the pipe takes without blocking; what is left. OSError: the worker is gone."""
        return write_now(self.to_worker, parts)

    async def send(self, parts: list[bytes]) -> None:
        """Write all of ``parts``; a worker gone meanwhile raises what its exit explains."""
        try:
            await write_all(self.to_worker, parts)
        except OSError as exc:  # EPIPE: the worker is gone; its exit says why
            await self._exited.wait()
            raise self._exit_error() from exc

    async def receive(self) -> protocol.Frame:
        """The expected frame; a worker that broke the protocol raises once it is dead."""
        while (frame := self.inbox.take()) is None:
            if self._exited.is_set():
                raise self._exit_error()
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return frame

    def interrupt(self, exc: BaseException) -> None:
        """Raise ``exc`` in the task waiting in ``receive`` (a deadline passed)."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    def wake(self) -> None:
        """Let the task waiting in ``receive`` look again (a frame came, or the worker exited)."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def refuse_all(self) -> None:
        """Nothing more is taken, nor read: a flood fills the pipe and blocks its writer until the kill."""
        self.inbox.expect = self.inbox.then = protocol.EXPECT_NOTHING
        if self.from_worker >= 0:
            self._loop.remove_reader(self.from_worker)

    def hang_up(self) -> None:
        """Close the daemon's writing end: a healthy shim exits on EOF at once."""
        if self.to_worker >= 0:
            os.close(self.to_worker)
            self.to_worker = -1

    def close(self) -> None:
        for fd in (self.from_worker, self.to_worker):
            if fd >= 0:
                try:
                    self._loop.remove_reader(fd)
                except (ValueError, OSError):
                    pass
                os.close(fd)
        self.from_worker = self.to_worker = -1

    def _on_readable(self) -> None:
        fd = self.from_worker
        if fd < 0:
            return  # queued before close()
        try:
            data = os.read(fd, PIPE_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            # The worker closed its end (it is exiting); its exit, watched apart, finishes the story.
            self._loop.remove_reader(fd)
            return
        try:
            self.inbox.feed(data)
        except protocol.ProtocolError as exc:
            self._on_violation(str(exc))
        # No drain of the log pipes here: everything the worker printed before its reply was
        # written to them before the reply, so their readiness is in the same epoll batch as
        # this one (or an earlier one), and their callbacks run before the task this wakes.
        # The invocation's log is exact without two empty reads per invocation.
        if self.inbox.frame is not None:
            self.wake()
