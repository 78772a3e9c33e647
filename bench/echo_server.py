"""The gRPC floor: a bare echo service on the daemon's own stack, run as ``python -m bench.echo_server``.

Same as the daemon in everything that costs per call: grpc.aio, the daemon's SERVER_OPTIONS, an
event loop started by ``anyio.run`` with the daemon's ``EVENT_LOOP`` (uvloop), and a unix socket.
Different only in doing nothing: the handlers return the request bytes as they came, with no
(de)serialization, so this is what one RPC costs before fnhost does anything.

``Echo`` is unary; ``EchoStream`` is bidirectional, answering each message in order, as the floor
for a streaming invoke. The process exits on SIGTERM or when its stdin closes (the bench is done
with it, or died), so it never outlives the run. It ignores SIGINT: a Ctrl-C in the terminal
reaches the whole process group, and the bench, which stops it, must stay the one in charge.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import grpc

from fnhost.daemon import EVENT_LOOP
from fnhost.api.grpc_server import SERVER_OPTIONS

SERVICE = "bench.Echo"
UNARY = f"/{SERVICE}/Echo"
STREAM = f"/{SERVICE}/EchoStream"


async def _echo(request: bytes, context: Any) -> bytes:
    return request


async def _echo_stream(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    async for request in requests:
        yield request


def _handler() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(SERVICE, {
        "Echo": grpc.unary_unary_rpc_method_handler(_echo),
        "EchoStream": grpc.stream_stream_rpc_method_handler(_echo_stream),
    })


async def _stdin_closed() -> None:
    """Returns when stdin reaches EOF: the bench that started us is gone or done with us."""
    fd = sys.stdin.fileno()
    os.set_blocking(fd, False)
    while True:
        await anyio.wait_readable(fd)
        try:
            if not os.read(fd, 65536):
                return
        except BlockingIOError:
            continue


async def serve(address: str) -> None:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers((_handler(),))
    server.add_insecure_port(address)
    await server.start()
    print("ready", flush=True)
    async with anyio.create_task_group() as tg:

        async def stop_on_stdin_eof() -> None:
            await _stdin_closed()
            tg.cancel_scope.cancel()

        tg.start_soon(stop_on_stdin_eof)
        with anyio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                tg.cancel_scope.cancel()
                break
    await server.stop(0)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    anyio.run(serve, sys.argv[1], backend_options=EVENT_LOOP)


if __name__ == "__main__":
    main()
