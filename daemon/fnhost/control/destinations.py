"""Destinations of asynchronous invocations: Lambda's invocation record, and where it goes.

An on-success or on-failure destination is the ARN of

* a function (``arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]``): the record is its
  payload, queued as a new asynchronous event of that function (a new request id);
* a queue (``arn:aws:sqs:REGION:ACCOUNT:NAME``): the record is appended to the queue called NAME
  that the configured backend keeps (SQLite: the ``queue_messages`` table; JetStream: a subject);
  ``AsyncInvocations.queue_messages(NAME)`` and the CLI read it.

Region and account are not checked against the daemon's: one daemon is one account.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..execution.invocation import LATEST, function_arn
from .async_model import QueuedEvent
from .async_queue import AsyncQueue
from .event_configs import FUNCTION_ARN_RE, QUEUE_ARN_RE

RECORD_VERSION = "1.0"


@dataclass(slots=True)
class Attempt:
    """What the last attempt returned, for the record's ``responseContext``/``responsePayload``."""

    status_code: int
    executed_version: str
    function_error: str  # "" on success
    payload: bytes


def _json_or_text(raw: bytes) -> Any:
    """A payload as the record carries it: the JSON value when it is JSON, else its text."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return raw.decode("utf-8", "replace")


def record(event: QueuedEvent, condition: str, attempt: Attempt | None, *, region: str, account_id: str,
           now: float | None = None) -> bytes:
    """Lambda's invocation record (the JSON a destination receives), field by field::

        {"version": "1.0", "timestamp": "2019-11-14T18:16:05.568Z",
         "requestContext": {"requestId", "functionArn", "condition", "approximateInvokeCount"},
         "requestPayload": …, "responseContext": {"statusCode", "executedVersion"[, "functionError"]},
         "responsePayload": …}

    An event whose age ran out before any attempt has no response: ``responseContext`` and
    ``responsePayload`` are then omitted, as Lambda omits them.
    """
    stamp = datetime.fromtimestamp(time.time() if now is None else now, timezone.utc)
    body: dict[str, Any] = {
        "version": RECORD_VERSION,
        "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z",
        "requestContext": {
            "requestId": event.request_id,
            "functionArn": function_arn(event.function, event.qualifier or LATEST, region=region,
                                        account_id=account_id),
            "condition": condition,
            "approximateInvokeCount": event.attempts,
        },
        "requestPayload": _json_or_text(event.payload) if event.payload else None,
    }
    if attempt is not None:
        context: dict[str, Any] = {"statusCode": attempt.status_code, "executedVersion": attempt.executed_version}
        if attempt.function_error:
            context["functionError"] = attempt.function_error
        body["responseContext"] = context
        body["responsePayload"] = _json_or_text(attempt.payload) if attempt.payload else None
    return json.dumps(body, separators=(",", ":")).encode()


class DestinationError(Exception):
    """A record could not be delivered (no such function, the store refused it)."""


async def deliver(backend: AsyncQueue, arn: str, body: bytes, *, new_request_id: str,
                  function_exists: Any) -> str:
    """Send ``body`` to the destination ``arn``; returns what it became (a request id or message id).

    ``function_exists(name, qualifier)`` raises ResourceNotFound for a function that is not there.
    Raises DestinationError.
    """
    match = FUNCTION_ARN_RE.match(arn)
    if match:
        name, qualifier = match.group(1), match.group(2) or ""
        try:
            function_exists(name, qualifier)
        except Exception as exc:
            raise DestinationError(f"destination {arn}: {getattr(exc, 'message', exc)}") from exc
        try:
            await backend.put(QueuedEvent(new_request_id, name, "" if qualifier == LATEST else qualifier, body,
                                          time.time()))
        except Exception as exc:
            raise DestinationError(f"destination {arn}: {getattr(exc, 'message', exc)}") from exc
        return new_request_id
    match = QUEUE_ARN_RE.match(arn)
    if match:
        try:
            return (await backend.send(match.group(1), body)).message_id
        except Exception as exc:
            raise DestinationError(f"destination {arn}: {getattr(exc, 'message', exc)}") from exc
    raise DestinationError(f"destination {arn}: not a function or queue ARN")
