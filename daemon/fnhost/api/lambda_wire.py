"""What Lambda's REST API answers, defined once: each refused request's HTTP status and error
body, and an ``Outcome`` as Invoke's response. The HTTP twin of ``grpc_wire``.

botocore's rest-json parser takes the error's name from the ``x-amzn-ErrorType`` header (or the
body's ``__type``) and its message from the body's ``message``/``Message``; with Lambda's names
and statuses the SDKs raise their own exception classes (``ResourceNotFoundException`` …).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

from .. import errors
from ..execution.invocation import Outcome

JSON = b"application/json"

# Each refused request's status. A subclass not listed takes its nearest listed base's.
_STATUS: dict[type[errors.FnhostError], int] = {
    errors.ApiError: 500,  # ServiceException: a bug of ours or an unforeseen failure
    errors.ResourceNotFound: 404,
    errors.ResourceConflict: 409,
    errors.PreconditionFailed: 412,
    errors.InvalidParameter: 400,
    errors.RequestTooLarge: 413,
    errors.CodeStorageExceeded: 400,
    # A missing toolchain or a failed build will not mend itself: 4xx, so no SDK retries it
    # (botocore retries 500, 502, 503 and 504).
    errors.ToolchainMissing: 400,
    errors.BuildFailed: 400,
    errors.LimitExceeded: 400,
    errors.TooManyRequests: 429,
    # Something fnhost does not do: 400, a request the caller must change, never a 5xx that an
    # SDK would retry with the same request.
    errors.NotImplementedYet: 400,
    errors.Unauthenticated: 403,
    errors.AccessDenied: 403,
    errors.UnknownOperation: 404,
    errors.MethodNotAllowed: 405,
    errors.ShuttingDown: 503,
}

# Lambda's error shapes spell the member "Message" for these and "message" for the rest.
_CAPITALISED = frozenset({"ResourceNotFoundException", "ServiceException"})


@dataclass(slots=True)
class Response:
    """An HTTP response, as the server adapter sends it."""

    status: int
    body: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def status_of(error: errors.FnhostError) -> int:
    """The HTTP status a refused request is answered with; 500 for anything unforeseen."""
    for cls in type(error).__mro__:
        status = _STATUS.get(cls)
        if status is not None:
            return status
    return 500


def internal_error(exc: BaseException) -> errors.ApiError:
    """A bug of ours, as the caller sees it: the daemon log has the traceback."""
    return errors.ApiError(f"internal error ({type(exc).__name__}); see the daemon log")


def error_response(error: errors.FnhostError, request_id: str) -> Response:
    """Lambda's error: its status, ``x-amzn-ErrorType`` and ``{"Type", "message"}`` body."""
    status = status_of(error)
    body: dict[str, object] = {"Type": "Service" if status >= 500 else "User",
                               "Message" if error.code in _CAPITALISED else "message": error.message}
    headers = [(b"content-type", JSON), (b"x-amzn-requestid", request_id.encode()),
               (b"x-amzn-errortype", error.code.encode())]
    if isinstance(error, errors.TooManyRequests):
        # The SDKs' retry modes honour Retry-After; Reason is Lambda's member for why.
        body["Reason"] = "ReservedFunctionConcurrentInvocationLimitExceeded"
        headers.append((b"retry-after", b"1"))
    return Response(status, json.dumps(body).encode(), headers)


def json_response(status: int, value: object, request_id: str) -> Response:
    """A successful operation's JSON output (``None``: an empty body, e.g. 204)."""
    headers = [(b"x-amzn-requestid", request_id.encode())]
    if value is None:
        return Response(status, b"", headers)
    headers.append((b"content-type", JSON))
    return Response(status, json.dumps(value).encode(), headers)


def invoke_response(outcome: Outcome) -> Response:
    """Invoke's answer: the payload as the body, the rest in Lambda's X-Amz-* headers."""
    headers = [(b"content-type", JSON), (b"x-amzn-requestid", outcome.request_id.encode()),
               (b"x-amz-executed-version", outcome.executed_version.encode())]
    if outcome.function_error:
        headers.append((b"x-amz-function-error", outcome.function_error.encode()))
    if outcome.log_result:
        headers.append((b"x-amz-log-result", base64.b64encode(outcome.log_result.encode())))
    return Response(outcome.status_code, outcome.payload, headers)
