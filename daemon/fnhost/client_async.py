"""The client library's asynchronous-invocation calls, mixed into ``Client`` and ``AsyncClient``.

    with Client() as fn:
        accepted = fn.invoke_async("orders", b'{"id": 7}')          # 202 once stored; .request_id
        fn.put_function_event_invoke_config("orders", maximum_retry_attempts=1,
                                            on_failure="arn:aws:sqs:us-east-1:000000000000:failed")
        for letter in fn.list_dead_letters("orders"):
            print(letter.request_id, letter.attempts, letter.last_error)
        fn.replay_dead_letters("orders")                            # all of them

Each method builds its request and hands it to the client's own ``_call``; on ``Client`` it
returns the result, on ``AsyncClient`` an awaitable of it (``await client.list_dead_letters(…)``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .execution.invocation import Outcome
from .v1 import fnhost_pb2 as pb


def _then(result: Any, transform: Callable[[Any], Any]) -> Any:
    """``transform(result)``, or for an awaitable result an awaitable of it (AsyncClient)."""
    if inspect.isawaitable(result):
        async def later() -> Any:
            return transform(await result)
        return later()
    return transform(result)


def _selection(ids: list[str] | tuple[str, ...] | None) -> dict[str, Any]:
    """None (or nothing given) means all; the wire says so explicitly (``all``)."""
    return {"all": True} if not ids else {"request_ids": list(ids)}


def _config_fields(maximum_retry_attempts: int | None, maximum_event_age_s: int | None,
                   on_success: str | None, on_failure: str | None) -> dict[str, Any]:
    fields = {"maximum_retry_attempts": maximum_retry_attempts, "maximum_event_age_s": maximum_event_age_s,
              "on_success": on_success, "on_failure": on_failure}
    return {k: v for k, v in fields.items() if v is not None}


class AsyncInvocationCalls:
    """Needs ``self._call(method, request)`` and ``self.invoke`` (both clients have them)."""

    _call: Callable[[str, Any], Any]
    invoke: Callable[..., Any]

    def invoke_async(self, name: str, payload: bytes = b"", *, qualifier: str = "",
                     client_context: bytes = b"") -> Outcome:
        """Lambda's ``InvocationType=Event``: returns (status 202, ``request_id``) once the daemon has
        stored the event durably; the function runs later, retried per its event invoke config.
        Raises RequestTooLarge (over 1 MB), ResourceNotFound, ShuttingDown/QueueUnavailable (503:
        the queue could not store it; nothing was accepted)."""
        return self.invoke(name, payload, invocation_type="Event", qualifier=qualifier,
                           client_context=client_context)

    # --- event invoke configs ---------------------------------------------------------------------

    def put_function_event_invoke_config(self, name: str, qualifier: str = "", *,
                                         maximum_retry_attempts: int | None = None,
                                         maximum_event_age_s: int | None = None, on_success: str | None = None,
                                         on_failure: str | None = None) -> pb.FunctionEventInvokeConfig:
        """Replace the function's (or version's / alias's) config; what is not given takes Lambda's
        default (2 retries, 21,600 s, no destinations). Raises InvalidParameter, ResourceNotFound."""
        return self._call("PutFunctionEventInvokeConfig", pb.PutFunctionEventInvokeConfigRequest(
            function_name=name, qualifier=qualifier,
            **_config_fields(maximum_retry_attempts, maximum_event_age_s, on_success, on_failure)))

    def update_function_event_invoke_config(self, name: str, qualifier: str = "", *,
                                            maximum_retry_attempts: int | None = None,
                                            maximum_event_age_s: int | None = None, on_success: str | None = None,
                                            on_failure: str | None = None) -> pb.FunctionEventInvokeConfig:
        """Change only what is given (``on_success=""`` removes that destination)."""
        return self._call("UpdateFunctionEventInvokeConfig", pb.UpdateFunctionEventInvokeConfigRequest(
            function_name=name, qualifier=qualifier,
            **_config_fields(maximum_retry_attempts, maximum_event_age_s, on_success, on_failure)))

    def get_function_event_invoke_config(self, name: str, qualifier: str = "") -> pb.FunctionEventInvokeConfig:
        """Raises ResourceNotFound when there is none."""
        return self._call("GetFunctionEventInvokeConfig",
                          pb.GetFunctionEventInvokeConfigRequest(function_name=name, qualifier=qualifier))

    def delete_function_event_invoke_config(self, name: str, qualifier: str = "") -> None:
        """Raises ResourceNotFound when there is none."""
        return _then(self._call("DeleteFunctionEventInvokeConfig", pb.DeleteFunctionEventInvokeConfigRequest(
            function_name=name, qualifier=qualifier)), lambda _: None)

    def list_function_event_invoke_configs(self, name: str) -> list[pb.FunctionEventInvokeConfig]:
        return _then(self._call("ListFunctionEventInvokeConfigs",
                                pb.ListFunctionEventInvokeConfigsRequest(function_name=name)),
                     lambda r: list(r.function_event_invoke_configs))

    # --- dead letters -----------------------------------------------------------------------------

    def list_dead_letters(self, name: str) -> list[pb.DeadLetter]:
        """The function's dead-letter queue, oldest first."""
        return _then(self._call("ListDeadLetters", pb.ListDeadLettersRequest(function_name=name)),
                     lambda r: list(r.dead_letters))

    def get_dead_letter(self, name: str, request_id: str) -> pb.DeadLetter:
        """Raises ResourceNotFound."""
        return self._call("GetDeadLetter", pb.GetDeadLetterRequest(function_name=name, request_id=request_id))

    def replay_dead_letters(self, name: str, request_ids: list[str] | None = None) -> int:
        """Queue these dead letters again (None: all) with their request ids; how many."""
        return _then(self._call("ReplayDeadLetters", pb.ReplayDeadLettersRequest(
            function_name=name, **_selection(request_ids))), lambda r: r.replayed)

    def purge_dead_letters(self, name: str, request_ids: list[str] | None = None) -> int:
        """Delete these dead letters (None: all); how many."""
        return _then(self._call("PurgeDeadLetters", pb.PurgeDeadLettersRequest(
            function_name=name, **_selection(request_ids))), lambda r: r.purged)

    # --- queue destinations -----------------------------------------------------------------------

    def list_destination_queues(self) -> dict[str, int]:
        """Each queue destination holding records, with its record count."""
        return _then(self._call("ListDestinationQueues", pb.ListDestinationQueuesRequest()),
                     lambda r: {q.name: q.messages for q in r.queues})

    def receive_queue_messages(self, queue: str, limit: int = 100) -> list[pb.QueueMessage]:
        """A queue destination's oldest records (not removed: ``delete_queue_messages`` does that)."""
        return _then(self._call("ReceiveQueueMessages", pb.ReceiveQueueMessagesRequest(queue=queue, limit=limit)),
                     lambda r: list(r.messages))

    def delete_queue_messages(self, queue: str, message_ids: list[str] | None = None) -> int:
        """Remove these records (None: all); how many."""
        selection = {"all": True} if not message_ids else {"message_ids": list(message_ids)}
        return _then(self._call("DeleteQueueMessages", pb.DeleteQueueMessagesRequest(queue=queue, **selection)),
                     lambda r: r.deleted)
