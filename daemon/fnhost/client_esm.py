"""The client library's event source mapping calls, mixed into ``Client`` and ``AsyncClient``.

    with Client() as fn:
        m = fn.create_event_source_mapping("orders", "arn:aws:jetstream:::stream/ORDERS/orders.new",
                                           batch_size=10, maximum_batching_window_s=1,
                                           report_batch_item_failures=True, maximum_concurrency=4)
        fn.update_event_source_mapping(m.uuid, enabled=False)
        fn.delete_event_source_mapping(m.uuid)

On ``Client`` each method returns its result; on ``AsyncClient`` an awaitable of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .client_async import _then
from .v1 import fnhost_pb2 as pb


def _set(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


class EventSourceMappingCalls:
    """Needs ``self._call(method, request)`` (both clients have it)."""

    _call: Callable[[str, Any], Any]

    def create_event_source_mapping(self, name: str, event_source_arn: str, *, qualifier: str = "",
                                    batch_size: int | None = None, maximum_batching_window_s: int | None = None,
                                    enabled: bool | None = None, report_batch_item_failures: bool = False,
                                    maximum_concurrency: int | None = None,
                                    maximum_retry_attempts: int | None = None,
                                    on_failure: str = "") -> pb.EventSourceMapping:
        """Poll a JetStream stream (``arn:aws:jetstream:<region>:<account>:stream/<STREAM>[/<SUBJECT>]``)
        for the function. Raises InvalidParameter, ResourceNotFound, ResourceConflict."""
        return self._call("CreateEventSourceMapping", pb.CreateEventSourceMappingRequest(
            function_name=name, qualifier=qualifier, event_source_arn=event_source_arn,
            report_batch_item_failures=report_batch_item_failures, on_failure=on_failure,
            **_set(batch_size=batch_size, maximum_batching_window_s=maximum_batching_window_s, enabled=enabled,
                   maximum_concurrency=maximum_concurrency, maximum_retry_attempts=maximum_retry_attempts)))

    def get_event_source_mapping(self, uuid: str) -> pb.EventSourceMapping:
        """Raises ResourceNotFound."""
        return self._call("GetEventSourceMapping", pb.GetEventSourceMappingRequest(uuid=uuid))

    def update_event_source_mapping(self, uuid: str, *, batch_size: int | None = None,
                                    maximum_batching_window_s: int | None = None, enabled: bool | None = None,
                                    report_batch_item_failures: bool | None = None,
                                    maximum_concurrency: int | None = None,
                                    maximum_retry_attempts: int | None = None,
                                    on_failure: str | None = None) -> pb.EventSourceMapping:
        """Change only what is given (``maximum_concurrency=0``: the function's limit; ``on_failure=""``:
        none). Raises ResourceNotFound, InvalidParameter."""
        return self._call("UpdateEventSourceMapping", pb.UpdateEventSourceMappingRequest(
            uuid=uuid, **_set(batch_size=batch_size, maximum_batching_window_s=maximum_batching_window_s,
                              enabled=enabled, report_batch_item_failures=report_batch_item_failures,
                              maximum_concurrency=maximum_concurrency,
                              maximum_retry_attempts=maximum_retry_attempts, on_failure=on_failure)))

    def delete_event_source_mapping(self, uuid: str) -> pb.EventSourceMapping:
        """Stop polling and delete the mapping's consumer. Raises ResourceNotFound."""
        return self._call("DeleteEventSourceMapping", pb.DeleteEventSourceMappingRequest(uuid=uuid))

    def list_event_source_mappings(self, name: str = "", event_source_arn: str = "") -> list[pb.EventSourceMapping]:
        """All mappings, or a function's, or a source's; oldest first."""
        return _then(self._call("ListEventSourceMappings", pb.ListEventSourceMappingsRequest(
            function_name=name, event_source_arn=event_source_arn)), lambda r: list(r.event_source_mappings))
