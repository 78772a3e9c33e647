"""The poller of one event source mapping: JetStream records, in batches, to a function.

Each mapping has one durable pull consumer, ``fnhost-esm-<UUID>``, on its stream (filtered to its
subject). Redelivery is JetStream's own: the consumer's AckWait (the function's timeout plus the
batching window plus a margin) brings back a batch whose daemon died; MaxDeliver bounds the
deliveries (1 + MaximumRetryAttempts); a failed record is Nak'ed with a delay; the delivery count
JetStream keeps is the record's ``ApproximateReceiveCount``. Several daemons polling one mapping's
consumer share its records as competing consumers.

Concurrency: each batch in flight is one task with its own pull subscription (a subscription's
inbox must not be shared by concurrent fetches). A controller reads the consumer's backlog
(``num_pending``) twice a second and wants ``ceil(backlog / BatchSize)`` batch tasks, at least one
and at most the mapping's MaximumConcurrency (or the function's concurrency limit); an idle task
above the wanted number ends.

The event is Lambda's SQS event (``Records`` of ``messageId``, ``receiptHandle``, ``body``,
``attributes``, ``messageAttributes``, ``md5OfBody``, ``eventSource: aws:sqs``, ``eventSourceARN``,
``awsRegion``), so an SQS-triggered handler runs unchanged.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import anyio
import nats
import structlog
from nats.js import api as js_api

from ..errors import ApiError
from ..execution.invocation import Invocation, InvocationType, function_arn
from .destinations import deliver
from .esm_model import Mapping, consumer_name

log = structlog.get_logger("fnhost.esm")

IDLE_POLL_S = 2.0  # a fetch's long poll while the stream is quiet
SCALE_INTERVAL_S = 0.5
ERROR_BACKOFF_S = 1.0
ERROR_BACKOFF_MAX_S = 30.0
STOP_MARGIN_S = 5.0
ACK_MARGIN_S = 30.0
NAK_DELAY_CAP_S = 30.0
FIRST_SEEN_MAX = 100_000
_MESSAGE_NS = uuid.UUID("5b0d1d38-7f0c-4c55-9e7c-8b8f2c4d6a10")  # messageId = uuid5(stream:sequence)


class Connection:
    """One NATS connection shared by every poller of the daemon, opened on first use.

    nats-py reconnects on its own (without end); a poller whose call fails while it is away logs,
    waits and tries again, so a NATS outage pauses polling and loses nothing.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._nc: Any = None
        self._lock = anyio.Lock()

    async def jetstream(self) -> Any:
        """The JetStream context. Raises whatever nats.connect raises when the server is unreachable."""
        async with self._lock:
            if self._nc is None or self._nc.is_closed:
                self._nc = await nats.connect(self.url, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                                              connect_timeout=2, allow_reconnect=True)
            return self._nc.jetstream()

    async def delete_consumer(self, stream: str, name: str) -> None:
        """Delete a deleted mapping's consumer; never raises (a missing one is fine)."""
        try:
            js = await self.jetstream()
            await js.delete_consumer(stream, name)
        except Exception as exc:  # noqa: BLE001 — best effort: the consumer only holds a position
            log.info("esm_consumer_not_deleted", stream=stream, consumer=name, error=repr(exc))

    async def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()


def _millis(when: datetime | None) -> str:
    return str(int((when or datetime.now(timezone.utc)).timestamp() * 1000))


