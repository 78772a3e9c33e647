"""The gRPC API of asynchronous invocation: event invoke configs, dead letters, queue destinations
and the async queues' stats. ``grpc_server.Servicer`` mixes this class in; every method only
parses, calls ``supervisor.async_events`` and translates (``Invoke`` with EVENT is the one invoke
in ``grpc_server``).
"""

from __future__ import annotations

from typing import Any

from ..control.async_model import AsyncStats, DeadLetter, EventInvokeConfig, QueueMessage
from ..errors import InvalidParameter
from ..execution.invocation import LATEST, function_arn
from ..v1 import fnhost_pb2 as pb
from .grpc_wire import rpc_method

_CONFIG_FIELDS = ("maximum_retry_attempts", "maximum_event_age_s", "on_success", "on_failure")


def _target(name: str, qualifier: str) -> tuple[str, str]:
    """(name, qualifier), with Lambda's ``name:qualifier`` accepted; $LATEST is the unqualified one.

    Raises InvalidParameter when the name's qualifier contradicts ``qualifier``."""
    if ":" in name:
        name, _, derived = name.partition(":")
        if qualifier and derived != qualifier:
            raise InvalidParameter("The derived qualifier from the function name does not match the "
                                   "specified qualifier.")
        qualifier = derived
    return name, "" if qualifier == LATEST else qualifier


def config_message(config: EventInvokeConfig, settings: Any) -> pb.FunctionEventInvokeConfig:
    return pb.FunctionEventInvokeConfig(
        function_name=config.function, qualifier=config.qualifier,
        function_arn=function_arn(config.function, config.qualifier or LATEST, region=settings.region,
                                  account_id=settings.account_id),
        maximum_retry_attempts=config.maximum_retry_attempts, maximum_event_age_s=config.maximum_event_age_s,
        destination_config=pb.DestinationConfig(on_success=config.on_success, on_failure=config.on_failure),
        last_modified=config.last_modified)


def dead_letter_message(letter: DeadLetter) -> pb.DeadLetter:
    return pb.DeadLetter(
        request_id=letter.request_id, function_name=letter.function, qualifier=letter.qualifier,
        payload=letter.payload, attempts=letter.attempts, last_error=letter.last_error,
        received_at=letter.received_at, dead_lettered_at=letter.dead_lettered_at, reason=letter.reason)


def queue_message(message: QueueMessage) -> pb.QueueMessage:
    return pb.QueueMessage(queue=message.queue, message_id=message.message_id, body=message.body,
                           sent_at=message.sent_at)


def async_stats_messages(stats: dict[str, AsyncStats]) -> list[pb.AsyncQueueStats]:
    """``GetStats``' async_queues, by function name."""
    return [pb.AsyncQueueStats(
        function_name=name, depth=s.depth, oldest_age_s=s.oldest_age_s, received=s.received, retries=s.retries,
        dropped_age=s.dropped_age, dead_lettered=s.dead_lettered, delivered_success=s.delivered_success,
        delivered_failure=s.delivered_failure, throttled=s.throttled) for name, s in sorted(stats.items())]


def _selection(ids: Any, every: bool, what: str) -> list[str] | None:
    """The ids a replay, purge or delete names; None for all. Raises InvalidParameter when it
    names neither (an empty list must not quietly mean "everything")."""
    if every and ids:
        raise InvalidParameter(f"give {what} ids or all, not both")
    if not every and not ids:
        raise InvalidParameter(f"name the {what}s (their ids), or set all")
    return None if every else list(ids)


