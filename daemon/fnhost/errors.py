"""fnhost's error taxonomy: one base class carrying a stable code, one subclass per case.

Two families, as in Lambda:

* ``ApiError`` — the request itself is refused (unknown function, bad parameter, throttled).
  Each front end maps it to its own wire status in one place (gRPC: ``api.grpc_wire``); the
  code travels with it (gRPC: as trailing metadata).
* ``FunctionError`` — the platform failed while running the function (timeout, out of memory,
  worker crash, init failure). The call still succeeds at the transport level and carries Lambda's
  error JSON with ``function_error="Unhandled"``.

Beside them, the errors of the daemon's own life (``ConfigError``, ``DaemonError``) and the
client's ``Unreachable``. Nothing here knows a wire format.
"""

from __future__ import annotations

import json


class FnhostError(Exception):
    """Base of every error fnhost raises on purpose."""

    code: str = "ServiceException"
    # On an error a client received: the transport status it arrived with (a grpc.StatusCode).
    status: object = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(FnhostError):
    """A config file or daemon setting is invalid; the message names the key and what to fix."""

    code = "ConfigError"


class DaemonError(FnhostError):
    """The daemon cannot start; the message says why and what to do."""

    code = "DaemonError"


class Unreachable(FnhostError):
    """A client found no daemon answering at the address."""

    code = "ServiceUnreachable"


# --- refused requests -------------------------------------------------------------------------


class ApiError(FnhostError):
    """A request fnhost refuses; front ends map each subclass to their wire status."""



class ResourceNotFound(ApiError):
    """The named function does not exist."""

    code = "ResourceNotFoundException"


class ResourceConflict(ApiError):
    """CreateFunction for a name that already exists."""

    code = "ResourceConflictException"


class PreconditionFailed(ApiError):
    """A request's RevisionId (or CodeSha256) no longer matches the function, version or alias."""

    code = "PreconditionFailedException"


class InvalidParameter(ApiError):
    """A field has a value fnhost cannot accept; the message says which and why."""

    code = "InvalidParameterValueException"


class InvalidRequestContent(InvalidParameter):
    """An Invoke whose content cannot be used as sent (a client context that is not a JSON object)."""

    code = "InvalidRequestContentException"


class RequestTooLarge(ApiError):
    """The invocation payload exceeds Lambda's synchronous limit."""

    code = "RequestTooLargeException"


class CodeStorageExceeded(ApiError):
    """A zip is larger than fnhost accepts, zipped or unzipped."""

    code = "CodeStorageExceededException"


class ToolchainMissing(ApiError):
    """The runtime's toolchain is not installed on this host."""

    code = "RuntimeToolchainMissingException"


class BuildFailed(ApiError):
    """The runtime's deploy-time build (javac, go build, mcs) failed on the user's code."""

    code = "CodeBuildFailedException"


class LimitExceeded(ApiError):
    """The daemon already holds max_functions functions."""

    code = "LimitExceededException"


class TooManyRequests(ApiError):
    """The function is at its concurrency limit and no worker freed up within the queue wait."""

    code = "TooManyRequestsException"


class NotImplementedYet(ApiError):
    """A part of Lambda's API that fnhost does not offer yet."""

    code = "UnsupportedOperationException"


class Unauthenticated(ApiError):
    """The daemon requires a bearer token (or client certificate) and the call had none valid."""

    code = "UnauthenticatedException"


class InvalidSignature(Unauthenticated):
    """A SigV4 signature does not match the request, is malformed, or was made too long ago."""

    code = "InvalidSignatureException"


class UnrecognizedClient(Unauthenticated):
    """A SigV4-signed request names an access key id the daemon does not know."""

    code = "UnrecognizedClientException"


class MissingAuthenticationToken(Unauthenticated):
    """The daemon requires SigV4-signed requests and this one was not signed."""

    code = "MissingAuthenticationTokenException"


class AccessDenied(ApiError):
    """The caller is known but may not do this (a function's key may only invoke)."""

    code = "AccessDeniedException"


class UnknownOperation(ApiError):
    """An HTTP request whose path names no operation of Lambda's API."""

    code = "UnknownOperationException"


class MethodNotAllowed(UnknownOperation):
    """An HTTP request whose path names an operation, with a method that operation does not take."""

    code = "MethodNotAllowedException"


class ShuttingDown(ApiError):
    """The daemon is draining and accepts no new invocations."""

    code = "ServiceUnavailableException"


class QueueUnavailable(ShuttingDown):
    """The asynchronous queue cannot store an event now (disk full, NATS unreachable): an Event
    invocation is refused (503-class, like ShuttingDown) rather than accepted into memory."""

    code = "ServiceUnavailableException"


# --- platform failures while running a function -----------------------------------------------


class FunctionError(FnhostError):
    """A failure reported to the caller as a function error with Lambda's error JSON."""

    def __init__(self, message: str, stack_trace: list[str] | None = None) -> None:
        super().__init__(message)
        self.stack_trace = stack_trace or []

    def again(self) -> FunctionError:
        """The same error as a new exception, to raise once more.

        Raising one object repeatedly chains each raise's frames onto its traceback, and keeps
        their locals alive: a pool answering every call with its last init error would grow.
        """
        copy = type(self).__new__(type(self))
        copy.__dict__.update(self.__dict__)
        copy.args = self.args
        return copy

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


class ForkLost(RuntimeExit):
    """A worker forked from a zygote was killed before it said HELLO: none of its function's
    code had run, so the pool starts another in its place instead of failing the caller."""


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
