"""Event source mappings on JetStream: Lambda's API (boto3), SQS-shaped records, batches, partial
failures, disabled mappings, scaling under backlog, and the on-failure destination."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.event_sources.conftest import Sink, Stream, metrics


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    return exc.value.response["Error"]["Code"], exc.value.response["Error"]["Message"]


def _records(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for report in reports for r in report["event"]["Records"]]


def test_crud_in_lambda_shapes(lam: Any, make_function: Any, stream: Stream, sink: Sink) -> None:
    fn = make_function()
    created = lam.create_event_source_mapping(
        FunctionName=fn, EventSourceArn=stream.arn(f"{stream.subject}.in"), BatchSize=5,
        MaximumBatchingWindowInSeconds=1, FunctionResponseTypes=["ReportBatchItemFailures"],
        ScalingConfig={"MaximumConcurrency": 3}, Enabled=False, MaximumRetryAttempts=4,
        DestinationConfig={"OnFailure": {"Destination": f"arn:aws:lambda:us-east-1:000000000000:function:{fn}"}})
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 202
    uuid = created["UUID"]
    assert len(uuid) == 36 and created["State"] == "Creating"
    assert created["EventSourceMappingArn"].endswith(f":event-source-mapping:{uuid}")
    got = lam.get_event_source_mapping(UUID=uuid)
    assert got["State"] == "Disabled" and got["StateTransitionReason"] == "USER_INITIATED"
    assert got["FunctionArn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{fn}"
    assert (got["BatchSize"], got["MaximumBatchingWindowInSeconds"], got["MaximumRetryAttempts"]) == (5, 1, 4)
    assert got["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert got["ScalingConfig"] == {"MaximumConcurrency": 3}
    assert got["DestinationConfig"]["OnFailure"]["Destination"].endswith(f":function:{fn}")
    assert got["EventSourceArn"] == stream.arn(f"{stream.subject}.in")
    assert got["LastModified"].year >= 2024  # a timestamp botocore parsed

    updated = lam.update_event_source_mapping(UUID=uuid, BatchSize=7, FunctionResponseTypes=[])
    assert updated["State"] == "Updating" and updated["BatchSize"] == 7 and updated["FunctionResponseTypes"] == []
    assert lam.get_event_source_mapping(UUID=uuid)["MaximumBatchingWindowInSeconds"] == 1  # unchanged
    listed = lam.list_event_source_mappings(FunctionName=fn)["EventSourceMappings"]
    assert [m["UUID"] for m in listed] == [uuid]
    assert [m["UUID"] for m in lam.list_event_source_mappings(EventSourceArn=stream.arn(f"{stream.subject}.in"))
            ["EventSourceMappings"]] == [uuid]
    with pytest.raises(ClientError) as exc:  # one mapping per function and source
        lam.create_event_source_mapping(FunctionName=fn, EventSourceArn=stream.arn(f"{stream.subject}.in"))
    assert _error(exc)[0] == "ResourceConflictException"

    assert lam.delete_event_source_mapping(UUID=uuid)["State"] == "Deleting"
    with pytest.raises(ClientError) as exc:
        lam.get_event_source_mapping(UUID=uuid)
    assert _error(exc)[0] == "ResourceNotFoundException"
    assert lam.list_event_source_mappings(FunctionName=fn)["EventSourceMappings"] == []

    # A deleted function takes its mappings with it.
    uuid = lam.create_event_source_mapping(FunctionName=fn, EventSourceArn=stream.arn())["UUID"]
    lam.delete_function(FunctionName=fn)
    with pytest.raises(ClientError) as exc:
        lam.get_event_source_mapping(UUID=uuid)
    assert _error(exc)[0] == "ResourceNotFoundException"


def test_validation_uses_lambdas_messages(lam: Any, make_function: Any, stream: Stream) -> None:
    fn = make_function()
    cases = [
        ({"EventSourceArn": "arn:aws:sqs:us-east-1:000000000000:q"}, "InvalidParameterValueException",
         "stream/<STREAM>"),
        ({"EventSourceArn": stream.arn(), "BatchSize": 20}, "InvalidParameterValueException",
         "Maximum batch window in seconds must be greater than 0"),
        ({"EventSourceArn": stream.arn(), "BatchSize": 20000, "MaximumBatchingWindowInSeconds": 1},
         "InvalidParameterValueException", "less than or equal to 10000"),
        ({"EventSourceArn": stream.arn(), "MaximumBatchingWindowInSeconds": 301},
         "InvalidParameterValueException", "less than or equal to 300"),
        ({"EventSourceArn": stream.arn(), "ScalingConfig": {"MaximumConcurrency": 1001}},
         "InvalidParameterValueException", "less than or equal to 1000"),
        ({"EventSourceArn": stream.arn(), "FunctionResponseTypes": ["Other"]},
         "InvalidParameterValueException", "ReportBatchItemFailures"),
        ({"EventSourceArn": stream.arn(), "StartingPosition": "LATEST"}, "InvalidParameterValueException",
         "StartingPosition"),
    ]
    for members, code, text in cases:
        with pytest.raises(ClientError) as exc:
            lam.create_event_source_mapping(FunctionName=fn, **members)
        assert _error(exc)[0] == code and text in _error(exc)[1], (members, _error(exc))
    with pytest.raises(ClientError) as exc:
        lam.create_event_source_mapping(FunctionName=fn + "-missing", EventSourceArn=stream.arn())
    assert _error(exc)[0] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as exc:
        lam.get_event_source_mapping(UUID="00000000-0000-0000-0000-000000000000")
    assert _error(exc)[0] == "ResourceNotFoundException"


def test_records_in_sqs_shape_in_batches(lam: Any, make_function: Any, stream: Stream, sink: Sink,
                                         esm_daemon: Any) -> None:
    fn = make_function()
    stream.publish([{"n": i} for i in range(23)], headers={"trace": "abc"})
    uuid = lam.create_event_source_mapping(FunctionName=fn, EventSourceArn=stream.arn(), BatchSize=10,
                                           MaximumBatchingWindowInSeconds=1)["UUID"]
    reports = sink.take(records=23, function=fn)
    sizes = [len(r["event"]["Records"]) for r in reports]
    # Never more than BatchSize; the backlog of 23 is shared by up to 3 concurrent batches.
    assert max(sizes) <= 10 and sum(sizes) == 23 and len(sizes) >= 3, sizes
    records = _records(reports)
    assert sorted(int(json.loads(r["body"])["n"]) for r in records) == list(range(23))
    first = records[0]
    assert set(first) == {"messageId", "receiptHandle", "body", "attributes", "messageAttributes", "md5OfBody",
                          "eventSource", "eventSourceARN", "awsRegion"}
    assert first["eventSource"] == "aws:sqs" and first["eventSourceARN"] == stream.arn()
    assert first["awsRegion"] == "us-east-1"
    assert first["md5OfBody"] == hashlib.md5(first["body"].encode()).hexdigest()
    assert first["attributes"]["ApproximateReceiveCount"] == "1"
    sent = int(first["attributes"]["SentTimestamp"])
    assert abs(sent / 1000 - time.time()) < 60
    assert int(first["attributes"]["ApproximateFirstReceiveTimestamp"]) >= sent
    assert first["messageAttributes"]["trace"]["stringValue"] == "abc"
    assert first["messageAttributes"]["trace"]["dataType"] == "String"
    assert len({r["messageId"] for r in records}) == 23
    time.sleep(0.5)
    assert stream.consumer_pending(f"fnhost-esm-{uuid}") == 0  # every record acknowledged
    assert lam.get_event_source_mapping(UUID=uuid)["LastProcessingResult"] == "OK"
    exposed = metrics(esm_daemon)
    assert f'fnhost_esm_records_total{{function="{fn}",mapping="{uuid}",outcome="received"}} 23.0' in exposed
    assert f'fnhost_esm_backlog{{function="{fn}",mapping="{uuid}"}} 0.0' in exposed
    with esm_daemon.client() as client:  # the same counts in GetStats (and so `fnhost stats`)
        [mine] = [m for m in client.stats().event_source_mappings if m.uuid == uuid]
    assert (mine.function_name, mine.records, mine.batches, mine.backlog) == (fn, 23, len(sizes), 0)
    lam.delete_event_source_mapping(UUID=uuid)


def test_batching_window_gathers_records(lam: Any, make_function: Any, stream: Stream, sink: Sink) -> None:
    fn = make_function()
    uuid = lam.create_event_source_mapping(FunctionName=fn, EventSourceArn=stream.arn(), BatchSize=50,
                                           MaximumBatchingWindowInSeconds=3)["UUID"]
    time.sleep(1.0)  # the poller is waiting
    started = time.monotonic()
    stream.publish([{"n": 0}])
    time.sleep(1.0)
    stream.publish([{"n": 1}, {"n": 2}])
    reports = sink.take(1, function=fn)
    waited = time.monotonic() - started
    assert len(reports[0]["event"]["Records"]) == 3  # one batch: the window was still open
    assert 2.0 <= waited <= 8.0, waited
    lam.delete_event_source_mapping(UUID=uuid)


def test_batch_size_one_and_subject_filter(lam: Any, make_function: Any, stream: Stream, sink: Sink) -> None:
    fn = make_function()
    uuid = lam.create_event_source_mapping(FunctionName=fn, EventSourceArn=stream.arn(f"{stream.subject}.a"),
                                           BatchSize=1)["UUID"]
    stream.publish([{"n": 1}, {"n": 2}], subject=f"{stream.subject}.a")
    stream.publish([{"n": 3}], subject=f"{stream.subject}.b")  # another subject: not this mapping's
    reports = sink.take(2, function=fn)
    assert [len(r["event"]["Records"]) for r in reports] == [1, 1]
    assert sink.quiet(2.0) == []
    assert {r["messageAttributes"]["NatsSubject"]["stringValue"] for r in _records(reports)} == {
        f"{stream.subject}.a"}
    lam.delete_event_source_mapping(UUID=uuid)


def test_partial_batch_failure_redelivers_only_failed(lam: Any, make_function: Any, stream: Stream,
                                                      sink: Sink) -> None:
    fn = make_function()
    bodies = [{"n": 0}, {"n": 1, "fail_until": 2}, {"n": 2}, {"n": 3, "fail_until": 3}, {"n": 4}]
    stream.publish(bodies)
    uuid = lam.create_event_source_mapping(FunctionName=fn, EventSourceArn=stream.arn(), BatchSize=5,
                                           MaximumBatchingWindowInSeconds=1,
                                           FunctionResponseTypes=["ReportBatchItemFailures"])["UUID"]


    reports = sink.take(records=5 + 1 + 2, function=fn, timeout=30)
    deliveries: dict[int, list[str]] = {}
    for record in _records(reports):
        deliveries.setdefault(json.loads(record["body"])["n"], []).append(
            record["attributes"]["ApproximateReceiveCount"])
    assert deliveries == {0: ["1"], 1: ["1", "2"], 2: ["1"], 3: ["1", "2", "3"], 4: ["1"]}, deliveries
    assert sink.quiet(3.0) == []
    assert stream.consumer_pending(f"fnhost-esm-{uuid}") == 0
    lam.delete_event_source_mapping(UUID=uuid)


def test_invalid_failure_report_fails_the_whole_batch(lam: Any, make_function: Any, stream: Stream,
                                                      sink: Sink) -> None:
    """An exception (no batchItemFailures at all) redelivers every record of the batch."""
    fn = make_function()
    stream.publish([{"n": 0, "crash": True}, {"n": 1}])
    uuid = lam.create_event_source_mapping(FunctionName=fn, EventSourceArn=stream.arn(), BatchSize=2,
                                           MaximumBatchingWindowInSeconds=1, MaximumRetryAttempts=1,
                                           FunctionResponseTypes=["ReportBatchItemFailures"])["UUID"]
    reports = sink.take(records=4, function=fn, timeout=30)
    counts = sorted(r["attributes"]["ApproximateReceiveCount"] for r in _records(reports))
    assert counts == ["1", "1", "2", "2"]
    assert sink.quiet(3.0) == []  # 1 + MaximumRetryAttempts deliveries, then no more
    assert lam.get_event_source_mapping(UUID=uuid)["LastProcessingResult"].startswith("PROBLEM")
    lam.delete_event_source_mapping(UUID=uuid)


def test_disabled_mapping_does_not_poll(lam: Any, make_function: Any, stream: Stream, sink: Sink) -> None:
    fn = make_function()
    uuid = lam.create_event_source_mapping(FunctionName=fn, EventSourceArn=stream.arn(), Enabled=False)["UUID"]
    stream.publish([{"n": i} for i in range(3)])
    assert sink.quiet(4.0) == []
    assert lam.get_event_source_mapping(UUID=uuid)["State"] == "Disabled"
    lam.update_event_source_mapping(UUID=uuid, Enabled=True)
    assert len(_records(sink.take(records=3, function=fn))) == 3
    lam.update_event_source_mapping(UUID=uuid, Enabled=False)
    time.sleep(1.0)
    stream.publish([{"n": 9}])
    assert sink.quiet(4.0) == []
    lam.delete_event_source_mapping(UUID=uuid)


def _max_overlap(reports: list[dict[str, Any]]) -> int:
    edges = sorted([(r["start"], 1) for r in reports] + [(r["end"], -1) for r in reports])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def test_concurrent_batches_scale_to_the_maximum(lam: Any, make_function: Any, stream: Stream,
                                                 sink: Sink) -> None:
    fn = make_function()
    stream.publish([{"n": i, "sleep": 1.0} for i in range(24)])
    uuid = lam.create_event_source_mapping(FunctionName=fn, EventSourceArn=stream.arn(), BatchSize=2,
                                           ScalingConfig={"MaximumConcurrency": 4})["UUID"]
    reports = sink.take(records=24, function=fn, timeout=60)
    assert _max_overlap(reports) == 4, [(r["start"], r["end"]) for r in reports]  # the backlog wants 12
    lam.delete_event_source_mapping(UUID=uuid)

    # A backlog of two batches never runs more than two at once, even with room for ten.
    stream.publish([{"n": i, "sleep": 1.5} for i in range(4)])
    uuid = lam.create_event_source_mapping(FunctionName=fn, EventSourceArn=stream.arn(), BatchSize=2,
                                           ScalingConfig={"MaximumConcurrency": 10})["UUID"]
    reports = sink.take(records=4, function=fn, timeout=30)
    assert _max_overlap(reports) <= 2
    lam.delete_event_source_mapping(UUID=uuid)


def test_exhausted_records_go_to_the_failure_destination(lam: Any, make_function: Any, stream: Stream,
                                                         sink: Sink) -> None:


    fn = make_function()
    target = make_function("esm-dest")
    target_arn = f"arn:aws:lambda:us-east-1:000000000000:function:{target}"
    stream.publish([{"n": 0, "crash": True}, {"n": 1}])
    uuid = lam.create_event_source_mapping(FunctionName=fn, EventSourceArn=stream.arn(), BatchSize=2,
                                           MaximumBatchingWindowInSeconds=1, MaximumRetryAttempts=2,
                                           DestinationConfig={"OnFailure": {"Destination": target_arn}})["UUID"]
    tries = sink.take(records=6, function=fn, timeout=30)
    assert sorted(r["attributes"]["ApproximateReceiveCount"] for r in _records(tries)) == ["1", "1", "2", "2",
                                                                                           "3", "3"]
    record = sink.take(1, function=target, timeout=30)[0]["event"]
    assert record["version"] == "1.0" and record["timestamp"].endswith("Z")
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert record["requestContext"]["functionArn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{fn}"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["JetStreamBatchInfo"]["stream"] == stream.name
    assert record["JetStreamBatchInfo"]["batchSize"] == 2
    failed = record["requestPayload"]["Records"]
    assert sorted(json.loads(r["body"])["n"] for r in failed) == [0, 1]
    assert {r["attributes"]["ApproximateReceiveCount"] for r in failed} == {"3"}
    assert sink.quiet(3.0) == []  # terminated: never delivered again
    assert stream.consumer_pending(f"fnhost-esm-{uuid}") == 0
    lam.delete_event_source_mapping(UUID=uuid)


def test_a_missing_stream_is_a_problem_until_it_exists(lam: Any, make_function: Any, nats_js: Any,
                                                       sink: Sink) -> None:
    fn = make_function()
    later = Stream(nats_js.url)
    uuid = lam.create_event_source_mapping(FunctionName=fn, EventSourceArn=later.arn(), BatchSize=1)["UUID"]
    deadline = time.monotonic() + 10
    while not lam.get_event_source_mapping(UUID=uuid)["LastProcessingResult"].startswith("PROBLEM"):
        assert time.monotonic() < deadline, "a missing stream was not reported"
        time.sleep(0.2)
    later.create().publish([{"n": 1}])
    assert len(sink.take(1, function=fn, timeout=40)) == 1
    assert lam.get_event_source_mapping(UUID=uuid)["LastProcessingResult"] == "OK"
    lam.delete_event_source_mapping(UUID=uuid)


def test_an_update_lets_the_batch_in_flight_finish(lam: Any, make_function: Any, stream: Stream,
                                                   sink: Sink) -> None:
    fn = make_function(Timeout=10)
    uuid = lam.create_event_source_mapping(FunctionName=fn, EventSourceArn=stream.arn(), BatchSize=1)["UUID"]
    time.sleep(1.0)
    stream.publish([{"n": 0, "sleep": 3.0}])
    time.sleep(2.0)  # the batch is running
    lam.update_event_source_mapping(UUID=uuid, BatchSize=2)
    reports = sink.take(1, function=fn, timeout=30)
    assert reports[0]["event"]["Records"][0]["attributes"]["ApproximateReceiveCount"] == "1"
    stream.publish([{"n": 1}])  # the new poller polls
    more = sink.take(1, function=fn, timeout=30)
    assert [json.loads(r["body"])["n"] for r in more[0]["event"]["Records"]] == [1]
    time.sleep(1.0)
    assert stream.consumer_pending(f"fnhost-esm-{uuid}") == 0  # n=0 was acknowledged, never to come back
    lam.delete_event_source_mapping(UUID=uuid)
