"""Function management over Lambda's API with boto3: create, get, list, update, delete, concurrency."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from fnhost.api.lambda_shapes import ARCHITECTURE, lambda_runtime

from tests.conftest import unique, zipped

from .conftest import APP, ROLE


def test_create_from_a_zip_answers_lambdas_function_configuration(lam, make_function) -> None:
    code = zipped({"app.py": APP})
    name = unique("create")
    out = lam.create_function(
        FunctionName=name, Runtime="python3.12", Role=ROLE, Handler="app.handler", Code={"ZipFile": code},
        MemorySize=256, Timeout=7, Description="made by boto3", Environment={"Variables": {"GREETING": "hi"}},
        EphemeralStorage={"Size": 1024})
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert out["FunctionArn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert out["Runtime"] == "python3.12"  # the Lambda identifier asked for, not fnhost's "python"
    assert out["CodeSha256"] == base64.b64encode(hashlib.sha256(code).digest()).decode()
    assert out["CodeSize"] == len(code)
    assert (out["MemorySize"], out["Timeout"], out["Description"]) == (256, 7, "made by boto3")
    assert out["Environment"] == {"Variables": {"GREETING": "hi"}}
    assert out["EphemeralStorage"] == {"Size": 1024}
    assert (out["State"], out["LastUpdateStatus"], out["PackageType"]) == ("Active", "Successful", "Zip")
    assert out["Version"] == "$LATEST" and out["Architectures"] == [ARCHITECTURE]
    assert out["LastModified"].endswith("+0000")

    got = lam.get_function(FunctionName=name)
    assert got["Configuration"]["RevisionId"] == out["RevisionId"]
    assert got["Code"]["RepositoryType"] == "S3" and got["Code"]["Location"].startswith("file:///")
    assert "Concurrency" not in got
    by_arn = lam.get_function_configuration(FunctionName=out["FunctionArn"])
    assert by_arn["FunctionName"] == name
    with pytest.raises(lam.exceptions.ResourceConflictException):
        lam.create_function(FunctionName=name, Runtime="python3.12", Role=ROLE, Handler="app.handler",
                            Code={"ZipFile": code})


@pytest.mark.parametrize("identifier, runtime", [
    ("python3.9", "python"), ("python3.13", "python"), ("nodejs18.x", "node"), ("nodejs22.x", "node"),
    ("java8.al2", "java"), ("java11", "java"), ("java17", "java"), ("java21", "java"), ("ruby3.2", "ruby"),
    ("ruby3.3", "ruby"), ("dotnet6", "dotnet"), ("dotnet8", "dotnet"), ("go1.x", "go"), ("python", "python"),
])
def test_lambda_runtime_identifiers_map_onto_fnhosts(identifier: str, runtime: str) -> None:
    known = {"python", "node", "java", "ruby", "dotnet", "go", "powershell"}
    assert lambda_runtime(identifier, known) == runtime


@pytest.mark.parametrize("identifier", ["python3.11", "nodejs20.x"])
def test_created_with_a_lambda_identifier_it_echoes_it(lam, identifier: str) -> None:
    handler = "index.handler" if identifier.startswith("nodejs") else "app.handler"
    name = unique("rt")
    out = lam.create_function(FunctionName=name, Runtime=identifier, Role=ROLE, Handler=handler,
                              Code={"ZipFile": zipped({"app.py": APP, "index.js": "exports.handler = async () => 7;"})})
    assert out["Runtime"] == identifier
    result = json.loads(lam.invoke(FunctionName=name, Payload=b"{}")["Payload"].read())
    assert (result == 7) if identifier.startswith("nodejs") else (result["version"] == "$LATEST")
    assert lam.get_function(FunctionName=name)["Configuration"]["Runtime"] == identifier
    lam.delete_function(FunctionName=name)


@pytest.mark.parametrize("runtime, words", [
    ("cobol1.0", "failed to satisfy constraint"),
])
def test_a_runtime_fnhost_cannot_run_is_invalid_parameter(lam, runtime: str, words: str) -> None:
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as caught:
        lam.create_function(FunctionName=unique("bad-rt"), Runtime=runtime, Role=ROLE, Handler="bootstrap",
                            Code={"ZipFile": zipped({"bootstrap": "#!/bin/sh\n"})})
    assert words in caught.value.response["Error"]["Message"]
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_missing_and_mistyped_members_name_the_member(lam) -> None:
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="Handler"):
        lam.create_function(FunctionName=unique("nohandler"), Runtime="python3.12", Role=ROLE,
                            Code={"ZipFile": zipped({"app.py": APP})})
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="memory_mb 20000"):
        lam.create_function(FunctionName=unique("mem"), Runtime="python3.12", Role=ROLE, Handler="app.handler",
                            MemorySize=20000, Code={"ZipFile": zipped({"app.py": APP})})
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="S3"):
        lam.create_function(FunctionName=unique("s3"), Runtime="python3.12", Role=ROLE, Handler="app.handler",
                            Code={"S3Bucket": "bucket", "S3Key": "key.zip"})


def test_update_code_and_configuration_then_delete(lam, make_function) -> None:
    name = make_function("upd")
    before = lam.get_function_configuration(FunctionName=name)
    new_code = zipped({"app.py": "def handler(event, context):\n    return 'v2'\n"})
    out = lam.update_function_code(FunctionName=name, ZipFile=new_code)
    assert out["CodeSha256"] == base64.b64encode(hashlib.sha256(new_code).digest()).decode()
    assert out["RevisionId"] != before["RevisionId"]
    assert lam.invoke(FunctionName=name, Payload=b"{}")["Payload"].read() == b'"v2"'
    with pytest.raises(lam.exceptions.PreconditionFailedException):
        lam.update_function_configuration(FunctionName=name, Timeout=9, RevisionId=before["RevisionId"])
    out = lam.update_function_configuration(FunctionName=name, Timeout=9, MemorySize=512, Description="d2",
                                            Environment={"Variables": {"A": "1"}}, Runtime="python3.11")
    assert (out["Timeout"], out["MemorySize"], out["Description"], out["Runtime"]) == (9, 512, "d2", "python3.11")
    assert out["Environment"]["Variables"] == {"A": "1"}
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="timeout_s 901"):
        lam.update_function_configuration(FunctionName=name, Timeout=901)
    published = lam.update_function_code(FunctionName=name, ZipFile=zipped({"app.py": APP}), Publish=True)
    assert published["Version"] == "1"
    assert lam.delete_function(FunctionName=name)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=name)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.delete_function(FunctionName=name)


def test_list_functions_pages_with_marker_and_max_items(lam, make_function) -> None:
    names = {make_function("page") for _ in range(5)}
    seen: list[str] = []
    marker = None
    pages = 0
    while True:
        out = lam.list_functions(MaxItems=2, **({"Marker": marker} if marker else {}))
        assert len(out["Functions"]) <= 2
        seen += [f["FunctionName"] for f in out["Functions"]]
        pages += 1
        marker = out.get("NextMarker")
        if not marker:
            break
    assert names <= set(seen) and len(seen) == len(set(seen)) and pages >= 3
    everything = [f["FunctionName"] for page in lam.get_paginator("list_functions").paginate(
        PaginationConfig={"PageSize": 3}) for f in page["Functions"]]
    assert everything == seen
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="Marker"):
        lam.list_functions(Marker="not a marker!")


def test_reserved_concurrency_put_get_delete(lam, make_function) -> None:
    name = make_function("conc")
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=name)
    assert lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=3)[
        "ReservedConcurrentExecutions"] == 3
    assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 3
    assert lam.get_function(FunctionName=name)["Concurrency"] == {"ReservedConcurrentExecutions": 3}
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="reserving 0"):
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="cap"):
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=100000)
    lam.delete_function_concurrency(FunctionName=name)
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=name)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_concurrency(FunctionName=unique("absent"))


def test_account_settings_count_functions_and_code(lam, make_function) -> None:
    make_function("acct")
    out = lam.get_account_settings()
    assert out["AccountUsage"]["FunctionCount"] >= 1
    assert out["AccountUsage"]["TotalCodeSize"] > 0
    assert out["AccountLimit"]["CodeSizeZipped"] == 50 * 1024 * 1024
    assert out["AccountLimit"]["ConcurrentExecutions"] == 64
