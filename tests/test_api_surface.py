"""What standard gRPC tools and async programs see: health, reflection, the async client."""

from __future__ import annotations

import json

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from fnhost.client import AsyncClient
from tests.conftest import FIXTURES, Daemon, unique


def test_health_and_reflection(daemon: Daemon) -> None:
    with grpc.insecure_channel(daemon.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "fnhost.v1.Fnhost"):
            assert health.Check(health_pb2.HealthCheckRequest(service=service)).status == 1
        db = ProtoReflectionDescriptorDatabase(channel)
        assert "fnhost.v1.Fnhost" in db.get_services()
        invoke = db.FindFileContainingSymbol("fnhost.v1.Fnhost")
        assert invoke.name == "fnhost/v1/fnhost.proto"


async def test_async_client(daemon: Daemon) -> None:
    name = unique("async")
    async with AsyncClient(daemon.address) as client:
        await client.create_function(name, runtime="python", handler="app.echo", code=str(FIXTURES / "python"))
        result = await client.invoke(name, b'{"async": true}')
        assert json.loads(result.payload) == {"async": True}
        assert result.report is not None and result.report.init_duration_ms is not None
        assert any(f.function_name == name for f in await client.list_functions())
        await client.delete_function(name)
