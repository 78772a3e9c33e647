"""The HTTP server under Lambda's API: uvicorn (httptools parser) on the daemon's own event loop,
serving a raw ASGI app that hands each request to ``LambdaApi``. The one module that knows which
server it is (bench/ measures the alternatives), so swapping it touches nothing else.

The socket is bound by ``bind`` before any function loads (workers' environment names the real
address, port 0 included); uvicorn gets the bound socket, installs no signal handlers and runs
no loop of its own: the daemon owns both.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from pathlib import Path
from typing import Any

import structlog
import uvicorn

from ..control.config import Settings
from ..errors import ApiError, DaemonError, RequestTooLarge
from .lambda_http import LambdaApi, Request
from .lambda_wire import Response

log = structlog.get_logger("fnhost.http_server")

# A body past an operation's limit is still read (and dropped) up to this size, so the client,
# still sending, reads Lambda's 413 instead of a reset connection; past it the connection closes.
DRAIN_MAX = 128 * 1024 * 1024
STOP_TIMEOUT_S = 1.0


def bind(address: str, tls: bool) -> tuple[socket.socket, str]:
    """A listening socket for ``HOST:PORT`` or ``unix:PATH``, and its URL (``http(s)://host:port``
    with the actual port, or ``unix:PATH``). Raises DaemonError when the address is taken."""
    try:
        if address.startswith("unix:"):
            path = Path(address.removeprefix("unix:"))
            _remove_stale(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(str(path))
            sock.listen(1024)
            return sock, f"unix:{path}"
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit():
            raise DaemonError(f"http_listen {address!r}: use HOST:PORT, unix:PATH or none")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, int(port)), family=family, backlog=1024, reuse_port=False)
    except OSError as exc:
        raise DaemonError(f"cannot listen for Lambda's HTTP API on {address}: {exc.strerror}; "
                          "choose another --http-listen, or none") from exc
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if family == socket.AF_INET6 else bound[0]
    return sock, f"{'https' if tls else 'http'}://{shown}:{bound[1]}"


def _remove_stale(path: Path) -> None:
    """Unlink a socket nobody answers on; raises DaemonError when a live server holds it."""
    if not path.exists():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            path.unlink(missing_ok=True)
            return
        raise DaemonError(f"cannot check the existing socket {path}: {exc.strerror}") from exc
    finally:
        probe.close()
    raise DaemonError(f"another server is already listening on {path}")


class _ToStructlog(logging.Handler):
    """uvicorn's own log (stdlib logging: a malformed request, a slow stop) as the daemon's events."""

    def emit(self, record: logging.LogRecord) -> None:
        level = "warning" if record.levelno >= logging.WARNING else "info"
        getattr(log, level)("http_server", message=record.getMessage())


def _route_uvicorn_logs() -> None:
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, _ToStructlog) for h in logger.handlers):
            logger.addHandler(_ToStructlog())
        logger.setLevel(logging.WARNING)  # its per-start chatter ("Started server process") is ours to say
        logger.propagate = False


class HttpServer:
    """uvicorn serving ``api`` on ``sock`` until ``stop``."""

    def __init__(self, api: LambdaApi, sock: socket.socket, settings: Settings) -> None:
        self.api = api
        self.sock = sock
        # Unlinked at stop, when uvicorn has closed the socket and it can no longer say its name.
        self.unix_path = sock.getsockname() if sock.family == socket.AF_UNIX else None
        tls = sock.family != socket.AF_UNIX and bool(settings.tls_cert and settings.tls_key)
        config = uvicorn.Config(
            self.app, http="httptools", interface="asgi3", lifespan="off", log_config=None,
            access_log=False, proxy_headers=False, server_header=False,
            # Stopping comes after the daemon's drain: a client that stopped reading its answer
            # must not hold the exit up (uvicorn would wait for it forever).
            timeout_graceful_shutdown=STOP_TIMEOUT_S,
            ssl_certfile=settings.tls_cert if tls else None, ssl_keyfile=settings.tls_key if tls else None,
            ssl_ca_certs=settings.tls_client_ca if tls and settings.tls_client_ca else None,
            ssl_cert_reqs=ssl.CERT_REQUIRED if tls and settings.tls_client_ca else ssl.CERT_NONE,
        )
        config.load()
        _route_uvicorn_logs()
        self.server = uvicorn.Server(config)
        self._ticker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Serve on the bound socket (no signal handlers: ``Server.serve`` would install them)."""
        self.server.lifespan = self.server.config.lifespan_class(self.server.config)
        await self.server.startup(sockets=[self.sock])
        # main_loop refreshes the Date header every second and returns once should_exit is set.
        self._ticker = asyncio.get_running_loop().create_task(self.server.main_loop())

    async def stop(self) -> None:
        """Stop accepting, let the requests in flight answer, close the socket."""
        self.server.should_exit = True
        if self._ticker is not None:
            await self._ticker
        await self.server.shutdown(sockets=[self.sock])
        if self.unix_path:
            Path(self.unix_path).unlink(missing_ok=True)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The ASGI application: one Lambda API request."""
        if scope["type"] != "http":
            return
        method = scope["method"]
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]},{text}" if key in headers else text
        length = headers.get("content-length", "")
        declared = int(length) if length.isdigit() else 0
        try:
            matched = self.api.match(method, raw_path)
            limit = matched.body_max
            if declared > limit:
                raise RequestTooLarge(f"Request must be smaller than {limit} bytes for the "
                                      f"{matched.operation} operation")
            body = await read_body(receive, limit, matched.operation)
        except ApiError as exc:  # an unknown operation, a body too large
            # A client waiting for "100 Continue" sends no body when refused; others are still sending.
            waiting = headers.get("expect", "").lower() == "100-continue"
            complete = not waiting and declared <= DRAIN_MAX and await _drain(receive)
            await send_response(send, self.api.refuse(exc), close=not complete)
            return
        if body is None:
            return  # the client went away
        request = Request(method, raw_path, scope.get("query_string", b"").decode("latin-1"), headers, body)
        await send_response(send, await self.api.handle(matched, request))


async def read_body(receive: Any, limit: int, operation: str) -> bytes | None:
    """The request body, at most ``limit`` bytes (None: the client disconnected).

    Raises RequestTooLarge as soon as it grows past ``limit`` (a body without Content-Length).
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"Request must be smaller than {limit} bytes for the {operation} operation")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _drain(receive: Any) -> bool:
    """Read and drop the rest of a refused body, up to DRAIN_MAX; whether it all arrived."""
    dropped = 0
    while dropped <= DRAIN_MAX:
        message = await receive()
        if message["type"] == "http.disconnect":
            return False
        dropped += len(message.get("body", b""))
        if not message.get("more_body", False):
            return True
    return False


async def send_response(send: Any, response: Response, *, close: bool = False) -> None:
    """One whole response on an ASGI ``send`` (``close``: ask the client to close the connection)."""
    headers = [*response.headers, (b"content-length", str(len(response.body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
