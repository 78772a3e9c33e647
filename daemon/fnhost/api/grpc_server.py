"""The gRPC API: translates requests to Supervisor calls and results back. No pool logic here."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

import anyio
import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ..control.config import FunctionConfig, Settings
from ..control.deploy import CodeSource
from ..control.function_urls import UrlConfig
from ..control.registry import FunctionRecord
from ..control.supervisor import Supervisor
from ..control.versions import AliasRecord
from ..errors import ConfigError, InvalidParameter, Unauthenticated
from ..observability import billing
from ..v1 import fnhost_pb2 as pb
from ..v1 import fnhost_pb2_grpc as pb_grpc
from . import grpc_wire as wire
from .grpc_async import AsyncServicer, async_stats_messages
from .grpc_esm import EsmServicer, mapping_stats_messages
from . import url_ops
from .grpc_layers import METHODS as LAYER_METHODS
from .grpc_layers import LayerServicer
from .streaming import invoke_stream

log = structlog.get_logger("fnhost.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Fnhost"].full_name
SERVER_OPTIONS = [*wire.MESSAGE_OPTIONS, ("grpc.so_reuseport", 0)]


# Each RPC's error translation (shared with the other servicer modules).
_api = wire.rpc_method


def _config_message(record: FunctionRecord, isolation: str) -> pb.FunctionConfiguration:
    c = record.config
    return pb.FunctionConfiguration(
        function_name=c.name,
        runtime=c.runtime,
        handler=c.handler,
        memory_mb=c.memory_mb,
        timeout_s=c.timeout_s,
        environment=c.environment,
        min_warm=c.min_warm,
        max_concurrency=c.max_concurrency,
        idle_ttl_s=c.idle_ttl_s,
        ephemeral_storage_mb=c.ephemeral_storage_mb,
        isolation=isolation,
        code_sha256=record.code.sha256,
        code_size=record.code.size,
        code_location=str(record.code.location),
        revision_id=record.revision_id,
        last_modified=record.last_modified,
        version=record.version,
        description=record.description,
        layers=c.layers,
    )


def _alias_message(alias: AliasRecord) -> pb.AliasConfiguration:
    return pb.AliasConfiguration(
        function_name=alias.function, name=alias.name, function_version=alias.version,
        description=alias.description, revision_id=alias.revision_id, min_warm=alias.min_warm,
        routing_config=pb.RoutingConfig(additional_version_weights=alias.weights))


def _code(code: pb.Code, settings: Settings) -> CodeSource:
    """The request's code; a directory only where the daemon takes paths on its own host."""
    which = code.WhichOneof("source")
    if which == "directory":
        if not settings.directory_code_allowed:
            # Over TCP the caller is on another host: a path would name this host's files, which
            # the caller has no business choosing (a function made of /etc or another's code).
            raise InvalidParameter(
                f"this daemon takes code only as a zip (code.zip_file), not as a directory on its host "
                f"({code.directory}): zip the directory and send that (fnhost deploy --code FILE.zip), "
                "or set allow_directory_code = true in the daemon's config"
            )
        return CodeSource(directory=code.directory)
    if which == "zip_file":
        return CodeSource(zip_file=code.zip_file)
    return CodeSource()


_OPTIONAL_FIELDS = ("runtime", "handler", "memory_mb", "timeout_s", "min_warm", "max_concurrency", "idle_ttl_s",
                   "ephemeral_storage_mb")


def _cors(cors: pb.Cors) -> dict[str, Any]:
    """Lambda's Cors member from the message: only what is set."""
    out: dict[str, Any] = {}
    for field, member in (("allow_origins", "AllowOrigins"), ("allow_methods", "AllowMethods"),
                          ("allow_headers", "AllowHeaders"), ("expose_headers", "ExposeHeaders")):
        if getattr(cors, field):
            out[member] = list(getattr(cors, field))
    if cors.allow_credentials:
        out["AllowCredentials"] = True
    if cors.max_age:
        out["MaxAge"] = cors.max_age
    return out


