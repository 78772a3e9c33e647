"""Event source mappings' pure rules: the source ARN, the members' bounds, and the handler's
ReportBatchItemFailures answer."""

from __future__ import annotations

import pytest

from fnhost.control.esm_model import Mapping, parse_arn, response_types, validate
from fnhost.control.esm_poller import failed_ids
from fnhost.errors import InvalidParameter

SOURCE = "arn:aws:jetstream:us-east-1:000000000000:stream/ORDERS"


def test_source_arns() -> None:
    assert parse_arn(SOURCE) == ("ORDERS", "")
    assert parse_arn("arn:aws:jetstream:::stream/ORDERS/orders.*.new") == ("ORDERS", "orders.*.new")
    assert parse_arn("arn:aws:jetstream:::stream/ORDERS/orders.>") == ("ORDERS", "orders.>")
    for bad in ("", "arn:aws:sqs:us-east-1:000000000000:q", "arn:aws:jetstream:::ORDERS",
                "arn:aws:jetstream:::stream/OR.DERS", "arn:aws:jetstream:::stream/"):
        with pytest.raises(InvalidParameter, match="arn:aws:jetstream"):
            parse_arn(bad)


def test_bounds_with_lambdas_messages() -> None:
    ok = Mapping("u", "f", "", SOURCE)
    assert validate(ok) is ok and ok.max_deliver == 3 and ok.state == "Enabled"
    assert Mapping("u", "f", "", SOURCE, maximum_retry_attempts=-1).max_deliver == -1
    cases = [({"batch_size": 0}, "greater than or equal to 1"),
             ({"batch_size": 11}, "Maximum batch window in seconds must be greater than 0"),
             ({"batch_size": 10_001, "window_s": 1}, "less than or equal to 10000"),
             ({"window_s": 301}, "less than or equal to 300"),
             ({"maximum_concurrency": 1}, "greater than or equal to 2"),
             ({"maximum_retry_attempts": -2}, "greater than or equal to -1"),
             ({"on_failure": "arn:aws:s3:::bucket"}, "DestinationConfig"),
             ({"batch_size": True}, "must be an integer")]
    for change, message in cases:
        with pytest.raises(InvalidParameter, match=message):
            validate(Mapping("u", "f", "", SOURCE, **change))
    assert validate(Mapping("u", "f", "", SOURCE, batch_size=100, window_s=1, maximum_concurrency=1000,
                            on_failure="arn:aws:sqs:us-east-1:000000000000:failed")).batch_size == 100


def test_function_response_types() -> None:
    assert response_types(None) is False and response_types([]) is False
    assert response_types(["ReportBatchItemFailures"]) is True
    with pytest.raises(InvalidParameter, match="ReportBatchItemFailures"):
        response_types(["Other"])


def test_batch_item_failures_answer() -> None:
    ids = {"a", "b", "c"}
    assert failed_ids(b'{"batchItemFailures": [{"itemIdentifier": "b"}]}', ids) == {"b"}
    assert failed_ids(b'{"batchItemFailures": []}', ids) == set()
    assert failed_ids(b"null", ids) == set() and failed_ids(b"", ids) == set() and failed_ids(b'"ok"', ids) == set()
    assert failed_ids(b'{"other": 1}', ids) == set()
    # Lambda treats an unusable report as a failure of the whole batch.
    assert failed_ids(b'{"batchItemFailures": [{"itemIdentifier": "zzz"}]}', ids) is None
    assert failed_ids(b'{"batchItemFailures": [{"itemIdentifier": ""}]}', ids) is None
    assert failed_ids(b'{"batchItemFailures": [{}]}', ids) is None
    assert failed_ids(b'{"batchItemFailures": "b"}', ids) is None
    assert failed_ids(b"not json", ids) is None
