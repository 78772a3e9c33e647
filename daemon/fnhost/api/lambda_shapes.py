"""Lambda's request members and response shapes (botocore's ``lambda/2015-03-31`` service model),
read and written for fnhost's records: typed member readers that say which member is wrong,
function names and ARNs, Lambda's runtime identifiers, FunctionConfiguration and AliasConfiguration.
"""

from __future__ import annotations

import base64
import binascii
import json
import platform
import re
from typing import Any
from urllib.parse import unquote

from ..control.config import Settings
from ..control.registry import FunctionRecord
from ..errors import InvalidParameter
from ..execution.invocation import LATEST, function_arn

# Lambda's runtime identifiers, as data: pattern → the fnhost runtime that runs them (None: not
# yet, with the reason). fnhost's own runtime names are accepted as they are.
RUNTIMES: tuple[tuple[re.Pattern[str], str | None, str], ...] = tuple(
    (re.compile(pattern), runtime, reason) for pattern, runtime, reason in (
        (r"python3\.\d+", "python", ""),
        (r"nodejs(\d+\.x)?", "node", ""),
        (r"java(8(\.al2)?|11|17|21|25)", "java", ""),
        (r"ruby\d\.\d+", "ruby", ""),
        (r"dotnet(core\d\.\d|\d+)", "dotnet", ""),
        (r"go1\.x", "go", ""),
        (r"provided(\.al2|\.al2023)?", "provided", ""),
    )
)

_ARN_RE = re.compile(
    r"^(?:arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):)?(?:(?P<account>\d{12}):)?"
    r"(?:function:)?(?P<name>[A-Za-z0-9_-]+)(?::(?P<qualifier>\$LATEST|[A-Za-z0-9_-]+))?$"
)
ARCHITECTURE = "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"


def lambda_runtime(identifier: str, known: set[str]) -> str:
    """The fnhost runtime for a Lambda runtime identifier (or an fnhost runtime name).

    Raises InvalidParameter for an identifier fnhost cannot run.
    """
    if identifier in known:
        return identifier
    for pattern, runtime, reason in RUNTIMES:
        if pattern.fullmatch(identifier):
            if runtime is None:
                raise InvalidParameter(f"Runtime {identifier}: {reason}")
            if runtime in known:
                return runtime
            break
    raise InvalidParameter(
        f"Value {identifier} at 'runtime' failed to satisfy constraint: this fnhost runs "
        f"python3.x, nodejs*.x, java8.al2/java11/java17/java21, ruby3.x, dotnet6/dotnet8, go1.x and "
        f"provided/provided.al2/provided.al2023 "
        f"(its runtimes: {', '.join(sorted(known))})"
    )


def function_name(raw: str, qualifier: str = "") -> tuple[str, str]:
    """(name, qualifier) from a path's FunctionName: a name, ``name:qualifier``, or a (partial) ARN.

    Raises InvalidParameter when it is none of those, or names another qualifier than ``qualifier``.
    """
    match = _ARN_RE.match(unquote(raw))
    if match is None:
        raise InvalidParameter(
            f"1 validation error detected: Value '{unquote(raw)}' at 'functionName' failed to satisfy "
            "constraint: use a function name, name:qualifier, or a function ARN"
        )
    derived = match["qualifier"] or ""
    if derived and qualifier and derived != qualifier:
        raise InvalidParameter("The derived qualifier from the function name does not match the specified qualifier.")
    return match["name"], derived or qualifier


def arn(settings: Settings, name: str, qualifier: str = "") -> str:
    return function_arn(name, qualifier, region=settings.region, account_id=settings.account_id)


def _lambda_time(iso: str) -> str:
    """Lambda's LastModified: ``2024-01-31T12:00:00.000+0000`` (the registry keeps ``…Z``)."""
    return iso[:-1] + "+0000" if iso.endswith("Z") else iso


def code_sha256(hex_digest: str) -> str:
    """Lambda's CodeSha256: the zip's SHA-256 in base64 (the registry keeps it in hex)."""
    try:
        return base64.b64encode(bytes.fromhex(hex_digest)).decode()
    except ValueError:
        return hex_digest


def _runtime_shown(identifier: str, runtime: str) -> str:
    """The Lambda identifier a function was created with, while its runtime is still the one that
    identifier maps to (a later change of runtime over gRPC leaves the identifier behind)."""
    if not identifier:
        return runtime
    try:
        return identifier if lambda_runtime(identifier, {runtime}) == runtime else runtime
    except InvalidParameter:
        return runtime


