"""Lambda's FunctionEventInvokeConfig operations over HTTP (API version 2019-09-25).

Put, Get, Update, Delete and List, in botocore's shapes: ``MaximumRetryAttempts``,
``MaximumEventAgeInSeconds``, ``DestinationConfig.{OnSuccess,OnFailure}.Destination``,
``FunctionArn`` (qualified, ``:$LATEST`` for the unqualified function, as Lambda answers) and
``LastModified`` (unix seconds: rest-json's timestamp). The ranges and destinations are checked
by ``supervisor.async_events`` (one check for every front end); here only the members' types.
``Invoke`` with ``X-Amz-Invocation-Type: Event`` is ``LambdaApi.invoke``'s.
"""

from __future__ import annotations

import uuid
from typing import Any

from ..control.async_model import EventInvokeConfig
from ..errors import InvalidParameter
from ..execution.invocation import LATEST
from . import lambda_shapes as shapes
from .lambda_wire import Response, json_response

_LIST_MAX_ITEMS = 50  # ListFunctionEventInvokeConfigs' MaxItems bound

# Lambda's operations here: method, path, name (lambda_http routes them).
ROUTES: tuple[tuple[str, str, str], ...] = (
    ("PUT", "/2019-09-25/functions/{fn}/event-invoke-config", "PutFunctionEventInvokeConfig"),
    ("POST", "/2019-09-25/functions/{fn}/event-invoke-config", "UpdateFunctionEventInvokeConfig"),
    ("GET", "/2019-09-25/functions/{fn}/event-invoke-config", "GetFunctionEventInvokeConfig"),
    ("DELETE", "/2019-09-25/functions/{fn}/event-invoke-config", "DeleteFunctionEventInvokeConfig"),
    ("GET", "/2019-09-25/functions/{fn}/event-invoke-config/list", "ListFunctionEventInvokeConfigs"),
)


def _ok(status: int, value: object) -> Response:
    return json_response(status, value, str(uuid.uuid4()))


def _destination(config: dict[str, Any] | None, member: str) -> str | None:
    """``DestinationConfig.<member>.Destination``: None when DestinationConfig or the member is
    absent, "" when it is given without a destination (Lambda's way to remove one).

    Raises InvalidParameter for a member of the wrong type."""
    if config is None:
        return None
    inner = config.get(member)
    if inner is None:
        return None
    if not isinstance(inner, dict):
        raise InvalidParameter(f"Value at 'destinationConfig.{member[0].lower()}{member[1:]}' failed to satisfy "
                               "constraint: Member must be an object with Destination")
    destination = inner.get("Destination") or ""
    if not isinstance(destination, str):
        raise InvalidParameter(f"Value at 'destinationConfig.{member[0].lower()}{member[1:]}.destination' failed "
                               "to satisfy constraint: Member must be a string")
    return destination


def event_invoke_config(config: EventInvokeConfig, settings: Any) -> dict[str, Any]:
    """Lambda's FunctionEventInvokeConfig for one record."""
    destinations: dict[str, Any] = {}
    if config.on_success:
        destinations["OnSuccess"] = {"Destination": config.on_success}
    if config.on_failure:
        destinations["OnFailure"] = {"Destination": config.on_failure}
    return {
        "LastModified": config.last_modified,
        "FunctionArn": shapes.arn(settings, config.function, config.qualifier or LATEST),
        "MaximumRetryAttempts": config.maximum_retry_attempts,
        "MaximumEventAgeInSeconds": config.maximum_event_age_s,
        "DestinationConfig": destinations,
    }


class EventInvokeConfigOperations:
    def __init__(self, sup: Any, settings: Any) -> None:
        self.sup = sup
        self.settings = settings

    def handlers(self) -> dict[str, Any]:
        """Every operation here, by Lambda's name."""
        return {
            "PutFunctionEventInvokeConfig": self.put,
            "UpdateFunctionEventInvokeConfig": self.update,
            "GetFunctionEventInvokeConfig": self.get,
            "DeleteFunctionEventInvokeConfig": self.delete,
            "ListFunctionEventInvokeConfigs": self.list,
        }

    def _target(self, request: Any, params: dict[str, str]) -> tuple[str, str]:
        name, qualifier = shapes.function_name(params["fn"], request.param("Qualifier"))
        return name, "" if qualifier == LATEST else qualifier

    def _write(self, method: str, request: Any, params: dict[str, str]) -> Response:
        name, qualifier = self._target(request, params)
        m = shapes.Members(request.body)
        destinations = m.obj("DestinationConfig")
        fields = {"maximum_retry_attempts": m.integer("MaximumRetryAttempts"),
                  "maximum_event_age_s": m.integer("MaximumEventAgeInSeconds"),
                  "on_success": _destination(destinations, "OnSuccess"),
                  "on_failure": _destination(destinations, "OnFailure")}
        config = getattr(self.sup.async_events, method)(
            name, qualifier, **{k: v for k, v in fields.items() if v is not None})
        return _ok(200, event_invoke_config(config, self.settings))

    async def put(self, request: Any, params: dict[str, str]) -> Response:
        return self._write("put_event_invoke_config", request, params)

    async def update(self, request: Any, params: dict[str, str]) -> Response:
        return self._write("update_event_invoke_config", request, params)

    async def get(self, request: Any, params: dict[str, str]) -> Response:
        config = self.sup.async_events.get_event_invoke_config(*self._target(request, params))
        return _ok(200, event_invoke_config(config, self.settings))

    async def delete(self, request: Any, params: dict[str, str]) -> Response:
        self.sup.async_events.delete_event_invoke_config(*self._target(request, params))
        return _ok(204, None)

    async def list(self, request: Any, params: dict[str, str]) -> Response:
        name, qualifier = shapes.function_name(params["fn"])
        if qualifier:
            raise InvalidParameter("ListFunctionEventInvokeConfigs takes an unqualified function name, "
                                   f"not {name}:{qualifier}")
        raw = request.param("MaxItems")
        if raw and (not raw.isdigit() or not 1 <= int(raw) <= _LIST_MAX_ITEMS):
            raise InvalidParameter(f"1 validation error detected: Value '{raw}' at 'maxItems' failed to satisfy "
                                   f"constraint: Member must have value between 1 and {_LIST_MAX_ITEMS}")
        configs = sorted(self.sup.async_events.list_event_invoke_configs(name), key=lambda c: c.qualifier)
        chunk, marker = shapes.page(configs, request.param("Marker"), int(raw) if raw else None,
                                    lambda c: c.qualifier)
        out: dict[str, Any] = {"FunctionEventInvokeConfigs": [event_invoke_config(c, self.settings)
                                                               for c in chunk]}
        if marker:
            out["NextMarker"] = marker
        return _ok(200, out)
