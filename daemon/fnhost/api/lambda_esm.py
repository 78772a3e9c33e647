"""Lambda's event source mapping operations (Create/Get/Update/Delete/ListEventSourceMappings) over
HTTP, with botocore's shapes. The mappings themselves are ``control.event_sources``.
"""

from __future__ import annotations

import uuid
from typing import Any

from ..control.config import Settings
from ..control.esm_model import REPORT_BATCH_ITEM_FAILURES, USER_INITIATED, Mapping, response_types
from ..errors import InvalidParameter
from . import lambda_shapes as shapes
from .lambda_wire import Response, json_response

_LIST_MAX = 10_000  # ListEventSourceMappings' MaxItems bound
# method, path (from the service model), operation; lambda_http routes them.
ROUTES: tuple[tuple[str, str, str], ...] = (
    ("POST", "/2015-03-31/event-source-mappings", "CreateEventSourceMapping"),
    ("GET", "/2015-03-31/event-source-mappings", "ListEventSourceMappings"),
    ("GET", "/2015-03-31/event-source-mappings/{uuid}", "GetEventSourceMapping"),
    ("PUT", "/2015-03-31/event-source-mappings/{uuid}", "UpdateEventSourceMapping"),
    ("DELETE", "/2015-03-31/event-source-mappings/{uuid}", "DeleteEventSourceMapping"),
)


def mapping_arn(settings: Settings, mapping_uuid: str) -> str:
    return f"arn:aws:lambda:{settings.region}:{settings.account_id}:event-source-mapping:{mapping_uuid}"


def shape(m: Mapping, settings: Settings, state: str | None = None) -> dict[str, Any]:
    """Lambda's EventSourceMappingConfiguration; ``state`` overrides State (Creating, Updating, Deleting)."""
    out: dict[str, Any] = {
        "UUID": m.uuid,
        "BatchSize": m.batch_size,
        "MaximumBatchingWindowInSeconds": m.window_s,
        "EventSourceArn": m.source_arn,
        "FunctionArn": shapes.arn(settings, m.function, m.qualifier),
        "LastModified": m.last_modified,
        "LastProcessingResult": m.last_processing_result,
        "State": state or m.state,
        "StateTransitionReason": USER_INITIATED,
        "MaximumRetryAttempts": m.maximum_retry_attempts,
        "FunctionResponseTypes": [REPORT_BATCH_ITEM_FAILURES] if m.report_batch_item_failures else [],
        "EventSourceMappingArn": mapping_arn(settings, m.uuid),
    }
    if m.on_failure:
        out["DestinationConfig"] = {"OnFailure": {"Destination": m.on_failure}}
    if m.maximum_concurrency:
        out["ScalingConfig"] = {"MaximumConcurrency": m.maximum_concurrency}
    return out


def _ok(status: int, value: object) -> Response:
    return json_response(status, value, str(uuid.uuid4()))