class Servicer(LayerServicer, AsyncServicer, EsmServicer, pb_grpc.FnhostServicer):
    def __init__(self, supervisor: Supervisor) -> None:
        self.sup = supervisor

    def _config(self, record: FunctionRecord) -> pb.FunctionConfiguration:
        return _config_message(record, self.sup.isolation_of(record))

    @_api
    async def CreateFunction(self, request: pb.CreateFunctionRequest, context: Any) -> pb.FunctionConfiguration:
        if not request.runtime or not request.handler:
            raise InvalidParameter("runtime and handler are required")
        fields = {f: getattr(request, f) for f in _OPTIONAL_FIELDS[2:] if request.HasField(f)}
        config = FunctionConfig(
            name=request.function_name,
            runtime=request.runtime,
            handler=request.handler,
            environment=dict(request.environment.variables),
            description=request.description,
            layers=list(request.layers),
            **fields,
        )
        record = await self.sup.create_function(config, _code(request.code, self.sup.settings))
        return self._config(record)

    @_api
    async def UpdateFunctionCode(self, request: pb.UpdateFunctionCodeRequest, context: Any) -> pb.FunctionConfiguration:
        return self._config(await self.sup.update_code(request.function_name,
                                                          _code(request.code, self.sup.settings)))

    @_api
    async def UpdateFunctionConfiguration(
        self, request: pb.UpdateFunctionConfigurationRequest, context: Any
    ) -> pb.FunctionConfiguration:
        changes: dict[str, Any] = {f: getattr(request, f) for f in _OPTIONAL_FIELDS if request.HasField(f)}
        if request.HasField("environment"):
            changes["environment"] = dict(request.environment.variables)
        if request.HasField("description"):
            changes["description"] = request.description
        if request.HasField("layers"):
            changes["layers"] = list(request.layers.arns)
        return self._config(await self.sup.update_config(request.function_name, **changes))

    @_api
    async def GetFunction(self, request: pb.GetFunctionRequest, context: Any) -> pb.FunctionConfiguration:
        return self._config(self.sup.get_function(request.function_name, request.qualifier))

    @_api
    async def ListFunctions(self, request: pb.ListFunctionsRequest, context: Any) -> pb.ListFunctionsResponse:
        return pb.ListFunctionsResponse(functions=[self._config(r) for r in self.sup.list_functions()])

    @_api
    async def DeleteFunction(self, request: pb.DeleteFunctionRequest, context: Any) -> pb.DeleteFunctionResponse:
        await self.sup.delete_function(request.function_name, request.qualifier)
        return pb.DeleteFunctionResponse()

    @_api
    async def PublishVersion(self, request: pb.PublishVersionRequest, context: Any) -> pb.FunctionConfiguration:
        return self._config(await self.sup.publish_version(
            request.function_name, code_sha256=request.code_sha256, revision_id=request.revision_id,
            description=request.description))

    @_api
    async def ListVersionsByFunction(self, request: pb.ListVersionsByFunctionRequest,
                                     context: Any) -> pb.ListVersionsByFunctionResponse:
        return pb.ListVersionsByFunctionResponse(
            versions=[self._config(r) for r in self.sup.list_versions(request.function_name)])

    @_api
    async def CreateAlias(self, request: pb.CreateAliasRequest, context: Any) -> pb.AliasConfiguration:
        return _alias_message(await self.sup.create_alias(
            request.function_name, request.name, request.function_version, description=request.description,
            weights=dict(request.routing_config.additional_version_weights)))

    @_api
    async def GetAlias(self, request: pb.GetAliasRequest, context: Any) -> pb.AliasConfiguration:
        return _alias_message(self.sup.get_alias(request.function_name, request.name))

    @_api
    async def UpdateAlias(self, request: pb.UpdateAliasRequest, context: Any) -> pb.AliasConfiguration:
        return _alias_message(await self.sup.update_alias(
            request.function_name, request.name,
            version=request.function_version if request.HasField("function_version") else None,
            description=request.description if request.HasField("description") else None,
            weights=dict(request.routing_config.additional_version_weights)
            if request.HasField("routing_config") else None,
            revision_id=request.revision_id))

    @_api
    async def DeleteAlias(self, request: pb.DeleteAliasRequest, context: Any) -> pb.DeleteAliasResponse:
        await self.sup.delete_alias(request.function_name, request.name)
        return pb.DeleteAliasResponse()

    @_api
    async def ListAliases(self, request: pb.ListAliasesRequest, context: Any) -> pb.ListAliasesResponse:
        return pb.ListAliasesResponse(aliases=[
            _alias_message(a) for a in self.sup.list_aliases(request.function_name, request.function_version)])

    @_api
    async def SetMinWarm(self, request: pb.SetMinWarmRequest, context: Any) -> pb.SetMinWarmResponse:
        await self.sup.set_min_warm(request.function_name, request.qualifier, request.min_warm)
        return pb.SetMinWarmResponse()

    # --- function URLs (the rules are url_ops', shared with Lambda's HTTP API) ---------------

    def _url(self, config: UrlConfig) -> pb.FunctionUrlConfig:
        shown = url_ops.shape(config, self.sup.settings)
        cors = config.cors
        return pb.FunctionUrlConfig(
            function_name=config.function, qualifier=config.qualifier, function_url=shown["FunctionUrl"],
            function_arn=shown["FunctionArn"], auth_type=config.auth_type, invoke_mode=config.invoke_mode,
            payload_format=config.payload_format, creation_time=config.created,
            last_modified_time=config.modified, url_id=config.url_id,
            cors=pb.Cors(allow_origins=cors.get("AllowOrigins", []), allow_methods=cors.get("AllowMethods", []),
                         allow_headers=cors.get("AllowHeaders", []), expose_headers=cors.get("ExposeHeaders", []),
                         allow_credentials=cors.get("AllowCredentials", False), max_age=cors.get("MaxAge", 0)))

    @_api
    async def CreateFunctionUrlConfig(self, request: pb.CreateFunctionUrlConfigRequest,
                                      context: Any) -> pb.FunctionUrlConfig:
        name, qualifier = url_ops.target(self.sup, request.function_name, request.qualifier)
        return self._url(self.sup.urls.create(
            name, qualifier, auth_type=request.auth_type, cors=_cors(request.cors),
            invoke_mode=request.invoke_mode or "BUFFERED", payload_format=request.payload_format or "2.0"))

    @_api
    async def GetFunctionUrlConfig(self, request: pb.GetFunctionUrlConfigRequest, context: Any) -> pb.FunctionUrlConfig:
        return self._url(self.sup.urls.get(*url_ops.target(self.sup, request.function_name, request.qualifier)))

    @_api
    async def UpdateFunctionUrlConfig(self, request: pb.UpdateFunctionUrlConfigRequest,
                                      context: Any) -> pb.FunctionUrlConfig:
        name, qualifier = url_ops.target(self.sup, request.function_name, request.qualifier)
        return self._url(self.sup.urls.update(
            name, qualifier, auth_type=request.auth_type if request.HasField("auth_type") else None,
            cors=_cors(request.cors) if request.HasField("cors") else None,
            invoke_mode=request.invoke_mode if request.HasField("invoke_mode") else None,
            payload_format=request.payload_format if request.HasField("payload_format") else None))

    @_api
    async def DeleteFunctionUrlConfig(self, request: pb.DeleteFunctionUrlConfigRequest,
                                      context: Any) -> pb.DeleteFunctionUrlConfigResponse:
        self.sup.urls.delete(*url_ops.target(self.sup, request.function_name, request.qualifier))
        return pb.DeleteFunctionUrlConfigResponse()

    @_api
    async def ListFunctionUrlConfigs(self, request: pb.ListFunctionUrlConfigsRequest,
                                     context: Any) -> pb.ListFunctionUrlConfigsResponse:
        self.sup.get_function(request.function_name)
        return pb.ListFunctionUrlConfigsResponse(
            function_url_configs=[self._url(c) for c in self.sup.urls.list(request.function_name)])

    @_api
    async def Invoke(self, request: pb.InvokeRequest, context: grpc.aio.ServicerContext) -> pb.InvokeResponse:
        remaining = context.time_remaining()
        deadline = None if remaining is None else anyio.current_time() + remaining
        return wire.invoke_response(await self.sup.invoke(wire.invocation(request, deadline)))

    async def InvokeStream(self, requests: Any, context: grpc.aio.ServicerContext) -> Any:
        async for message in invoke_stream(requests, self.sup.invoke, self.sup.settings.max_stream_in_flight):
            yield message

    @_api
    async def GetStats(self, request: pb.GetStatsRequest, context: Any) -> pb.Stats:
        return pb.Stats(
            functions=[
                pb.FunctionStats(function_name=p.function, workers=p.workers, invocations=p.counters.invocations,
                                 errors=p.counters.errors, throttles=p.counters.throttles,
                                 cold_starts=p.counters.cold_starts, timeouts=p.counters.timeouts,
                                 queued=p.queued)
                for p in self.sup.snapshot()
            ],
            uptime_s=self.sup.uptime_s,
            memory_backend=self.sup.backend.name,
            async_queues=async_stats_messages(self.sup.async_events.stats()),
            event_source_mappings=mapping_stats_messages(self.sup.event_sources.stats()),
            zygotes=[pb.ZygoteStats(runtime=z.runtime, command=z.command, pid=z.pid, forks=z.forks,
                                    failures=z.failures, restarts=z.restarts, memory_uss_bytes=z.uss_bytes,
                                    workers=z.workers, workers_memory_uss_bytes=z.workers_uss_bytes)
                     for z in await self.sup.zygote_report()],
            stem_cells=[pb.StemCellStats(runtime=c.key.runtime, memory_mb=c.key.memory_mb,
                                         startup_env=list(c.key.startup), ready=c.ready, starting=c.starting,
                                         taken=c.taken, failures=c.failures, given_up=c.given_up,
                                         memory_uss_bytes=c.memory_uss_bytes)
                        for c in await self.sup.cell_report()],
        )

    @_api
    async def GetUsage(self, request: pb.GetUsageRequest, context: Any) -> pb.Usage:
        usage = self.sup.usage_since(request.since_unix_s)
        requests = sum(u.requests for u in usage)
        gbs = sum(u.gb_seconds for u in usage)
        return pb.Usage(
            functions=[pb.FunctionUsage(function_name=u.function_name, requests=u.requests,
                                        billed_duration_ms=u.billed_duration_ms, gb_seconds=u.gb_seconds,
                                        cost_usd=u.cost_usd) for u in usage],
            requests=requests,
            gb_seconds=gbs,
            cost_usd=billing.cost_after_free_tier(requests, gbs),
            cost_usd_before_free_tier=sum(u.cost_usd for u in usage),
            since_unix_s=request.since_unix_s // 3600 * 3600,
            billing_granularity_ms=self.sup.settings.billing_granularity_ms,
            price_per_million_requests=billing.PRICE_PER_MILLION_REQUESTS,
            price_per_gb_second=billing.PRICE_PER_GB_SECOND,
        )


