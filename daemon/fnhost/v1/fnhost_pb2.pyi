from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InvocationType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REQUEST_RESPONSE: _ClassVar[InvocationType]
    EVENT: _ClassVar[InvocationType]
    DRY_RUN: _ClassVar[InvocationType]

class LogType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NONE: _ClassVar[LogType]
    TAIL: _ClassVar[LogType]
REQUEST_RESPONSE: InvocationType
EVENT: InvocationType
DRY_RUN: InvocationType
NONE: LogType
TAIL: LogType

class Code(_message.Message):
    __slots__ = ("directory", "zip_file")
    DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    ZIP_FILE_FIELD_NUMBER: _ClassVar[int]
    directory: str
    zip_file: bytes
    def __init__(self, directory: _Optional[str] = ..., zip_file: _Optional[bytes] = ...) -> None: ...

class Environment(_message.Message):
    __slots__ = ("variables",)
    class VariablesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    variables: _containers.ScalarMap[str, str]
    def __init__(self, variables: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CreateFunctionRequest(_message.Message):
    __slots__ = ("function_name", "runtime", "handler", "code", "memory_mb", "timeout_s", "environment", "min_warm", "max_concurrency", "idle_ttl_s", "ephemeral_storage_mb", "description", "layers")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    HANDLER_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    MIN_WARM_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    IDLE_TTL_S_FIELD_NUMBER: _ClassVar[int]
    EPHEMERAL_STORAGE_MB_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    runtime: str
    handler: str
    code: Code
    memory_mb: int
    timeout_s: int
    environment: Environment
    min_warm: int
    max_concurrency: int
    idle_ttl_s: int
    ephemeral_storage_mb: int
    description: str
    layers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, function_name: _Optional[str] = ..., runtime: _Optional[str] = ..., handler: _Optional[str] = ..., code: _Optional[_Union[Code, _Mapping]] = ..., memory_mb: _Optional[int] = ..., timeout_s: _Optional[int] = ..., environment: _Optional[_Union[Environment, _Mapping]] = ..., min_warm: _Optional[int] = ..., max_concurrency: _Optional[int] = ..., idle_ttl_s: _Optional[int] = ..., ephemeral_storage_mb: _Optional[int] = ..., description: _Optional[str] = ..., layers: _Optional[_Iterable[str]] = ...) -> None: ...

class LayerList(_message.Message):
    __slots__ = ("arns",)
    ARNS_FIELD_NUMBER: _ClassVar[int]
    arns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, arns: _Optional[_Iterable[str]] = ...) -> None: ...

class UpdateFunctionCodeRequest(_message.Message):
    __slots__ = ("function_name", "code")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    code: Code
    def __init__(self, function_name: _Optional[str] = ..., code: _Optional[_Union[Code, _Mapping]] = ...) -> None: ...

class UpdateFunctionConfigurationRequest(_message.Message):
    __slots__ = ("function_name", "runtime", "handler", "memory_mb", "timeout_s", "environment", "min_warm", "max_concurrency", "idle_ttl_s", "ephemeral_storage_mb", "description", "layers")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    HANDLER_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    MIN_WARM_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    IDLE_TTL_S_FIELD_NUMBER: _ClassVar[int]
    EPHEMERAL_STORAGE_MB_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    runtime: str
    handler: str
    memory_mb: int
    timeout_s: int
    environment: Environment
    min_warm: int
    max_concurrency: int
    idle_ttl_s: int
    ephemeral_storage_mb: int
    description: str
    layers: LayerList
    def __init__(self, function_name: _Optional[str] = ..., runtime: _Optional[str] = ..., handler: _Optional[str] = ..., memory_mb: _Optional[int] = ..., timeout_s: _Optional[int] = ..., environment: _Optional[_Union[Environment, _Mapping]] = ..., min_warm: _Optional[int] = ..., max_concurrency: _Optional[int] = ..., idle_ttl_s: _Optional[int] = ..., ephemeral_storage_mb: _Optional[int] = ..., description: _Optional[str] = ..., layers: _Optional[_Union[LayerList, _Mapping]] = ...) -> None: ...

class FunctionConfiguration(_message.Message):
    __slots__ = ("function_name", "runtime", "handler", "memory_mb", "timeout_s", "environment", "min_warm", "max_concurrency", "idle_ttl_s", "code_sha256", "code_size", "code_location", "revision_id", "last_modified", "version", "ephemeral_storage_mb", "isolation", "description", "layers")
    class EnvironmentEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    HANDLER_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    MIN_WARM_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    IDLE_TTL_S_FIELD_NUMBER: _ClassVar[int]
    CODE_SHA256_FIELD_NUMBER: _ClassVar[int]
    CODE_SIZE_FIELD_NUMBER: _ClassVar[int]
    CODE_LOCATION_FIELD_NUMBER: _ClassVar[int]
    REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_MODIFIED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EPHEMERAL_STORAGE_MB_FIELD_NUMBER: _ClassVar[int]
    ISOLATION_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    runtime: str
    handler: str
    memory_mb: int
    timeout_s: int
    environment: _containers.ScalarMap[str, str]
    min_warm: int
    max_concurrency: int
    idle_ttl_s: int
    code_sha256: str
    code_size: int
    code_location: str
    revision_id: str
    last_modified: str
    version: str
    ephemeral_storage_mb: int
    isolation: str
    description: str
    layers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, function_name: _Optional[str] = ..., runtime: _Optional[str] = ..., handler: _Optional[str] = ..., memory_mb: _Optional[int] = ..., timeout_s: _Optional[int] = ..., environment: _Optional[_Mapping[str, str]] = ..., min_warm: _Optional[int] = ..., max_concurrency: _Optional[int] = ..., idle_ttl_s: _Optional[int] = ..., code_sha256: _Optional[str] = ..., code_size: _Optional[int] = ..., code_location: _Optional[str] = ..., revision_id: _Optional[str] = ..., last_modified: _Optional[str] = ..., version: _Optional[str] = ..., ephemeral_storage_mb: _Optional[int] = ..., isolation: _Optional[str] = ..., description: _Optional[str] = ..., layers: _Optional[_Iterable[str]] = ...) -> None: ...