class AsyncServicer:
    """The asynchronous invocation's RPCs; needs ``self.sup`` (the Supervisor)."""

    sup: Any

    def _configs_call(self, method: str, request: Any) -> pb.FunctionEventInvokeConfig:
        name, qualifier = _target(request.function_name, request.qualifier)
        fields = {f: getattr(request, f) for f in _CONFIG_FIELDS if request.HasField(f)}
        config = getattr(self.sup.async_events, method)(name, qualifier, **fields)
        return config_message(config, self.sup.settings)

    @rpc_method
    async def PutFunctionEventInvokeConfig(self, request: pb.PutFunctionEventInvokeConfigRequest,
                                           context: Any) -> pb.FunctionEventInvokeConfig:
        return self._configs_call("put_event_invoke_config", request)

    @rpc_method
    async def UpdateFunctionEventInvokeConfig(self, request: pb.UpdateFunctionEventInvokeConfigRequest,
                                              context: Any) -> pb.FunctionEventInvokeConfig:
        return self._configs_call("update_event_invoke_config", request)

    @rpc_method
    async def GetFunctionEventInvokeConfig(self, request: pb.GetFunctionEventInvokeConfigRequest,
                                           context: Any) -> pb.FunctionEventInvokeConfig:
        config = self.sup.async_events.get_event_invoke_config(*_target(request.function_name, request.qualifier))
        return config_message(config, self.sup.settings)

    @rpc_method
    async def DeleteFunctionEventInvokeConfig(self, request: pb.DeleteFunctionEventInvokeConfigRequest,
                                              context: Any) -> pb.DeleteFunctionEventInvokeConfigResponse:
        self.sup.async_events.delete_event_invoke_config(*_target(request.function_name, request.qualifier))
        return pb.DeleteFunctionEventInvokeConfigResponse()

    @rpc_method
    async def ListFunctionEventInvokeConfigs(self, request: pb.ListFunctionEventInvokeConfigsRequest,
                                             context: Any) -> pb.ListFunctionEventInvokeConfigsResponse:
        configs = self.sup.async_events.list_event_invoke_configs(request.function_name)
        return pb.ListFunctionEventInvokeConfigsResponse(
            function_event_invoke_configs=[config_message(c, self.sup.settings) for c in configs])

    # --- dead letters ---------------------------------------------------------------------------

    @rpc_method
    async def ListDeadLetters(self, request: pb.ListDeadLettersRequest, context: Any) -> pb.ListDeadLettersResponse:
        self.sup.get_function(request.function_name)  # ResourceNotFound for a name that never was
        letters = await self.sup.async_events.dead_letters(request.function_name)
        return pb.ListDeadLettersResponse(dead_letters=[dead_letter_message(d) for d in letters])

    @rpc_method
    async def GetDeadLetter(self, request: pb.GetDeadLetterRequest, context: Any) -> pb.DeadLetter:
        return dead_letter_message(await self.sup.async_events.dead_letter(request.function_name,
                                                                            request.request_id))

    @rpc_method
    async def ReplayDeadLetters(self, request: pb.ReplayDeadLettersRequest,
                                context: Any) -> pb.ReplayDeadLettersResponse:
        self.sup.get_function(request.function_name)  # replaying into a deleted function runs nothing
        ids = _selection(request.request_ids, request.all, "dead letter")
        return pb.ReplayDeadLettersResponse(replayed=await self.sup.async_events.replay(request.function_name, ids))

    @rpc_method
    async def PurgeDeadLetters(self, request: pb.PurgeDeadLettersRequest, context: Any) -> pb.PurgeDeadLettersResponse:
        ids = _selection(request.request_ids, request.all, "dead letter")
        return pb.PurgeDeadLettersResponse(purged=await self.sup.async_events.purge(request.function_name, ids))

    # --- queue destinations ---------------------------------------------------------------------

    @rpc_method
    async def ListDestinationQueues(self, request: pb.ListDestinationQueuesRequest,
                                    context: Any) -> pb.ListDestinationQueuesResponse:
        queues = await self.sup.async_events.backend.queues()
        return pb.ListDestinationQueuesResponse(
            queues=[pb.DestinationQueue(name=n, messages=c) for n, c in sorted(queues.items())])

    @rpc_method
    async def ReceiveQueueMessages(self, request: pb.ReceiveQueueMessagesRequest,
                                   context: Any) -> pb.ReceiveQueueMessagesResponse:
        messages = await self.sup.async_events.queue_messages(request.queue, request.limit or 100)
        return pb.ReceiveQueueMessagesResponse(messages=[queue_message(m) for m in messages])

    @rpc_method
    async def DeleteQueueMessages(self, request: pb.DeleteQueueMessagesRequest,
                                  context: Any) -> pb.DeleteQueueMessagesResponse:
        ids = _selection(request.message_ids, request.all, "message")
        return pb.DeleteQueueMessagesResponse(
            deleted=await self.sup.async_events.delete_queue_messages(request.queue, ids))
