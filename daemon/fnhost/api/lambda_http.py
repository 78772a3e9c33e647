"""Lambda's REST API (2015-03-31) as a front end of the supervisor, independent of any HTTP server.

``LambdaApi.match`` finds the operation a method and raw path name (and how large its body may
be, so the server refuses an oversized body before reading it); ``LambdaApi.handle`` checks who
signed the request, runs the operation and answers ``(status, body, headers)``: parse, call the
supervisor, translate the ``Outcome`` or the error (``lambda_wire``). Nothing here raises: every
error becomes Lambda's error response. The management operations are ``lambda_ops``.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import structlog

from .. import errors
from ..control.config import Settings
from ..execution.invocation import (CLIENT_CONTEXT_MAX, SYNC_PAYLOAD_MAX, Invocation, InvocationType,
                                   function_arn)
from . import lambda_wire
from .lambda_layers import ROUTES as LAYER_ROUTES
from .lambda_layers import LayerOperations
from .lambda_async import ROUTES as ASYNC_ROUTES
from .lambda_async import EventInvokeConfigOperations
from .lambda_esm import ROUTES as ESM_ROUTES
from .lambda_esm import EsmOperations
from .lambda_ops import Operations
from .lambda_shapes import function_name
from .lambda_wire import Response
from .sigv4 import Verifier
from .url_ops import UrlOperations

log = structlog.get_logger("fnhost.lambda_http")

# A 50 MB zip in base64 inside CreateFunction's JSON: Lambda's own bound for the request, plus
# room for the other members (4 KB of environment, a description …).
ZIP_REQUEST_MAX = 69_905_067 + 64 * 1024
SMALL_REQUEST_MAX = 1024 * 1024  # every other operation's JSON is a few KB at most
_LOG_TYPES = {"None": False, "Tail": True}


@dataclass(slots=True)
class Request:
    """One HTTP request as the server adapter hands it over (header names lowercase)."""

    method: str
    raw_path: str  # percent-encoded, as on the wire: the signature covers it so
    query: str
    headers: dict[str, str]
    body: bytes = b""
    principal: Any = None  # who signed it (control.credentials.Principal), once ``handle`` checked

    def param(self, name: str) -> str:
        """A query parameter's (first) value; "" when absent."""
        for key, value in parse_qsl(self.query, keep_blank_values=True):
            if key == name:
                return value
        return ""