def _members(m: shapes.Members) -> dict[str, Any]:
    """The optional members Create and Update share, as ``EventSources`` keywords (None: absent).

    Raises InvalidParameter for a member of the wrong type, and for the members fnhost cannot honour
    (they would otherwise be silently ignored).
    """
    for unsupported in ("FilterCriteria", "StartingPosition", "StartingPositionTimestamp", "Topics", "Queues",
                        "SelfManagedEventSource", "TumblingWindowInSeconds", "ParallelizationFactor",
                        "BisectBatchOnFunctionError", "MaximumRecordAgeInSeconds"):
        if unsupported in m:
            raise InvalidParameter(f"{unsupported} is not supported for a NATS JetStream event source in fnhost")
    scaling = m.obj("ScalingConfig")
    destination = m.obj("DestinationConfig")
    on_failure = None
    if destination is not None:
        if destination.get("OnSuccess"):
            raise InvalidParameter("Unsupported DestinationConfig parameter for given event source mapping type.")
        failure = destination.get("OnFailure") or {}
        on_failure = failure.get("Destination", "") if isinstance(failure, dict) else None
        if not isinstance(on_failure, str):
            raise InvalidParameter("DestinationConfig.OnFailure.Destination must be a string")
    concurrency = None
    if scaling is not None:
        concurrency = scaling.get("MaximumConcurrency") or 0
    enabled = m.values.get("Enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise InvalidParameter("Value at 'Enabled' failed to satisfy constraint: Member must be a boolean")
    return {
        "batch_size": m.integer("BatchSize"),
        "window_s": m.integer("MaximumBatchingWindowInSeconds"),
        "enabled": enabled,
        "report_batch_item_failures": (response_types(m.values["FunctionResponseTypes"])
                                       if "FunctionResponseTypes" in m.values else None),
        "maximum_concurrency": concurrency,
        "maximum_retry_attempts": m.integer("MaximumRetryAttempts"),
        "on_failure": on_failure,
    }


class EsmOperations:
    def __init__(self, sup: Any, settings: Settings) -> None:
        self.sup = sup
        self.settings = settings

    def handlers(self) -> dict[str, Any]:
        return {"CreateEventSourceMapping": self.create, "GetEventSourceMapping": self.get,
                "UpdateEventSourceMapping": self.update, "DeleteEventSourceMapping": self.delete,
                "ListEventSourceMappings": self.list}

    async def create(self, request: Any, params: dict[str, str]) -> Response:
        m = shapes.Members(request.body)
        name, qualifier = shapes.function_name(m.text("FunctionName", required=True) or "")
        source = m.text("EventSourceArn")
        if not source:
            raise InvalidParameter("Unrecognized event source, must be a NATS JetStream ARN: "
                                   "arn:aws:jetstream:<region>:<account>:stream/<STREAM>[/<SUBJECT>]")
        members = _members(m)
        members["report_batch_item_failures"] = bool(members["report_batch_item_failures"])
        members["on_failure"] = members["on_failure"] or ""
        mapping = self.sup.event_sources.create(name, qualifier, source, **members)
        return _ok(202, shape(mapping, self.settings, "Creating"))

    async def get(self, request: Any, params: dict[str, str]) -> Response:
        return _ok(200, shape(self.sup.event_sources.get(params["uuid"]), self.settings))

    async def update(self, request: Any, params: dict[str, str]) -> Response:
        m = shapes.Members(request.body)
        function = qualifier = None
        if "FunctionName" in m:
            function, qualifier = shapes.function_name(m.text("FunctionName") or "")
        mapping = self.sup.event_sources.update(params["uuid"], function=function, qualifier=qualifier,
                                                **_members(m))
        return _ok(202, shape(mapping, self.settings, "Updating"))

    async def delete(self, request: Any, params: dict[str, str]) -> Response:
        mapping = self.sup.event_sources.delete(params["uuid"])
        return _ok(202, shape(mapping, self.settings, "Deleting"))

    async def list(self, request: Any, params: dict[str, str]) -> Response:
        function, qualifier = "", None
        if request.param("FunctionName"):
            function, derived = shapes.function_name(request.param("FunctionName"))
            qualifier = derived or None
        raw = request.param("MaxItems")
        if raw and (not raw.isdigit() or not 1 <= int(raw) <= _LIST_MAX):
            raise InvalidParameter(f"Value '{raw}' at 'maxItems' failed to satisfy constraint: "
                                   f"Member must be an integer from 1 to {_LIST_MAX}")
        mappings = self.sup.event_sources.list(function, qualifier, request.param("EventSourceArn"))
        chunk, marker = shapes.page(mappings, request.param("Marker"), int(raw) if raw else None,
                                    lambda x: f"{x.last_modified:020.6f}{x.uuid}")
        out: dict[str, Any] = {"EventSourceMappings": [shape(x, self.settings) for x in chunk]}
        if marker:
            out["NextMarker"] = marker
        return _ok(200, out)
