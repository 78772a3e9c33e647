"""The asynchronous invocation's records: what is queued, configured, dead-lettered and counted.

Plain dataclasses shared by the queue backends (``async_sqlite``, ``async_nats``), the
dispatcher (``async_dispatch``), the facade the supervisor owns (``async_invoke``) and the
front ends. Times are unix seconds (``time.time()``): they are stored and compared across
restarts and hosts, where a monotonic clock means nothing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

# Lambda's bounds and defaults (EventInvokeConfig).
RETRY_ATTEMPTS_MAX = 2
RETRY_ATTEMPTS_DEFAULT = 2
EVENT_AGE_MIN_S = 60
EVENT_AGE_MAX_S = 21_600
EVENT_AGE_DEFAULT_S = 21_600
# Lambda's limit on an asynchronous request: 1 MB (AWS raised it from 256 KB in 2025).
ASYNC_PAYLOAD_MAX = 1024 * 1024


class Reason(str, enum.Enum):
    """Why an event left the queue without success; the value is what the CLI and records show."""

    RETRIES_EXHAUSTED = "RetriesExhausted"
    EVENT_AGE_EXCEEDED = "EventAgeExceeded"
    FUNCTION_DELETED = "FunctionDeleted"  # its function (or qualifier) no longer exists


class Condition(str, enum.Enum):
    """``requestContext.condition`` of Lambda's destination record."""

    SUCCESS = "Success"
    RETRIES_EXHAUSTED = "RetriesExhausted"
    EVENT_AGE_EXCEEDED = "EventAgeExceeded"


@dataclass(slots=True)
class QueuedEvent:
    """One accepted ``Event`` invocation, as a backend stores and delivers it.

    ``attempts`` counts deliveries that started (the backend increments it when it leases the
    event, so an attempt cut short by a crash counts too, as on Lambda); ``failures`` counts
    function errors, the attempts that use up MaximumRetryAttempts (throttles and platform
    failures do not). ``handle`` is the backend's own token for a leased delivery (a lease id,
    a JetStream message); it is not stored and not compared.
    """

    request_id: str
    function: str
    qualifier: str  # "" ($LATEST), a version or an alias, as the caller named it
    payload: bytes
    received_at: float  # unix s, when it was accepted: its age counts from here
    client_context: bytes = b""
    attempts: int = 0
    failures: int = 0
    last_error: str = ""  # the last attempt's error JSON, or a reason (throttled, ...)
    not_before: float = 0.0  # unix s: not delivered before (retry spacing)
    handle: object = field(default=None, compare=False, repr=False)

    def age_s(self, now: float) -> float:
        return max(0.0, now - self.received_at)


@dataclass(slots=True)
class EventInvokeConfig:
    """Lambda's FunctionEventInvokeConfig for a function, or one version or alias of it."""

    function: str
    qualifier: str = ""  # "" = $LATEST (unqualified), a version number or an alias
    maximum_retry_attempts: int = RETRY_ATTEMPTS_DEFAULT
    maximum_event_age_s: int = EVENT_AGE_DEFAULT_S
    on_success: str = ""  # a destination ARN (function or queue), or ""
    on_failure: str = ""
    last_modified: float = 0.0  # unix s


@dataclass(slots=True)
class DeadLetter:
    """An event that exhausted its retries or its age with no failure destination."""

    request_id: str
    function: str
    qualifier: str
    payload: bytes
    attempts: int
    last_error: str  # the last attempt's error JSON, or the reason's text when it never ran
    received_at: float
    dead_lettered_at: float
    reason: str  # a Reason value
    client_context: bytes = b""

    def age_s(self, now: float) -> float:
        return max(0.0, now - self.received_at)


@dataclass(slots=True)
class QueueMessage:
    """One record sent to a queue destination (``arn:aws:sqs:REGION:ACCOUNT:QUEUE``).

    The backend keeps each named queue (SQLite: a table; JetStream: a subject); ``body`` is
    Lambda's invocation record JSON.
    """

    queue: str  # the queue's name, the ARN's last part
    message_id: str
    body: bytes
    sent_at: float


@dataclass(slots=True)
class AsyncStats:
    """One function's asynchronous queue: its depth now and counters since the daemon started.

    Lambda's metric names where one applies: ``received`` is AsyncEventsReceived,
    ``oldest_age_s`` AsyncEventAge, ``dropped_age`` AsyncEventsDropped.
    """

    depth: int = 0  # events queued or running, not yet done
    oldest_age_s: float = 0.0
    received: int = 0
    retries: int = 0  # attempts after the first, any cause
    dropped_age: int = 0  # left without running (again) because their age ran out
    dead_lettered: int = 0
    delivered_success: int = 0  # records sent to an on-success destination
    delivered_failure: int = 0  # records sent to an on-failure destination
    throttled: int = 0  # attempts that found no worker within the async share and waited again
