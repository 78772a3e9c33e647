"""``AsyncClient.stream()``: many invocations over one open InvokeStream, answered as they finish."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from . import errors
from .api import grpc_wire as wire
from .api.batching import batches
from .execution.invocation import Outcome
from .v1 import fnhost_pb2 as pb
from .v1 import fnhost_pb2_grpc as pb_grpc

InvokeResult = Outcome


class InvokeStream:
    """An open InvokeStream: ``await stream.invoke(name, payload)`` from any number of tasks.

    Invocations queued while a message is on its way leave together in the next one, and results
    arrive as they complete, so many concurrent callers share one stream cheaply.

    ``failure`` is None while the stream is healthy; once the stream itself has failed (the
    daemon went away, or ended the stream before ``aclose``) it is the error every outstanding
    and later ``invoke`` raises, the very same object, so a caller can tell it from an error
    about one invocation (``exc is stream.failure``); ``wait_closed`` waits for that.
    """

    def __init__(self, stub: pb_grpc.FnhostStub, metadata: Any, address: str) -> None:
        import itertools

        self._address = address
        self._queue: asyncio.Queue[pb.StreamInvocation | None] = asyncio.Queue()
        self._pending: dict[int, asyncio.Future[InvokeResult]] = {}
        self._ids = itertools.count(1)
        self.failure: errors.FnhostError | None = None
        self._closing = False
        self._call = stub.InvokeStream(self._requests(), metadata=metadata)
        self._receiver = asyncio.get_running_loop().create_task(self._receive())

    async def _requests(self):  # type: ignore[no-untyped-def]
        async for batch in batches(self._queue):
            yield pb.InvokeStreamRequest(invocations=batch)

    async def _receive(self) -> None:
        failure: errors.FnhostError | None = None
        try:
            async for message in self._call:
                for r in message.results:
                    future = self._pending.pop(r.id, None)
                    if future is None or future.done():
                        continue
                    outcome = wire.stream_outcome(r)
                    if isinstance(outcome, errors.FnhostError):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        except grpc.RpcError as exc:
            failure = wire.error_from_rpc(exc, self._address)
        finally:
            if failure is None and (self._pending or not self._closing):
                failure = errors.ShuttingDown("the stream closed before this result")
            self.failure = failure
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(failure)  # type: ignore[arg-type]
            self._pending.clear()

    async def invoke(self, name: str, payload: bytes = b"", *, log_type: str = "None",
                     qualifier: str = "") -> InvokeResult:

        if self._receiver.done():
            raise self.failure or errors.ShuttingDown("the stream is closed")
        ident = next(self._ids)
        future: asyncio.Future[InvokeResult] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        self._queue.put_nowait(pb.StreamInvocation(
            id=ident, request=wire.invoke_request(name, payload, "RequestResponse", log_type, qualifier)))
        return await future

    async def wait_closed(self) -> errors.FnhostError | None:
        """Wait until the stream has ended; return ``failure`` (None after a clean ``aclose``)."""

        await asyncio.wait((self._receiver,))
        return self.failure

    async def aclose(self) -> None:
        self._closing = True
        self._queue.put_nowait(None)
        await self._receiver

    async def __aenter__(self) -> InvokeStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
