"""A worker's stdout and stderr: split into lines, attributed to the invocation in flight.

The shim flushes its buffers before it replies, and a pipe write is complete before write()
returns, so when the reply frame arrives everything printed during the invocation is already
in these pipes: ``drain()`` reads it synchronously, and the invocation's log is exact.
"""

from __future__ import annotations

import asyncio
import os

import structlog

log = structlog.get_logger("fnhost.function")

TAIL_KEEP = 64 * 1024  # per invocation, for LogType TAIL (which returns the last 4 KB)
LINE_MAX = 16 * 1024  # a longer line is logged in pieces


class LogCapture:
    def __init__(self, function: str, out_fd: int, err_fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self.function = function
        self.request_id: str | None = None
        self._loop = loop
        self._fds = {out_fd: "stdout", err_fd: "stderr"}
        self._partial = {out_fd: bytearray(), err_fd: bytearray()}
        self._err_fd = err_fd
        self._invocation = bytearray()
        self._stderr_tail = bytearray()
        for fd in self._fds:
            os.set_blocking(fd, False)
            loop.add_reader(fd, self._on_readable, fd)

    def begin(self, request_id: str) -> None:
        self.request_id = request_id
        self._invocation.clear()

    def end(self) -> bytes:
        """The invocation's log (complete lines, and any unterminated last line)."""
        for fd, partial in self._partial.items():
            if partial:
                self._emit(fd, bytes(partial))
                partial.clear()
        self.request_id = None
        return bytes(self._invocation)

    def flush_init(self) -> None:
        self.end()

    def drain(self) -> None:
        for fd in self._fds:
            self._read(fd)

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

    def _on_readable(self, fd: int) -> None:
        # A callback queued in the same loop iteration as close() must not touch the fd number,
        # which may already belong to another worker.
        if fd not in self._fds:
            return
        if not self._read(fd):
            self._loop.remove_reader(fd)

    def _read(self, fd: int) -> bool:
        """Read what is there; False at end of file."""
        partial = self._partial[fd]
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not data:
                return False
            partial += data
            start = 0
            while True:
                nl = partial.find(b"\n", start)
                if nl < 0:
                    break
                self._emit(fd, bytes(partial[start:nl]))
                start = nl + 1
            del partial[:start]
            while len(partial) > LINE_MAX:
                self._emit(fd, bytes(partial[:LINE_MAX]))
                del partial[:LINE_MAX]

    def _emit(self, fd: int, line: bytes) -> None:
        stream = self._fds.get(fd, "stderr")
        if stream == "stderr":
            self._stderr_tail += line + b"\n"
            if len(self._stderr_tail) > 8192:
                del self._stderr_tail[:-4096]
        self._invocation += line + b"\n"
        if len(self._invocation) > TAIL_KEEP * 2:
            del self._invocation[:-TAIL_KEEP]
        log.info(
            "function_log",
            function=self.function,
            request_id=self.request_id,
            stream=stream,
            line=line.decode(errors="replace"),
        )
