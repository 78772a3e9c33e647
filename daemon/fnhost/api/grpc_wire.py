"""What both ends of the gRPC API agree on, defined once: message sizes, how an error travels
(status, message and the Lambda error name in trailing metadata), and an invocation's messages.

The servicer, ``InvokeStream`` and the client library all translate through here, so an error
maps to one status and an ``Outcome`` to one ``InvokeResponse`` wherever it is sent from.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import structlog

from .. import errors
from ..execution.invocation import Invocation, InvocationType, Outcome
from ..observability.report import Report
from ..v1 import fnhost_pb2 as pb

ERROR_TYPE_KEY = "fnhost-error-type"  # trailing metadata: the error's Lambda name (its ``code``)
# Zip uploads reach 50 MB; an invoke payload is checked against 6 MB with a clear error instead.
MAX_MESSAGE = 64 * 1024 * 1024
MESSAGE_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
]

# Each refused request's status. A subclass not listed takes its nearest listed base's.
_STATUS: dict[type[errors.FnhostError], grpc.StatusCode] = {
    errors.ApiError: grpc.StatusCode.INTERNAL,
    errors.ResourceNotFound: grpc.StatusCode.NOT_FOUND,
    errors.ResourceConflict: grpc.StatusCode.ALREADY_EXISTS,
    errors.PreconditionFailed: grpc.StatusCode.FAILED_PRECONDITION,
    errors.InvalidParameter: grpc.StatusCode.INVALID_ARGUMENT,
    errors.RequestTooLarge: grpc.StatusCode.INVALID_ARGUMENT,
    errors.CodeStorageExceeded: grpc.StatusCode.INVALID_ARGUMENT,
    errors.BuildFailed: grpc.StatusCode.INVALID_ARGUMENT,
    errors.ToolchainMissing: grpc.StatusCode.FAILED_PRECONDITION,
    errors.LimitExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.TooManyRequests: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.NotImplementedYet: grpc.StatusCode.UNIMPLEMENTED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.ShuttingDown: grpc.StatusCode.UNAVAILABLE,
}
_BY_NUMBER = {status.value[0]: status for status in grpc.StatusCode}

log = structlog.get_logger("fnhost.server")
T = TypeVar("T")


def status_of(error: errors.FnhostError) -> grpc.StatusCode:
    """The gRPC status a refused request is answered with; INTERNAL for anything unforeseen."""
    for cls in type(error).__mro__:
        status = _STATUS.get(cls)
        if status is not None:
            return status
    return grpc.StatusCode.INTERNAL


def abort_args(error: errors.FnhostError) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]:
    """``context.abort(*abort_args(error))``: the status, ``"<code>: <message>"``, the metadata."""
    return status_of(error), f"{error.code}: {error.message}", ((ERROR_TYPE_KEY, error.code),)


def internal_error(exc: BaseException) -> errors.ApiError:
    """A bug of ours, as the caller sees it: the daemon log has the traceback."""
    return errors.ApiError(f"internal error ({type(exc).__name__}); see the daemon log")


def rpc_method(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """A unary servicer method: ApiError becomes its gRPC status, with the Lambda error name in
    trailing metadata; anything else is a bug of ours, logged with its traceback, INTERNAL.

    Here rather than in ``grpc_server`` so that each servicer module (``grpc_async`` …) uses it."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> T:
        try:
            return await method(self, request, context)
        except errors.ApiError as exc:
            await context.abort(*abort_args(exc))
            raise  # abort raises; this line is never reached
        except Exception as exc:  # a bug of ours: say so, keep serving, keep the traceback
            log.exception("internal_error", method=method.__name__)
            await context.abort(*abort_args(internal_error(exc)))
            raise

    return wrapper


def _refusals() -> dict[str, type[errors.ApiError]]:
    """Every refused request's class by its code: only refused requests travel as errors."""
    by_code: dict[str, type[errors.ApiError]] = {}
    pending = [errors.ApiError]
    while pending:
        cls = pending.pop()
        by_code.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return by_code


_BY_CODE = _refusals()


def error_from(status: grpc.StatusCode | None, error_type: str, message: str) -> errors.ApiError:
    """The client's side: the class the daemon raised, found by its code, carrying the status."""
    cls = _BY_CODE.get(error_type, errors.ApiError)
    error = cls(message.removeprefix(f"{error_type}: ") if error_type else message)
    if cls is errors.ApiError and error_type:
        error.code = error_type  # a code this client does not know yet keeps its name
    error.status = status
    return error


