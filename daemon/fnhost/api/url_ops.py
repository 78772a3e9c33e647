"""Lambda's function URL operations (Create/Get/Update/Delete/ListFunctionUrlConfigs) over HTTP,
with botocore's shapes, and the rules every front end shares: which qualifier a URL may have, and
the ``FunctionUrl`` a configuration is reached at.
"""

from __future__ import annotations

import uuid
from typing import Any

from ..control.config import Settings
from ..control.function_urls import UrlConfig
from ..control.versions import is_version
from ..errors import InvalidParameter
from ..execution.invocation import LATEST
from . import lambda_shapes as shapes
from .lambda_wire import Response, json_response

# fnhost's own member (botocore's shapes have none): "2.0" (Lambda's) or "1.0" (API Gateway REST).
PAYLOAD_FORMAT_MEMBER = "PayloadFormatVersion"


def url_domain(config: UrlConfig, settings: Settings) -> str:
    """The Host a URL answers to: ``<url-id>.lambda-url.<region>.localhost`` (loopback to curl,
    browsers and systemd-resolved; any ``<url-id>.lambda-url.*`` Host reaches it too)."""
    return f"{config.url_id}.lambda-url.{settings.region}.localhost"


def function_url(config: UrlConfig, settings: Settings) -> str:
    """What GetFunctionUrlConfig answers as FunctionUrl, with the listener's actual port."""
    endpoint = settings.url_endpoint
    port = "" if not endpoint or endpoint.startswith("unix:") else ":" + endpoint.rpartition(":")[2]
    return f"http://{url_domain(config, settings)}{port}/"


def target(sup: Any, function: str, qualifier: str) -> tuple[str, str]:
    """(function, qualifier) a URL may be configured for: $LATEST ("") or an existing alias.

    Raises ResourceNotFound (no such function or alias), InvalidParameter (a version number).
    """
    sup.get_function(function)
    if qualifier == LATEST:
        qualifier = ""
    if qualifier:
        if is_version(qualifier):
            raise InvalidParameter(f"Qualifier {qualifier}: a function URL is for $LATEST or an alias, "
                                   "not a published version")
        sup.get_alias(function, qualifier)
    return function, qualifier


def shape(config: UrlConfig, settings: Settings) -> dict[str, Any]:
    """Lambda's FunctionUrlConfig, plus fnhost's payload format."""
    return {
        "FunctionUrl": function_url(config, settings),
        "FunctionArn": shapes.arn(settings, config.function, config.qualifier),
        "AuthType": config.auth_type,
        "Cors": config.cors,
        "CreationTime": config.created,
        "LastModifiedTime": config.modified,
        "InvokeMode": config.invoke_mode,
        PAYLOAD_FORMAT_MEMBER: config.payload_format,
    }


def _ok(status: int, value: object) -> Response:
    return json_response(status, value, str(uuid.uuid4()))


class UrlOperations:
    def __init__(self, sup: Any, settings: Settings) -> None:
        self.sup = sup
        self.settings = settings

    def handlers(self) -> dict[str, Any]:
        return {"CreateFunctionUrlConfig": self.create, "GetFunctionUrlConfig": self.get,
                "UpdateFunctionUrlConfig": self.update, "DeleteFunctionUrlConfig": self.delete,
                "ListFunctionUrlConfigs": self.list}

    def _target(self, request: Any, params: dict[str, str]) -> tuple[str, str]:
        name, qualifier = shapes.function_name(params["fn"], request.param("Qualifier"))
        return target(self.sup, name, qualifier)

    async def create(self, request: Any, params: dict[str, str]) -> Response:
        name, qualifier = self._target(request, params)
        m = shapes.Members(request.body)
        config = self.sup.urls.create(name, qualifier, auth_type=m.text("AuthType", required=True) or "",
                                      cors=m.obj("Cors"), invoke_mode=m.text("InvokeMode") or "BUFFERED",
                                      payload_format=m.text(PAYLOAD_FORMAT_MEMBER) or "2.0")
        out = shape(config, self.settings)
        out.pop("LastModifiedTime")  # not in CreateFunctionUrlConfigResponse
        return _ok(201, out)

    async def get(self, request: Any, params: dict[str, str]) -> Response:
        name, qualifier = self._target(request, params)
        return _ok(200, shape(self.sup.urls.get(name, qualifier), self.settings))

    async def update(self, request: Any, params: dict[str, str]) -> Response:
        name, qualifier = self._target(request, params)
        m = shapes.Members(request.body)
        config = self.sup.urls.update(name, qualifier, auth_type=m.text("AuthType"), cors=m.obj("Cors"),
                                      invoke_mode=m.text("InvokeMode"),
                                      payload_format=m.text(PAYLOAD_FORMAT_MEMBER))
        return _ok(200, shape(config, self.settings))

    async def delete(self, request: Any, params: dict[str, str]) -> Response:
        name, qualifier = self._target(request, params)
        self.sup.urls.delete(name, qualifier)
        return _ok(204, None)

    async def list(self, request: Any, params: dict[str, str]) -> Response:
        name, qualifier = shapes.function_name(params["fn"])
        if qualifier:
            raise InvalidParameter("ListFunctionUrlConfigs takes an unqualified function name")
        self.sup.get_function(name)
        raw = request.param("MaxItems")
        if raw and (not raw.isdigit() or not 1 <= int(raw) <= 50):
            raise InvalidParameter(f"Value '{raw}' at 'maxItems' failed to satisfy constraint: "
                                   "Member must be an integer from 1 to 50")
        configs = self.sup.urls.list(name)
        chunk, marker = shapes.page(configs, request.param("Marker"), int(raw) if raw else None,
                                    lambda c: c.qualifier or "\0")
        out: dict[str, Any] = {"FunctionUrlConfigs": [shape(c, self.settings) for c in chunk]}
        if marker:
            out["NextMarker"] = marker
        return _ok(200, out)
