"""One invocation as every front end hands it in, and the one ``Outcome`` they all translate back.

The gRPC servicer, ``InvokeStream`` and every later front door (Lambda's HTTP API, the async
queue, event source pollers, the Runtime API) parse their request into an ``Invocation``, call
``Supervisor.invoke`` and turn the ``Outcome`` into their wire format: nothing else.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidRequestContent
from ..observability.report import Report

LATEST = "$LATEST"  # the unpublished version, the only one there is until versions exist
SYNC_PAYLOAD_MAX = 6 * 1024 * 1024  # Lambda's 6 MB for synchronous requests and responses, in bytes
# Lambda takes up to 3,583 bytes of base64 in X-Amz-Client-Context. The HTTP front end applies
# that to the header; here the same number bounds the decoded JSON whatever front end it came by.
CLIENT_CONTEXT_MAX = 3583
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "000000000000"


class InvocationType(enum.Enum):
    """Lambda's ``InvocationType``; the values are its wire names."""

    REQUEST_RESPONSE = "RequestResponse"
    EVENT = "Event"
    DRY_RUN = "DryRun"


@dataclass(slots=True)
class Invocation:
    """What a front end asks for: one call of one function."""

    function: str
    payload: bytes
    invocation_type: InvocationType = InvocationType.REQUEST_RESPONSE
    qualifier: str = ""  # a version ("$LATEST", "1", …) or an alias; "" is $LATEST
    tail: bool = False  # LogType=Tail: return the last 4 KB of the log
    deadline: float | None = None  # the caller's, on anyio's clock: a queued call waits no longer
    client_context: bytes = b""  # Lambda's ClientContext: a JSON object, handed to the handler
    # The ARN the caller named the function by, qualifier included (``function_arn``), as the
    # handler's context shows it; "" leaves the shim to derive the unqualified one.
    invoked_function_arn: str = ""
    # False for a call made by a function: as on Lambda, it is throttled at once when the function
    # it calls is at its concurrency limit, so a chain of functions cannot wait on itself forever.
    may_queue: bool = True
    # Set by the asynchronous dispatcher: every attempt of one event runs under the event's request
    # id, as on Lambda; "" lets the pool draw a new one.
    request_id: str = ""


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs ~2 µs more per invocation
class Outcome:
    """What an invocation produced, as Lambda's Invoke answers it.

    A function error (the handler raised, or the platform failed while running it: timeout,
    out of memory, crash) is an Outcome with ``function_error="Unhandled"`` and Lambda's error
    JSON as the payload; a refused request is an ``ApiError`` instead.
    """

    status_code: int  # 200, or 204 for DryRun
    payload: bytes
    function_error: str  # "" or "Unhandled"
    request_id: str
    report: Report | None
    log_result: str = ""  # LogType=Tail: START … END and REPORT, the last 4 KB
    executed_version: str = LATEST

    @property
    def ok(self) -> bool:
        return not self.function_error


def function_arn(function: str, qualifier: str = "", *, region: str = DEFAULT_REGION,
                 account_id: str = DEFAULT_ACCOUNT_ID) -> str:
    """Lambda's ARN for ``function``, qualified (``…:function:name:alias``) when ``qualifier`` is set."""
    arn = f"arn:aws:lambda:{region}:{account_id}:function:{function}"
    return f"{arn}:{qualifier}" if qualifier else arn


def client_context_object(raw: bytes) -> dict[str, Any] | None:
    """``Invocation.client_context`` as the JSON object it must be; None when there is none.

    The one check every front end shares (the pool makes it), so a client of any of them cannot
    hand a worker anything else. Raises InvalidRequestContent, Lambda's error for it.
    """
    if not raw:
        return None
    if len(raw) > CLIENT_CONTEXT_MAX:
        raise InvalidRequestContent(f"Client context must be at most {CLIENT_CONTEXT_MAX} bytes "
                                    f"(it is {len(raw)} bytes)")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: "[[[[…" nested past the stack
        value = None
    if not isinstance(value, dict):
        raise InvalidRequestContent("Client context must be a valid Base64-encoded JSON object.")
    return value
