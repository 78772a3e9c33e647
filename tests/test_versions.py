"""Versions and aliases on a real daemon with real Python workers, through the gRPC client and the CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from fnhost import errors
from fnhost.client import AsyncClient, Client

from tests.conftest import Daemon, function_stats, payload, unique, zipped

HANDLER = """\
import os
def handler(event, context):
    return {"code": %r, "color": os.environ.get("COLOR"), "env_version": os.environ["AWS_LAMBDA_FUNCTION_VERSION"],
            "version": context.function_version, "memory": int(context.memory_limit_in_mb),
            "arn": context.invoked_function_arn}
"""


def code(mark: str) -> bytes:
    return zipped({"app.py": HANDLER % mark})


def create(client: Client, mark: str = "one", **options: object) -> str:
    name = unique("ver")
    client.create_function(name, runtime="python", handler="app.handler", code=code(mark),
                           environment={"COLOR": "red"}, **options)  # type: ignore[arg-type]
    return name


def fnhost(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fnhost", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "FNHOST_ADDRESS": daemon.address})


def test_a_version_freezes_code_and_configuration(client: Client) -> None:
    name = create(client, memory_mb=256)
    v1 = client.publish_version(name, description="first")
    assert (v1.version, v1.description, v1.memory_mb) == ("1", "first", 256)
    client.update_function_code(name, code("two"))
    client.update_function_configuration(name, memory_mb=512, environment={"COLOR": "blue"})

    old = client.invoke(name, b"{}", qualifier="1")
    assert payload(old) == {"code": "one", "color": "red", "env_version": "1", "version": "1", "memory": 256,
                            "arn": f"arn:aws:lambda:us-east-1:000000000000:function:{name}:1"}
    assert old.executed_version == "1"
    latest = client.invoke(name, b"{}")
    assert payload(latest) == {"code": "two", "color": "blue", "env_version": "$LATEST", "version": "$LATEST",
                               "memory": 512, "arn": f"arn:aws:lambda:us-east-1:000000000000:function:{name}"}
    assert latest.executed_version == "$LATEST"
    assert payload(client.invoke(f"{name}:1", b"{}"))["code"] == "one"  # Lambda's name:qualifier form

    got = client.get_function(name, "1")
    assert (got.version, got.memory_mb, got.environment["COLOR"], got.code_sha256) == \
        ("1", 256, "red", v1.code_sha256)
    assert client.get_function(name).memory_mb == 512
    # Each version ran in a pool of its own, named as stats and metrics show it.
    assert function_stats(client, f"{name}:1").invocations == 2
    assert function_stats(client, name).invocations == 1
    assert Path(got.code_location).is_dir()  # the code store's collector keeps what a version uses
    client.delete_function(name)


async def test_a_stream_carries_qualifiers(daemon: Daemon) -> None:
    async with AsyncClient(daemon.address) as client:
        name = unique("ver")
        await client.create_function(name, runtime="python", handler="app.handler", code=code("one"))
        await client.publish_version(name)
        await client.update_function_code(name, code("two"))
        await client.create_alias(name, "live", "1")
        async with client.stream() as stream:
            ran = [await stream.invoke(name, b"{}", qualifier=q) for q in ("live", "1", "", "$LATEST")]
            assert [(payload(r)["code"], r.executed_version) for r in ran] == \
                [("one", "1"), ("one", "1"), ("two", "$LATEST"), ("two", "$LATEST")]
            with pytest.raises(errors.ResourceNotFound):
                await stream.invoke(name, b"{}", qualifier="missing")
        await client.delete_function(name)


def test_version_numbers_and_publishing_nothing_new(client: Client) -> None:
    name = create(client)
    assert client.publish_version(name).version == "1"
    again = client.publish_version(name)  # $LATEST unchanged: Lambda returns the last version
    assert again.version == "1"
    client.update_function_configuration(name, description="second")
    assert client.publish_version(name).version == "2"
    client.delete_function(name, "2")
    client.update_function_code(name, code("three"))
    assert client.publish_version(name).version == "3"  # a deleted version's number never returns
    assert [v.version for v in client.list_versions(name)] == ["$LATEST", "1", "3"]
    with pytest.raises(errors.ResourceNotFound, match=f"Function not found: {name}:2"):
        client.invoke(name, b"{}", qualifier="2")
    with pytest.raises(errors.ResourceNotFound):
        client.get_function(name, "2")

    # Preconditions, as Lambda's PublishVersion has them.
    latest = client.get_function(name)
    with pytest.raises(errors.PreconditionFailed):
        client.publish_version(name, revision_id="not-the-revision")
    with pytest.raises(errors.InvalidParameter, match="CodeSHA256"):
        client.publish_version(name, code_sha256="0" * 64)
    client.update_function_configuration(name, timeout_s=5)
    with pytest.raises(errors.PreconditionFailed):
        client.publish_version(name, revision_id=latest.revision_id)
    now = client.get_function(name)
    assert client.publish_version(name, revision_id=now.revision_id, code_sha256=now.code_sha256).version == "4"

    # A function deleted and created again numbers its versions from 1.
    client.delete_function(name)
    client.create_function(name, runtime="python", handler="app.handler", code=code("new"))
    assert client.publish_version(name).version == "1"
    assert payload(client.invoke(name, b"{}", qualifier="1"))["code"] == "new"
    client.delete_function(name)


def test_aliases_and_their_rules(client: Client) -> None:
    name = create(client)
    client.publish_version(name)
    client.update_function_code(name, code("two"))
    client.publish_version(name)

    live = client.create_alias(name, "live", "1", description="production")
    assert (live.function_version, live.description, dict(live.routing_config.additional_version_weights)) == \
        ("1", "production", {})
    result = client.invoke(name, b"{}", qualifier="live")
    assert (payload(result)["code"], result.executed_version) == ("one", "1")
    assert client.get_function(name, "live").version == "1"

    with pytest.raises(errors.ResourceConflict):
        client.create_alias(name, "live", "2")
    with pytest.raises(errors.ResourceConflict, match="live"):
        client.delete_function(name, "1")  # an alias points at it
    for bad_name in ("123", "a" * 129, "no.dots"):
        with pytest.raises(errors.InvalidParameter):
            client.create_alias(name, bad_name, "1")
    with pytest.raises(errors.ResourceNotFound):
        client.create_alias(name, "later", "7")
    with pytest.raises(errors.InvalidParameter):
        client.create_alias(name, "tip", "$LATEST", weights={"1": 0.5})  # no routing from $LATEST
    for weights in ({"2": 1.5}, {"1": 0.5}, {"2": 0.1, "1": 0.1}, {"$LATEST": 0.1}):
        with pytest.raises(errors.InvalidParameter):
            client.create_alias(name, "split", "1", weights=weights)
    tip = client.create_alias(name, "tip", "$LATEST")
    assert client.invoke(name, b"{}", qualifier="tip").executed_version == "$LATEST"

    moved = client.update_alias(name, "live", version="2", revision_id=live.revision_id)
    assert moved.function_version == "2" and moved.description == "production"
    assert payload(client.invoke(name, b"{}", qualifier="live"))["code"] == "two"
    with pytest.raises(errors.PreconditionFailed):
        client.update_alias(name, "live", version="1", revision_id=live.revision_id)
    client.delete_function(name, "1")  # nothing points at it any more
    assert [a.name for a in client.list_aliases(name)] == ["live", "tip"]
    assert [a.name for a in client.list_aliases(name, "2")] == ["live"]
    client.delete_alias(name, "tip")
    assert tip.name not in [a.name for a in client.list_aliases(name)]
    with pytest.raises(errors.ResourceNotFound, match=f"Function not found: {name}:tip"):
        client.invoke(name, b"{}", qualifier="tip")
    with pytest.raises(errors.ResourceNotFound):
        client.get_alias(name, "tip")
    with pytest.raises(errors.InvalidParameter):
        client.delete_function(name, "$LATEST")

    # Deleting the function takes its versions and aliases with it.
    client.delete_function(name)
    with pytest.raises(errors.ResourceNotFound):
        client.invoke(name, b"{}", qualifier="live")
    client.create_function(name, runtime="python", handler="app.handler", code=code("again"))
    assert client.list_aliases(name) == [] and [v.version for v in client.list_versions(name)] == ["$LATEST"]
    with pytest.raises(errors.ResourceNotFound):
        client.invoke(name, b"{}", qualifier="live")
    client.delete_function(name)


def _share_of_2(client: Client, name: str, calls: int) -> float:
    def one(_: int) -> str:
        result = client.invoke(name, b"{}", qualifier="canary")
        assert result.executed_version == str(payload(result)["version"])  # says which one ran
        return result.executed_version

    with ThreadPoolExecutor(8) as pool:
        counts = Counter(pool.map(one, range(calls)))
    assert set(counts) <= {"1", "2"}
    return counts["2"] / calls


def test_weighted_routing_tells_90_10_from_50_50(client: Client) -> None:
    name = create(client)
    client.publish_version(name)
    client.update_function_code(name, code("two"))
    client.publish_version(name)
    client.create_alias(name, "canary", "1", weights={"2": 0.1})
    calls = 400
    # Bounds about 4 standard deviations wide: a correct router fails them about once in 15,000 runs.
    sd = math.sqrt(0.1 * 0.9 / calls)
    share = _share_of_2(client, name, calls)
    assert 0.1 - 4 * sd < share < 0.1 + 4 * sd, share
    updated = client.update_alias(name, "canary", weights={"2": 0.5})
    assert dict(updated.routing_config.additional_version_weights) == {"2": 0.5}
    share = _share_of_2(client, name, calls)
    assert 0.5 - 4 * math.sqrt(0.25 / calls) < share < 0.5 + 4 * math.sqrt(0.25 / calls), share
    plain = client.update_alias(name, "canary", weights={})  # an empty routing removes it
    assert dict(plain.routing_config.additional_version_weights) == {}
    assert _share_of_2(client, name, 40) == 0.0
    client.delete_function(name)


def _wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _idle(client: Client, label: str) -> int:
    try:
        return function_stats(client, label).workers.get("idle", 0)
    except KeyError:
        return 0


@pytest.fixture
def own_daemon(fresh_daemon: Daemon) -> Iterator[Daemon]:
    fresh_daemon.start()
    yield fresh_daemon


def test_restart_keeps_versions_aliases_and_provisioned_workers(own_daemon: Daemon) -> None:
    with own_daemon.client() as client:
        name = create(client, idle_ttl_s=2)  # frozen in each version: unprovisioned workers go soon
        client.publish_version(name)
        client.update_function_code(name, code("two"))
        client.publish_version(name)
        client.create_alias(name, "live", "1", weights={"2": 0.25})
        client.set_min_warm(name, "live", 2)
        _wait_for(lambda: _idle(client, f"{name}:1") == 2)
        assert client.get_alias(name, "live").min_warm == 2
        with pytest.raises(errors.InvalidParameter):
            client.set_min_warm(name, "2", 10_000)
        client.set_min_warm(name, "2", 1)
        _wait_for(lambda: _idle(client, f"{name}:2") == 1)
        assert client.get_function(name, "2").min_warm == 1
        assert _idle(client, name) == 0  # $LATEST keeps none
    assert own_daemon.stop() == 0
    own_daemon.start()
    with own_daemon.client() as client:
        assert [v.version for v in client.list_versions(name)] == ["$LATEST", "1", "2"]
        alias = client.get_alias(name, "live")
        assert (alias.function_version, dict(alias.routing_config.additional_version_weights), alias.min_warm) == \
            ("1", {"2": 0.25}, 2)
        # Provisioned workers are started again at daemon start, without an invocation.
        _wait_for(lambda: _idle(client, f"{name}:1") == 2 and _idle(client, f"{name}:2") == 1)
        assert payload(client.invoke(name, b"{}", qualifier="1"))["code"] == "one"
        assert payload(client.invoke(name, b"{}", qualifier="2"))["code"] == "two"
        # The code store's collector keeps what versions use, after $LATEST moved on.
        client.update_function_code(name, code("three"))
        client.delete_alias(name, "live")  # its provisioned workers are reaped like any idle ones
        _wait_for(lambda: _idle(client, f"{name}:1") == 0)
        assert payload(client.invoke(name, b"{}", qualifier="1"))["code"] == "one"
        client.delete_function(name)
        with pytest.raises(KeyError):
            function_stats(client, f"{name}:2")  # its pools went with it


def test_the_cli_publishes_aliases_and_takes_name_colon_qualifier(daemon: Daemon, client: Client) -> None:
    name = create(client)
    described = fnhost(daemon, "deploy", name, "--description", "the function")
    assert json.loads(described.stdout)["description"] == "the function", described.stderr
    out = fnhost(daemon, "publish", name, "--description", "from the cli")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["version"] == "1"
    assert json.loads(out.stdout)["description"] == "from the cli"
    client.update_function_code(name, code("two"))
    assert fnhost(daemon, "publish", name).returncode == 0

    listed = fnhost(daemon, "versions", name)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == ["$LATEST", "1", "2"]

    made = fnhost(daemon, "alias", "create", name, "live", "--version", "1", "--weights", "2=0.2")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["routing_config"]["additional_version_weights"] == {"2": 0.2}
    got = fnhost(daemon, "alias", "get", name, "live")
    assert json.loads(got.stdout)["function_version"] == "1"
    upd = fnhost(daemon, "alias", "update", name, "live", "--version", "2", "--weights", "")
    assert upd.returncode == 0, upd.stderr
    assert "routing_config" not in json.loads(upd.stdout) or \
        not json.loads(upd.stdout)["routing_config"].get("additional_version_weights")
    aliases = fnhost(daemon, "alias", "list", name)
    assert aliases.stdout.splitlines()[1].split()[:2] == ["live", "2"]

    ran = fnhost(daemon, "invoke", f"{name}:live", "{}")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["code"] == "two"
    assert json.loads(fnhost(daemon, "invoke", f"{name}:1", "{}").stdout)["code"] == "one"
    assert json.loads(fnhost(daemon, "get", f"{name}:1").stdout)["version"] == "1"
    refused = fnhost(daemon, "delete", f"{name}:2")
    assert refused.returncode == 2 and "ResourceConflictException" in refused.stderr
    assert fnhost(daemon, "alias", "delete", name, "live").returncode == 0
    gone = fnhost(daemon, "delete", f"{name}:2")
    assert gone.returncode == 0, gone.stderr
    unknown = fnhost(daemon, "invoke", f"{name}:nope", "{}")
    assert unknown.returncode == 2 and f"Function not found: {name}:nope" in unknown.stderr
    warm = fnhost(daemon, "alias", "create", name, "warm", "--version", "1", "--min-warm", "1")
    assert warm.returncode == 0, warm.stderr
    _wait_for(lambda: _idle(client, f"{name}:1") == 1)
    assert fnhost(daemon, "min-warm", f"{name}:warm", "0").returncode == 0
    assert client.get_alias(name, "warm").min_warm == 0
    assert fnhost(daemon, "min-warm", f"{name}:9", "1").returncode == 2  # no version 9
    assert fnhost(daemon, "delete", name).returncode == 0
    with pytest.raises(errors.ResourceNotFound):
        client.get_function(name)
