"""Function URLs served over HTTP: the ``--url-listen`` listener's ASGI application.

A request reaches a function by its path, ``/<function>[:qualifier]/<path>``, or by its Host,
``<url-id>.lambda-url.<anything>`` (the ``FunctionUrl`` GetFunctionUrlConfig answers). The body is
read completely, within BODY_DEADLINE_S and BODY_MAX, before anything is invoked, so a slow or
stalled client never holds a worker; then the request becomes Lambda's event (``url_events``),
goes through the one invoke path (``Supervisor.invoke``) and the result becomes the response.
The server itself (uvicorn on the daemon's loop) is ``http_server``'s, shared with Lambda's API.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from typing import Any
from urllib.parse import unquote

import structlog

from .. import errors
from ..control.config import Settings, loopback
from ..control.function_urls import UrlConfig
from ..execution.invocation import SYNC_PAYLOAD_MAX, Invocation, function_arn
from . import url_cors, url_events
from .http_server import HttpServer, read_body, send_response
from .lambda_wire import Response
from .sigv4 import Verifier
from .url_ops import url_domain

log = structlog.get_logger("fnhost.url_server")

BODY_MAX = SYNC_PAYLOAD_MAX  # Lambda's 6 MB bound on a synchronous request
HEADERS_MAX = 10 * 1024  # all header names and values together (API Gateway's 10 KB)
BODY_DEADLINE_S = 5.0  # the whole body must arrive within this, or 408 and the connection closes
_HOST_RE = re.compile(r"^([a-z0-9]{32})\.lambda-url\.", re.IGNORECASE)
_STATUS_OF = ((errors.ResourceNotFound, 404), (errors.TooManyRequests, 429), (errors.RequestTooLarge, 413),
              (errors.InvalidRequestContent, 413), (errors.Unauthenticated, 403), (errors.AccessDenied, 403),
              (errors.ShuttingDown, 503), (errors.InvalidParameter, 400))


def message(status: int, text: str, request_id: str, error_type: str = "") -> Response:
    """Lambda's function URL error: ``{"Message": …}`` with the request id (and error type)."""
    headers = [(b"content-type", url_events.JSON), (b"x-amzn-requestid", request_id.encode())]
    if error_type:
        headers.append((b"x-amzn-errortype", error_type.encode()))
    if status == 429:
        headers.append((b"retry-after", b"1"))
    return Response(status, json.dumps({"Message": text}).encode(), headers)


def _refusal(exc: errors.FnhostError, request_id: str) -> Response:
    for cls, status in _STATUS_OF:
        if isinstance(exc, cls):
            return message(status, exc.message, request_id, exc.code)
    return message(500, exc.message, request_id, exc.code)


def refusal(settings: Settings) -> str | None:
    """Why the daemon must not serve function URLs where ``settings`` say, or None (part of
    ``exposure.listener_refusal``). Off loopback an auth type NONE URL would let anyone run the
    function, so only AWS_IAM URLs are served there, and those need access keys to sign with."""
    address = settings.url_listen
    if address == "none" or settings.insecure or loopback(address) is not False:
        return None
    if settings.http_credentials_file:
        return None
    return (
        f"refusing to serve function URLs on {address} without access keys: it is reachable from other hosts, "
        "and only AWS_IAM URLs (signed with daemon.http_credentials_file's keys) are served there. Set "
        "daemon.http_credentials_file, or use --url-listen 127.0.0.1:PORT, unix:PATH or none; --insecure "
        "(daemon.insecure = true) serves auth type NONE URLs there too"
    )


class _Strict(Verifier):
    """SigV4 that is always checked: an AWS_IAM URL needs a signature whatever the API's setting."""

    @property
    def enabled(self) -> bool:
        return self.keys is not None