def function_configuration(record: FunctionRecord, settings: Settings,
                           layer_sizes: dict[str, int] | None = None) -> dict[str, Any]:
    """Lambda's FunctionConfiguration for one version's record ($LATEST or a number);
    ``layer_sizes``: each of its layers' zip size, by ARN."""
    layer_sizes = layer_sizes or {}
    config = record.config
    version = record.version
    return {
        "FunctionName": config.name,
        "FunctionArn": arn(settings, config.name, version if version != LATEST else ""),
        "Runtime": _runtime_shown(config.lambda_runtime, config.runtime),
        "Role": f"arn:aws:iam::{settings.account_id}:role/fnhost",
        "Handler": config.handler,
        "CodeSize": record.code.size,
        "Description": record.description,
        "Timeout": config.timeout_s,
        "MemorySize": config.memory_mb,
        "LastModified": _lambda_time(record.last_modified),
        "CodeSha256": code_sha256(record.code.sha256),
        "Version": version,
        "Environment": {"Variables": dict(config.environment)},
        "RevisionId": record.revision_id,
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Architectures": [ARCHITECTURE],
        "EphemeralStorage": {"Size": config.ephemeral_storage_mb},
        # Lambda's Layer shape; the size is the zip's, as PublishLayerVersion reported it.
        **({"Layers": [{"Arn": arn, "CodeSize": layer_sizes.get(arn, 0)} for arn in config.layers]}
           if config.layers else {}),
    }


def alias_configuration(alias: Any, settings: Settings) -> dict[str, Any]:
    """Lambda's AliasConfiguration for an ``AliasRecord``."""
    out: dict[str, Any] = {
        "AliasArn": arn(settings, alias.function, alias.name),
        "Name": alias.name,
        "FunctionVersion": alias.version,
        "Description": alias.description,
        "RevisionId": alias.revision_id,
    }
    if alias.weights:
        out["RoutingConfig"] = {"AdditionalVersionWeights": dict(alias.weights)}
    return out


def page(items: list[Any], marker: str, max_items: int | None, key: Any) -> tuple[list[Any], str | None]:
    """One page of ``items`` after ``marker`` (an opaque token: the last key seen), and the next marker."""
    start = 0
    if marker:
        try:
            last = base64.urlsafe_b64decode(marker.encode()).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise InvalidParameter(f"Marker {marker!r} is not one this API returned") from None
        start = next((i for i, item in enumerate(items) if str(key(item)) > last), len(items))
    end = len(items) if max_items is None else start + max_items
    chunk = items[start:end]
    more = end < len(items) and chunk
    return chunk, base64.urlsafe_b64encode(str(key(chunk[-1])).encode()).decode() if more else None


class Members:
    """A JSON request body's members, read with their types checked (Lambda's validation wording)."""

    def __init__(self, body: bytes) -> None:
        """Raises InvalidParameter when the body is not a JSON object."""
        if not body.strip():
            self.values: dict[str, Any] = {}
            return
        try:
            values = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidParameter(f"Could not parse request body into json: {exc}") from None
        if not isinstance(values, dict):
            raise InvalidParameter("Could not parse request body into json: expected an object")
        self.values = values

    def __contains__(self, member: str) -> bool:
        return self.values.get(member) is not None

    def _get(self, member: str, types: tuple[type, ...], what: str, required: bool) -> Any:
        value = self.values.get(member)
        if value is None:
            if required:
                raise InvalidParameter(f"1 validation error detected: Value null at '{member}' failed to "
                                       "satisfy constraint: Member must not be null")
            return None
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise InvalidParameter(f"Value {json.dumps(value)[:80]} at '{member}' failed to satisfy "
                                   f"constraint: Member must be {what}")
        return value

    def text(self, member: str, *, required: bool = False) -> str | None:
        return self._get(member, (str,), "a string", required)

    def integer(self, member: str, *, required: bool = False) -> int | None:
        return self._get(member, (int,), "an integer", required)

    def flag(self, member: str) -> bool:
        return bool(self._get(member, (bool,), "a boolean", False))

    def obj(self, member: str, *, required: bool = False) -> dict[str, Any] | None:
        return self._get(member, (dict,), "an object", required)

    def string_map(self, member: str, inner: str) -> dict[str, str] | None:
        """``{member: {inner: {str: str}}}`` (Environment.Variables), or None when absent."""
        outer = self.obj(member)
        if outer is None:
            return None
        values = outer.get(inner) or {}
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise InvalidParameter(f"Value at '{member}.{inner}' failed to satisfy constraint: "
                                   "Member must be a map of strings to strings")
        return values

    def zip_file(self, member: str = "ZipFile", within: dict[str, Any] | None = None) -> bytes | None:
        """A blob member (base64 in JSON), decoded; None when absent."""
        value = (self.values if within is None else within).get(member)
        if value is None:
            return None
        if not isinstance(value, str):
            raise InvalidParameter(f"Value at '{member}' failed to satisfy constraint: Member must be base64 text")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidParameter(f"Value at '{member}' is not valid base64") from None
