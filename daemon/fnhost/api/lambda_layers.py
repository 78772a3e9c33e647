"""Lambda's layer operations over HTTP (API version 2018-10-31): PublishLayerVersion,
ListLayerVersions, GetLayerVersion, GetLayerVersionByArn, DeleteLayerVersion, ListLayers, in
botocore's shapes. ``lambda_http`` routes to them; what the supervisor raises is answered there.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import unquote

from ..control.config import Settings
from ..control.layers import LayerVersion
from ..errors import InvalidParameter
from . import lambda_shapes as shapes
from .lambda_wire import Response, json_response

_MAX_ITEMS = 50  # Lambda's MaxLayerListItems
_ZIP_REQUEST_MAX = 69_905_067 + 64 * 1024  # a 50 MB zip in base64, as CreateFunction's
_SMALL = 64 * 1024

# method, path, operation, largest body: added to lambda_http's routing table.
ROUTES: tuple[tuple[str, str, str, int], ...] = (
    ("POST", "/2018-10-31/layers/{layer}/versions", "PublishLayerVersion", _ZIP_REQUEST_MAX),
    ("GET", "/2018-10-31/layers/{layer}/versions", "ListLayerVersions", 0),
    ("GET", "/2018-10-31/layers/{layer}/versions/{version}", "GetLayerVersion", 0),
    ("DELETE", "/2018-10-31/layers/{layer}/versions/{version}", "DeleteLayerVersion", _SMALL),
    # ListLayers and GetLayerVersionByArn (?find=LayerVersion&Arn=…) share this path.
    ("GET", "/2018-10-31/layers", "ListLayers", 0),
)


def _ok(status: int, value: object) -> Response:
    return json_response(status, value, str(uuid.uuid4()))


def _lambda_time(iso: str) -> str:
    return iso[:-1] + "+0000" if iso.endswith("Z") else iso


def version_shape(version: LayerVersion, *, content: bool) -> dict[str, Any]:
    """GetLayerVersionResponse (``content``) or LayerVersionsListItem."""
    out: dict[str, Any] = {
        "LayerVersionArn": version.arn, "Version": version.version, "Description": version.description,
        "CreatedDate": _lambda_time(version.created), "CompatibleRuntimes": list(version.compatible_runtimes),
        "CompatibleArchitectures": list(version.compatible_architectures),
    }
    if version.license_info:
        out["LicenseInfo"] = version.license_info
    if content:
        out["LayerArn"] = version.layer_arn
        # Lambda hands out a presigned S3 URL; fnhost's content is a directory on the daemon's host.
        out["Content"] = {"Location": version.location.as_uri(), "CodeSha256": shapes.code_sha256(version.sha256),
                          "CodeSize": version.size}
    return out


def _version_number(raw: str) -> int:
    if not raw.isdigit():
        raise InvalidParameter(f"Value '{raw}' at 'versionNumber' failed to satisfy constraint: "
                               "Member must be a version number")
    return int(raw)


def _list_of_strings(m: shapes.Members, member: str) -> list[str]:
    value = m.values.get(member) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidParameter(f"Value at '{member}' failed to satisfy constraint: Member must be a list of strings")
    return value


def function_layers(m: shapes.Members) -> list[str] | None:
    """CreateFunction's and UpdateFunctionConfiguration's ``Layers`` member (None: absent)."""
    return _list_of_strings(m, "Layers") if "Layers" in m.values else None


class LayerOperations:
    def __init__(self, sup: Any, settings: Settings) -> None:
        self.sup = sup
        self.settings = settings

    def handlers(self) -> dict[str, Any]:
        return {"PublishLayerVersion": self.publish, "ListLayerVersions": self.list_versions,
                "GetLayerVersion": self.get, "DeleteLayerVersion": self.delete, "ListLayers": self.list_layers}

    def _page(self, request: Any, items: list[Any], key: Any) -> tuple[list[Any], str | None]:
        raw = request.param("MaxItems")
        if raw and (not raw.isdigit() or not 1 <= int(raw) <= _MAX_ITEMS):
            raise InvalidParameter(f"Value '{raw}' at 'maxItems' failed to satisfy constraint: "
                                   f"Member must be an integer from 1 to {_MAX_ITEMS}")
        return shapes.page(items, request.param("Marker"), int(raw) if raw else None, key)

    async def publish(self, request: Any, params: dict[str, str]) -> Response:
        m = shapes.Members(request.body)
        content = m.obj("Content", required=True) or {}
        if any(content.get(k) for k in ("S3Bucket", "S3Key", "S3ObjectVersion")):
            raise InvalidParameter("fnhost takes a layer's content as ZipFile (the zip's bytes) only: no S3 objects")
        data = m.zip_file("ZipFile", within=content)
        if not data:
            raise InvalidParameter("1 validation error detected: Value null at 'content.zipFile' failed to satisfy "
                                   "constraint: Member must not be null")
        version = await self.sup.publish_layer_version(
            unquote(params["layer"]), data, description=m.text("Description") or "",
            runtimes=_list_of_strings(m, "CompatibleRuntimes"),
            architectures=_list_of_strings(m, "CompatibleArchitectures"), license_info=m.text("LicenseInfo") or "")
        return _ok(201, {**version_shape(version, content=True)})

    async def list_versions(self, request: Any, params: dict[str, str]) -> Response:
        versions = self.sup.layers.versions(unquote(params["layer"]), request.param("CompatibleRuntime"),
                                            request.param("CompatibleArchitecture"))
        chunk, marker = self._page(request, versions, lambda v: f"{10**12 - v.version:013d}")
        out: dict[str, Any] = {"LayerVersions": [version_shape(v, content=False) for v in chunk]}
        if marker:
            out["NextMarker"] = marker
        return _ok(200, out)

    async def get(self, request: Any, params: dict[str, str]) -> Response:
        version = self.sup.layers.get(unquote(params["layer"]), _version_number(params["version"]))
        return _ok(200, version_shape(version, content=True))

    async def delete(self, request: Any, params: dict[str, str]) -> Response:
        await self.sup.delete_layer_version(unquote(params["layer"]), _version_number(params["version"]))
        return _ok(204, None)

    async def list_layers(self, request: Any, params: dict[str, str]) -> Response:
        """ListLayers, or GetLayerVersionByArn when the query says ``find=LayerVersion``."""
        if request.param("find") == "LayerVersion":
            arn = request.param("Arn")
            if not arn:
                raise InvalidParameter("1 validation error detected: Value null at 'arn' failed to satisfy "
                                       "constraint: Member must not be null")
            return _ok(200, version_shape(self.sup.layers.get_by_arn(arn), content=True))
        newest = self.sup.layers.latest(request.param("CompatibleRuntime"), request.param("CompatibleArchitecture"))
        chunk, marker = self._page(request, newest, lambda v: v.name)
        out: dict[str, Any] = {"Layers": [{"LayerName": v.name, "LayerArn": v.layer_arn,
                                           "LatestMatchingVersion": version_shape(v, content=False)}
                                          for v in chunk]}
        if marker:
            out["NextMarker"] = marker
        return _ok(200, out)
