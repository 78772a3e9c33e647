"""``fnhost invoke NAME --stream``: one payload per stdin line through one InvokeStream, each
result printed in input order.

Every line is handed to ``AsyncClient.stream()`` as soon as it is read (stdin is read in a
thread), so lines read together leave together in one message, and up to STREAM_WINDOW
invocations are outstanding at once; a result waiting for a slower earlier one is held back.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from . import errors
from .client import AsyncClient

# The CLI's exit statuses: a function error, a refused request or unreachable daemon.
EXIT_FUNCTION_ERROR = 1
EXIT_PLATFORM_ERROR = 2

STREAM_WINDOW = 1024
STREAM_REFILL = STREAM_WINDOW // 4
STREAM_READ_CHUNK = 64 * 1024
# As fnhost.daemon.EVENT_LOOP (uvloop), without importing the daemon into every CLI call.
CLIENT_EVENT_LOOP = {"use_uvloop": True}



class StdinError(Exception):
    """Reading stdin failed (the OSError is the cause)."""


class _Window:
    """The started invocations not yet printed, in input order: at most ``size`` of them."""

    def __init__(self, size: int, refill: int) -> None:
        import collections

        self.tasks: collections.deque[Any] = collections.deque()
        self.closed = False  # nothing more will be put
        self._low = size - refill
        self._size = size
        self._room: Any = None  # an anyio.Event while the reader waits for room
        self._more: Any = None  # an anyio.Event while the printer waits for a task

    def put(self, task: Any) -> None:
        self.tasks.append(task)
        self.wake()

    def close(self) -> None:
        self.closed = True
        self.wake()

    def wake(self) -> None:
        """Let the printer look again (more tasks, the end, or the stream failed)."""
        if self._more is not None:
            self._more.set()
            self._more = None

    def take(self) -> Any:
        task = self.tasks.popleft()
        if self._room is not None and len(self.tasks) <= self._low:
            self._room.set()
            self._room = None
        return task

    async def room(self) -> None:
        import anyio

        if len(self.tasks) >= self._size:
            self._room = anyio.Event()
            await self._room.wait()

    async def more(self) -> None:
        import anyio

        if not self.tasks and not self.closed:
            self._more = anyio.Event()
            await self._more.wait()


async def stream_stdin(address: str, name: str, log_type: str, report: bool) -> int:
    import asyncio
    import threading

    import anyio
    import anyio.lowlevel

    chunks_in, chunks_out = anyio.create_memory_object_stream[bytes | OSError](1)
    window = _Window(STREAM_WINDOW, STREAM_REFILL)
    read_error: list[OSError] = []
    async with AsyncClient(address) as client:
        stream = client.stream()
        # A daemon thread, not a worker from anyio's pool: a read blocked on a silent stdin must
        # not keep the process alive once the stream has failed.
        threading.Thread(target=_read_stdin, args=(chunks_in, anyio.lowlevel.current_token()),
                         name="fnhost-stdin", daemon=True).start()

        async def submit() -> None:
            """Start one invocation per non-blank line, in order, while the window has room."""
            loop = asyncio.get_running_loop()

            async def start(line: bytes) -> None:
                await window.room()  # no checkpoint otherwise: lines read together batch
                window.put(loop.create_task(stream.invoke(name, line, log_type=log_type)))

            try:
                async with chunks_out:
                    parts: list[bytes] = []  # the line read so far, across chunks
                    async for chunk in chunks_out:
                        if isinstance(chunk, OSError):
                            read_error.append(chunk)
                            return
                        if b"\n" not in chunk:
                            parts.append(chunk)
                            continue
                        lines = chunk.split(b"\n")
                        if parts:
                            parts.append(lines[0])
                            lines[0] = b"".join(parts)
                            parts = []
                        tail = lines.pop()
                        if tail:
                            parts.append(tail)
                        for line in lines:
                            if line.strip():
                                await start(line)
                    last = b"".join(parts)
                    if last.strip():
                        await start(last)
            finally:
                window.close()

        async def watch() -> None:
            """A stream that fails while nothing is outstanding (stdin is quiet) ends the command."""
            await stream.wait_closed()
            window.wake()

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(submit)
                tg.start_soon(watch)
                worst = await _print_in_order(window, stream, report)
                tg.cancel_scope.cancel()  # the watcher; the reader too if the stream failed
        finally:
            _discard(window.tasks)
        if read_error:
            raise StdinError() from read_error[0]
        await stream.aclose()
        if stream.failure is not None:
            raise stream.failure
    return worst


def _read_stdin(chunks: Any, token: Any) -> None:
    """In a thread: stdin in chunks of up to STREAM_READ_CHUNK, as they come, until EOF.

    From the file descriptor, not ``sys.stdin.buffer``: a read blocked in the buffer holds its
    lock, and the interpreter aborts at exit when the stream failed while stdin stayed open.
    """
    import anyio
    import anyio.from_thread

    fd = sys.stdin.fileno()
    try:
        while True:
            try:
                chunk: bytes | OSError = os.read(fd, STREAM_READ_CHUNK)
            except OSError as exc:
                chunk = exc
            if not chunk:
                break
            anyio.from_thread.run(chunks.send, chunk, token=token)
            if isinstance(chunk, OSError):
                break
        anyio.from_thread.run_sync(chunks.close, token=token)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, RuntimeError):
        return  # the command stopped listening, or its loop is gone: nobody wants the rest


async def _print_in_order(window: _Window, stream: Any, report: bool) -> int:
    """Print each invocation's result as its turn comes; the worst exit status so far.

    Returns early, leaving the rest, if the stream itself failed.
    """
    out = sys.stdout.buffer
    worst = 0
    line_no = 0
    while True:
        if not window.tasks:
            if window.closed or stream.failure is not None:
                break
            out.flush()
            await window.more()
            continue
        task = window.tasks[0]  # it holds its place in the window until printed
        if not task.done():
            out.flush()  # what is printed shows before we wait
        try:
            item = await task
        except errors.FnhostError as exc:
            item = exc
        window.take()
        line_no += 1
        if isinstance(item, errors.FnhostError):
            if item is stream.failure:
                return worst
            worst = EXIT_PLATFORM_ERROR
            out.flush()
            click.echo(f"fnhost: line {line_no}: {item.code}: {item.message}", err=True)
            out.write(json.dumps({"errorType": item.code, "errorMessage": item.message}).encode())
        else:
            if item.function_error:
                worst = max(worst, EXIT_FUNCTION_ERROR)
            if item.log_result:
                out.flush()
                click.echo(item.log_result, err=True, nl=False)
            if report and item.report is not None:
                out.flush()
                click.echo(item.report.line(), err=True)
            out.write(item.payload.rstrip(b"\n"))
        out.write(b"\n")
    out.flush()
    return worst


def _discard(tasks: Any) -> None:
    """Cancel the invocations left unprinted (the stream failed) without asyncio's warnings."""
    for task in tasks:
        if not task.done():
            task.cancel()
        elif not task.cancelled():
            task.exception()
    tasks.clear()
