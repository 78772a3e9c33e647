"""Invoke over Lambda's API with boto3: result, function error, tail log, client context,
qualifiers, dry run, Event, throttling and payload limits."""

from __future__ import annotations

import base64
import json
import socket
import threading

import pytest

from tests.conftest import unique


def test_result_headers_and_request_id(lam, make_function) -> None:
    name = make_function("inv")
    out = lam.invoke(FunctionName=name, Payload=json.dumps({"a": 1}))
    assert out["StatusCode"] == 200 and "FunctionError" not in out
    body = json.loads(out["Payload"].read())
    assert body["echo"] == {"a": 1} and body["version"] == "$LATEST"
    assert body["arn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert out["ExecutedVersion"] == "$LATEST"
    headers = out["ResponseMetadata"]["HTTPHeaders"]
    assert len(headers["x-amzn-requestid"]) == 36


def test_function_error_is_unhandled_with_lambdas_error_json(lam, make_function) -> None:
    name = make_function("err")
    out = lam.invoke(FunctionName=name, Payload=b'{"fail": true}')
    assert out["StatusCode"] == 200 and out["FunctionError"] == "Unhandled"
    error = json.loads(out["Payload"].read())
    assert error["errorType"] == "ValueError" and error["errorMessage"] == "asked to fail"


def test_tail_returns_the_log_in_base64(lam, make_function) -> None:
    name = make_function("tail")
    out = lam.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
    log = base64.b64decode(out["LogResult"]).decode()
    assert log.startswith("START RequestId:") and f"log line from {name}" in log and "REPORT RequestId:" in log
    assert "LogResult" not in lam.invoke(FunctionName=name, Payload=b"{}")


def test_client_context_reaches_the_handler(lam, make_function) -> None:
    name = make_function("cc")
    context = base64.b64encode(json.dumps({"custom": {"tenant": "t-1"}, "env": {}}).encode()).decode()
    out = lam.invoke(FunctionName=name, Payload=b"{}", ClientContext=context)
    assert json.loads(out["Payload"].read())["custom"] == {"tenant": "t-1"}
    with pytest.raises(lam.exceptions.InvalidRequestContentException, match="3583"):
        lam.invoke(FunctionName=name, Payload=b"{}", ClientContext="A" * 3584)
    with pytest.raises(lam.exceptions.InvalidRequestContentException, match="JSON object"):
        lam.invoke(FunctionName=name, Payload=b"{}", ClientContext=base64.b64encode(b"[1, 2]").decode())


def test_qualifiers_versions_and_aliases(lam, make_function) -> None:
    name = make_function("qual")
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    for kwargs, version in (({"Qualifier": "1"}, "1"), ({"Qualifier": "live"}, "1"),
                            ({"Qualifier": "$LATEST"}, "$LATEST"), ({}, "$LATEST")):
        out = lam.invoke(FunctionName=name, Payload=b"{}", **kwargs)
        assert out["ExecutedVersion"] == version
        assert json.loads(out["Payload"].read())["version"] == version
    by_arn = lam.invoke(FunctionName=f"arn:aws:lambda:us-east-1:000000000000:function:{name}:live", Payload=b"{}")
    assert by_arn["ExecutedVersion"] == "1"
    assert json.loads(by_arn["Payload"].read())["arn"].endswith(f":function:{name}:live")
    assert lam.invoke(FunctionName=f"{name}:1", Payload=b"{}")["ExecutedVersion"] == "1"
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName=name, Qualifier="7", Payload=b"{}")
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="derived qualifier"):
        lam.invoke(FunctionName=f"{name}:1", Qualifier="live", Payload=b"{}")


def test_dry_run_is_204_and_runs_nothing(lam, make_function, daemon) -> None:
    name = make_function("dry")
    out = lam.invoke(FunctionName=name, InvocationType="DryRun", Payload=b"{}")
    assert out["StatusCode"] == 204 and out["Payload"].read() == b""
    assert f"log line from {name}" not in daemon.log()
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName=unique("absent"), InvocationType="DryRun")


def test_event_is_accepted_with_202_and_an_empty_body(lam, make_function) -> None:
    name = make_function("event")
    out = lam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")
    assert out["StatusCode"] == 202 and out["Payload"].read() == b""
    assert out["ResponseMetadata"]["RequestId"]  # the event's, as its REPORT lines show it
    # (tests/async_invoke/ show the event running, its retries and its destinations.)


def test_payload_over_6_mb_is_request_too_large(lam, make_function, daemon) -> None:
    name = make_function("big")
    with pytest.raises(lam.exceptions.RequestTooLargeException) as caught:
        lam.invoke(FunctionName=name, Payload=b"x" * (6 * 1024 * 1024 + 1))
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert "6291456" in caught.value.response["Error"]["Message"]
    payload = json.dumps({"pad": "y" * (6 * 1024 * 1024 - 200)}).encode()
    out = lam.invoke(FunctionName=name, Payload=payload)  # just under: accepted
    assert len(json.loads(out["Payload"].read())["echo"]["pad"]) == 6 * 1024 * 1024 - 200


def test_throttled_at_the_reserved_limit_is_too_many_requests(lam, make_function) -> None:
    name = make_function("throttle")
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    sign = socket.create_server(("127.0.0.1", 0))  # the call connects once it runs
    sign.settimeout(30)
    event = json.dumps({"sleep": 3, "ping": sign.getsockname()[1]}).encode()
    slow = threading.Thread(target=lam.invoke, kwargs={"FunctionName": name, "Payload": event})
    slow.start()
    try:
        sign.accept()[0].close()
        # The one worker is busy for 3 s more; this call waits queue_timeout_s (1 s), then is throttled.
        with pytest.raises(lam.exceptions.TooManyRequestsException) as caught:
            lam.invoke(FunctionName=name, Payload=b"{}")
        response = caught.value.response
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "1"
        assert response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    finally:
        slow.join()
        sign.close()


def test_unknown_function_is_resource_not_found(lam) -> None:
    with pytest.raises(lam.exceptions.ResourceNotFoundException) as caught:
        lam.invoke(FunctionName=unique("ghost"), Payload=b"{}")
    assert caught.value.response["Type"] == "User"