def error_from_rpc(exc: grpc.RpcError, address: str) -> errors.FnhostError:
    """A failed call as the client raises it: the daemon's error, or ``Unreachable``."""
    status = exc.code() if hasattr(exc, "code") else None
    details = (exc.details() if hasattr(exc, "details") else None) or str(exc)
    metadata = dict(exc.trailing_metadata() or ()) if hasattr(exc, "trailing_metadata") else {}
    error_type = metadata.get(ERROR_TYPE_KEY, "")
    if status == grpc.StatusCode.UNAVAILABLE and not error_type:
        unreachable = errors.Unreachable(f"no fnhost daemon answers at {address}: {details}")
        unreachable.status = status
        return unreachable
    return error_from(status, error_type, details)


# --- invocations ------------------------------------------------------------------------------

_TYPES = {
    pb.REQUEST_RESPONSE: InvocationType.REQUEST_RESPONSE,
    pb.EVENT: InvocationType.EVENT,
    pb.DRY_RUN: InvocationType.DRY_RUN,
}
_PB_TYPES = {v.value: k for k, v in _TYPES.items()}


def invocation(request: pb.InvokeRequest, deadline: float | None = None) -> Invocation:
    try:
        kind = _TYPES[request.invocation_type]
    except KeyError:
        raise errors.InvalidParameter(
            f"invocation_type {request.invocation_type} is not one of REQUEST_RESPONSE, EVENT, DRY_RUN"
        ) from None
    name, qualifier = request.function_name, request.qualifier
    if ":" in name and not qualifier:  # Lambda's "name:qualifier" form of FunctionName
        name, _, qualifier = name.partition(":")
    return Invocation(name, request.payload, kind, qualifier, tail=request.log_type == pb.TAIL,
                      deadline=deadline, client_context=request.client_context)


def invoke_request(name: str, payload: bytes, invocation_type: str, log_type: str, qualifier: str = "",
                   client_context: bytes = b"") -> pb.InvokeRequest:
    """The client's side; ``invocation_type`` by Lambda's name (RequestResponse, Event, DryRun).

    ``name`` may carry the qualifier as Lambda's SDKs allow (``name:alias``), unless ``qualifier`` is given."""
    try:
        itype = _PB_TYPES[invocation_type]
    except KeyError:
        raise ValueError(f"invocation_type must be one of {sorted(_PB_TYPES)}") from None
    if not qualifier and ":" in name:
        name, _, qualifier = name.partition(":")
    return pb.InvokeRequest(function_name=name, payload=payload, invocation_type=itype,
                            log_type=pb.TAIL if log_type.lower() == "tail" else pb.NONE,
                            qualifier=qualifier, client_context=client_context)


def invoke_response(outcome: Outcome) -> pb.InvokeResponse:
    response = pb.InvokeResponse(
        status_code=outcome.status_code,
        payload=outcome.payload,
        function_error=outcome.function_error,
        log_result=outcome.log_result,
        request_id=outcome.request_id,
        executed_version=outcome.executed_version,
    )
    r = outcome.report
    if r is not None:
        report = response.report
        report.duration_ms = r.duration_ms
        report.billed_duration_ms = r.billed_duration_ms
        report.memory_size_mb = r.memory_size_mb
        report.max_memory_used_mb = r.max_memory_used_mb
        if r.init_duration_ms is not None:
            report.init_duration_ms = r.init_duration_ms
    return response


def outcome(response: pb.InvokeResponse) -> Outcome:
    """The client's side of ``invoke_response``."""
    report = None
    if response.HasField("report"):
        r = response.report
        report = Report(
            request_id=response.request_id,
            duration_ms=r.duration_ms,
            billed_duration_ms=r.billed_duration_ms,
            memory_size_mb=r.memory_size_mb,
            max_memory_used_mb=r.max_memory_used_mb,
            init_duration_ms=r.init_duration_ms if r.HasField("init_duration_ms") else None,
        )
    return Outcome(response.status_code, response.payload, response.function_error, response.request_id,
                   report, response.log_result, response.executed_version)


# --- InvokeStream items -------------------------------------------------------------------------


def stream_result(ident: int, result: Outcome | BaseException) -> pb.StreamResult:
    """One streamed invocation's answer: its response, or its error as the unary call's status."""
    if isinstance(result, Outcome):
        return pb.StreamResult(id=ident, response=invoke_response(result))
    error = result if isinstance(result, errors.FnhostError) else internal_error(result)
    return pb.StreamResult(id=ident, error=pb.InvokeError(
        code=status_of(error).value[0], error_type=error.code, message=error.message))


def stream_outcome(result: pb.StreamResult) -> Outcome | errors.FnhostError:
    """The client's side of ``stream_result``."""
    if result.WhichOneof("outcome") == "response":
        return outcome(result.response)
    e = result.error
    return error_from(_BY_NUMBER.get(e.code, grpc.StatusCode.UNKNOWN), e.error_type, e.message)
