"""Python client for fnhost's gRPC API; the CLI uses it too.

    from fnhost.client import Client
    with Client() as fn:
        result = fn.invoke("hello-python", b'{"name": "Ada"}')
        print(result.payload, result.report.line())

A refused request raises the matching ``fnhost.errors.ApiError`` subclass (``ResourceNotFound``,
``TooManyRequests``, ``InvalidParameter`` …); a function's own failure does not raise: it comes
back with ``function_error == "Unhandled"`` and Lambda's error JSON as the payload.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from . import errors
from .api import grpc_wire as wire
from .client_async import AsyncInvocationCalls
from .client_esm import EventSourceMappingCalls
from .client_layers import AsyncLayerCalls, LayerCalls
from .client_stream import InvokeStream
from .control.config import default_state_dir, loopback
from .execution.invocation import Outcome
from .v1 import fnhost_pb2 as pb
from .v1 import fnhost_pb2_grpc as pb_grpc

# What an invocation returns: the daemon's own Outcome (payload, function_error, request_id,
# report, log_result, executed_version, ok).
InvokeResult = Outcome
Unreachable = errors.Unreachable


def default_address() -> str:
    return os.environ.get("FNHOST_ADDRESS") or f"unix:{default_state_dir() / 'fnhost.sock'}"


def code_message(code: str | bytes) -> pb.Code:
    """A directory path (str) or zip bytes."""
    if isinstance(code, bytes):
        return pb.Code(zip_file=code)
    return pb.Code(directory=os.path.abspath(code))


@dataclass(frozen=True, slots=True)
class Connection:
    """How to reach a daemon: address, and for TCP optionally TLS and a bearer token.

    Unset values come from the environment: FNHOST_ADDRESS, FNHOST_TOKEN, FNHOST_TLS_CA,
    FNHOST_TLS_CERT and FNHOST_TLS_KEY (the last two for a client certificate).
    """

    address: str
    token: str | None = None
    tls_ca: bytes | None = None
    tls_cert: bytes | None = None
    tls_key: bytes | None = None

    @classmethod
    def resolve(cls, address: str | None = None, *, token: str | None = None, tls_ca: str | None = None,
                tls_cert: str | None = None, tls_key: str | None = None) -> Connection:
        env = os.environ

        def read(path: str | None, var: str) -> bytes | None:
            path = path or env.get(var)
            return Path(path).read_bytes() if path else None

        return cls(address=address or default_address(), token=token or env.get("FNHOST_TOKEN") or None,
                   tls_ca=read(tls_ca, "FNHOST_TLS_CA"), tls_cert=read(tls_cert, "FNHOST_TLS_CERT"),
                   tls_key=read(tls_key, "FNHOST_TLS_KEY"))

    @property
    def metadata(self) -> tuple[tuple[str, str], ...] | None:
        return (("authorization", f"Bearer {self.token}"),) if self.token else None

    def channel(self, module: Any) -> Any:
        """A channel from ``grpc`` or ``grpc.aio``.

        Raises ConfigError rather than send the token in clear over TCP to another host (anyone
        on the path could then use it): a unix socket or a loopback address is fine.
        """
        if self.tls_ca or self.tls_cert:
            creds = grpc.ssl_channel_credentials(self.tls_ca, self.tls_key, self.tls_cert)
            return module.secure_channel(self.address, creds, options=wire.MESSAGE_OPTIONS)
        if self.token and loopback(self.address) is False:
            raise errors.ConfigError(
                f"refusing to send the token in clear to {self.address}: set FNHOST_TLS_CA (or tls_ca=) "
                "to the CA of the daemon's TLS certificate, or reach the daemon over a unix socket or "
                "a loopback address"
            )
        return module.insecure_channel(self.address, options=wire.MESSAGE_OPTIONS)


def _create_request(name: str, runtime: str, handler: str, code: str | bytes,
                    environment: dict[str, str] | None, options: dict[str, int | str]) -> pb.CreateFunctionRequest:
    return pb.CreateFunctionRequest(
        function_name=name, runtime=runtime, handler=handler, code=code_message(code),
        environment=pb.Environment(variables=environment or {}), **options)


def _update_config_request(name: str, environment: dict[str, str] | None,
                           changes: dict[str, Any]) -> pb.UpdateFunctionConfigurationRequest:
    layers = changes.pop("layers", None)
    request = pb.UpdateFunctionConfigurationRequest(function_name=name, **changes)
    if layers is not None:  # set, even empty, means "replace the layers list"
        request.layers.CopyFrom(pb.LayerList(arns=layers))
    if environment is not None:  # set, even empty, means "replace all variables"
        request.environment.CopyFrom(pb.Environment(variables=environment))
    return request


def _alias_request(cls: Any, name: str, alias: str, weights: dict[str, float] | None,
                   **fields: Any) -> Any:
    """A CreateAlias or UpdateAlias request; ``weights`` None leaves the routing out."""
    request = cls(function_name=name, name=alias, **{k: v for k, v in fields.items() if v is not None})
    if weights is not None:  # set, even empty ({} removes the routing on update)
        request.routing_config.CopyFrom(pb.RoutingConfig(additional_version_weights=weights))
    return request


# Versions and aliases: each method's RPC and request, shared by Client and AsyncClient.
def _publish(name: str, description: str, code_sha256: str, revision_id: str) -> tuple[str, Any]:
    return "PublishVersion", pb.PublishVersionRequest(function_name=name, description=description,
                                                      code_sha256=code_sha256, revision_id=revision_id)


def _create_alias(name: str, alias: str, version: str, description: str,
                  weights: dict[str, float] | None) -> tuple[str, Any]:
    return "CreateAlias", _alias_request(pb.CreateAliasRequest, name, alias, weights, function_version=version,
                                         description=description)


def _update_alias(name: str, alias: str, version: str | None, description: str | None,
                  weights: dict[str, float] | None, revision_id: str) -> tuple[str, Any]:
    return "UpdateAlias", _alias_request(pb.UpdateAliasRequest, name, alias, weights, function_version=version,
                                         description=description, revision_id=revision_id)


class _Connected:
    """What both clients hold: the resolved connection, a channel from ``grpc`` or ``grpc.aio``, a stub."""

    _grpc: Any = grpc

    def __init__(self, address: str | None = None, *, timeout: float | None = None,
                 token: str | None = None, tls_ca: str | None = None, tls_cert: str | None = None,
                 tls_key: str | None = None) -> None:
        conn = Connection.resolve(address, token=token, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)
        self.address = conn.address
        self.timeout = timeout
        self._metadata = conn.metadata
        self._channel = conn.channel(self._grpc)
        self._stub = pb_grpc.FnhostStub(self._channel)


class Client(LayerCalls, AsyncInvocationCalls, EventSourceMappingCalls, _Connected):
    """Blocking client. ``address``: ``unix:/path/fnhost.sock`` or ``host:port``."""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise wire.error_from_rpc(exc, self.address) from None

    def invoke(self, name: str, payload: bytes = b"", *, invocation_type: str = "RequestResponse",
               log_type: str = "None", qualifier: str = "", client_context: bytes = b"") -> InvokeResult:
        """``name`` may be ``name:qualifier``; ``client_context``: Lambda's ClientContext JSON object."""
        return wire.outcome(self._call("Invoke", wire.invoke_request(name, payload, invocation_type, log_type,
                                                                     qualifier, client_context)))

    def create_function(self, name: str, *, runtime: str, handler: str, code: str | bytes,
                        environment: dict[str, str] | None = None, **options: int | str) -> pb.FunctionConfiguration:
        return self._call("CreateFunction",
                              _create_request(name, runtime, handler, code, environment, options))

    def update_function_code(self, name: str, code: str | bytes) -> pb.FunctionConfiguration:
        return self._call("UpdateFunctionCode",
                          pb.UpdateFunctionCodeRequest(function_name=name, code=code_message(code)))

    def update_function_configuration(self, name: str, *, environment: dict[str, str] | None = None,
                                      **changes: Any) -> pb.FunctionConfiguration:
        return self._call("UpdateFunctionConfiguration", _update_config_request(name, environment, changes))

    def get_function(self, name: str, qualifier: str = "") -> pb.FunctionConfiguration:
        return self._call("GetFunction", pb.GetFunctionRequest(function_name=name, qualifier=qualifier))

    def list_functions(self) -> list[pb.FunctionConfiguration]:
        return list(self._call("ListFunctions", pb.ListFunctionsRequest()).functions)

    def delete_function(self, name: str, qualifier: str = "") -> None:
        """With ``qualifier`` (a version number), only that version."""
        self._call("DeleteFunction", pb.DeleteFunctionRequest(function_name=name, qualifier=qualifier))

    def publish_version(self, name: str, *, description: str = "", code_sha256: str = "",
                        revision_id: str = "") -> pb.FunctionConfiguration:
        return self._call(*_publish(name, description, code_sha256, revision_id))

    def list_versions(self, name: str) -> list[pb.FunctionConfiguration]:
        """$LATEST first, then each published version."""
        return list(self._call("ListVersionsByFunction",
                               pb.ListVersionsByFunctionRequest(function_name=name)).versions)

    def create_alias(self, name: str, alias: str, version: str, *, description: str = "",
                     weights: dict[str, float] | None = None) -> pb.AliasConfiguration:
        """``weights``: Lambda's AdditionalVersionWeights, e.g. ``{"2": 0.1}``."""
        return self._call(*_create_alias(name, alias, version, description, weights))

    def get_alias(self, name: str, alias: str) -> pb.AliasConfiguration:
        return self._call("GetAlias", pb.GetAliasRequest(function_name=name, name=alias))

    def update_alias(self, name: str, alias: str, *, version: str | None = None, description: str | None = None,
                     weights: dict[str, float] | None = None, revision_id: str = "") -> pb.AliasConfiguration:
        """Changes what is given; ``weights={}`` removes the routing."""
        return self._call(*_update_alias(name, alias, version, description, weights, revision_id))

    def delete_alias(self, name: str, alias: str) -> None:
        self._call("DeleteAlias", pb.DeleteAliasRequest(function_name=name, name=alias))

    def list_aliases(self, name: str, version: str = "") -> list[pb.AliasConfiguration]:
        return list(self._call("ListAliases", pb.ListAliasesRequest(function_name=name,
                                                                    function_version=version)).aliases)

    def set_min_warm(self, name: str, qualifier: str, min_warm: int) -> None:
        """Workers kept warm for a version or alias (``""``: the function's own min_warm)."""
        self._call("SetMinWarm", pb.SetMinWarmRequest(function_name=name, qualifier=qualifier, min_warm=min_warm))

    # Function URLs: ``qualifier`` "" ($LATEST) or an alias; ``cors`` replaces the whole configuration.
    def create_url(self, name: str, qualifier: str = "", *, auth_type: str = "NONE", cors: pb.Cors | None = None,
                   payload_format: str = "", invoke_mode: str = "") -> pb.FunctionUrlConfig:
        return self._call("CreateFunctionUrlConfig", pb.CreateFunctionUrlConfigRequest(
            function_name=name, qualifier=qualifier, auth_type=auth_type, cors=cors, payload_format=payload_format,
            invoke_mode=invoke_mode))

    def get_url(self, name: str, qualifier: str = "") -> pb.FunctionUrlConfig:
        return self._call("GetFunctionUrlConfig", pb.GetFunctionUrlConfigRequest(function_name=name, qualifier=qualifier))

    def update_url(self, name: str, qualifier: str = "", *, auth_type: str | None = None, cors: pb.Cors | None = None,
                   payload_format: str | None = None) -> pb.FunctionUrlConfig:
        return self._call("UpdateFunctionUrlConfig", pb.UpdateFunctionUrlConfigRequest(
            function_name=name, qualifier=qualifier, auth_type=auth_type, cors=cors, payload_format=payload_format))

    def delete_url(self, name: str, qualifier: str = "") -> None:
        self._call("DeleteFunctionUrlConfig", pb.DeleteFunctionUrlConfigRequest(function_name=name, qualifier=qualifier))

    def list_urls(self, name: str) -> list[pb.FunctionUrlConfig]:
        return list(self._call("ListFunctionUrlConfigs",
                               pb.ListFunctionUrlConfigsRequest(function_name=name)).function_url_configs)

    def stats(self) -> pb.Stats:
        return self._call("GetStats", pb.GetStatsRequest())

    def usage(self, since_unix_s: int = 0) -> pb.Usage:
        return self._call("GetUsage", pb.GetUsageRequest(since_unix_s=since_unix_s))

    def invoke_stream(self, invocations: Iterable[tuple[str, bytes]], *,
                      log_type: str = "None") -> Iterator[tuple[int, InvokeResult | errors.FnhostError]]:
        """Invoke each ``(name, payload)`` over one InvokeStream; yield ``(index, outcome)`` as each completes.

        A refused invocation yields its error (it does not end the stream); the payloads are sent
        as the iterable produces them, so a slow producer (stdin) streams.
        """
        def requests() -> Iterator[pb.InvokeStreamRequest]:
            for index, (name, payload) in enumerate(invocations):
                yield pb.InvokeStreamRequest(invocations=[pb.StreamInvocation(
                    id=index, request=wire.invoke_request(name, payload, "RequestResponse", log_type))])

        try:
            for message in self._stub.InvokeStream(requests(), metadata=self._metadata):
                for r in message.results:
                    yield r.id, wire.stream_outcome(r)
        except grpc.RpcError as exc:
            raise wire.error_from_rpc(exc, self.address) from None