class GetFunctionRequest(_message.Message):
    __slots__ = ("function_name", "qualifier")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    QUALIFIER_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    qualifier: str
    def __init__(self, function_name: _Optional[str] = ..., qualifier: _Optional[str] = ...) -> None: ...

class ListFunctionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListFunctionsResponse(_message.Message):
    __slots__ = ("functions",)
    FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    functions: _containers.RepeatedCompositeFieldContainer[FunctionConfiguration]
    def __init__(self, functions: _Optional[_Iterable[_Union[FunctionConfiguration, _Mapping]]] = ...) -> None: ...

class DeleteFunctionRequest(_message.Message):
    __slots__ = ("function_name", "qualifier")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    QUALIFIER_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    qualifier: str
    def __init__(self, function_name: _Optional[str] = ..., qualifier: _Optional[str] = ...) -> None: ...

class DeleteFunctionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PublishVersionRequest(_message.Message):
    __slots__ = ("function_name", "code_sha256", "revision_id", "description")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    CODE_SHA256_FIELD_NUMBER: _ClassVar[int]
    REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    code_sha256: str
    revision_id: str
    description: str
    def __init__(self, function_name: _Optional[str] = ..., code_sha256: _Optional[str] = ..., revision_id: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class ListVersionsByFunctionRequest(_message.Message):
    __slots__ = ("function_name",)
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    def __init__(self, function_name: _Optional[str] = ...) -> None: ...

class ListVersionsByFunctionResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[FunctionConfiguration]
    def __init__(self, versions: _Optional[_Iterable[_Union[FunctionConfiguration, _Mapping]]] = ...) -> None: ...

class RoutingConfig(_message.Message):
    __slots__ = ("additional_version_weights",)
    class AdditionalVersionWeightsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ADDITIONAL_VERSION_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    additional_version_weights: _containers.ScalarMap[str, float]
    def __init__(self, additional_version_weights: _Optional[_Mapping[str, float]] = ...) -> None: ...

class AliasConfiguration(_message.Message):
    __slots__ = ("function_name", "name", "function_version", "description", "routing_config", "revision_id", "min_warm")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_VERSION_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ROUTING_CONFIG_FIELD_NUMBER: _ClassVar[int]
    REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    MIN_WARM_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    name: str
    function_version: str
    description: str
    routing_config: RoutingConfig
    revision_id: str
    min_warm: int
    def __init__(self, function_name: _Optional[str] = ..., name: _Optional[str] = ..., function_version: _Optional[str] = ..., description: _Optional[str] = ..., routing_config: _Optional[_Union[RoutingConfig, _Mapping]] = ..., revision_id: _Optional[str] = ..., min_warm: _Optional[int] = ...) -> None: ...

class CreateAliasRequest(_message.Message):
    __slots__ = ("function_name", "name", "function_version", "description", "routing_config")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_VERSION_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ROUTING_CONFIG_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    name: str
    function_version: str
    description: str
    routing_config: RoutingConfig
    def __init__(self, function_name: _Optional[str] = ..., name: _Optional[str] = ..., function_version: _Optional[str] = ..., description: _Optional[str] = ..., routing_config: _Optional[_Union[RoutingConfig, _Mapping]] = ...) -> None: ...

class GetAliasRequest(_message.Message):
    __slots__ = ("function_name", "name")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    name: str
    def __init__(self, function_name: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class UpdateAliasRequest(_message.Message):
    __slots__ = ("function_name", "name", "function_version", "description", "routing_config", "revision_id")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_VERSION_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ROUTING_CONFIG_FIELD_NUMBER: _ClassVar[int]
    REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    name: str
    function_version: str
    description: str
    routing_config: RoutingConfig
    revision_id: str
    def __init__(self, function_name: _Optional[str] = ..., name: _Optional[str] = ..., function_version: _Optional[str] = ..., description: _Optional[str] = ..., routing_config: _Optional[_Union[RoutingConfig, _Mapping]] = ..., revision_id: _Optional[str] = ...) -> None: ...

class DeleteAliasRequest(_message.Message):
    __slots__ = ("function_name", "name")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    name: str
    def __init__(self, function_name: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class DeleteAliasResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAliasesRequest(_message.Message):
    __slots__ = ("function_name", "function_version")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_VERSION_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    function_version: str
    def __init__(self, function_name: _Optional[str] = ..., function_version: _Optional[str] = ...) -> None: ...

class ListAliasesResponse(_message.Message):
    __slots__ = ("aliases",)
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    aliases: _containers.RepeatedCompositeFieldContainer[AliasConfiguration]
    def __init__(self, aliases: _Optional[_Iterable[_Union[AliasConfiguration, _Mapping]]] = ...) -> None: ...

class SetMinWarmRequest(_message.Message):
    __slots__ = ("function_name", "qualifier", "min_warm")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    QUALIFIER_FIELD_NUMBER: _ClassVar[int]
    MIN_WARM_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    qualifier: str
    min_warm: int
    def __init__(self, function_name: _Optional[str] = ..., qualifier: _Optional[str] = ..., min_warm: _Optional[int] = ...) -> None: ...

class SetMinWarmResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Cors(_message.Message):
    __slots__ = ("allow_origins", "allow_methods", "allow_headers", "expose_headers", "allow_credentials", "max_age")
    ALLOW_ORIGINS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_METHODS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_HEADERS_FIELD_NUMBER: _ClassVar[int]
    EXPOSE_HEADERS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    MAX_AGE_FIELD_NUMBER: _ClassVar[int]
    allow_origins: _containers.RepeatedScalarFieldContainer[str]
    allow_methods: _containers.RepeatedScalarFieldContainer[str]
    allow_headers: _containers.RepeatedScalarFieldContainer[str]
    expose_headers: _containers.RepeatedScalarFieldContainer[str]
    allow_credentials: bool
    max_age: int
    def __init__(self, allow_origins: _Optional[_Iterable[str]] = ..., allow_methods: _Optional[_Iterable[str]] = ..., allow_headers: _Optional[_Iterable[str]] = ..., expose_headers: _Optional[_Iterable[str]] = ..., allow_credentials: _Optional[bool] = ..., max_age: _Optional[int] = ...) -> None: ...

class FunctionUrlConfig(_message.Message):
    __slots__ = ("function_name", "qualifier", "function_url", "function_arn", "auth_type", "cors", "invoke_mode", "payload_format", "creation_time", "last_modified_time", "url_id")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    QUALIFIER_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_URL_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_ARN_FIELD_NUMBER: _ClassVar[int]
    AUTH_TYPE_FIELD_NUMBER: _ClassVar[int]
    CORS_FIELD_NUMBER: _ClassVar[int]
    INVOKE_MODE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FORMAT_FIELD_NUMBER: _ClassVar[int]
    CREATION_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_MODIFIED_TIME_FIELD_NUMBER: _ClassVar[int]
    URL_ID_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    qualifier: str
    function_url: str
    function_arn: str
    auth_type: str
    cors: Cors
    invoke_mode: str
    payload_format: str
    creation_time: str
    last_modified_time: str
    url_id: str
    def __init__(self, function_name: _Optional[str] = ..., qualifier: _Optional[str] = ..., function_url: _Optional[str] = ..., function_arn: _Optional[str] = ..., auth_type: _Optional[str] = ..., cors: _Optional[_Union[Cors, _Mapping]] = ..., invoke_mode: _Optional[str] = ..., payload_format: _Optional[str] = ..., creation_time: _Optional[str] = ..., last_modified_time: _Optional[str] = ..., url_id: _Optional[str] = ...) -> None: ...

class CreateFunctionUrlConfigRequest(_message.Message):
    __slots__ = ("function_name", "qualifier", "auth_type", "cors", "invoke_mode", "payload_format")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    QUALIFIER_FIELD_NUMBER: _ClassVar[int]
    AUTH_TYPE_FIELD_NUMBER: _ClassVar[int]
    CORS_FIELD_NUMBER: _ClassVar[int]
    INVOKE_MODE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FORMAT_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    qualifier: str
    auth_type: str
    cors: Cors
    invoke_mode: str
    payload_format: str
    def __init__(self, function_name: _Optional[str] = ..., qualifier: _Optional[str] = ..., auth_type: _Optional[str] = ..., cors: _Optional[_Union[Cors, _Mapping]] = ..., invoke_mode: _Optional[str] = ..., payload_format: _Optional[str] = ...) -> None: ...

class GetFunctionUrlConfigRequest(_message.Message):
    __slots__ = ("function_name", "qualifier")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    QUALIFIER_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    qualifier: str
    def __init__(self, function_name: _Optional[str] = ..., qualifier: _Optional[str] = ...) -> None: ...

class UpdateFunctionUrlConfigRequest(_message.Message):
    __slots__ = ("function_name", "qualifier", "auth_type", "cors", "invoke_mode", "payload_format")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    QUALIFIER_FIELD_NUMBER: _ClassVar[int]
    AUTH_TYPE_FIELD_NUMBER: _ClassVar[int]
    CORS_FIELD_NUMBER: _ClassVar[int]
    INVOKE_MODE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FORMAT_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    qualifier: str
    auth_type: str
    cors: Cors
    invoke_mode: str
    payload_format: str
    def __init__(self, function_name: _Optional[str] = ..., qualifier: _Optional[str] = ..., auth_type: _Optional[str] = ..., cors: _Optional[_Union[Cors, _Mapping]] = ..., invoke_mode: _Optional[str] = ..., payload_format: _Optional[str] = ...) -> None: ...

class DeleteFunctionUrlConfigRequest(_message.Message):
    __slots__ = ("function_name", "qualifier")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    QUALIFIER_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    qualifier: str
    def __init__(self, function_name: _Optional[str] = ..., qualifier: _Optional[str] = ...) -> None: ...

class DeleteFunctionUrlConfigResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListFunctionUrlConfigsRequest(_message.Message):
    __slots__ = ("function_name",)
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    def __init__(self, function_name: _Optional[str] = ...) -> None: ...

class ListFunctionUrlConfigsResponse(_message.Message):
    __slots__ = ("function_url_configs",)
    FUNCTION_URL_CONFIGS_FIELD_NUMBER: _ClassVar[int]
    function_url_configs: _containers.RepeatedCompositeFieldContainer[FunctionUrlConfig]
    def __init__(self, function_url_configs: _Optional[_Iterable[_Union[FunctionUrlConfig, _Mapping]]] = ...) -> None: ...

class InvokeRequest(_message.Message):
    __slots__ = ("function_name", "payload", "invocation_type", "log_type", "qualifier", "client_context")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    INVOCATION_TYPE_FIELD_NUMBER: _ClassVar[int]
    LOG_TYPE_FIELD_NUMBER: _ClassVar[int]
    QUALIFIER_FIELD_NUMBER: _ClassVar[int]
    CLIENT_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    payload: bytes
    invocation_type: InvocationType
    log_type: LogType
    qualifier: str
    client_context: bytes
    def __init__(self, function_name: _Optional[str] = ..., payload: _Optional[bytes] = ..., invocation_type: _Optional[_Union[InvocationType, str]] = ..., log_type: _Optional[_Union[LogType, str]] = ..., qualifier: _Optional[str] = ..., client_context: _Optional[bytes] = ...) -> None: ...

class Report(_message.Message):
    __slots__ = ("duration_ms", "billed_duration_ms", "memory_size_mb", "max_memory_used_mb", "init_duration_ms")
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    BILLED_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_SIZE_MB_FIELD_NUMBER: _ClassVar[int]
    MAX_MEMORY_USED_MB_FIELD_NUMBER: _ClassVar[int]
    INIT_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    duration_ms: float
    billed_duration_ms: int
    memory_size_mb: int
    max_memory_used_mb: int
    init_duration_ms: float
    def __init__(self, duration_ms: _Optional[float] = ..., billed_duration_ms: _Optional[int] = ..., memory_size_mb: _Optional[int] = ..., max_memory_used_mb: _Optional[int] = ..., init_duration_ms: _Optional[float] = ...) -> None: ...

class InvokeResponse(_message.Message):
    __slots__ = ("status_code", "payload", "function_error", "log_result", "request_id", "executed_version", "report")
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_ERROR_FIELD_NUMBER: _ClassVar[int]
    LOG_RESULT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EXECUTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    status_code: int
    payload: bytes
    function_error: str
    log_result: str
    request_id: str
    executed_version: str
    report: Report
    def __init__(self, status_code: _Optional[int] = ..., payload: _Optional[bytes] = ..., function_error: _Optional[str] = ..., log_result: _Optional[str] = ..., request_id: _Optional[str] = ..., executed_version: _Optional[str] = ..., report: _Optional[_Union[Report, _Mapping]] = ...) -> None: ...

class StreamInvocation(_message.Message):
    __slots__ = ("id", "request")
    ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    id: int
    request: InvokeRequest
    def __init__(self, id: _Optional[int] = ..., request: _Optional[_Union[InvokeRequest, _Mapping]] = ...) -> None: ...

class InvokeStreamRequest(_message.Message):
    __slots__ = ("invocations",)
    INVOCATIONS_FIELD_NUMBER: _ClassVar[int]
    invocations: _containers.RepeatedCompositeFieldContainer[StreamInvocation]
    def __init__(self, invocations: _Optional[_Iterable[_Union[StreamInvocation, _Mapping]]] = ...) -> None: ...

class InvokeError(_message.Message):
    __slots__ = ("code", "error_type", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    error_type: str
    message: str
    def __init__(self, code: _Optional[int] = ..., error_type: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class StreamResult(_message.Message):
    __slots__ = ("id", "response", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: int
    response: InvokeResponse
    error: InvokeError
    def __init__(self, id: _Optional[int] = ..., response: _Optional[_Union[InvokeResponse, _Mapping]] = ..., error: _Optional[_Union[InvokeError, _Mapping]] = ...) -> None: ...

class InvokeStreamResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[StreamResult]
    def __init__(self, results: _Optional[_Iterable[_Union[StreamResult, _Mapping]]] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FunctionStats(_message.Message):
    __slots__ = ("function_name", "workers", "invocations", "errors", "throttles", "cold_starts", "timeouts", "queued")
    class WorkersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    INVOCATIONS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    THROTTLES_FIELD_NUMBER: _ClassVar[int]
    COLD_STARTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUTS_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    workers: _containers.ScalarMap[str, int]
    invocations: int
    errors: int
    throttles: int
    cold_starts: int
    timeouts: int
    queued: int
    def __init__(self, function_name: _Optional[str] = ..., workers: _Optional[_Mapping[str, int]] = ..., invocations: _Optional[int] = ..., errors: _Optional[int] = ..., throttles: _Optional[int] = ..., cold_starts: _Optional[int] = ..., timeouts: _Optional[int] = ..., queued: _Optional[int] = ...) -> None: ...

class Stats(_message.Message):
    __slots__ = ("functions", "uptime_s", "memory_backend", "async_queues", "event_source_mappings", "zygotes", "stem_cells")
    FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BACKEND_FIELD_NUMBER: _ClassVar[int]
    ASYNC_QUEUES_FIELD_NUMBER: _ClassVar[int]
    EVENT_SOURCE_MAPPINGS_FIELD_NUMBER: _ClassVar[int]
    ZYGOTES_FIELD_NUMBER: _ClassVar[int]
    STEM_CELLS_FIELD_NUMBER: _ClassVar[int]
    functions: _containers.RepeatedCompositeFieldContainer[FunctionStats]
    uptime_s: int
    memory_backend: str
    async_queues: _containers.RepeatedCompositeFieldContainer[AsyncQueueStats]
    event_source_mappings: _containers.RepeatedCompositeFieldContainer[EventSourceMappingStats]
    zygotes: _containers.RepeatedCompositeFieldContainer[ZygoteStats]
    stem_cells: _containers.RepeatedCompositeFieldContainer[StemCellStats]
    def __init__(self, functions: _Optional[_Iterable[_Union[FunctionStats, _Mapping]]] = ..., uptime_s: _Optional[int] = ..., memory_backend: _Optional[str] = ..., async_queues: _Optional[_Iterable[_Union[AsyncQueueStats, _Mapping]]] = ..., event_source_mappings: _Optional[_Iterable[_Union[EventSourceMappingStats, _Mapping]]] = ..., zygotes: _Optional[_Iterable[_Union[ZygoteStats, _Mapping]]] = ..., stem_cells: _Optional[_Iterable[_Union[StemCellStats, _Mapping]]] = ...) -> None: ...

class StemCellStats(_message.Message):
    __slots__ = ("runtime", "memory_mb", "startup_env", "ready", "starting", "taken", "failures", "given_up", "memory_uss_bytes")
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    STARTUP_ENV_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    STARTING_FIELD_NUMBER: _ClassVar[int]
    TAKEN_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    GIVEN_UP_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USS_BYTES_FIELD_NUMBER: _ClassVar[int]
    runtime: str
    memory_mb: int
    startup_env: _containers.RepeatedScalarFieldContainer[str]
    ready: int
    starting: int
    taken: int
    failures: int
    given_up: bool
    memory_uss_bytes: int
    def __init__(self, runtime: _Optional[str] = ..., memory_mb: _Optional[int] = ..., startup_env: _Optional[_Iterable[str]] = ..., ready: _Optional[int] = ..., starting: _Optional[int] = ..., taken: _Optional[int] = ..., failures: _Optional[int] = ..., given_up: _Optional[bool] = ..., memory_uss_bytes: _Optional[int] = ...) -> None: ...

class ZygoteStats(_message.Message):
    __slots__ = ("runtime", "command", "pid", "forks", "failures", "restarts", "memory_uss_bytes", "workers", "workers_memory_uss_bytes")
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    FORKS_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USS_BYTES_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_MEMORY_USS_BYTES_FIELD_NUMBER: _ClassVar[int]
    runtime: str
    command: str
    pid: int
    forks: int
    failures: int
    restarts: int
    memory_uss_bytes: int
    workers: int
    workers_memory_uss_bytes: int
    def __init__(self, runtime: _Optional[str] = ..., command: _Optional[str] = ..., pid: _Optional[int] = ..., forks: _Optional[int] = ..., failures: _Optional[int] = ..., restarts: _Optional[int] = ..., memory_uss_bytes: _Optional[int] = ..., workers: _Optional[int] = ..., workers_memory_uss_bytes: _Optional[int] = ...) -> None: ...

class EventSourceMappingStats(_message.Message):
    __slots__ = ("uuid", "function_name", "records", "failed_records", "exhausted_records", "sent_to_destination", "batches", "concurrent_batches", "backlog")
    UUID_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    FAILED_RECORDS_FIELD_NUMBER: _ClassVar[int]
    EXHAUSTED_RECORDS_FIELD_NUMBER: _ClassVar[int]
    SENT_TO_DESTINATION_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    CONCURRENT_BATCHES_FIELD_NUMBER: _ClassVar[int]
    BACKLOG_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    function_name: str
    records: int
    failed_records: int
    exhausted_records: int
    sent_to_destination: int
    batches: int
    concurrent_batches: int
    backlog: int
    def __init__(self, uuid: _Optional[str] = ..., function_name: _Optional[str] = ..., records: _Optional[int] = ..., failed_records: _Optional[int] = ..., exhausted_records: _Optional[int] = ..., sent_to_destination: _Optional[int] = ..., batches: _Optional[int] = ..., concurrent_batches: _Optional[int] = ..., backlog: _Optional[int] = ...) -> None: ...

class GetUsageRequest(_message.Message):
    __slots__ = ("since_unix_s",)
    SINCE_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    since_unix_s: int
    def __init__(self, since_unix_s: _Optional[int] = ...) -> None: ...

class FunctionUsage(_message.Message):
    __slots__ = ("function_name", "requests", "billed_duration_ms", "gb_seconds", "cost_usd")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    BILLED_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    GB_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    requests: int
    billed_duration_ms: int
    gb_seconds: float
    cost_usd: float
    def __init__(self, function_name: _Optional[str] = ..., requests: _Optional[int] = ..., billed_duration_ms: _Optional[int] = ..., gb_seconds: _Optional[float] = ..., cost_usd: _Optional[float] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("functions", "requests", "gb_seconds", "cost_usd", "cost_usd_before_free_tier", "since_unix_s", "billing_granularity_ms", "price_per_million_requests", "price_per_gb_second")
    FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    GB_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    COST_USD_BEFORE_FREE_TIER_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    BILLING_GRANULARITY_MS_FIELD_NUMBER: _ClassVar[int]
    PRICE_PER_MILLION_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    PRICE_PER_GB_SECOND_FIELD_NUMBER: _ClassVar[int]
    functions: _containers.RepeatedCompositeFieldContainer[FunctionUsage]
    requests: int
    gb_seconds: float
    cost_usd: float
    cost_usd_before_free_tier: float
    since_unix_s: int
    billing_granularity_ms: int
    price_per_million_requests: float
    price_per_gb_second: float
    def __init__(self, functions: _Optional[_Iterable[_Union[FunctionUsage, _Mapping]]] = ..., requests: _Optional[int] = ..., gb_seconds: _Optional[float] = ..., cost_usd: _Optional[float] = ..., cost_usd_before_free_tier: _Optional[float] = ..., since_unix_s: _Optional[int] = ..., billing_granularity_ms: _Optional[int] = ..., price_per_million_requests: _Optional[float] = ..., price_per_gb_second: _Optional[float] = ...) -> None: ...

class LayerVersion(_message.Message):
    __slots__ = ("layer_name", "version", "layer_arn", "layer_version_arn", "description", "code_sha256", "code_size", "created_date", "compatible_runtimes", "compatible_architectures", "license_info")
    LAYER_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LAYER_ARN_FIELD_NUMBER: _ClassVar[int]
    LAYER_VERSION_ARN_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CODE_SHA256_FIELD_NUMBER: _ClassVar[int]
    CODE_SIZE_FIELD_NUMBER: _ClassVar[int]
    CREATED_DATE_FIELD_NUMBER: _ClassVar[int]
    COMPATIBLE_RUNTIMES_FIELD_NUMBER: _ClassVar[int]
    COMPATIBLE_ARCHITECTURES_FIELD_NUMBER: _ClassVar[int]
    LICENSE_INFO_FIELD_NUMBER: _ClassVar[int]
    layer_name: str
    version: int
    layer_arn: str
    layer_version_arn: str
    description: str
    code_sha256: str
    code_size: int
    created_date: str
    compatible_runtimes: _containers.RepeatedScalarFieldContainer[str]
    compatible_architectures: _containers.RepeatedScalarFieldContainer[str]
    license_info: str
    def __init__(self, layer_name: _Optional[str] = ..., version: _Optional[int] = ..., layer_arn: _Optional[str] = ..., layer_version_arn: _Optional[str] = ..., description: _Optional[str] = ..., code_sha256: _Optional[str] = ..., code_size: _Optional[int] = ..., created_date: _Optional[str] = ..., compatible_runtimes: _Optional[_Iterable[str]] = ..., compatible_architectures: _Optional[_Iterable[str]] = ..., license_info: _Optional[str] = ...) -> None: ...

class PublishLayerVersionRequest(_message.Message):
    __slots__ = ("layer_name", "zip_file", "description", "compatible_runtimes", "compatible_architectures", "license_info")
    LAYER_NAME_FIELD_NUMBER: _ClassVar[int]
    ZIP_FILE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    COMPATIBLE_RUNTIMES_FIELD_NUMBER: _ClassVar[int]
    COMPATIBLE_ARCHITECTURES_FIELD_NUMBER: _ClassVar[int]
    LICENSE_INFO_FIELD_NUMBER: _ClassVar[int]
    layer_name: str
    zip_file: bytes
    description: str
    compatible_runtimes: _containers.RepeatedScalarFieldContainer[str]
    compatible_architectures: _containers.RepeatedScalarFieldContainer[str]
    license_info: str
    def __init__(self, layer_name: _Optional[str] = ..., zip_file: _Optional[bytes] = ..., description: _Optional[str] = ..., compatible_runtimes: _Optional[_Iterable[str]] = ..., compatible_architectures: _Optional[_Iterable[str]] = ..., license_info: _Optional[str] = ...) -> None: ...

class ListLayerVersionsRequest(_message.Message):
    __slots__ = ("layer_name", "compatible_runtime", "compatible_architecture")
    LAYER_NAME_FIELD_NUMBER: _ClassVar[int]
    COMPATIBLE_RUNTIME_FIELD_NUMBER: _ClassVar[int]
    COMPATIBLE_ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    layer_name: str
    compatible_runtime: str
    compatible_architecture: str
    def __init__(self, layer_name: _Optional[str] = ..., compatible_runtime: _Optional[str] = ..., compatible_architecture: _Optional[str] = ...) -> None: ...

class ListLayerVersionsResponse(_message.Message):
    __slots__ = ("layer_versions",)
    LAYER_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    layer_versions: _containers.RepeatedCompositeFieldContainer[LayerVersion]
    def __init__(self, layer_versions: _Optional[_Iterable[_Union[LayerVersion, _Mapping]]] = ...) -> None: ...

class GetLayerVersionRequest(_message.Message):
    __slots__ = ("layer_name", "version", "arn")
    LAYER_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ARN_FIELD_NUMBER: _ClassVar[int]
    layer_name: str
    version: int
    arn: str
    def __init__(self, layer_name: _Optional[str] = ..., version: _Optional[int] = ..., arn: _Optional[str] = ...) -> None: ...

class DeleteLayerVersionRequest(_message.Message):
    __slots__ = ("layer_name", "version")
    LAYER_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    layer_name: str
    version: int
    def __init__(self, layer_name: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class DeleteLayerVersionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListLayersRequest(_message.Message):
    __slots__ = ("compatible_runtime", "compatible_architecture")
    COMPATIBLE_RUNTIME_FIELD_NUMBER: _ClassVar[int]
    COMPATIBLE_ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    compatible_runtime: str
    compatible_architecture: str
    def __init__(self, compatible_runtime: _Optional[str] = ..., compatible_architecture: _Optional[str] = ...) -> None: ...

class ListLayersResponse(_message.Message):
    __slots__ = ("layers",)
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    layers: _containers.RepeatedCompositeFieldContainer[LayerVersion]
    def __init__(self, layers: _Optional[_Iterable[_Union[LayerVersion, _Mapping]]] = ...) -> None: ...

class DestinationConfig(_message.Message):
    __slots__ = ("on_success", "on_failure")
    ON_SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ON_FAILURE_FIELD_NUMBER: _ClassVar[int]
    on_success: str
    on_failure: str
    def __init__(self, on_success: _Optional[str] = ..., on_failure: _Optional[str] = ...) -> None: ...

class FunctionEventInvokeConfig(_message.Message):
    __slots__ = ("function_name", "qualifier", "function_arn", "maximum_retry_attempts", "maximum_event_age_s", "destination_config", "last_modified")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    QUALIFIER_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_ARN_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_RETRY_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_EVENT_AGE_S_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_CONFIG_FIELD_NUMBER: _ClassVar[int]
    LAST_MODIFIED_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    qualifier: str
    function_arn: str
    maximum_retry_attempts: int
    maximum_event_age_s: int
    destination_config: DestinationConfig
    last_modified: float
    def __init__(self, function_name: _Optional[str] = ..., qualifier: _Optional[str] = ..., function_arn: _Optional[str] = ..., maximum_retry_attempts: _Optional[int] = ..., maximum_event_age_s: _Optional[int] = ..., destination_config: _Optional[_Union[DestinationConfig, _Mapping]] = ..., last_modified: _Optional[float] = ...) -> None: ...

class PutFunctionEventInvokeConfigRequest(_message.Message):
    __slots__ = ("function_name", "qualifier", "maximum_retry_attempts", "maximum_event_age_s", "on_success", "on_failure")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    QUALIFIER_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_RETRY_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_EVENT_AGE_S_FIELD_NUMBER: _ClassVar[int]
    ON_SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ON_FAILURE_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    qualifier: str
    maximum_retry_attempts: int
    maximum_event_age_s: int
    on_success: str
    on_failure: str
    def __init__(self, function_name: _Optional[str] = ..., qualifier: _Optional[str] = ..., maximum_retry_attempts: _Optional[int] = ..., maximum_event_age_s: _Optional[int] = ..., on_success: _Optional[str] = ..., on_failure: _Optional[str] = ...) -> None: ...

class UpdateFunctionEventInvokeConfigRequest(_message.Message):
    __slots__ = ("function_name", "qualifier", "maximum_retry_attempts", "maximum_event_age_s", "on_success", "on_failure")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    QUALIFIER_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_RETRY_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_EVENT_AGE_S_FIELD_NUMBER: _ClassVar[int]
    ON_SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ON_FAILURE_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    qualifier: str
    maximum_retry_attempts: int
    maximum_event_age_s: int
    on_success: str
    on_failure: str
    def __init__(self, function_name: _Optional[str] = ..., qualifier: _Optional[str] = ..., maximum_retry_attempts: _Optional[int] = ..., maximum_event_age_s: _Optional[int] = ..., on_success: _Optional[str] = ..., on_failure: _Optional[str] = ...) -> None: ...

class GetFunctionEventInvokeConfigRequest(_message.Message):
    __slots__ = ("function_name", "qualifier")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    QUALIFIER_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    qualifier: str
    def __init__(self, function_name: _Optional[str] = ..., qualifier: _Optional[str] = ...) -> None: ...

class DeleteFunctionEventInvokeConfigRequest(_message.Message):
    __slots__ = ("function_name", "qualifier")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    QUALIFIER_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    qualifier: str
    def __init__(self, function_name: _Optional[str] = ..., qualifier: _Optional[str] = ...) -> None: ...

class DeleteFunctionEventInvokeConfigResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListFunctionEventInvokeConfigsRequest(_message.Message):
    __slots__ = ("function_name",)
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    def __init__(self, function_name: _Optional[str] = ...) -> None: ...

class ListFunctionEventInvokeConfigsResponse(_message.Message):
    __slots__ = ("function_event_invoke_configs",)
    FUNCTION_EVENT_INVOKE_CONFIGS_FIELD_NUMBER: _ClassVar[int]
    function_event_invoke_configs: _containers.RepeatedCompositeFieldContainer[FunctionEventInvokeConfig]
    def __init__(self, function_event_invoke_configs: _Optional[_Iterable[_Union[FunctionEventInvokeConfig, _Mapping]]] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("request_id", "function_name", "qualifier", "payload", "attempts", "last_error", "received_at", "dead_lettered_at", "reason")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    QUALIFIER_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    function_name: str
    qualifier: str
    payload: bytes
    attempts: int
    last_error: str
    received_at: float
    dead_lettered_at: float
    reason: str
    def __init__(self, request_id: _Optional[str] = ..., function_name: _Optional[str] = ..., qualifier: _Optional[str] = ..., payload: _Optional[bytes] = ..., attempts: _Optional[int] = ..., last_error: _Optional[str] = ..., received_at: _Optional[float] = ..., dead_lettered_at: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class ListDeadLettersRequest(_message.Message):
    __slots__ = ("function_name",)
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    def __init__(self, function_name: _Optional[str] = ...) -> None: ...

class ListDeadLettersResponse(_message.Message):
    __slots__ = ("dead_letters",)
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    dead_letters: _containers.RepeatedCompositeFieldContainer[DeadLetter]
    def __init__(self, dead_letters: _Optional[_Iterable[_Union[DeadLetter, _Mapping]]] = ...) -> None: ...

class GetDeadLetterRequest(_message.Message):
    __slots__ = ("function_name", "request_id")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    request_id: str
    def __init__(self, function_name: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ReplayDeadLettersRequest(_message.Message):
    __slots__ = ("function_name", "request_ids", "all")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_IDS_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    request_ids: _containers.RepeatedScalarFieldContainer[str]
    all: bool
    def __init__(self, function_name: _Optional[str] = ..., request_ids: _Optional[_Iterable[str]] = ..., all: _Optional[bool] = ...) -> None: ...

class ReplayDeadLettersResponse(_message.Message):
    __slots__ = ("replayed",)
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    replayed: int
    def __init__(self, replayed: _Optional[int] = ...) -> None: ...

class PurgeDeadLettersRequest(_message.Message):
    __slots__ = ("function_name", "request_ids", "all")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_IDS_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    request_ids: _containers.RepeatedScalarFieldContainer[str]
    all: bool
    def __init__(self, function_name: _Optional[str] = ..., request_ids: _Optional[_Iterable[str]] = ..., all: _Optional[bool] = ...) -> None: ...

class PurgeDeadLettersResponse(_message.Message):
    __slots__ = ("purged",)
    PURGED_FIELD_NUMBER: _ClassVar[int]
    purged: int
    def __init__(self, purged: _Optional[int] = ...) -> None: ...

class AsyncQueueStats(_message.Message):
    __slots__ = ("function_name", "depth", "oldest_age_s", "received", "retries", "dropped_age", "dead_lettered", "delivered_success", "delivered_failure", "throttled")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    OLDEST_AGE_S_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    DROPPED_AGE_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERED_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_SUCCESS_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FAILURE_FIELD_NUMBER: _ClassVar[int]
    THROTTLED_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    depth: int
    oldest_age_s: float
    received: int
    retries: int
    dropped_age: int
    dead_lettered: int
    delivered_success: int
    delivered_failure: int
    throttled: int
    def __init__(self, function_name: _Optional[str] = ..., depth: _Optional[int] = ..., oldest_age_s: _Optional[float] = ..., received: _Optional[int] = ..., retries: _Optional[int] = ..., dropped_age: _Optional[int] = ..., dead_lettered: _Optional[int] = ..., delivered_success: _Optional[int] = ..., delivered_failure: _Optional[int] = ..., throttled: _Optional[int] = ...) -> None: ...

class DestinationQueue(_message.Message):
    __slots__ = ("name", "messages")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    name: str
    messages: int
    def __init__(self, name: _Optional[str] = ..., messages: _Optional[int] = ...) -> None: ...

class ListDestinationQueuesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDestinationQueuesResponse(_message.Message):
    __slots__ = ("queues",)
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    queues: _containers.RepeatedCompositeFieldContainer[DestinationQueue]
    def __init__(self, queues: _Optional[_Iterable[_Union[DestinationQueue, _Mapping]]] = ...) -> None: ...

class QueueMessage(_message.Message):
    __slots__ = ("queue", "message_id", "body", "sent_at")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    queue: str
    message_id: str
    body: bytes
    sent_at: float
    def __init__(self, queue: _Optional[str] = ..., message_id: _Optional[str] = ..., body: _Optional[bytes] = ..., sent_at: _Optional[float] = ...) -> None: ...

class ReceiveQueueMessagesRequest(_message.Message):
    __slots__ = ("queue", "limit")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    queue: str
    limit: int
    def __init__(self, queue: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ReceiveQueueMessagesResponse(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[QueueMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[QueueMessage, _Mapping]]] = ...) -> None: ...

class DeleteQueueMessagesRequest(_message.Message):
    __slots__ = ("queue", "message_ids", "all")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    queue: str
    message_ids: _containers.RepeatedScalarFieldContainer[str]
    all: bool
    def __init__(self, queue: _Optional[str] = ..., message_ids: _Optional[_Iterable[str]] = ..., all: _Optional[bool] = ...) -> None: ...

class DeleteQueueMessagesResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class EventSourceMapping(_message.Message):
    __slots__ = ("uuid", "function_name", "qualifier", "function_arn", "event_source_arn", "batch_size", "maximum_batching_window_s", "enabled", "report_batch_item_failures", "maximum_concurrency", "maximum_retry_attempts", "on_failure", "state", "last_processing_result", "last_modified")
    UUID_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    QUALIFIER_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_ARN_FIELD_NUMBER: _ClassVar[int]
    EVENT_SOURCE_ARN_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_BATCHING_WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    REPORT_BATCH_ITEM_FAILURES_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_RETRY_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ON_FAILURE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LAST_PROCESSING_RESULT_FIELD_NUMBER: _ClassVar[int]
    LAST_MODIFIED_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    function_name: str
    qualifier: str
    function_arn: str
    event_source_arn: str
    batch_size: int
    maximum_batching_window_s: int
    enabled: bool
    report_batch_item_failures: bool
    maximum_concurrency: int
    maximum_retry_attempts: int
    on_failure: str
    state: str
    last_processing_result: str
    last_modified: float
    def __init__(self, uuid: _Optional[str] = ..., function_name: _Optional[str] = ..., qualifier: _Optional[str] = ..., function_arn: _Optional[str] = ..., event_source_arn: _Optional[str] = ..., batch_size: _Optional[int] = ..., maximum_batching_window_s: _Optional[int] = ..., enabled: _Optional[bool] = ..., report_batch_item_failures: _Optional[bool] = ..., maximum_concurrency: _Optional[int] = ..., maximum_retry_attempts: _Optional[int] = ..., on_failure: _Optional[str] = ..., state: _Optional[str] = ..., last_processing_result: _Optional[str] = ..., last_modified: _Optional[float] = ...) -> None: ...

class CreateEventSourceMappingRequest(_message.Message):
    __slots__ = ("function_name", "qualifier", "event_source_arn", "batch_size", "maximum_batching_window_s", "enabled", "report_batch_item_failures", "maximum_concurrency", "maximum_retry_attempts", "on_failure")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    QUALIFIER_FIELD_NUMBER: _ClassVar[int]
    EVENT_SOURCE_ARN_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_BATCHING_WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    REPORT_BATCH_ITEM_FAILURES_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_RETRY_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ON_FAILURE_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    qualifier: str
    event_source_arn: str
    batch_size: int
    maximum_batching_window_s: int
    enabled: bool
    report_batch_item_failures: bool
    maximum_concurrency: int
    maximum_retry_attempts: int
    on_failure: str
    def __init__(self, function_name: _Optional[str] = ..., qualifier: _Optional[str] = ..., event_source_arn: _Optional[str] = ..., batch_size: _Optional[int] = ..., maximum_batching_window_s: _Optional[int] = ..., enabled: _Optional[bool] = ..., report_batch_item_failures: _Optional[bool] = ..., maximum_concurrency: _Optional[int] = ..., maximum_retry_attempts: _Optional[int] = ..., on_failure: _Optional[str] = ...) -> None: ...

class UpdateEventSourceMappingRequest(_message.Message):
    __slots__ = ("uuid", "batch_size", "maximum_batching_window_s", "enabled", "report_batch_item_failures", "maximum_concurrency", "maximum_retry_attempts", "on_failure")
    UUID_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_BATCHING_WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    REPORT_BATCH_ITEM_FAILURES_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_RETRY_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ON_FAILURE_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    batch_size: int
    maximum_batching_window_s: int
    enabled: bool
    report_batch_item_failures: bool
    maximum_concurrency: int
    maximum_retry_attempts: int
    on_failure: str
    def __init__(self, uuid: _Optional[str] = ..., batch_size: _Optional[int] = ..., maximum_batching_window_s: _Optional[int] = ..., enabled: _Optional[bool] = ..., report_batch_item_failures: _Optional[bool] = ..., maximum_concurrency: _Optional[int] = ..., maximum_retry_attempts: _Optional[int] = ..., on_failure: _Optional[str] = ...) -> None: ...

class GetEventSourceMappingRequest(_message.Message):
    __slots__ = ("uuid",)
    UUID_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    def __init__(self, uuid: _Optional[str] = ...) -> None: ...

class DeleteEventSourceMappingRequest(_message.Message):
    __slots__ = ("uuid",)
    UUID_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    def __init__(self, uuid: _Optional[str] = ...) -> None: ...

class ListEventSourceMappingsRequest(_message.Message):
    __slots__ = ("function_name", "event_source_arn")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    EVENT_SOURCE_ARN_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    event_source_arn: str
    def __init__(self, function_name: _Optional[str] = ..., event_source_arn: _Optional[str] = ...) -> None: ...

class ListEventSourceMappingsResponse(_message.Message):
    __slots__ = ("event_source_mappings",)
    EVENT_SOURCE_MAPPINGS_FIELD_NUMBER: _ClassVar[int]
    event_source_mappings: _containers.RepeatedCompositeFieldContainer[EventSourceMapping]
    def __init__(self, event_source_mappings: _Optional[_Iterable[_Union[EventSourceMapping, _Mapping]]] = ...) -> None: ...
