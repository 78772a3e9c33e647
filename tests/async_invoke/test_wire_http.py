"""Asynchronous invocation over Lambda's HTTP API, driven by boto3 and the AWS CLI: Invoke with
InvocationType Event answers 202 and the event runs; the FunctionEventInvokeConfig operations
round-trip in botocore's shapes and refuse bad values with the SDK's own exception classes."""

from __future__ import annotations

import json

import botocore.exceptions
import pytest

from tests.conftest import unique, zipped
from tests.lambda_api.conftest import ROLE, lambda_client
from tests.lambda_api.test_aws_cli import _aws, _major_version

from .wire_support import RECORDING_APP, async_daemon, recorder  # noqa: F401 - fixtures

QUEUE_ARN = "arn:aws:sqs:us-east-1:000000000000:wire-failures"


@pytest.fixture
def lam(async_daemon):  # noqa: F811
    return lambda_client(async_daemon.http_url)


@pytest.fixture
def function(lam) -> str:
    name = unique("evt")
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role=ROLE,
                        Code={"ZipFile": zipped({"app.py": RECORDING_APP})})
    return name


def test_boto3_event_invoke_is_accepted_with_202_and_the_event_runs(lam, function, recorder) -> None:  # noqa: F811
    answer = lam.invoke(FunctionName=function, InvocationType="Event",
                        Payload=json.dumps({"port": recorder.port, "tag": "boto3"}).encode())
    assert answer["StatusCode"] == 202
    request_id = answer["ResponseMetadata"]["RequestId"]
    assert request_id and answer["Payload"].read() == b""
    call = recorder.next()
    assert call["event"]["tag"] == "boto3"
    assert call["request_id"] == request_id  # the id the caller got is the one the handler sees


def test_event_payload_over_lambdas_async_limit_is_refused(lam, function) -> None:
    big = json.dumps({"pad": "x" * (1024 * 1024 + 10)}).encode()  # over 1 MB, under the 6 MB sync limit
    with pytest.raises(lam.exceptions.RequestTooLargeException):
        lam.invoke(FunctionName=function, InvocationType="Event", Payload=big)


def test_event_invoke_of_a_missing_function_is_resource_not_found(lam) -> None:
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName=unique("nobody"), InvocationType="Event", Payload=b"{}")


def test_boto3_event_invoke_config_round_trip(lam, function) -> None:
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_event_invoke_config(FunctionName=function)
    put = lam.put_function_event_invoke_config(
        FunctionName=function, MaximumRetryAttempts=1, MaximumEventAgeInSeconds=120,
        DestinationConfig={"OnFailure": {"Destination": QUEUE_ARN}})
    assert put["MaximumRetryAttempts"] == 1 and put["MaximumEventAgeInSeconds"] == 120
    assert put["DestinationConfig"]["OnFailure"]["Destination"] == QUEUE_ARN
    assert put["FunctionArn"].endswith(f":function:{function}:$LATEST")
    assert put["LastModified"].year >= 2024  # botocore parsed it as a timestamp
    got = lam.get_function_event_invoke_config(FunctionName=function)
    assert {k: got[k] for k in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig")} == \
        {"MaximumRetryAttempts": 1, "MaximumEventAgeInSeconds": 120,
         "DestinationConfig": {"OnFailure": {"Destination": QUEUE_ARN}}}
    # Update merges: the age and destination stay.
    updated = lam.update_function_event_invoke_config(FunctionName=function, MaximumRetryAttempts=0)
    assert updated["MaximumRetryAttempts"] == 0 and updated["MaximumEventAgeInSeconds"] == 120
    assert updated["DestinationConfig"]["OnFailure"]["Destination"] == QUEUE_ARN
    # Put replaces: what is not given goes back to Lambda's defaults.
    replaced = lam.put_function_event_invoke_config(FunctionName=function, MaximumEventAgeInSeconds=300)
    assert replaced["MaximumRetryAttempts"] == 2 and replaced["MaximumEventAgeInSeconds"] == 300
    assert not replaced["DestinationConfig"].get("OnFailure")
    listed = lam.list_function_event_invoke_configs(FunctionName=function)["FunctionEventInvokeConfigs"]
    assert [c["MaximumEventAgeInSeconds"] for c in listed] == [300]
    lam.delete_function_event_invoke_config(FunctionName=function)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_event_invoke_config(FunctionName=function)
    assert lam.list_function_event_invoke_configs(FunctionName=function)["FunctionEventInvokeConfigs"] == []


