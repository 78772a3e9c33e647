"""fnhost's error taxonomy: one base class carrying a stable code, one subclass per case.

Two families, as in Lambda:

* ``ApiError`` — the request itself is refused (unknown function, bad parameter, throttled).
  The server turns it into a gRPC status; the code travels as trailing metadata.
* ``FunctionError`` — the platform failed while running the function (timeout, out of memory,
  worker crash, init failure). The call still succeeds at the transport level and carries Lambda's
  error JSON with ``function_error="Unhandled"``.
"""

from __future__ import annotations

import json

import grpc


class FnhostError(Exception):
    """Base of every error fnhost raises on purpose."""

    code: str = "ServiceException"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- refused requests -------------------------------------------------------------------------


class ApiError(FnhostError):
    """A request fnhost refuses; ``status`` is the gRPC status it maps to."""

    status: grpc.StatusCode = grpc.StatusCode.INTERNAL


class ResourceNotFound(ApiError):
    """The named function does not exist."""

    code = "ResourceNotFoundException"
    status = grpc.StatusCode.NOT_FOUND


class ResourceConflict(ApiError):
    """CreateFunction for a name that already exists."""

    code = "ResourceConflictException"
    status = grpc.StatusCode.ALREADY_EXISTS


class InvalidParameter(ApiError):
    """A field has a value fnhost cannot accept; the message says which and why."""

    code = "InvalidParameterValueException"
    status = grpc.StatusCode.INVALID_ARGUMENT


class RequestTooLarge(ApiError):
    """The invocation payload exceeds Lambda's synchronous limit."""

    code = "RequestTooLargeException"
    status = grpc.StatusCode.INVALID_ARGUMENT


class CodeStorageExceeded(ApiError):
    """A zip is larger than fnhost accepts, zipped or unzipped."""

    code = "CodeStorageExceededException"
    status = grpc.StatusCode.INVALID_ARGUMENT


class ToolchainMissing(ApiError):
    """The runtime's toolchain is not installed on this host."""

    code = "RuntimeToolchainMissingException"
    status = grpc.StatusCode.FAILED_PRECONDITION


class BuildFailed(ApiError):
    """The runtime's deploy-time build (javac, go build, mcs) failed on the user's code."""

    code = "CodeBuildFailedException"
    status = grpc.StatusCode.INVALID_ARGUMENT


class LimitExceeded(ApiError):
    """The daemon already holds max_functions functions."""

    code = "LimitExceededException"
    status = grpc.StatusCode.RESOURCE_EXHAUSTED


class TooManyRequests(ApiError):
    """The function is at its concurrency limit and no worker freed up within the queue wait."""

    code = "TooManyRequestsException"
    status = grpc.StatusCode.RESOURCE_EXHAUSTED


class NotImplementedYet(ApiError):
    """A part of Lambda's API that fnhost does not offer yet."""

    code = "UnsupportedOperationException"
    status = grpc.StatusCode.UNIMPLEMENTED


class Unauthenticated(ApiError):
    """The daemon requires a bearer token (or client certificate) and the call had none valid."""

    code = "UnauthenticatedException"
    status = grpc.StatusCode.UNAUTHENTICATED


class ShuttingDown(ApiError):
    """The daemon is draining and accepts no new invocations."""

    code = "ServiceUnavailableException"
    status = grpc.StatusCode.UNAVAILABLE


# --- platform failures while running a function -----------------------------------------------


class FunctionError(FnhostError):
    """A failure reported to the caller as a function error with Lambda's error JSON."""

    def __init__(self, message: str, stack_trace: list[str] | None = None) -> None:
        super().__init__(message)
        self.stack_trace = stack_trace or []

    def to_json(self) -> bytes:
        return json.dumps(
            {"errorType": self.code, "errorMessage": self.message, "stackTrace": self.stack_trace}
        ).encode()


class SandboxTimeout(FunctionError):
    """The invocation ran past the function's timeout; the worker was killed."""

    code = "Sandbox.Timeout"


class OutOfMemory(FunctionError):
    """The worker's process tree went over the function's memory limit and was killed."""

    code = "Runtime.OutOfMemory"


class RuntimeExit(FunctionError):
    """The worker exited or was killed by a signal while starting or running an invocation."""

    code = "Runtime.ExitError"


class ResponseTooLarge(FunctionError):
    """The handler returned more than Lambda's 6 MB synchronous response limit."""

    code = "Function.ResponseSizeTooLarge"


class InitError(FunctionError):
    """The worker could not load the handler; ``code`` is the shim's errorType."""

    def __init__(self, code: str, message: str, stack_trace: list[str] | None = None) -> None:
        super().__init__(message, stack_trace)
        self.code = code


class WorkerProtocolError(FunctionError):
    """The worker broke the worker protocol (garbage on its control channel)."""

    code = "Runtime.InvalidResponse"