class UrlFront:
    """Routing, authentication and translation for function URLs, bound to a supervisor."""

    def __init__(self, sup: Any, settings: Settings, keys: Any) -> None:
        self.sup = sup
        self.settings = settings
        self.verifier = _Strict(keys, settings.region)

    def route(self, raw_path: str, host: str) -> tuple[UrlConfig | None, str]:
        """The URL a request names and the path its function sees; (None, "") for none."""
        by_host = _HOST_RE.match(host)
        if by_host:
            return self.sup.urls.by_id(by_host[1].lower()), raw_path or "/"
        head, _, rest = raw_path.lstrip("/").partition("/")
        name, _, qualifier = unquote(head).partition(":")
        if qualifier == "$LATEST":
            qualifier = ""  # a URL for $LATEST is the function's own
        if not name:
            return None, ""
        return self.sup.urls.find(name, qualifier), "/" + rest

    def domain(self, config: UrlConfig) -> str:
        return url_domain(config, self.settings)

    def _authorize(self, config: UrlConfig, method: str, raw_path: str, query: str, headers: dict[str, str],
                   body: bytes) -> dict[str, Any] | None:
        """Who may call: AWS_IAM checks the signature; NONE only on a loopback/unix listener unless
        the operator said ``insecure``. Raises Unauthenticated, AccessDenied."""
        if config.auth_type == "NONE":
            if loopback(self.settings.url_listen) is False and not self.settings.insecure:
                raise errors.AccessDenied("Forbidden: an auth type NONE URL is served only on a loopback or unix "
                                          "listener (set daemon.insecure to serve it on this address)")
            return None
        if "authorization" not in headers:
            raise errors.MissingAuthenticationToken("Forbidden: this function URL's auth type is AWS_IAM; sign "
                                                    "the request with Signature Version 4 (service lambda)")
        principal = self.verifier.caller(method, raw_path, query, headers, body)
        key = re.search(r"Credential=([^/]+)/", headers["authorization"])
        return {"iam": {"accessKey": key[1] if key else "", "accountId": self.settings.account_id,
                        "callerId": getattr(principal, "name", ""),
                        "userArn": f"arn:aws:iam::{self.settings.account_id}:user/{getattr(principal, 'name', '')}",
                        "userId": getattr(principal, "name", "")}}

    async def serve(self, config: UrlConfig, path: str, request: url_events.UrlRequest, full_path: str) -> Response:
        """One request to ``config``'s function; never raises (but cancellation)."""
        request_id = str(uuid.uuid4())
        headers = request.joined
        if config.cors and url_cors.is_preflight(request.method, headers):
            return url_cors.preflight(config.cors, headers, request_id)
        try:
            authorizer = self._authorize(config, request.method, full_path, request.query, headers, request.body)
            ctx = url_events.Context(config.url_id, headers.get("host", self.domain(config)).partition(":")[0],
                                     self.settings.account_id, request_id, int(time.time() * 1000), authorizer)
            request.raw_path = path
            build = url_events.event_v1 if config.payload_format == "1.0" else url_events.event_v2
            event = json.dumps(build(request, ctx)).encode()
            if len(event) > SYNC_PAYLOAD_MAX:
                raise errors.RequestTooLarge(f"Request must be smaller than {SYNC_PAYLOAD_MAX} bytes as an event "
                                             f"(it is {len(event)})")
            outcome = await self.sup.invoke(Invocation(
                config.function, event, qualifier=config.qualifier,
                invoked_function_arn=function_arn(config.function, config.qualifier, region=self.settings.region,
                                                  account_id=self.settings.account_id)))
            if outcome.function_error:
                error_type = _error_type(outcome.payload)
                log.info("url_function_error", function=config.function, error=error_type)
                response = message(502, "Internal Server Error", outcome.request_id, error_type)
            else:
                try:
                    response = url_events.response(outcome.payload, outcome.request_id, config.payload_format)
                except url_events.BadResult as exc:
                    log.info("url_bad_result", function=config.function, reason=str(exc))
                    response = message(502, "Internal Server Error", outcome.request_id, "Runtime.InvalidResponse")
        except errors.ApiError as exc:
            response = _refusal(exc, request_id)
        except Exception as exc:
            log.exception("url_request_failed", function=config.function)
            response = message(500, f"internal error ({type(exc).__name__}); see the daemon log", request_id)
        if config.cors:
            url_cors.decorate(config.cors, headers, response)
        return response


def _error_type(payload: bytes) -> str:
    try:
        value = json.loads(payload)
    except ValueError:
        return "Unhandled"
    return str(value.get("errorType") or "Unhandled") if isinstance(value, dict) else "Unhandled"


class UrlServer(HttpServer):
    """uvicorn (``http_server``'s configuration) serving function URLs instead of Lambda's API."""

    def __init__(self, front: UrlFront, sock: Any, settings: Settings) -> None:
        super().__init__(front, sock, settings)  # type: ignore[arg-type]  # ``api`` is only kept
        self.front = front

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The ASGI application: one function URL request."""
        if scope["type"] != "http":
            return
        request_id = str(uuid.uuid4())
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in scope["headers"]]
        if sum(len(n) + len(v) for n, v in headers) > HEADERS_MAX:
            await send_response(send, message(431, "Request Header Fields Too Large", request_id), close=True)
            return
        request = url_events.UrlRequest(
            scope["method"], (scope.get("raw_path") or scope["path"].encode()).decode("latin-1").partition("?")[0],
            scope.get("query_string", b"").decode("latin-1"), headers, b"",
            (scope.get("client") or ("", 0))[0] or "127.0.0.1", f"HTTP/{scope.get('http_version', '1.1')}")
        config, path = self.front.route(request.raw_path, request.joined.get("host", ""))
        if config is None:
            await send_response(send, message(404, "Not Found: no function URL here (use /FUNCTION[:ALIAS]/PATH or "
                                      "the Host of a FunctionUrl)", request_id, "ResourceNotFoundException"),
                        close=not await _drain_small(receive, request.joined))
            return
        length = request.joined.get("content-length", "")
        if length.isdigit() and int(length) > BODY_MAX:
            await send_response(send, message(413, "Request Entity Too Large", request_id, "RequestTooLargeException"),
                        close=True)
            return
        try:
            async with asyncio.timeout(BODY_DEADLINE_S):
                body = await read_body(receive, BODY_MAX, "function URL")
        except TimeoutError:
            log.info("url_body_timeout", function=config.function, deadline_s=BODY_DEADLINE_S)
            await send_response(send, message(408, "Request Timeout: the body did not arrive in time", request_id),
                        close=True)
            return
        except errors.RequestTooLarge:
            await send_response(send, message(413, "Request Entity Too Large", request_id, "RequestTooLargeException"),
                        close=True)
            return
        if body is None:
            return  # the client went away
        request.body = body
        await send_response(send, await self.front.serve(config, path, request, request.raw_path))


async def _drain_small(receive: Any, headers: dict[str, str]) -> bool:
    """Read a refused request's small declared body so the connection stays usable; whether it did."""
    length = headers.get("content-length", "0")
    if not length.isdigit() or int(length) > 64 * 1024 or "transfer-encoding" in headers:
        return False
    if int(length) == 0:
        return True
    try:
        async with asyncio.timeout(1.0):
            return await read_body(receive, BODY_MAX, "function URL") is not None
    except (TimeoutError, errors.RequestTooLarge):
        return False