def test_event_invoke_config_for_an_alias(lam, function) -> None:
    version = lam.publish_version(FunctionName=function)["Version"]
    lam.create_alias(FunctionName=function, Name="live", FunctionVersion=version)
    put = lam.put_function_event_invoke_config(FunctionName=function, Qualifier="live", MaximumRetryAttempts=0)
    assert put["FunctionArn"].endswith(f":function:{function}:live")
    lam.put_function_event_invoke_config(FunctionName=function, MaximumRetryAttempts=2)
    listed = lam.list_function_event_invoke_configs(FunctionName=function)["FunctionEventInvokeConfigs"]
    assert sorted((c["FunctionArn"].rsplit(":", 1)[1], c["MaximumRetryAttempts"]) for c in listed) == \
        [("$LATEST", 2), ("live", 0)]
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.put_function_event_invoke_config(FunctionName=function, Qualifier="nosuchalias", MaximumRetryAttempts=0)


@pytest.mark.parametrize("members", [
    {"MaximumRetryAttempts": 3},
    {"MaximumEventAgeInSeconds": 21601},
    {"DestinationConfig": {"OnFailure": {"Destination": "not-an-arn"}}},
    {"DestinationConfig": {"OnSuccess": {"Destination": "arn:aws:s3:::a-bucket"}}},
])
def test_bad_event_invoke_configs_raise_invalid_parameter_value(lam, function, members) -> None:
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.put_function_event_invoke_config(FunctionName=function, **members)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_event_invoke_config(FunctionName=function)  # nothing was stored


def test_botocore_refuses_values_below_its_model_minimum_before_sending(lam, function) -> None:
    with pytest.raises(botocore.exceptions.ParamValidationError):
        lam.put_function_event_invoke_config(FunctionName=function, MaximumEventAgeInSeconds=59)


def test_event_invoke_config_of_a_missing_function(lam) -> None:
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.put_function_event_invoke_config(FunctionName=unique("nobody"), MaximumRetryAttempts=1)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.list_function_event_invoke_configs(FunctionName=unique("nobody"))


def test_aws_cli_event_invoke_and_event_invoke_config(async_daemon, function, recorder, tmp_path) -> None:  # noqa: F811
    url = async_daemon.http_url
    out = tmp_path / "out.json"
    raw_payload = ["--cli-binary-format", "raw-in-base64-out"] if _major_version() >= 2 else []
    meta = json.loads(_aws(url, tmp_path, "invoke", "--function-name", function, "--invocation-type", "Event",
                           *raw_payload, "--payload", json.dumps({"port": recorder.port, "tag": "cli"}), str(out)).stdout)
    assert meta["StatusCode"] == 202
    assert recorder.next()["event"]["tag"] == "cli"
    put = json.loads(_aws(url, tmp_path, "put-function-event-invoke-config", "--function-name", function,
                          "--maximum-retry-attempts", "0", "--destination-config",
                          json.dumps({"OnFailure": {"Destination": QUEUE_ARN}})).stdout)
    assert put["MaximumRetryAttempts"] == 0 and put["DestinationConfig"]["OnFailure"]["Destination"] == QUEUE_ARN
    got = json.loads(_aws(url, tmp_path, "get-function-event-invoke-config", "--function-name", function).stdout)
    assert got["MaximumRetryAttempts"] == 0
    bad = _aws(url, tmp_path, "update-function-event-invoke-config", "--function-name", function,
               "--maximum-retry-attempts", "7", ok=False)
    assert "InvalidParameterValueException" in bad.stderr
    _aws(url, tmp_path, "delete-function-event-invoke-config", "--function-name", function)
    missing = _aws(url, tmp_path, "get-function-event-invoke-config", "--function-name", function, ok=False)
    assert "ResourceNotFoundException" in missing.stderr
