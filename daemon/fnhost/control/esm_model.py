"""Event source mappings' model and rules: the ``Mapping`` record, its source ARN, and the checks
of its members with Lambda's bounds and messages. Pure: ``event_sources`` stores mappings and
``esm_poller`` polls them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidParameter
from .event_configs import validate_destination

ARN_RE = re.compile(r"^arn:(aws[a-zA-Z0-9-]*):jetstream:([a-z0-9-]*):(\d{12})?:stream/"
                    r"(?P<stream>[^/\s.*>\\]+)(?:/(?P<subject>\S+))?$")
# Lambda's SQS bounds: BatchSize 1-10,000 (more than 10 needs a batching window), window 0-300 s,
# ScalingConfig.MaximumConcurrency 2-1,000.
BATCH_SIZE_MAX = 10_000
BATCH_SIZE_DEFAULT = 10
WINDOW_MAX_S = 300
CONCURRENCY_BOUNDS = (2, 1000)
# How often a record is retried after its first delivery before it goes to the on-failure
# destination: MaximumRetryAttempts (Lambda's stream member; for SQS the queue's maxReceiveCount
# plays this part). -1 retries until the record is handled; the default 2 gives 3 deliveries.
RETRY_BOUNDS = (-1, 10_000)
RETRY_DEFAULT = 2
REPORT_BATCH_ITEM_FAILURES = "ReportBatchItemFailures"
USER_INITIATED = "USER_INITIATED"


@dataclass(frozen=True, slots=True)
class Mapping:
    """One event source mapping: what ``GetEventSourceMapping`` shows."""

    uuid: str
    function: str
    qualifier: str  # "" ($LATEST), a version or an alias
    source_arn: str
    batch_size: int = BATCH_SIZE_DEFAULT
    window_s: int = 0  # MaximumBatchingWindowInSeconds
    enabled: bool = True
    report_batch_item_failures: bool = False
    maximum_concurrency: int = 0  # ScalingConfig.MaximumConcurrency; 0: the function's concurrency limit
    maximum_retry_attempts: int = RETRY_DEFAULT
    on_failure: str = ""  # destination ARN
    last_modified: float = 0.0  # unix seconds
    last_processing_result: str = "No records processed"

    @property
    def stream(self) -> str:
        return parse_arn(self.source_arn)[0]

    @property
    def subject(self) -> str:
        return parse_arn(self.source_arn)[1]

    @property
    def state(self) -> str:
        return "Enabled" if self.enabled else "Disabled"

    @property
    def max_deliver(self) -> int:
        """JetStream's MaxDeliver for the consumer: -1 (unbounded) or 1 + the retries."""
        return -1 if self.maximum_retry_attempts < 0 else 1 + self.maximum_retry_attempts


# --- rules (pure) ---------------------------------------------------------------------------------


def parse_arn(arn: str) -> tuple[str, str]:
    """(stream, subject or "") of a source ARN. Raises InvalidParameter for any other form."""
    found = ARN_RE.match(arn or "")
    if found is None:
        raise InvalidParameter(
            f"Invalid EventSourceArn {arn!r}: fnhost polls NATS JetStream, named "
            "arn:aws:jetstream:<region>:<account>:stream/<STREAM>[/<SUBJECT>] (region and account may be empty)")
    return found["stream"], found["subject"] or ""


def _bounded(member: str, value: int, low: int, high: int) -> int:
    """``value`` when it is an integer from ``low`` to ``high``; else InvalidParameter (Lambda's wording)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy "
                               "constraint: Member must be an integer")
    if value > high:
        raise InvalidParameter(f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy "
                               f"constraint: Member must have value less than or equal to {high}")
    if value < low:
        raise InvalidParameter(f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy "
                               f"constraint: Member must have value greater than or equal to {low}")
    return value


def validate(m: Mapping) -> Mapping:
    """The mapping's members checked together, with Lambda's messages. Raises InvalidParameter."""
    parse_arn(m.source_arn)
    _bounded("batchSize", m.batch_size, 1, BATCH_SIZE_MAX)
    _bounded("maximumBatchingWindowInSeconds", m.window_s, 0, WINDOW_MAX_S)
    if m.batch_size > 10 and m.window_s < 1:
        raise InvalidParameter("Maximum batch window in seconds must be greater than 0 if maximum batch size "
                               "is greater than 10")
    if m.maximum_concurrency:
        _bounded("scalingConfig.maximumConcurrency", m.maximum_concurrency, *CONCURRENCY_BOUNDS)
    _bounded("maximumRetryAttempts", m.maximum_retry_attempts, *RETRY_BOUNDS)
    validate_destination(m.on_failure, "OnFailure")  # the same destinations as asynchronous invocation
    return m


def response_types(values: Any) -> bool:
    """FunctionResponseTypes → whether ReportBatchItemFailures is on. Raises InvalidParameter."""
    if values is None:
        return False
    if not isinstance(values, list) or any(v != REPORT_BATCH_ITEM_FAILURES for v in values):
        raise InvalidParameter(f"1 validation error detected: Value '{values}' at 'functionResponseTypes' failed "
                               "to satisfy constraint: Member must satisfy enum value set: [ReportBatchItemFailures]")
    return bool(values)


def consumer_name(mapping_uuid: str) -> str:
    return f"fnhost-esm-{mapping_uuid}"
