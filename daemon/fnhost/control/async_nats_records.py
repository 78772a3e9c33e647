"""The dead-letter queue and the queue destinations on NATS JetStream (``async_nats``' records).

- Dead letters: stream ``FNHOST_DLQ``, subject ``fnhost.dlq.<function>.<request id>``, one message
  kept per subject, so dead-lettering the same event twice (its daemon died between storing the
  record and acknowledging the event, and another daemon dead-lettered it again) keeps one record.
  The payload is the message body; the rest is in headers.
- Queue destinations (``arn:aws:sqs:REGION:ACCOUNT:NAME``): stream ``FNHOST_QUEUES``, subject
  ``fnhost.queue.<name>``; each record's message id is a header, the stream sequence locates it.

Both are read by walking the subject with JetStream's "next message on subject" lookups, which
is what an operator's list, show, replay and purge need; nothing here is on the hot path.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import uuid
from typing import Any

import nats.errors
import nats.js.errors

from ..errors import QueueUnavailable, RequestTooLarge, ResourceNotFound
from .async_model import DeadLetter, QueuedEvent, QueueMessage

DLQ, QUEUES = "FNHOST_DLQ", "FNHOST_QUEUES"
H = "Fnhost-"  # the prefix of fnhost's message headers


def token(name: str) -> str:
    """A subject token for a function, queue or request id: anything but [A-Za-z0-9_-] escaped
    (SQS FIFO queue names end in ".fifo"; a dot would split the subject)."""
    return re.sub(r"[^A-Za-z0-9_-]", lambda m: f"={ord(m.group()):02X}", name)


def untoken(tok: str) -> str:
    """The name ``token`` escaped."""
    return re.sub(r"=([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), tok)


def unavailable(exc: BaseException) -> QueueUnavailable:
    """The error every operation raises when JetStream cannot be reached or does not answer."""
    return QueueUnavailable(f"the asynchronous queue (NATS JetStream) cannot be reached: {exc!r}; "
                            "Event invocations are refused until it is back")


class JetStreamRecords:
    """Dead letters and queue destinations; mixed into ``async_nats.JetStreamQueue``, which
    provides the connection (``_js``), ``_publish``, ``_event_headers`` and ``complete``."""

    url: str
    nc: Any

    def _js(self) -> Any:
        """The JetStream context. Raises QueueUnavailable while the server cannot be reached."""
        if getattr(self, "js", None) is None or self.nc is None or not self.nc.is_connected:
            raise QueueUnavailable(f"the asynchronous queue (NATS JetStream at {self.url}) is not connected; "
                                   "Event invocations are refused until it is back")
        return self.js  # type: ignore[attr-defined]

    async def _publish(self, subject: str, body: bytes, headers: dict[str, str]) -> int:
        """Publish and wait for the PubAck; the stream sequence. Raises QueueUnavailable, RequestTooLarge."""
        js = self._js()
        if len(body) + sum(len(k) + len(v) + 4 for k, v in headers.items()) + 64 > self.nc.max_payload:
            raise RequestTooLarge(f"the event does not fit the NATS server's max_payload ({self.nc.max_payload} "
                                  "bytes): raise max_payload in nats-server's configuration (2MB fits Lambda's 1 MB)")
        try:
            ack = await js.publish(subject, body, headers=headers)
        except (nats.errors.Error, asyncio.TimeoutError, OSError) as exc:
            raise unavailable(exc) from exc
        return int(ack.seq)

    @staticmethod
    async def _first(js: Any, stream: str, subject: str, after: int = 0) -> Any:
        """The first stored message on ``subject`` with a sequence above ``after``, or None."""
        try:
            return await js.get_msg(stream, seq=after + 1, subject=subject, next=True)
        except nats.js.errors.NotFoundError:
            return None

    async def _scan(self, stream: str, subject: str, limit: int = 1_000_000) -> list[Any]:
        """Up to ``limit`` stored messages on ``subject`` (wildcards allowed), oldest first.
        Raises QueueUnavailable."""
        js, found, after = self._js(), [], 0
        try:
            while len(found) < limit:
                msg = await self._first(js, stream, subject, after)
                if msg is None:
                    break
                found.append(msg)
                after = msg.seq
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            raise unavailable(exc) from exc
        return found

    # --- dead-letter queue --------------------------------------------------------------------

    async def _put_dead_letter(self, record: DeadLetter) -> None:
        headers = {
            H + "Request-Id": record.request_id, H + "Function": record.function,
            H + "Qualifier": record.qualifier, H + "Attempts": str(record.attempts),
            H + "Last-Error": json.dumps(record.last_error), H + "Received-At": repr(record.received_at),
            H + "Dead-Lettered-At": repr(record.dead_lettered_at), H + "Reason": record.reason,
        }
        if record.client_context:
            headers[H + "Client-Context"] = base64.b64encode(record.client_context).decode()
        await self._publish(f"fnhost.dlq.{token(record.function)}.{token(record.request_id)}",
                            record.payload, headers)

    @staticmethod
    def _dead_letter(msg: Any) -> DeadLetter:
        h = msg.headers or {}
        return DeadLetter(
            h.get(H + "Request-Id", ""), h.get(H + "Function", ""), h.get(H + "Qualifier", ""), msg.data or b"",
            int(h.get(H + "Attempts", "0")), json.loads(h.get(H + "Last-Error", '""')),
            float(h.get(H + "Received-At", "0")), float(h.get(H + "Dead-Lettered-At", "0")),
            h.get(H + "Reason", ""),
            base64.b64decode(h[H + "Client-Context"]) if h.get(H + "Client-Context") else b"")

    async def dead_letters(self, function: str) -> list[DeadLetter]:
        msgs = await self._scan(DLQ, f"fnhost.dlq.{token(function)}.*")
        return sorted((self._dead_letter(m) for m in msgs), key=lambda d: d.dead_lettered_at)

    async def get_dead_letter(self, function: str, request_id: str) -> DeadLetter:
        msgs = await self._scan(DLQ, f"fnhost.dlq.{token(function)}.{token(request_id)}", limit=1)
        if not msgs:
            raise ResourceNotFound(f"No dead letter {request_id} for function {function}")
        return self._dead_letter(msgs[0])

    async def _remove_dead_letter(self, function: str, request_id: str) -> None:
        try:
            await self._js().purge_stream(DLQ, subject=f"fnhost.dlq.{token(function)}.{token(request_id)}")
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            raise unavailable(exc) from exc

    async def replay(self, function: str, request_ids: list[str] | None) -> int:
        letters = await self.dead_letters(function)
        wanted = None if request_ids is None else set(request_ids)
        count = 0
        for letter in letters:
            if wanted is not None and letter.request_id not in wanted:
                continue
            event = QueuedEvent(letter.request_id, letter.function, letter.qualifier, letter.payload, time.time(),
                                letter.client_context)
            # A new message id: the original's may still be inside the duplicate window.
            await self._publish(f"fnhost.async.{token(function)}", event.payload,
                                self._event_headers(event, msg_id=f"{letter.request_id}.replay.{time.time_ns()}"))
            await self._remove_dead_letter(function, letter.request_id)
            count += 1
        return count

    async def purge(self, function: str, request_ids: list[str] | None) -> int:
        letters = await self.dead_letters(function)
        count = 0
        for letter in letters:
            if request_ids is None or letter.request_id in request_ids:
                await self._remove_dead_letter(function, letter.request_id)
                count += 1
        return count

    # --- queue destinations -------------------------------------------------------------------

    async def send(self, queue: str, body: bytes) -> QueueMessage:
        message = QueueMessage(queue, str(uuid.uuid4()), body, time.time())
        await self._publish(f"fnhost.queue.{token(queue)}", body, {
            "Nats-Msg-Id": message.message_id, H + "Message-Id": message.message_id,
            H + "Sent-At": repr(message.sent_at)})
        return message

    async def _queue_msgs(self, queue: str, limit: int) -> list[Any]:
        return await self._scan(QUEUES, f"fnhost.queue.{token(queue)}", limit=limit)

    async def receive(self, queue: str, limit: int = 100) -> list[QueueMessage]:
        return [QueueMessage(queue, (m.headers or {}).get(H + "Message-Id", str(m.seq)), m.data or b"",
                             float((m.headers or {}).get(H + "Sent-At", "0")))
                for m in await self._queue_msgs(queue, limit)]

    async def delete_messages(self, queue: str, message_ids: list[str] | None) -> int:
        js = self._js()
        try:
            if message_ids is None:
                count = len(await self._queue_msgs(queue, 1_000_000))
                await js.purge_stream(QUEUES, subject=f"fnhost.queue.{token(queue)}")
                return count
            wanted, count = set(message_ids), 0
            for m in await self._queue_msgs(queue, 1_000_000):
                if (m.headers or {}).get(H + "Message-Id") in wanted:
                    await js.delete_msg(QUEUES, m.seq)
                    count += 1
            return count
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            raise unavailable(exc) from exc

    async def queues(self) -> dict[str, int]:
        try:
            info = await self._js().stream_info(QUEUES, subjects_filter="fnhost.queue.>")
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            raise unavailable(exc) from exc
        return {untoken(s.split(".", 2)[2]): n for s, n in (info.state.subjects or {}).items() if n}
