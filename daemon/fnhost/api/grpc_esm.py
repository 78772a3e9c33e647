"""The gRPC API of event source mappings (Create/Get/Update/Delete/ListEventSourceMappings).
``grpc_server.Servicer`` mixes this class in; each method parses, calls
``supervisor.event_sources`` and translates the mapping.
"""

from __future__ import annotations

from typing import Any

from ..control.esm_model import Mapping
from ..execution.invocation import function_arn
from ..v1 import fnhost_pb2 as pb
from .grpc_async import _target
from .grpc_wire import rpc_method

# Update's optional members, by their names in EventSources.update.
_UPDATE_FIELDS = {"batch_size": "batch_size", "maximum_batching_window_s": "window_s", "enabled": "enabled",
                  "report_batch_item_failures": "report_batch_item_failures",
                  "maximum_concurrency": "maximum_concurrency", "maximum_retry_attempts": "maximum_retry_attempts",
                  "on_failure": "on_failure"}


def mapping_message(m: Mapping, settings: Any, state: str = "") -> pb.EventSourceMapping:
    return pb.EventSourceMapping(
        uuid=m.uuid, function_name=m.function, qualifier=m.qualifier,
        function_arn=function_arn(m.function, m.qualifier, region=settings.region, account_id=settings.account_id),
        event_source_arn=m.source_arn, batch_size=m.batch_size, maximum_batching_window_s=m.window_s,
        enabled=m.enabled, report_batch_item_failures=m.report_batch_item_failures,
        maximum_concurrency=m.maximum_concurrency, maximum_retry_attempts=m.maximum_retry_attempts,
        on_failure=m.on_failure, state=state or m.state, last_processing_result=m.last_processing_result,
        last_modified=m.last_modified)


def mapping_stats_messages(stats: list[tuple[str, str, dict[str, int]]]) -> list[pb.EventSourceMappingStats]:
    """``GetStats``' event_source_mappings: (uuid, function, the poller's counters) each."""
    return [pb.EventSourceMappingStats(
        uuid=uuid, function_name=function, records=s["records"], failed_records=s["failed_records"],
        exhausted_records=s["exhausted_records"], sent_to_destination=s["sent_to_destination"],
        batches=s["batches"], concurrent_batches=s["pollers"], backlog=s["backlog"]) for uuid, function, s in stats]


def _given(request: Any, field: str) -> Any:
    return getattr(request, field) if request.HasField(field) else None


class EsmServicer:
    """Mixed into ``grpc_server.Servicer``, which provides ``self.sup``."""

    sup: Any

    @rpc_method
    async def CreateEventSourceMapping(self, request: pb.CreateEventSourceMappingRequest,
                                       context: Any) -> pb.EventSourceMapping:
        name, qualifier = _target(request.function_name, request.qualifier)
        m = self.sup.event_sources.create(
            name, qualifier, request.event_source_arn, batch_size=_given(request, "batch_size"),
            window_s=_given(request, "maximum_batching_window_s"), enabled=_given(request, "enabled"),
            report_batch_item_failures=request.report_batch_item_failures,
            maximum_concurrency=_given(request, "maximum_concurrency"),
            maximum_retry_attempts=_given(request, "maximum_retry_attempts"), on_failure=request.on_failure)
        return mapping_message(m, self.sup.settings, "Creating")

    @rpc_method
    async def GetEventSourceMapping(self, request: pb.GetEventSourceMappingRequest,
                                    context: Any) -> pb.EventSourceMapping:
        return mapping_message(self.sup.event_sources.get(request.uuid), self.sup.settings)

    @rpc_method
    async def UpdateEventSourceMapping(self, request: pb.UpdateEventSourceMappingRequest,
                                       context: Any) -> pb.EventSourceMapping:
        changes = {ours: _given(request, field) for field, ours in _UPDATE_FIELDS.items()}
        m = self.sup.event_sources.update(request.uuid, **changes)
        return mapping_message(m, self.sup.settings, "Updating")

    @rpc_method
    async def DeleteEventSourceMapping(self, request: pb.DeleteEventSourceMappingRequest,
                                       context: Any) -> pb.EventSourceMapping:
        return mapping_message(self.sup.event_sources.delete(request.uuid), self.sup.settings, "Deleting")

    @rpc_method
    async def ListEventSourceMappings(self, request: pb.ListEventSourceMappingsRequest,
                                      context: Any) -> pb.ListEventSourceMappingsResponse:
        qualifier = None
        name = request.function_name
        if name:
            name, derived = _target(name, "")
            qualifier = derived or None
        mappings = self.sup.event_sources.list(name, qualifier, request.event_source_arn)
        return pb.ListEventSourceMappingsResponse(
            event_source_mappings=[mapping_message(m, self.sup.settings) for m in mappings])
