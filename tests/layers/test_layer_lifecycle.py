"""Layers across deletes and restarts, without mount namespaces, and from fnhost's own CLI."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fnhost.client import Client
from tests.conftest import unique
from tests.lambda_api.conftest import lambda_client

from .conftest import call, make_probe, publish


def test_a_deleted_layer_version_stays_with_the_functions_that_use_it_across_a_restart(fresh_daemon) -> None:
    fresh_daemon.start()
    lam = lambda_client(fresh_daemon.http_url)
    layer = unique("kept")
    version = publish(lam, {"python/keptmod.py": "VALUE = 'kept'\n"}, name=layer)
    arn = version["LayerVersionArn"]
    name = make_probe(lam, [arn])
    lam.publish_version(FunctionName=name)
    assert call(lam, name, {"import": "keptmod"})["value"] == "kept"
    lam.delete_layer_version(LayerName=layer, VersionNumber=1)
    assert lam.list_layer_versions(LayerName=layer)["LayerVersions"] == []
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_layer_version(LayerName=layer, VersionNumber=1)
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="does not exist"):
        make_probe(lam, [arn])  # no new function may take it
    assert call(lam, name, {"import": "keptmod"})["value"] == "kept"
    lam.update_function_configuration(FunctionName=name, MemorySize=256)  # its list, unchanged, still holds
    other = publish(lam, {"python/othermod.py": "VALUE = 'other'\n"})
    survivor = make_probe(lam, [other["LayerVersionArn"]])

    fresh_daemon.stop()
    fresh_daemon.start()  # the same state directory
    lam = lambda_client(fresh_daemon.http_url)
    assert call(lam, name, {"import": "keptmod"})["value"] == "kept"
    assert call(lam, name, {"import": "keptmod"}, Qualifier="1")["value"] == "kept"
    assert call(lam, survivor, {"import": "othermod"})["value"] == "other"
    assert [v["LayerVersionArn"] for v in lam.list_layer_versions(LayerName=other["LayerVersionArn"].split(":")[6])[
        "LayerVersions"]] == [other["LayerVersionArn"]]
    # Once no function nor version uses it, its content goes (the other layer's stays).
    stored = fresh_daemon.state_dir / "code" / base64.b64decode(version["Content"]["CodeSha256"]).hex()
    kept = fresh_daemon.state_dir / "code" / base64.b64decode(other["Content"]["CodeSha256"]).hex()
    assert stored.is_dir()
    lam.delete_function(FunctionName=name)
    deadline = time.monotonic() + 20
    while stored.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not stored.exists() and kept.is_dir()
    assert call(lam, survivor, {"import": "othermod"})["value"] == "other"


def test_without_namespaces_layers_come_through_search_paths_read_only(shared_view_daemon) -> None:
    lam = lambda_client(shared_view_daemon.http_url)
    first = publish(lam, {"python/shared.py": "VALUE = 'first'\n"})
    second = publish(lam, {"python/shared.py": "VALUE = 'second'\n", "python/lib/python3.12/site-packages/sp.py":
                           "VALUE = 'site'\n"})
    name = make_probe(lam, [first["LayerVersionArn"], second["LayerVersionArn"]])
    out = call(lam, name, {"import": "shared"})
    assert out["value"] == "second"
    real = out["layers_dir"]
    assert real and real != "/opt" and Path(real).is_dir()
    assert real.startswith(str(shared_view_daemon.state_dir.resolve()))
    assert out["path"].endswith(f":{real}/bin")
    assert not call(lam, name, {"write": f"{real}/python/shared.py"})["wrote"]
    assert not call(lam, name, {"write": f"{real}/python/new.py"})["wrote"]
    with Client(shared_view_daemon.address) as client:
        isolation = client.get_function(name).isolation
        assert "search paths" in isolation and real in isolation, isolation
        assert list(client.get_function(name).layers) == [first["LayerVersionArn"], second["LayerVersionArn"]]
    log = Path(shared_view_daemon.log_path).read_text()
    assert "function_layers" in log and "no mount namespace" in log


def _fnhost(daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fnhost", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "FNHOST_ADDRESS": daemon.address})


def test_the_cli_publishes_lists_deploys_with_and_deletes_layers(daemon, public_dir: Path) -> None:
    content = public_dir / "layer"
    (content / "python").mkdir(parents=True)
    (content / "python" / "climod.py").write_text("VALUE = 'from the cli'\n")
    layer = unique("cli")
    published = _fnhost(daemon, "layer", "publish", layer, "--content", str(content), "--description", "d")
    assert published.returncode == 0, published.stderr
    arn = json.loads(published.stdout)["layer_version_arn"]
    listed = _fnhost(daemon, "layer", "list", layer)
    assert arn in listed.stdout
    assert json.loads(_fnhost(daemon, "layer", "get", f"{layer}:1").stdout)["layer_version_arn"] == arn
    code = public_dir / "fn"
    code.mkdir()
    (code / "app.py").write_text("import climod\n\ndef handler(event, context):\n    return climod.VALUE\n")
    name = unique("clifn")
    deployed = _fnhost(daemon, "deploy", name, "--runtime", "python", "--handler", "app.handler",
                       "--code", str(code), "--layer", arn)
    assert deployed.returncode == 0, deployed.stderr
    assert json.loads(deployed.stdout)["layers"] == [arn]
    invoked = _fnhost(daemon, "invoke", name, "{}")
    assert invoked.returncode == 0 and json.loads(invoked.stdout) == "from the cli", invoked
    assert "/opt" in json.loads(_fnhost(daemon, "get", name).stdout)["isolation"]
    refused = _fnhost(daemon, "deploy", name, *sum((["--layer", arn] for _ in range(6)), []))
    assert refused.returncode == 2 and "more than 5" in refused.stderr
    assert _fnhost(daemon, "layer", "delete", arn).returncode == 0
    assert arn not in _fnhost(daemon, "layer", "list", layer).stdout
    assert json.loads(_fnhost(daemon, "invoke", name, "{}").stdout) == "from the cli"


def test_the_grpc_client_manages_layers_and_a_functions_list(client: Client, public_dir: Path) -> None:
    from fnhost import errors
    from tests.conftest import zipped

    layer = unique("grpc")
    one = client.publish_layer_version(layer, zipped({"python/grpcmod.py": "VALUE = 1\n"}),
                                       compatible_runtimes=["python3.12"], description="first")
    two = client.publish_layer_version(layer, zipped({"python/grpcmod.py": "VALUE = 2\n"}))
    assert (one.version, two.version) == (1, 2) and one.layer_arn == two.layer_arn
    assert [v.version for v in client.list_layer_versions(layer)] == [2, 1]
    assert [v.version for v in client.list_layer_versions(layer, compatible_runtime="python3.12")] == [1]
    assert client.get_layer_version(arn=one.layer_version_arn).description == "first"
    assert client.get_layer_version(layer, 2).layer_version_arn == two.layer_version_arn
    assert any(v.layer_version_arn == two.layer_version_arn for v in client.list_layers())
    code = public_dir / "grpcfn"
    code.mkdir()
    (code / "app.py").write_text("import grpcmod\n\ndef handler(event, context):\n    return grpcmod.VALUE\n")
    name = unique("grpcfn")
    created = client.create_function(name, runtime="python", handler="app.handler", code=str(code),
                                     layers=[one.layer_version_arn])
    assert list(created.layers) == [one.layer_version_arn] and "/opt" in created.isolation
    assert client.invoke(name, b"{}").payload == b"1"
    updated = client.update_function_configuration(name, layers=[two.layer_version_arn])
    assert list(updated.layers) == [two.layer_version_arn]
    assert client.invoke(name, b"{}").payload == b"2"
    with pytest.raises(errors.InvalidParameter, match="more than 5"):
        client.update_function_configuration(name, layers=[two.layer_version_arn] * 6)
    client.update_function_configuration(name, memory_mb=256)  # a change without layers keeps them
    assert list(client.get_function(name).layers) == [two.layer_version_arn]
    client.delete_layer_version(layer, 2)
    with pytest.raises(errors.ResourceNotFound):
        client.get_layer_version(layer, 2)
    assert client.invoke(name, b"{}").payload == b"2"
    assert list(client.update_function_configuration(name, layers=[]).layers) == []
    failed = client.invoke(name, b"{}")
    assert failed.function_error and b"ImportModuleError" in failed.payload


def test_layers_count_towards_the_code_storage_quota(fresh_daemon) -> None:
    from tests.conftest import zipped

    first = zipped({"python/a.py": "A = 1\n" * 50})
    second = zipped({"python/b.py": "B = 2\n" * 50})
    fresh_daemon.config = f"[daemon]\ncode_storage_max_bytes = {len(first) + len(second) - 1}\n"
    fresh_daemon.start()
    lam = lambda_client(fresh_daemon.http_url)
    lam.publish_layer_version(LayerName=unique("quota"), Content={"ZipFile": first})
    with pytest.raises(lam.exceptions.CodeStorageExceededException, match="code_storage_max_bytes"):
        lam.publish_layer_version(LayerName=unique("quota"), Content={"ZipFile": second})
    with pytest.raises(lam.exceptions.CodeStorageExceededException):
        make_probe(lam, [], files={"app.py": "B = 2\n" * 60})  # a function's zip counts layers too


def test_the_async_client_has_the_same_layer_methods(daemon) -> None:
    import asyncio

    from fnhost.client import AsyncClient
    from tests.conftest import zipped

    async def main() -> None:
        async with AsyncClient(daemon.address) as client:
            layer = unique("async")
            published = await client.publish_layer_version(layer, zipped({"a.txt": "a"}))
            assert (await client.get_layer_version(arn=published.layer_version_arn)).version == 1
            assert [v.version for v in await client.list_layer_versions(layer)] == [1]
            assert any(v.layer_name == layer for v in await client.list_layers())
            await client.delete_layer_version(layer, 1)
            assert await client.list_layer_versions(layer) == []

    asyncio.run(main())