class AsyncClient(AsyncLayerCalls, AsyncInvocationCalls, EventSourceMappingCalls, _Connected):
    """The same API on grpc.aio, for asyncio/anyio programs."""

    _grpc = grpc.aio

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: str, request: Any) -> Any:
        try:
            return await getattr(self._stub, method)(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise wire.error_from_rpc(exc, self.address) from None

    async def invoke(self, name: str, payload: bytes = b"", *, invocation_type: str = "RequestResponse",
                     log_type: str = "None", qualifier: str = "", client_context: bytes = b"") -> InvokeResult:
        return wire.outcome(await self._call("Invoke", wire.invoke_request(
            name, payload, invocation_type, log_type, qualifier, client_context)))

    async def create_function(self, name: str, *, runtime: str, handler: str, code: str | bytes,
                              environment: dict[str, str] | None = None,
                              **options: int | str) -> pb.FunctionConfiguration:
        return await self._call("CreateFunction",
                              _create_request(name, runtime, handler, code, environment, options))

    async def update_function_code(self, name: str, code: str | bytes) -> pb.FunctionConfiguration:
        return await self._call("UpdateFunctionCode",
                                pb.UpdateFunctionCodeRequest(function_name=name, code=code_message(code)))

    async def update_function_configuration(self, name: str, *, environment: dict[str, str] | None = None,
                                            **changes: Any) -> pb.FunctionConfiguration:
        return await self._call("UpdateFunctionConfiguration", _update_config_request(name, environment, changes))

    async def get_function(self, name: str, qualifier: str = "") -> pb.FunctionConfiguration:
        return await self._call("GetFunction", pb.GetFunctionRequest(function_name=name, qualifier=qualifier))

    async def list_functions(self) -> list[pb.FunctionConfiguration]:
        return list((await self._call("ListFunctions", pb.ListFunctionsRequest())).functions)

    async def delete_function(self, name: str, qualifier: str = "") -> None:
        await self._call("DeleteFunction", pb.DeleteFunctionRequest(function_name=name, qualifier=qualifier))

    async def publish_version(self, name: str, *, description: str = "", code_sha256: str = "",
                        revision_id: str = "") -> pb.FunctionConfiguration:
        return await self._call(*_publish(name, description, code_sha256, revision_id))

    async def list_versions(self, name: str) -> list[pb.FunctionConfiguration]:
        """$LATEST first, then each published version."""
        return list((await self._call("ListVersionsByFunction",
                                      pb.ListVersionsByFunctionRequest(function_name=name))).versions)

    async def create_alias(self, name: str, alias: str, version: str, *, description: str = "",
                     weights: dict[str, float] | None = None) -> pb.AliasConfiguration:
        """``weights``: Lambda's AdditionalVersionWeights, e.g. ``{"2": 0.1}``."""
        return await self._call(*_create_alias(name, alias, version, description, weights))

    async def get_alias(self, name: str, alias: str) -> pb.AliasConfiguration:
        return await self._call("GetAlias", pb.GetAliasRequest(function_name=name, name=alias))

    async def update_alias(self, name: str, alias: str, *, version: str | None = None, description: str | None = None,
                     weights: dict[str, float] | None = None, revision_id: str = "") -> pb.AliasConfiguration:
        """Changes what is given; ``weights={}`` removes the routing."""
        return await self._call(*_update_alias(name, alias, version, description, weights, revision_id))

    async def delete_alias(self, name: str, alias: str) -> None:
        await self._call("DeleteAlias", pb.DeleteAliasRequest(function_name=name, name=alias))

    async def list_aliases(self, name: str, version: str = "") -> list[pb.AliasConfiguration]:
        return list((await self._call("ListAliases", pb.ListAliasesRequest(
            function_name=name, function_version=version))).aliases)

    async def set_min_warm(self, name: str, qualifier: str, min_warm: int) -> None:
        """Workers kept warm for a version or alias (``""``: the function's own min_warm)."""
        await self._call("SetMinWarm", pb.SetMinWarmRequest(function_name=name, qualifier=qualifier, min_warm=min_warm))

    async def stats(self) -> pb.Stats:
        return await self._call("GetStats", pb.GetStatsRequest())

    async def usage(self, since_unix_s: int = 0) -> pb.Usage:
        return await self._call("GetUsage", pb.GetUsageRequest(since_unix_s=since_unix_s))

    def stream(self) -> InvokeStream:
        """Open an InvokeStream: ``async with client.stream() as s: await s.invoke(name, payload)``."""
        return InvokeStream(self._stub, self._metadata, self.address)
