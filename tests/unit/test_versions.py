"""The pure parts of versions and aliases: their rules, numbering, and the tables behind them."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from fnhost.control.config import FunctionConfig
from fnhost.control.qualifiers import Route
from fnhost.control.registry import CodeRef, Registry
from fnhost.control.versions import (AliasRecord, VersionStore, next_version, same_content, sha256_matches,
                                     validate_alias_name, validate_weights)
from fnhost.errors import InvalidParameter, ResourceConflict, ResourceNotFound


def test_weights_follow_lambdas_routing_rules() -> None:
    assert validate_weights("1", None) == {} and validate_weights("1", {}) == {}
    assert validate_weights("1", {"2": 0.1}) == {"2": 0.1}
    assert validate_weights("3", {"2": 0}) == {"2": 0.0} and validate_weights("3", {"2": 1}) == {"2": 1.0}
    refused = [
        ("1", {"2": 1.01}), ("1", {"2": -0.1}), ("1", {"2": "x"}),  # out of range, not a number
        ("1", {"1": 0.5}),  # its own version
        ("1", {"2": 0.1, "3": 0.1}),  # more than one additional version
        ("1", {"$LATEST": 0.1}), ("1", {"two": 0.1}), ("1", {"02": 0.1}),  # not a published version
        ("$LATEST", {"2": 0.1}),  # routing from $LATEST
    ]
    for version, weights in refused:
        with pytest.raises(InvalidParameter):
            validate_weights(version, weights)  # type: ignore[arg-type]


def test_alias_names() -> None:
    for good in ("live", "LIVE-2", "a_b", "x" * 128, "1a"):
        assert validate_alias_name(good) == good
    for bad in ("", "12", "x" * 129, "a.b", "a:b", "$LATEST", "a b"):
        with pytest.raises(InvalidParameter):
            validate_alias_name(bad)


def test_next_version_and_hashes() -> None:
    assert next_version(None) == 1 and next_version(0) == 1 and next_version(41) == 42
    digest = hashlib.sha256(b"zip").digest()
    assert sha256_matches(digest.hex(), digest.hex()) and sha256_matches(digest.hex().upper(), digest.hex())
    assert sha256_matches(base64.b64encode(digest).decode(), digest.hex())  # Lambda's CodeSha256 form
    assert not sha256_matches("0" * 64, digest.hex()) and not sha256_matches("", digest.hex())


def test_a_route_names_each_versions_pool() -> None:
    assert Route.of(AliasRecord("f", "live", "3")) == Route("3", "f:3")
    assert Route.of(AliasRecord("f", "tip", "$LATEST")) == Route("$LATEST", "f")
    assert Route.of(AliasRecord("f", "c", "1", weights={"2": 0.1})) == Route("1", "f:1", "2", "f:2", 0.1)


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    registry = Registry(tmp_path)
    yield registry, VersionStore(registry.db)
    registry.close()


def _latest(registry: Registry, name: str, sha: str = "a" * 64, memory_mb: int = 128):  # type: ignore[no-untyped-def]
    config = FunctionConfig(name=name, runtime="python", handler="app.handler", memory_mb=memory_mb)
    code = CodeRef(location=Path("/code") / sha, sha256=sha, size=10, stored=True)
    create = not registry.exists(name)
    return registry.put(config, code, Path("/builds") / sha, create=create)


def test_numbers_are_never_reused_until_the_function_is_forgotten(store) -> None:  # type: ignore[no-untyped-def]
    registry, versions = store
    latest = _latest(registry, "f", memory_mb=256)
    one = versions.publish(latest, "first")
    assert (one.version, one.description, one.config.memory_mb, one.slot) == ("1", "first", 256, latest.slot)
    assert same_content(one, latest)
    two = versions.publish(_latest(registry, "f", sha="b" * 64), "")
    assert two.version == "2" and not same_content(two, latest)
    versions.delete_version("f", "2")
    assert versions.publish(_latest(registry, "f", sha="c" * 64), "").version == "3"
    assert [v.version for v in versions.versions("f")] == ["1", "3"]
    assert versions.get("f", "1") == one
    with pytest.raises(ResourceNotFound):
        versions.get("f", "2")
    with pytest.raises(ResourceNotFound):
        versions.get("f", "live")
    assert versions.referenced() == {"a" * 64, "c" * 64}  # code and build entries of 1 and 3
    versions.forget_function("f")
    assert versions.versions("f") == [] and versions.referenced() == set()
    assert versions.publish(latest, "").version == "1"


def test_aliases_hold_their_versions_and_provisioned_counts(store) -> None:  # type: ignore[no-untyped-def]
    registry, versions = store
    latest = _latest(registry, "f")
    versions.publish(latest, "")
    versions.publish(_latest(registry, "f", sha="b" * 64), "")
    live = versions.put_alias(AliasRecord("f", "live", "1", "prod", {"2": 0.25}), create=True)
    assert live.revision_id and versions.get_alias("f", "live") == live
    with pytest.raises(ResourceConflict):
        versions.put_alias(AliasRecord("f", "live", "2"), create=True)
    with pytest.raises(ResourceNotFound):
        versions.put_alias(AliasRecord("f", "nope", "2"), create=False)
    for version in ("1", "2"):  # its version and its additional version are both in use
        with pytest.raises(ResourceConflict, match="live"):
            versions.delete_version("f", version)
    versions.set_provisioned("f", "live", 3)
    versions.set_provisioned("f", "2", 1)
    assert versions.get_alias("f", "live").min_warm == 3 and versions.get("f", "2").config.min_warm == 1
    moved = versions.put_alias(AliasRecord("f", "live", "2"), create=False)
    assert moved.revision_id != live.revision_id and moved.min_warm == 3
    versions.delete_alias("f", "live")
    assert versions.aliases("f") == [] and versions.provisioned("f") == {"2": 1}
    versions.delete_version("f", "1")
    versions.set_provisioned("f", "2", 0)
    assert versions.provisioned("f") == {}


def test_stored_code_counts_what_versions_keep(store) -> None:  # type: ignore[no-untyped-def]
    registry, versions = store
    latest = _latest(registry, "f")
    versions.publish(latest, "")
    _latest(registry, "f", sha="b" * 64)  # $LATEST moves on; version 1 keeps the first zip
    assert versions.stored_code_bytes() == 20
    assert versions.stored_code_bytes(besides="f") == 10  # f's $LATEST is being replaced
    assert versions.stored_code_bytes(sha256="a" * 64) == 10
