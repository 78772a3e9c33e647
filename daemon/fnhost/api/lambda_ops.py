"""Lambda's management operations over HTTP: functions, versions, aliases, concurrency, account.

Each reads its members (``lambda_shapes.Members``), calls the supervisor and answers Lambda's
shape; what the supervisor raises travels up to ``LambdaApi.handle``, which answers it.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import unquote

from ..control.config import FunctionConfig, Settings
from ..control.deploy import CodeSource
from ..control.registry import UNZIPPED_MAX, ZIP_MAX
from ..errors import InvalidParameter, PreconditionFailed
from ..execution.invocation import LATEST
from . import lambda_shapes as shapes
from .lambda_layers import function_layers
from .lambda_wire import Response, json_response

_MAX_ITEMS = 10000  # Lambda's MaxItems bound
_REVISION_MISMATCH = ("The Revision Id provided does not match the latest Revision Id. Call the "
                      "GetFunction/GetAlias API to retrieve the latest Revision Id")


def _ok(status: int, value: object) -> Response:
    return json_response(status, value, str(uuid.uuid4()))


def _unqualified(raw: str, what: str) -> str:
    name, qualifier = shapes.function_name(raw)
    if qualifier:
        raise InvalidParameter(f"{what} takes an unqualified function name, not {name}:{qualifier}")
    return name


def _max_items(request: Any) -> int | None:
    raw = request.param("MaxItems")
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= _MAX_ITEMS:
        raise InvalidParameter(f"Value '{raw}' at 'maxItems' failed to satisfy constraint: "
                               f"Member must be an integer from 1 to {_MAX_ITEMS}")
    return int(raw)


def _version_key(record: Any) -> str:
    """Sorts $LATEST first, then versions by number, as text (for pagination markers)."""
    version = getattr(record, "version", LATEST)
    return "" if version == LATEST else version.zfill(12)


def _weights(routing: dict[str, Any] | None) -> dict[str, float] | None:
    """RoutingConfig.AdditionalVersionWeights, checked for types; None when RoutingConfig is absent."""
    if routing is None:
        return None
    weights = routing.get("AdditionalVersionWeights") or {}
    if not isinstance(weights, dict) or not all(
            isinstance(w, int | float) and not isinstance(w, bool) for w in weights.values()):
        raise InvalidParameter("Value at 'routingConfig.additionalVersionWeights' failed to satisfy "
                               "constraint: Member must be a map of version to weight (0.0-1.0)")
    return {str(k): float(v) for k, v in weights.items()}


class Operations:
    def __init__(self, sup: Any, settings: Settings) -> None:
        self.sup = sup
        self.settings = settings

    def handlers(self) -> dict[str, Any]:
        """Every operation here, by Lambda's name."""
        names = ("CreateFunction", "ListFunctions", "GetFunction", "DeleteFunction", "GetFunctionConfiguration",
                 "UpdateFunctionConfiguration", "UpdateFunctionCode", "PublishVersion", "ListVersionsByFunction",
                 "CreateAlias", "ListAliases", "GetAlias", "UpdateAlias", "DeleteAlias", "PutFunctionConcurrency",
                 "DeleteFunctionConcurrency", "GetFunctionConcurrency", "GetAccountSettings")
        return {name: getattr(self, _snake(name)) for name in names}

    def _configuration(self, record: Any) -> dict[str, Any]:
        sizes = {}
        if record.config.layers:
            sizes = {v.arn: v.size for v in self.sup.layers.resolve(record.config.layers, kept=record.config.layers)}
        return shapes.function_configuration(record, self.settings, sizes)

    def _runtime(self, identifier: str) -> str:
        return shapes.lambda_runtime(identifier, {runtime.name for runtime in self.sup.runtimes})

    # --- functions ----------------------------------------------------------------------------

    async def create_function(self, request: Any, params: dict[str, str]) -> Response:
        m = shapes.Members(request.body)
        name = _unqualified(m.text("FunctionName", required=True) or "", "CreateFunction")
        if (m.text("PackageType") or "Zip") != "Zip":
            raise InvalidParameter("PackageType Image is not supported by fnhost: give the code as Code.ZipFile")
        self._check_architectures(m)
        identifier = m.text("Runtime", required=True) or ""
        code = m.obj("Code", required=True) or {}
        config = FunctionConfig(
            name=name, runtime=self._runtime(identifier), lambda_runtime=identifier,
            handler=m.text("Handler", required=True) or "",
            memory_mb=m.integer("MemorySize") or 128, timeout_s=m.integer("Timeout") or 3,
            environment=m.string_map("Environment", "Variables") or {},
            description=m.text("Description") or "",
            ephemeral_storage_mb=self._ephemeral(m) or 512,
            layers=function_layers(m) or [],
        )
        record = await self.sup.create_function(config, CodeSource(zip_file=self._zip(m, code)))
        if m.flag("Publish"):
            record = await self.sup.publish_version(name)
        return _ok(201, self._configuration(record))

    @staticmethod
    def _zip(m: shapes.Members, code: dict[str, Any]) -> bytes:
        if any(code.get(k) for k in ("S3Bucket", "S3Key", "ImageUri")):
            raise InvalidParameter("fnhost takes code as ZipFile (the zip's bytes) only: no S3 objects, no images")
        data = m.zip_file("ZipFile", within=code)
        if not data:
            raise InvalidParameter("1 validation error detected: Value null at 'code.zipFile' failed to satisfy "
                                   "constraint: Member must not be null")
        return data

    @staticmethod
    def _check_architectures(m: shapes.Members) -> None:
        architectures = m.values.get("Architectures")
        if architectures is not None and architectures != [shapes.ARCHITECTURE]:
            raise InvalidParameter(f"Architectures {architectures}: this host runs [\"{shapes.ARCHITECTURE}\"]")

    @staticmethod
    def _ephemeral(m: shapes.Members) -> int | None:
        storage = m.obj("EphemeralStorage")
        if storage is None:
            return None
        size = storage.get("Size")
        if not isinstance(size, int) or isinstance(size, bool):
            raise InvalidParameter("Value at 'ephemeralStorage.size' failed to satisfy constraint: "
                                   "Member must be an integer (MB)")
        return size

    async def list_functions(self, request: Any, params: dict[str, str]) -> Response:
        every = request.param("FunctionVersion")
        if every not in ("", "ALL"):
            raise InvalidParameter(f"Value '{every}' at 'functionVersion' failed to satisfy constraint: use ALL")
        records = self.sup.list_functions()
        if every:
            records = [version for r in records for version in self.sup.list_versions(r.config.name)]

        def key(r: Any) -> str:
            return f"{r.config.name}\0{_version_key(r)}"

        chunk, marker = shapes.page(sorted(records, key=key), request.param("Marker"), _max_items(request), key)
        out: dict[str, Any] = {"Functions": [self._configuration(r) for r in chunk]}
        if marker:
            out["NextMarker"] = marker
        return _ok(200, out)

    async def get_function(self, request: Any, params: dict[str, str]) -> Response:
        name, qualifier = shapes.function_name(params["fn"], request.param("Qualifier"))
        record = self.sup.get_function(name, qualifier)
        out: dict[str, Any] = {
            "Configuration": self._configuration(record),
            # Lambda hands out a presigned S3 URL; fnhost's code is a directory on the daemon's host.
            "Code": {"RepositoryType": "S3", "Location": record.code.location.as_uri()},
        }
        reserved = self.sup.get_function(name).config.max_concurrency
        if reserved:
            out["Concurrency"] = {"ReservedConcurrentExecutions": reserved}
        return _ok(200, out)

    async def get_function_configuration(self, request: Any, params: dict[str, str]) -> Response:
        name, qualifier = shapes.function_name(params["fn"], request.param("Qualifier"))
        return _ok(200, self._configuration(self.sup.get_function(name, qualifier)))

    async def delete_function(self, request: Any, params: dict[str, str]) -> Response:
        name, qualifier = shapes.function_name(params["fn"], request.param("Qualifier"))
        await self.sup.delete_function(name, qualifier)
        return _ok(204, None)

    def _check_revision(self, name: str, m: shapes.Members) -> None:
        revision = m.text("RevisionId")
        if revision and revision != self.sup.get_function(name).revision_id:
            raise PreconditionFailed(_REVISION_MISMATCH)

    async def update_function_code(self, request: Any, params: dict[str, str]) -> Response:
        name = _unqualified(params["fn"], "UpdateFunctionCode")
        m = shapes.Members(request.body)
        self._check_architectures(m)
        self._check_revision(name, m)
        data = self._zip(m, m.values)
        if m.flag("DryRun"):
            return _ok(200, self._configuration(self.sup.get_function(name)))
        record = await self.sup.update_code(name, CodeSource(zip_file=data))
        if m.flag("Publish"):
            record = await self.sup.publish_version(name)
        return _ok(200, self._configuration(record))

    async def update_function_configuration(self, request: Any, params: dict[str, str]) -> Response:
        name = _unqualified(params["fn"], "UpdateFunctionConfiguration")
        m = shapes.Members(request.body)
        self._check_revision(name, m)
        changes: dict[str, Any] = {}
        for member, field, read in (("Handler", "handler", m.text), ("Description", "description", m.text),
                                    ("Timeout", "timeout_s", m.integer), ("MemorySize", "memory_mb", m.integer)):
            value = read(member)
            if value is not None:
                changes[field] = value
        environment = m.string_map("Environment", "Variables")
        if environment is not None:
            changes["environment"] = environment
        storage = self._ephemeral(m)
        if storage is not None:
            changes["ephemeral_storage_mb"] = storage
        layers = function_layers(m)
        if layers is not None:
            changes["layers"] = layers
        identifier = m.text("Runtime")
        if identifier is not None:
            changes.update(runtime=self._runtime(identifier), lambda_runtime=identifier)
        record = await self.sup.update_config(name, **changes) if changes else self.sup.get_function(name)
        return _ok(200, self._configuration(record))

    # --- versions -----------------------------------------------------------------------------

    async def publish_version(self, request: Any, params: dict[str, str]) -> Response:
        name = _unqualified(params["fn"], "PublishVersion")
        m = shapes.Members(request.body)
        record = await self.sup.publish_version(
            name, code_sha256=m.text("CodeSha256") or "", revision_id=m.text("RevisionId") or "",
            description=m.text("Description") or "")
        return _ok(201, self._configuration(record))

    async def list_versions_by_function(self, request: Any, params: dict[str, str]) -> Response:
        name = _unqualified(params["fn"], "ListVersionsByFunction")
        records = self.sup.list_versions(name)
        chunk, marker = shapes.page(records, request.param("Marker"), _max_items(request), _version_key)
        out: dict[str, Any] = {"Versions": [self._configuration(r) for r in chunk]}
        if marker:
            out["NextMarker"] = marker
        return _ok(200, out)

    # --- aliases ------------------------------------------------------------------------------

    def _alias(self, alias: Any) -> dict[str, Any]:
        return shapes.alias_configuration(alias, self.settings)

    async def create_alias(self, request: Any, params: dict[str, str]) -> Response:
        name = _unqualified(params["fn"], "CreateAlias")
        m = shapes.Members(request.body)
        alias = await self.sup.create_alias(
            name, m.text("Name", required=True), m.text("FunctionVersion", required=True),
            description=m.text("Description") or "", weights=_weights(m.obj("RoutingConfig")))
        return _ok(201, self._alias(alias))

    async def list_aliases(self, request: Any, params: dict[str, str]) -> Response:
        name = _unqualified(params["fn"], "ListAliases")
        aliases = sorted(self.sup.list_aliases(name, request.param("FunctionVersion")), key=lambda a: a.name)
        chunk, marker = shapes.page(aliases, request.param("Marker"), _max_items(request), lambda a: a.name)
        out: dict[str, Any] = {"Aliases": [self._alias(a) for a in chunk]}
        if marker:
            out["NextMarker"] = marker
        return _ok(200, out)

    async def get_alias(self, request: Any, params: dict[str, str]) -> Response:
        name = _unqualified(params["fn"], "GetAlias")
        return _ok(200, self._alias(self.sup.get_alias(name, unquote(params["name"]))))

    async def update_alias(self, request: Any, params: dict[str, str]) -> Response:
        name = _unqualified(params["fn"], "UpdateAlias")
        m = shapes.Members(request.body)
        alias = await self.sup.update_alias(
            name, unquote(params["name"]), version=m.text("FunctionVersion"),
            description=m.text("Description"), weights=_weights(m.obj("RoutingConfig")),
            revision_id=m.text("RevisionId") or "")
        return _ok(200, self._alias(alias))

    async def delete_alias(self, request: Any, params: dict[str, str]) -> Response:
        name = _unqualified(params["fn"], "DeleteAlias")
        self.sup.get_function(name)
        await self.sup.delete_alias(name, unquote(params["name"]))
        return _ok(204, None)

    # --- concurrency and account --------------------------------------------------------------

    async def put_function_concurrency(self, request: Any, params: dict[str, str]) -> Response:
        name = _unqualified(params["fn"], "PutFunctionConcurrency")
        reserved = shapes.Members(request.body).integer("ReservedConcurrentExecutions", required=True)
        if reserved is None or reserved < 1:
            # fnhost's max_concurrency 0 means "the daemon's cap", so Lambda's 0 (throttle every
            # call) has no representation yet: refused rather than silently meaning the opposite.
            raise InvalidParameter(
                f"ReservedConcurrentExecutions {reserved}: fnhost does not support reserving 0 (throttling "
                "every invocation) yet; reserve at least 1, or DeleteFunctionConcurrency to use the daemon's cap")
        await self.sup.update_config(name, max_concurrency=reserved)
        return _ok(200, {"ReservedConcurrentExecutions": reserved})

    async def get_function_concurrency(self, request: Any, params: dict[str, str]) -> Response:
        name = _unqualified(params["fn"], "GetFunctionConcurrency")
        reserved = self.sup.get_function(name).config.max_concurrency
        return _ok(200, {"ReservedConcurrentExecutions": reserved} if reserved else {})

    async def delete_function_concurrency(self, request: Any, params: dict[str, str]) -> Response:
        name = _unqualified(params["fn"], "DeleteFunctionConcurrency")
        if self.sup.get_function(name).config.max_concurrency:
            await self.sup.update_config(name, max_concurrency=0)
        return _ok(204, None)

    async def get_account_settings(self, request: Any, params: dict[str, str]) -> Response:
        functions = self.sup.list_functions()
        stored: dict[str, int] = {}
        for latest in functions:
            for record in self.sup.list_versions(latest.config.name):
                if record.code.stored:
                    stored[record.code.sha256] = record.code.size
        cap = self.settings.max_concurrency_cap
        return _ok(200, {
            # fnhost's concurrency bound is per function (max_concurrency_cap), not per account.
            "AccountLimit": {"TotalCodeSize": self.settings.code_storage_max_bytes, "CodeSizeUnzipped": UNZIPPED_MAX,
                             "CodeSizeZipped": ZIP_MAX, "ConcurrentExecutions": cap,
                             "UnreservedConcurrentExecutions": cap},
            "AccountUsage": {"TotalCodeSize": sum(stored.values()), "FunctionCount": len(functions)},
        })


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