def sqs_record(msg: Any, m: Mapping, region: str, first_seen: dict[int, str]) -> dict[str, Any]:
    """One JetStream message as one record of Lambda's SQS event."""
    meta = msg.metadata
    seq = meta.sequence.stream
    body = msg.data.decode("utf-8", errors="replace")  # SQS bodies are text
    attributes = {
        "ApproximateReceiveCount": str(meta.num_delivered),
        "SentTimestamp": _millis(meta.timestamp),
        "SenderId": "fnhost",
        # JetStream does not keep when a record was first delivered: the first time this daemon saw it.
        "ApproximateFirstReceiveTimestamp": first_seen.setdefault(seq, _millis(None)),
    }
    message_attributes = {
        name: {"stringValue": value, "stringListValues": [], "binaryListValues": [], "dataType": "String"}
        for name, value in (msg.headers or {}).items()
    }
    message_attributes["NatsSubject"] = {"stringValue": msg.subject, "stringListValues": [],
                                         "binaryListValues": [], "dataType": "String"}
    return {
        "messageId": str(uuid.uuid5(_MESSAGE_NS, f"{meta.stream}:{seq}")),
        "receiptHandle": f"{meta.stream}:{seq}:{meta.num_delivered}",
        "body": body,
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": hashlib.md5(msg.data).hexdigest(),  # noqa: S324 — SQS's checksum, not security
        "eventSource": "aws:sqs",
        "eventSourceARN": m.source_arn,
        "awsRegion": region,
    }


def failed_ids(payload: bytes, ids: set[str]) -> set[str] | None:
    """The messageIds a ReportBatchItemFailures answer names; None when the answer is invalid
    (Lambda then counts the whole batch as failed): not JSON, an entry without an ``itemIdentifier``,
    or one that is not in the batch. Null, an empty list or no such member: all succeeded."""
    try:
        answer = json.loads(payload) if payload.strip() else None
    except ValueError:
        return None  # Lambda: "an invalid JSON response" fails the whole batch
    if not isinstance(answer, dict):
        return set()
    failures = answer.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return None
    out = set()
    for entry in failures:
        item = entry.get("itemIdentifier") if isinstance(entry, dict) else None
        if not isinstance(item, str) or item not in ids:
            return None
        out.add(item)
    return out