for _name in LAYER_METHODS:  # the same error translation as every method above
    setattr(Servicer, _name, _api(getattr(LayerServicer, _name)))


class TokenAuth(grpc.aio.ServerInterceptor):
    """Refuse any call without ``authorization: Bearer <token>`` (health checks excepted, for probes)."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if details.method.startswith("/grpc.health.v1.Health/") or handler is None:
            return handler
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                got = value.encode() if isinstance(value, str) else value
                if hmac.compare_digest(got, self._expected):
                    return handler
        log.warning("unauthenticated_request", method=details.method)
        return _refusing(handler)


def _refusing(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same kind as ``handler`` that only answers UNAUTHENTICATED."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(*wire.abort_args(Unauthenticated(
            "send 'authorization: Bearer <token>' with the daemon's token (the CLI reads FNHOST_TOKEN)")))

    async def refuse_stream(request: Any, context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]
        await refuse(request, context)
        yield  # pragma: no cover - abort raised

    kinds = {
        "unary_unary": grpc.unary_unary_rpc_method_handler,
        "unary_stream": grpc.unary_stream_rpc_method_handler,
        "stream_unary": grpc.stream_unary_rpc_method_handler,
        "stream_stream": grpc.stream_stream_rpc_method_handler,
    }
    for kind, make in kinds.items():
        if getattr(handler, kind) is not None:
            fn = refuse_stream if kind.endswith("_stream") else refuse
            return make(fn, request_deserializer=handler.request_deserializer,
                        response_serializer=handler.response_serializer)
    raise ValueError("handler of no known kind")


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"daemon.{what}: cannot read {path}: {exc.strerror}") from exc


async def start_server(supervisor: Supervisor, address: str,
                       settings: Settings | None = None) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
    """Start serving ``address`` (``unix:PATH`` or ``HOST:PORT``); returns the server and health."""
    settings = settings or supervisor.settings
    interceptors = []
    if settings.token_file:
        token = _read(settings.token_file, "token_file").decode().strip()
        if not token:
            raise ConfigError(f"daemon.token_file: {settings.token_file} is empty")
        interceptors.append(TokenAuth(token))
    server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=interceptors)
    pb_grpc.add_FnhostServicer_to_server(Servicer(supervisor), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    if settings.tls_cert or settings.tls_key:
        if not (settings.tls_cert and settings.tls_key):
            raise ConfigError("TLS needs both tls_cert and tls_key")
        ca = _read(settings.tls_client_ca, "tls_client_ca") if settings.tls_client_ca else None
        credentials = grpc.ssl_server_credentials(
            [(_read(settings.tls_key, "tls_key"), _read(settings.tls_cert, "tls_cert"))],
            root_certificates=ca, require_client_auth=ca is not None)
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    if port == 0 and not address.startswith("unix:"):
        raise OSError(f"cannot listen on {address}")
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, health_servicer
