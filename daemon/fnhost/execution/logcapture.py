"""A worker's stdout and stderr: split into lines, attributed to the invocation in flight.

The shim flushes its buffers before it replies, and a pipe write is complete before write()
returns, so when the reply frame arrives everything printed during the invocation is already
in these pipes, and their readers (callbacks on the event loop) run before the task the reply
wakes (see ``Worker._on_control``): the invocation's log is exact without reading on the invoke
path. ``drain()`` reads what is left when a worker exits.

The output is untrusted and may come as fast as a process can write, so each readable callback
does one read of at most ``READ_MAX`` bytes (a default pipe holds 64 KiB, so that one read still
takes everything a reply was preceded by): the loop's turn stays short and the other callbacks
(the timeout, health checks, other workers) still run. What is logged is bounded per
invocation: past ``max_bytes`` one marker line is logged and the rest is read and discarded, so
the function never blocks on a full pipe and the log never floods. The budget counts bytes of
log, as written (see ``function_lines``): many tiny lines cost what their events cost. Output
between invocations has a budget of its own, renewed at every invocation's start and end.
"""

from __future__ import annotations

import asyncio
import os

from ..observability.logs import function_lines

TAIL_KEEP = 64 * 1024  # per invocation, for LogType TAIL (which returns the last 4 KB)
LINE_MAX = 16 * 1024  # a longer line is logged in pieces
READ_MAX = 64 * 1024  # one read per readable callback
DRAIN_MAX = 1024 * 1024  # at exit, per pipe: what a pipe can hold, not what a descendant keeps writing
LOG_MAX_BYTES = 1024 * 1024  # the default budget ([daemon] function_log_max_bytes)
MARKER_RESERVE = 1024  # room kept in a budget for its truncation marker's event


def truncation_marker(max_bytes: int, in_invocation: bool) -> bytes:
    what = "this invocation's output" if in_invocation else "this worker's output between invocations"
    return (f"fnhost: output truncated: {what} took more than {max_bytes} bytes of log "
            "(function_log_max_bytes); the rest is discarded").encode()


class LogCapture:
    def __init__(self, function: str, out_fd: int, err_fd: int, loop: asyncio.AbstractEventLoop,
                 max_bytes: int = LOG_MAX_BYTES) -> None:
        self.function = function
        self.request_id: str | None = None
        self.max_bytes = max_bytes
        self._loop = loop
        self._fds = {out_fd: "stdout", err_fd: "stderr"}
        self._partial = {out_fd: bytearray(), err_fd: bytearray()}
        self._err_fd = err_fd
        self._invocation = bytearray()
        self._stderr_tail = bytearray()
        self._left = max_bytes  # what may still be logged before the budget renews
        self._discarding = False  # the budget is spent: read, drop, until it renews
        for fd in self._fds:
            os.set_blocking(fd, False)
            loop.add_reader(fd, self._on_readable, fd)

    def begin(self, request_id: str) -> None:
        self._renew()
        self.request_id = request_id
        self._invocation.clear()

    def end(self) -> bytes:
        """The invocation's log (complete lines, and any unterminated last line)."""
        for fd, partial in self._partial.items():
            if partial:
                self._emit(fd, [bytes(partial)])
                partial.clear()
        self.request_id = None
        self._renew()
        return bytes(self._invocation)

    def flush_init(self) -> None:
        self.end()

    def drain(self) -> None:
        """Read what the pipes hold, up to DRAIN_MAX each: a descendant that still holds a pipe
        and keeps writing cannot keep the loop here."""
        for fd in list(self._fds):
            got = 0
            while got < DRAIN_MAX:
                n = self._read(fd)
                if n <= 0:
                    break
                got += n

    def stderr_tail(self, n: int) -> str:
        self.drain()
        partial = self._partial[self._err_fd]
        return (bytes(self._stderr_tail) + bytes(partial))[-n:].decode(errors="replace").strip()

    def close(self) -> None:
        self.drain()
        self.end()
        for fd in self._fds:
            self._loop.remove_reader(fd)
            os.close(fd)
        self._fds = {}

    def _renew(self) -> None:
        self._left = self.max_bytes
        self._discarding = False

    def _on_readable(self, fd: int) -> None:
        # A callback queued in the same loop iteration as close() must not touch the fd number,
        # which may already belong to another worker.
        if fd not in self._fds:
            return
        if self._read(fd) == 0:
            self._loop.remove_reader(fd)

    def _read(self, fd: int) -> int:
        """One read of at most READ_MAX bytes: how many were read; 0 at end of file, -1 if none."""
        try:
            data = os.read(fd, READ_MAX)
        except BlockingIOError:
            return -1
        except OSError:
            return 0
        if not data or self._discarding:
            return len(data)
        partial = self._partial[fd]
        if partial:
            partial += data
            lines = bytes(partial).split(b"\n")
        else:
            lines = data.split(b"\n")
        partial[:] = lines.pop()
        if any(len(line) > LINE_MAX for line in lines):
            lines = [line[i:i + LINE_MAX] for line in lines for i in range(0, max(len(line), 1), LINE_MAX)]
        while len(partial) > LINE_MAX:
            lines.append(bytes(partial[:LINE_MAX]))
            del partial[:LINE_MAX]
        if lines:
            self._emit(fd, lines)
        return len(data)

    def _emit(self, fd: int, lines: list[bytes]) -> None:
        if self._discarding:
            return
        stream = self._fds.get(fd, "stderr")
        # The marker's own event comes out of the budget too: what is logged stays within it.
        kept, used = function_lines(self.function, self.request_id, stream, lines, self._left - MARKER_RESERVE)
        self._left -= used
        if kept < len(lines):
            marker = truncation_marker(self.max_bytes, self.request_id is not None)
            function_lines(self.function, self.request_id, stream, [marker])
            lines = [*lines[:kept], marker]
            self._discarding = True
            for partial in self._partial.values():
                partial.clear()
        text = b"\n".join(lines) + b"\n"
        if stream == "stderr":
            self._stderr_tail += text
            if len(self._stderr_tail) > 8192:
                del self._stderr_tail[:-4096]
        self._invocation += text
        if len(self._invocation) > TAIL_KEEP * 2:
            del self._invocation[:-TAIL_KEEP]