class Poller:
    """Polls one mapping until stopped; see the module docstring."""

    def __init__(self, owner: Any, mapping: Mapping, connection: Connection) -> None:
        self.owner = owner
        self.sup = owner.sup
        self.m = mapping
        self.connection = connection
        self.scope = anyio.CancelScope()
        self.wanted = 1
        self.active = 0
        self.backlog = 0
        self.stopping = False
        self._first_seen: dict[int, str] = {}
        self.counts = {"batches": 0, "records": 0, "failed_records": 0, "exhausted_records": 0,
                       "sent_to_destination": 0}

    def stats(self) -> dict[str, int]:
        return {**self.counts, "pollers": self.active, "wanted": self.wanted, "backlog": self.backlog}

    def stop(self) -> None:
        """Take no new batch; let the batches in flight finish (a cancelled one would come back only
        after AckWait, and run twice), cancelling what still runs after the function's timeout."""
        self.stopping = True
        try:
            grace = self.sup.get_function(self.m.function, self.m.qualifier).config.timeout_s + STOP_MARGIN_S
        except ApiError:  # the function is gone: nothing left to finish
            grace = 0.0
        self.scope.deadline = min(self.scope.deadline, anyio.current_time() + grace)

    def _limit(self) -> int:
        """Concurrent batches at most: MaximumConcurrency, never above the function's concurrency
        limit (a batch beyond it would be throttled, and a throttled batch uses up a delivery)."""
        try:  # 0: the function has no limit of its own, the daemon's cap is its limit
            limit = self.sup.get_function(self.m.function, self.m.qualifier).config.max_concurrency
        except ApiError:
            return 1
        limit = max(1, limit or self.sup.settings.max_concurrency_cap)
        return min(limit, self.m.maximum_concurrency) if self.m.maximum_concurrency else limit

    def _consumer_config(self) -> js_api.ConsumerConfig:
        timeout_s = self.sup.get_function(self.m.function, self.m.qualifier).config.timeout_s
        name = consumer_name(self.m.uuid)
        return js_api.ConsumerConfig(
            name=name, durable_name=name, ack_policy=js_api.AckPolicy.EXPLICIT,
            deliver_policy=js_api.DeliverPolicy.ALL, filter_subject=self.m.subject or None,
            ack_wait=float(timeout_s + self.m.window_s + ACK_MARGIN_S), max_deliver=self.m.max_deliver,
            max_ack_pending=-1)

    async def run(self) -> None:
        """Poll until stopped; a failure (NATS away, stream missing) is logged and retried."""
        backoff = ERROR_BACKOFF_S
        with self.scope:
            while not self.stopping:
                try:
                    js = await self.connection.jetstream()
                    # Creates the consumer, or updates it (AckWait, MaxDeliver) after UpdateEventSourceMapping.
                    await js.add_consumer(self.m.stream, config=self._consumer_config())
                    backoff = ERROR_BACKOFF_S
                    async with anyio.create_task_group() as tg:
                        while not self.stopping:
                            await self._scale(js, tg)
                            await anyio.sleep(SCALE_INTERVAL_S)
                except Exception as exc:  # noqa: BLE001 — the poller outlives an outage or a missing stream
                    log.warning("esm_poll_failed", uuid=self.m.uuid, source=self.m.source_arn, error=repr(exc),
                                retry_in_s=backoff)
                    self.owner.set_result(self.m.uuid, f"PROBLEM: {exc!r}"[:200])
                    await anyio.sleep(backoff)
                    backoff = min(ERROR_BACKOFF_MAX_S, backoff * 2)

    async def _scale(self, js: Any, tg: Any) -> None:
        info = await js.consumer_info(self.m.stream, consumer_name(self.m.uuid))
        self.backlog = info.num_pending or 0
        self.wanted = max(1, min(self._limit(), math.ceil(self.backlog / self.m.batch_size)))
        while self.active < self.wanted:
            tg.start_soon(self._batches, js)
            self.active += 1  # counted here so that the next look does not start it twice

    async def _batches(self, js: Any) -> None:
        """One batch at a time until idle while more tasks run than are wanted."""
        try:  # ``_scale`` counted this task in ``active`` when it started it
            sub = await js.pull_subscribe_bind(durable=consumer_name(self.m.uuid), stream=self.m.stream)
            try:
                while not self.stopping:
                    if self.sup.draining:  # a batch taken now would only be refused, using up a delivery
                        await anyio.sleep(SCALE_INTERVAL_S)
                        continue
                    try:
                        msgs = await self._collect(sub)
                        if msgs and self.stopping:
                            # Taken by a fetch that was waiting when the mapping was disabled,
                            # updated or deleted: back at once, for the new poller (if any).
                            for msg in msgs:
                                await msg.nak()
                            break
                        if msgs:
                            await self._handle(msgs)
                    except Exception as exc:  # noqa: BLE001 — NATS away mid-batch: JetStream redelivers
                        log.warning("esm_batch_failed", uuid=self.m.uuid, error=repr(exc))
                        await anyio.sleep(ERROR_BACKOFF_S)
                        continue
                    if not msgs and self.active > self.wanted:
                        return
            finally:
                await sub.unsubscribe()
        finally:
            self.active -= 1

    async def _collect(self, sub: Any) -> list[Any]:
        """Up to BatchSize records: what is there at once, then more until the batching window ends."""
        # nats-py raises asyncio's TimeoutError (or its own subclass of it) when nothing came.
        try:
            msgs = await sub.fetch(self.m.batch_size, timeout=IDLE_POLL_S)
        except asyncio.TimeoutError:
            return []
        deadline = time.monotonic() + self.m.window_s
        while len(msgs) < self.m.batch_size and (left := deadline - time.monotonic()) > 0.01:
            try:
                msgs += await sub.fetch(self.m.batch_size - len(msgs), timeout=left)
            except asyncio.TimeoutError:
                break
        return msgs

    async def _handle(self, msgs: list[Any]) -> None:
        """Invoke the function with the batch; ack what succeeded, Nak or give up on the rest."""
        m = self.m
        region = self.sup.settings.region
        if len(self._first_seen) > FIRST_SEEN_MAX:  # records another host finished never come back here
            self._first_seen.clear()
        records = [sqs_record(msg, m, region, self._first_seen) for msg in msgs]
        self.counts["batches"] += 1
        self.counts["records"] += len(msgs)
        invocation = Invocation(m.function, json.dumps({"Records": records}).encode(),
                                InvocationType.REQUEST_RESPONSE, qualifier=m.qualifier,
                                invoked_function_arn=function_arn(m.function, m.qualifier, region=region,
                                                                  account_id=self.sup.settings.account_id))
        error: dict[str, Any]
        try:
            outcome = await self.sup.invoke(invocation)
        except ApiError as exc:  # throttled, deleted, shutting down: the whole batch comes back
            failed, error = set(range(len(msgs))), {"errorType": exc.code, "errorMessage": exc.message}
            outcome = None
        else:
            error = {}
            if outcome.function_error:
                failed = set(range(len(msgs)))
                error = {"functionError": outcome.function_error}
            elif m.report_batch_item_failures:
                named = failed_ids(outcome.payload, {r["messageId"] for r in records})
                failed = set(range(len(msgs))) if named is None else {
                    i for i, r in enumerate(records) if r["messageId"] in named}
            else:
                failed = set()
        self.owner.set_result(m.uuid, "OK" if not failed else "PROBLEM: Function call failed")
        exhausted = []
        for i, msg in enumerate(msgs):
            if i not in failed:
                await msg.ack()
                self._first_seen.pop(msg.metadata.sequence.stream, None)
                continue
            self.counts["failed_records"] += 1
            delivered = msg.metadata.num_delivered
            if 0 < m.max_deliver <= delivered:
                exhausted.append((msg, records[i]))
            else:
                await msg.nak(delay=min(NAK_DELAY_CAP_S, float(delivered)))
        if exhausted:
            await self._give_up(exhausted, outcome, error)

    async def _give_up(self, exhausted: list[tuple[Any, dict[str, Any]]], outcome: Any, error: dict[str, Any]) -> None:
        """Records whose deliveries ran out: to the on-failure destination (then terminated), or dropped."""
        m = self.m
        self.counts["exhausted_records"] += len(exhausted)
        if m.on_failure:
            record = self._failure_record(exhausted, outcome, error)
            try:
                await self._send(m.on_failure, json.dumps(record).encode())
            except Exception as exc:  # noqa: BLE001 — leave the records to JetStream: it redelivers
                log.error("esm_destination_failed", uuid=m.uuid, destination=m.on_failure, error=repr(exc))
                return
            self.counts["sent_to_destination"] += len(exhausted)
        else:
            log.warning("esm_records_dropped", uuid=m.uuid, records=len(exhausted),
                        reason="MaximumRetryAttempts exhausted and no on-failure destination")
        for msg, _ in exhausted:
            await msg.term()
            self._first_seen.pop(msg.metadata.sequence.stream, None)

    def _failure_record(self, exhausted: list[tuple[Any, dict[str, Any]]], outcome: Any,
                        error: dict[str, Any]) -> dict[str, Any]:
        """Lambda's invocation record for a stream's failed batch, with the records themselves."""
        m = self.m
        settings = self.sup.settings
        seqs = [msg.metadata.sequence.stream for msg, _ in exhausted]
        return {
            "version": "1.0",
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "requestContext": {
                "requestId": outcome.request_id if outcome is not None else str(uuid.uuid4()),
                "functionArn": function_arn(m.function, m.qualifier, region=settings.region,
                                            account_id=settings.account_id),
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": max(msg.metadata.num_delivered for msg, _ in exhausted),
            },
            "responseContext": {
                "statusCode": outcome.status_code if outcome is not None else 0,
                "executedVersion": outcome.executed_version if outcome is not None else "",
                "functionError": (outcome.function_error if outcome is not None else "") or error.get("errorType", ""),
            },
            "JetStreamBatchInfo": {
                "stream": m.stream, "subject": m.subject, "eventSourceARN": m.source_arn,
                "startSequenceNumber": min(seqs), "endSequenceNumber": max(seqs), "batchSize": len(exhausted),
            },
            "requestPayload": {"Records": [record for _, record in exhausted]},
        }

    async def _send(self, destination: str, body: bytes) -> None:
        """A failure record to a function (queued as its asynchronous event) or a queue, as
        asynchronous invocation's destinations are sent. Raises DestinationError."""
        await deliver(self.sup.async_events.backend, destination, body, new_request_id=str(uuid.uuid4()),
                      function_exists=self.sup.get_function)
