"""Destination records (control/destinations.py) and event invoke config rules (control/event_configs.py)."""

from __future__ import annotations

import json
import sqlite3

import pytest
from fnhost.control.async_model import QueuedEvent
from fnhost.control.destinations import Attempt, record
from fnhost.control.event_configs import EventConfigs
from fnhost.errors import InvalidParameter, ResourceNotFound


def test_record_of_an_event_that_never_ran_has_no_response_fields() -> None:
    event = QueuedEvent("rid", "f", "live", b'{"a": 1}', 0.0, attempts=0)
    body = json.loads(record(event, "EventAgeExceeded", None, region="eu-west-1", account_id="123456789012",
                             now=1_700_000_000.5))
    assert body == {"version": "1.0", "timestamp": "2023-11-14T22:13:20.500Z",
                    "requestContext": {"requestId": "rid",
                                       "functionArn": "arn:aws:lambda:eu-west-1:123456789012:function:f:live",
                                       "condition": "EventAgeExceeded", "approximateInvokeCount": 0},
                    "requestPayload": {"a": 1}}


def test_record_keeps_a_payload_that_is_not_json_as_text() -> None:
    event = QueuedEvent("rid", "f", "", b"plain", 0.0, attempts=2)
    body = json.loads(record(event, "Success", Attempt(200, "3", "", b"done"), region="us-east-1",
                             account_id="000000000000"))
    assert body["requestPayload"] == "plain" and body["responsePayload"] == "done"
    assert body["responseContext"] == {"statusCode": 200, "executedVersion": "3"}
    assert body["requestContext"]["functionArn"].endswith(":function:f:$LATEST")


def known(name: str, qualifier: str) -> None:
    if name != "f" or qualifier not in ("", "1", "live"):
        raise ResourceNotFound(f"Function not found: {name}:{qualifier}")


@pytest.fixture
def configs() -> EventConfigs:
    return EventConfigs(sqlite3.connect(":memory:"), known, region="us-east-1", account_id="000000000000")


def test_configs_put_replaces_update_merges_and_effective_falls_back(configs: EventConfigs) -> None:
    configs.put("f", "", maximum_retry_attempts=0, on_failure="arn:aws:sqs:us-east-1:000000000000:q")
    assert configs.put("f", "", maximum_event_age_s=100, merge=True).maximum_retry_attempts == 0
    assert configs.put("f", "", maximum_event_age_s=100).maximum_retry_attempts == 2
    configs.put("f", "live", maximum_retry_attempts=1)
    assert configs.effective("f", "live").maximum_retry_attempts == 1
    assert configs.effective("f", "1").maximum_event_age_s == 100  # no config of its own: the function's
    assert configs.effective("f", "$LATEST").maximum_event_age_s == 100
    assert [c.qualifier for c in configs.list("f")] == ["", "live"]
    configs.delete("f", "live")
    with pytest.raises(ResourceNotFound, match="doesn't have an EventInvokeConfig"):
        configs.get("f", "live")
    with pytest.raises(ResourceNotFound):
        configs.put("f", "2")


@pytest.mark.parametrize(("fields", "message"), [
    ({"maximum_retry_attempts": -1}, "greater than or equal to 0"),
    ({"maximum_retry_attempts": 3}, "less than or equal to 2"),
    ({"maximum_event_age_s": 59}, "greater than or equal to 60"),
    ({"maximum_event_age_s": 21601}, "less than or equal to 21600"),
    ({"on_success": "arn:aws:sns:us-east-1:000000000000:t"}, "is invalid"),
    ({"on_failure": "not-an-arn"}, "is invalid"),
])
def test_configs_refuse_values_outside_lambdas_bounds(configs: EventConfigs, fields: dict, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        configs.put("f", "", **fields)
    with pytest.raises(ResourceNotFound):
        configs.get("f")  # nothing was stored