Handler = Callable[[Request, dict[str, str]], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Matched:
    operation: str
    params: dict[str, str]  # the path's {FunctionName}, {Name}, still percent-encoded
    body_max: int


# Lambda's operations: method, path (from the service model), name, largest body.
_ROUTES: tuple[tuple[str, str, str, int], ...] = (
    ("POST", "/2015-03-31/functions/{fn}/invocations", "Invoke", SYNC_PAYLOAD_MAX),
    ("POST", "/2015-03-31/functions", "CreateFunction", ZIP_REQUEST_MAX),
    ("GET", "/2015-03-31/functions", "ListFunctions", 0),
    ("GET", "/2015-03-31/functions/{fn}", "GetFunction", 0),
    ("DELETE", "/2015-03-31/functions/{fn}", "DeleteFunction", 0),
    ("GET", "/2015-03-31/functions/{fn}/configuration", "GetFunctionConfiguration", 0),
    ("PUT", "/2015-03-31/functions/{fn}/configuration", "UpdateFunctionConfiguration", SMALL_REQUEST_MAX),
    ("PUT", "/2015-03-31/functions/{fn}/code", "UpdateFunctionCode", ZIP_REQUEST_MAX),
    ("POST", "/2015-03-31/functions/{fn}/versions", "PublishVersion", SMALL_REQUEST_MAX),
    ("GET", "/2015-03-31/functions/{fn}/versions", "ListVersionsByFunction", 0),
    ("POST", "/2015-03-31/functions/{fn}/aliases", "CreateAlias", SMALL_REQUEST_MAX),
    ("GET", "/2015-03-31/functions/{fn}/aliases", "ListAliases", 0),
    ("GET", "/2015-03-31/functions/{fn}/aliases/{name}", "GetAlias", 0),
    ("PUT", "/2015-03-31/functions/{fn}/aliases/{name}", "UpdateAlias", SMALL_REQUEST_MAX),
    ("DELETE", "/2015-03-31/functions/{fn}/aliases/{name}", "DeleteAlias", 0),
    ("PUT", "/2017-10-31/functions/{fn}/concurrency", "PutFunctionConcurrency", SMALL_REQUEST_MAX),
    ("DELETE", "/2017-10-31/functions/{fn}/concurrency", "DeleteFunctionConcurrency", 0),
    ("GET", "/2019-09-30/functions/{fn}/concurrency", "GetFunctionConcurrency", 0),
    ("GET", "/2016-08-19/account-settings", "GetAccountSettings", 0),
    ("POST", "/2021-10-31/functions/{fn}/url", "CreateFunctionUrlConfig", SMALL_REQUEST_MAX),
    ("GET", "/2021-10-31/functions/{fn}/url", "GetFunctionUrlConfig", 0),
    ("PUT", "/2021-10-31/functions/{fn}/url", "UpdateFunctionUrlConfig", SMALL_REQUEST_MAX),
    ("DELETE", "/2021-10-31/functions/{fn}/url", "DeleteFunctionUrlConfig", 0),
    ("GET", "/2021-10-31/functions/{fn}/urls", "ListFunctionUrlConfigs", 0),
    *LAYER_ROUTES,
    *((method, path, op, SMALL_REQUEST_MAX if method in ("PUT", "POST") else 0) for method, path, op in ASYNC_ROUTES),
    *((method, path, op, SMALL_REQUEST_MAX if method in ("PUT", "POST") else 0) for method, path, op in ESM_ROUTES),
)
# A GET or DELETE still may carry a small body (some clients send "{}"): it is read and ignored.
_EMPTY_BODY_MAX = 64 * 1024


def _compile(template: str) -> re.Pattern[str]:
    pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
    return re.compile(f"^{pattern}/?$")  # botocore sends ListFunctions as "/2015-03-31/functions/"


_TABLE = [(method, _compile(path), op, limit or _EMPTY_BODY_MAX) for method, path, op, limit in _ROUTES]


class LambdaApi:
    """The operations, bound to one supervisor and its settings."""

    def __init__(self, sup: Any, settings: Settings, verifier: Verifier) -> None:
        self.sup = sup
        self.settings = settings
        self.verifier = verifier
        self.ops = Operations(sup, settings)
        self._handlers: dict[str, Handler] = {"Invoke": self.invoke, **self.ops.handlers(),
                                               **UrlOperations(sup, settings).handlers(),
                                               **LayerOperations(sup, settings).handlers(),
                                               **EventInvokeConfigOperations(sup, settings).handlers(),
                                               **EsmOperations(sup, settings).handlers()}

    def match(self, method: str, raw_path: str) -> Matched:
        """The operation ``method raw_path`` names. Raises UnknownOperation, MethodNotAllowed."""
        allowed = []
        for route_method, pattern, op, limit in _TABLE:
            found = pattern.match(raw_path)
            if found is None:
                continue
            if route_method == method:
                return Matched(op, found.groupdict(), limit)
            allowed.append(route_method)
        if allowed:
            raise errors.MethodNotAllowed(f"{method} is not allowed on {raw_path}; use {', '.join(allowed)}")
        raise errors.UnknownOperation(f"No Lambda operation at {method} {raw_path} (API version 2015-03-31)")

    def refuse(self, error: errors.FnhostError) -> Response:
        """A request refused before it reached an operation (unknown path, body too large)."""
        return lambda_wire.error_response(error, str(uuid.uuid4()))

    async def handle(self, matched: Matched, request: Request) -> Response:
        """Authenticate, run the operation, translate; never raises (but cancellation)."""
        try:
            principal = self.verifier.caller(request.method, request.raw_path, request.query,
                                             request.headers, request.body)
            if principal is not None and principal.is_function and matched.operation != "Invoke":
                raise errors.AccessDenied(
                    f"User: function {principal.name} is not authorized to perform: lambda:{matched.operation} "
                    "(a function's key may only invoke functions)")
            request.principal = principal
            return await self._handlers[matched.operation](request, matched.params)
        except errors.FnhostError as exc:
            if not isinstance(exc, errors.ApiError):  # a ConfigError from a reload, say
                exc = errors.ApiError(exc.message)
            log.info("lambda_request_refused", operation=matched.operation, error=exc.code, message=exc.message)
            return lambda_wire.error_response(exc, str(uuid.uuid4()))
        except Exception as exc:
            log.exception("lambda_request_failed", operation=matched.operation)
            return lambda_wire.error_response(lambda_wire.internal_error(exc), str(uuid.uuid4()))

    async def invoke(self, request: Request, params: dict[str, str]) -> Response:
        """Invoke: RequestResponse, DryRun, or Event (202 with an empty body once the event is stored).

        Raises what the supervisor's invoke raises (QueueUnavailable: the event could not be stored),
        and InvalidParameter for a bad header.
        """
        name, qualifier = function_name(params["fn"], request.param("Qualifier"))
        headers = request.headers
        kind_name = headers.get("x-amz-invocation-type", "RequestResponse")
        try:
            kind = InvocationType(kind_name)
        except ValueError:
            raise errors.InvalidParameter(
                f"1 validation error detected: Value '{kind_name}' at 'invocationType' failed to satisfy "
                "constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]") from None
        log_type = headers.get("x-amz-log-type", "None")
        if log_type not in _LOG_TYPES:
            raise errors.InvalidParameter(
                f"1 validation error detected: Value '{log_type}' at 'logType' failed to satisfy constraint: "
                "Member must satisfy enum value set: [None, Tail]")
        principal = request.principal
        invocation = Invocation(
            name, request.body, kind, qualifier=qualifier, tail=_LOG_TYPES[log_type],
            client_context=_client_context(headers.get("x-amz-client-context", "")),
            invoked_function_arn=function_arn(name, qualifier, region=self.settings.region,
                                              account_id=self.settings.account_id),
            may_queue=principal is None or not principal.is_function,
        )
        return lambda_wire.invoke_response(await self.sup.invoke(invocation))


def _client_context(header: str) -> bytes:
    """X-Amz-Client-Context decoded: the JSON object's bytes ("" when absent).

    Raises InvalidRequestContent past Lambda's 3,583 bytes or when it is not base64; the pool checks
    that it is a JSON object (one check for every front end).
    """
    if not header:
        return b""
    if len(header) > CLIENT_CONTEXT_MAX:
        raise errors.InvalidRequestContent(
            f"Client context must be smaller than {CLIENT_CONTEXT_MAX} bytes of base64 (it is {len(header)})")
    try:
        return base64.b64decode(header, validate=True)
    except (binascii.Error, ValueError):
        raise errors.InvalidRequestContent("Client context must be a valid Base64-encoded JSON object.") from None
