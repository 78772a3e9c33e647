"""InvokeStream: many invocations on one bidirectional stream, answered as each completes.

Per stream, one task reads the client's messages and starts one task per invocation; a
semaphore of ``max_stream_in_flight`` slots stops the reading while that many are running or
waiting to be sent, so HTTP/2 flow control pushes back on a client that sends faster than its
functions finish. Results are gathered in a queue and leave in batches: whatever has completed by
the time the previous message went out travels in the next one, which is what makes the stream
cheaper per invocation than unary calls.

A slot is freed when its result has been handed to gRPC, not when the invocation completes: a
client that stops reading results (while it goes on sending) stalls the writes, and with them
the reading, so the daemon never holds more than ``max_stream_in_flight`` of its results.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable

import structlog

from ..errors import ApiError
from ..execution.invocation import Invocation, Outcome
from ..v1 import fnhost_pb2 as pb
from . import grpc_wire as wire
from .batching import END, batches

log = structlog.get_logger("fnhost.streaming")


async def invoke_stream(
    requests: AsyncIterable[pb.InvokeStreamRequest],
    invoke: Callable[[Invocation], Awaitable[Outcome]],
    max_in_flight: int,
) -> AsyncIterator[pb.InvokeStreamResponse]:
    """Run each streamed invocation with ``invoke`` (``Supervisor.invoke``, as a unary call
    does); yield results in batches, each item translated as the unary call would be."""
    results: asyncio.Queue[pb.StreamResult | None] = asyncio.Queue()
    slots = asyncio.Semaphore(max_in_flight)
    running: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()

    async def one(item: pb.StreamInvocation) -> None:
        try:
            results.put_nowait(wire.stream_result(item.id, await invoke(wire.invocation(item.request))))
        except ApiError as exc:
            results.put_nowait(wire.stream_result(item.id, exc))
        except Exception as exc:  # a bug of ours: this invocation fails, the stream goes on
            log.exception("internal_error", where="InvokeStream")
            results.put_nowait(wire.stream_result(item.id, exc))
        # The slot stays taken until the result is sent (below); a cancelled one ends the stream.

    async def read() -> None:
        try:
            async for message in requests:
                for item in message.invocations:
                    await slots.acquire()
                    task = loop.create_task(one(item))
                    running.add(task)
                    task.add_done_callback(running.discard)
            while running:  # the client has sent everything; finish what runs
                await asyncio.gather(*list(running), return_exceptions=True)
        finally:
            results.put_nowait(END)

    reader = loop.create_task(read())
    try:
        async for batch in batches(results):
            yield pb.InvokeStreamResponse(results=batch)
            # gRPC asks for the next message once this one is written, which HTTP/2 flow control
            # holds back while the client reads nothing: only then may these slots run more.
            for _ in batch:
                slots.release()
    finally:
        # The client went away (or we are done): nothing of this stream may keep running.
        reader.cancel()
        for task in list(running):
            task.cancel()
        await asyncio.gather(reader, *running, return_exceptions=True)
