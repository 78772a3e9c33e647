"""Versions and aliases over Lambda's API with boto3: publish, list, alias routing by weight, delete."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.conftest import zipped

from .conftest import APP


def _code(tag: str) -> bytes:
    return zipped({"app.py": APP + f"\nTAG = {tag!r}\n"})


def test_publish_list_and_delete_versions(lam, make_function) -> None:
    name = make_function("ver", Description="first")
    one = lam.publish_version(FunctionName=name, Description="v1")
    assert one["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert one["Version"] == "1" and one["FunctionArn"].endswith(f":function:{name}:1")
    assert one["Description"] == "v1"
    assert lam.publish_version(FunctionName=name)["Version"] == "1"  # nothing changed: the same version
    with pytest.raises(lam.exceptions.PreconditionFailedException):
        lam.publish_version(FunctionName=name, RevisionId="not-the-revision")
    lam.update_function_code(FunctionName=name, ZipFile=_code("two"))
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="CodeSHA256"):
        lam.publish_version(FunctionName=name, CodeSha256=one["CodeSha256"])
    latest = lam.get_function_configuration(FunctionName=name)
    two = lam.publish_version(FunctionName=name, CodeSha256=latest["CodeSha256"])
    assert two["Version"] == "2"
    versions = [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]]
    assert versions == ["$LATEST", "1", "2"]
    page = lam.list_versions_by_function(FunctionName=name, MaxItems=2)
    assert [v["Version"] for v in page["Versions"]] == ["$LATEST", "1"]
    rest = lam.list_versions_by_function(FunctionName=name, Marker=page["NextMarker"])
    assert [v["Version"] for v in rest["Versions"]] == ["2"] and "NextMarker" not in rest
    assert lam.get_function(FunctionName=name, Qualifier="1")["Configuration"]["Version"] == "1"
    every = {(f["FunctionName"], f["Version"]) for f in lam.list_functions(FunctionVersion="ALL")["Functions"]}
    assert {(name, "$LATEST"), (name, "1"), (name, "2")} <= every
    lam.delete_function(FunctionName=name, Qualifier="1")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=name, Qualifier="1")
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="LATEST"):
        lam.delete_function(FunctionName=name, Qualifier="$LATEST")
    assert lam.invoke(FunctionName=name, Qualifier="2", Payload=b"{}")["ExecutedVersion"] == "2"


def test_create_function_with_publish_makes_version_1(lam, make_function) -> None:
    name = make_function("pub", Publish=True)
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]] == ["$LATEST", "1"]


def test_aliases_create_get_update_list_delete(lam, make_function) -> None:
    name = make_function("alias")
    lam.publish_version(FunctionName=name)
    lam.update_function_code(FunctionName=name, ZipFile=_code("two"))
    lam.publish_version(FunctionName=name)
    created = lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1", Description="prod")
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["AliasArn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}:live"
    assert (created["FunctionVersion"], created["Description"]) == ("1", "prod")
    with pytest.raises(lam.exceptions.ResourceConflictException):
        lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.create_alias(FunctionName=name, Name="nine", FunctionVersion="9")
    lam.create_alias(FunctionName=name, Name="beta", FunctionVersion="2")
    assert lam.get_alias(FunctionName=name, Name="live")["RevisionId"] == created["RevisionId"]
    with pytest.raises(lam.exceptions.ResourceConflictException):
        lam.delete_function(FunctionName=name, Qualifier="1")  # an alias points at it
    with pytest.raises(lam.exceptions.PreconditionFailedException):
        lam.update_alias(FunctionName=name, Name="live", FunctionVersion="2", RevisionId="stale")
    updated = lam.update_alias(FunctionName=name, Name="live", FunctionVersion="2")
    assert updated["FunctionVersion"] == "2" and updated["Description"] == "prod"
    assert lam.invoke(FunctionName=name, Qualifier="live", Payload=b"{}")["ExecutedVersion"] == "2"
    names = [a["Name"] for a in lam.list_aliases(FunctionName=name)["Aliases"]]
    assert names == ["beta", "live"]
    page = lam.list_aliases(FunctionName=name, MaxItems=1)
    assert [a["Name"] for a in page["Aliases"]] == ["beta"]
    assert [a["Name"] for a in lam.list_aliases(FunctionName=name, Marker=page["NextMarker"])["Aliases"]] == ["live"]
    assert lam.delete_alias(FunctionName=name, Name="beta")["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_alias(FunctionName=name, Name="beta")


def test_alias_weights_split_invocations(lam, make_function) -> None:
    """90/10 told from 50/50: over 300 calls a 90 % share lands in 240-300 (binomial sd ≈ 5)."""
    name = make_function("weights")
    lam.publish_version(FunctionName=name)
    lam.update_function_code(FunctionName=name, ZipFile=_code("two"))
    lam.publish_version(FunctionName=name)
    alias = lam.create_alias(FunctionName=name, Name="canary", FunctionVersion="1",
                             RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}})
    assert alias["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.1}}
    counts = Counter(lam.invoke(FunctionName=name, Qualifier="canary", Payload=b"{}")["ExecutedVersion"]
                     for _ in range(300))
    assert 240 <= counts["1"] <= 295 and counts["1"] + counts["2"] == 300, counts
    lam.update_alias(FunctionName=name, Name="canary", RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})
    counts = Counter(json.loads(lam.invoke(FunctionName=name, Qualifier="canary", Payload=b"{}")["Payload"].read())
                     ["version"] for _ in range(300))
    assert 110 <= counts["1"] <= 190, counts
    cleared = lam.update_alias(FunctionName=name, Name="canary", RoutingConfig={"AdditionalVersionWeights": {}})
    assert "RoutingConfig" not in cleared
