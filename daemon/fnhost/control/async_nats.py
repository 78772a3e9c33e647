"""The asynchronous queue on NATS JetStream: many fnhost daemons share one stream.

``queue = "nats://HOST:PORT"`` (or ``fnhost serve --queue``) selects this backend. Every daemon
serving the same functions connects to the same JetStream and they compete for events:

- Stream ``FNHOST_ASYNC`` (work-queue retention, file storage), subject ``fnhost.async.<function>``.
  An event is one message: the payload as the body, what the dispatcher needs in headers. ``put``
  returns only after JetStream's PubAck, so the 202 follows a stored event; ``Nats-Msg-Id`` is the
  request id, so a put repeated within the stream's duplicate window stores nothing new.
- One durable pull consumer per function, ``fnhost-<function>``, shared by every daemon (pull
  consumers hand each message to one fetcher at a time: competing consumers). ``lease`` is a
  fetch of at most the dispatcher's free capacity; the consumer's AckWait is the lease (the
  dispatcher derives it from the function's timeout), ``extend`` is ``in_progress`` (+WPI), so a
  daemon that dies (SIGKILL, host lost) stops extending and JetStream redelivers its events to
  whichever daemon fetches next, once AckWait has passed.
- A function error (``retry(counted=True)``) is a Nak with the dispatcher's delay (Lambda's
  spacing: base, then twice base): JetStream itself redelivers it then, and its delivery count
  (``num_delivered`` in the ack metadata) is the attempt counter: ``failures`` is derived from
  it, never kept beside it. MaxDeliver bounds the deliveries (``MAX_DELIVER``, below). It is
  the ceiling for Lambda's largest MaximumRetryAttempts, not each function's own value: the
  setting is per function and per version or alias while one consumer serves all of a function's
  qualifiers, so the dispatcher stops earlier, on the same delivery count, where it is lower.
- Throttles and platform failures (``retry(counted=False)``) must not use up attempts, but every
  JetStream delivery counts toward MaxDeliver, Nak or not: there is no uncounted redelivery. The
  honest way is a new message: the event is published again (same request id, the failures and
  attempts so far in its headers, ``Fnhost-Not-Before`` and ``Fnhost-Parked: 1``) and only then
  the old delivery is acknowledged. The new message's first delivery is parked: Nak with the
  remaining delay, so JetStream again does the waiting; that one delivery is subtracted when the
  counts are derived. A crash between the publish and the ack leaves two copies: the event may
  run twice, as delivery is at least once anyway.
- BackOff is not set: JetStream applies it only to AckWait expiries (it replaces AckWait per
  delivery), and here every expiry means a daemon died, where the shortest redelivery is best.
- A delivery whose daemon died counts as a failure (JetStream cannot tell it from a Nak), so an
  event can reach the dispatcher with ``failures`` already past its MaximumRetryAttempts: the
  dispatcher then dead-letters it without running it.
- JetStream acknowledges by stream sequence, not by delivery: ending a delivery whose AckWait
  already ran out (a daemon stalled past it; the keep-alive and the 30 s margin of the lease make
  that rare) ends the newer delivery as well. Acking it is then right (the event ran); a stale
  Nak only brings one more delivery. Where SQLite can tell deliveries apart, JetStream cannot.
- Dead letters: stream ``FNHOST_DLQ``, subject ``fnhost.dlq.<function>.<request id>`` with one
  message per subject kept: ``dead_letter`` publishes the record (PubAck) and then acknowledges
  the event; a crash in between delivers the event again and dead-letters it again onto the same
  subject, replacing the record: never in neither, briefly in both.
- Queue destinations: stream ``FNHOST_QUEUES``, subject ``fnhost.queue.<queue>``.

If the connection drops, nats-py reconnects forever; while it is down nothing is buffered in
memory (``pending_size=0``): ``put`` raises QueueUnavailable at once, and acknowledgements that
cannot be sent leave their events to be redelivered. What JetStream acknowledged (PubAck) is in
its file store and survives nats-server's crash or restart; against power loss the server syncs
that store to disk only every ``sync_interval`` (2 minutes by default; nats-server 2.10 and later
can be told ``sync_interval: always``), so a cluster of three (replicas) is what covers a host lost.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from typing import Any

import nats
import nats.errors
import nats.js.errors
import structlog
from nats.js import api

from .async_model import RETRY_ATTEMPTS_MAX, DeadLetter, QueuedEvent
from .async_nats_records import DLQ, QUEUES, JetStreamRecords
from .async_nats_records import H as _H
from .async_nats_records import token as _token
from .async_nats_records import unavailable as _unavailable
from .async_nats_records import untoken as _untoken

log = structlog.get_logger("fnhost.async.nats")

EVENTS = "FNHOST_ASYNC"
#: Deliveries per message: the first attempt, MaximumRetryAttempts' retries, the parked delivery
#: of a re-published event, and one more so an event whose last attempt died with its daemon is
#: delivered once more, to be dead-lettered instead of stranded.
MAX_DELIVER = 1 + RETRY_ATTEMPTS_MAX + 2
FETCH_WAIT_S = 0.05  # how long a lease waits when nothing is deliverable (the dispatcher polls again soon)
API_TIMEOUT_S = 5.0
START_WAIT_S = 5.0  # how long start() waits for the server before the daemon starts without it


class JetStreamQueue(JetStreamRecords):
    """``AsyncQueue`` on NATS JetStream (see the module docstring for the mapping)."""

    name = "jetstream"

    def __init__(self, url: str, settings: object = None) -> None:
        self.url = url
        self.nc: Any = None
        self.js: Any = None
        self._subs: dict[str, Any] = {}  # function -> pull subscription on its durable consumer
        self._ack_wait: dict[str, float] = {}
        self._connector: asyncio.Task[None] | None = None
        self._last_error_log = -60.0

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and create the streams. An unreachable server does not stop the daemon: the
        connection keeps being tried in the background (nats-py retries the first connect forever
        too, with ``max_reconnect_attempts=-1``), and until then every operation raises
        QueueUnavailable."""
        self._connector = asyncio.get_running_loop().create_task(self._connect_forever())
        try:
            await asyncio.wait_for(asyncio.shield(self._connector), timeout=START_WAIT_S)
        except asyncio.TimeoutError:
            log.warning("nats_unreachable", url=self.url, waiting=True)

    async def _connect_forever(self) -> None:
        while True:
            try:
                await self._connect()
                return
            except Exception as exc:  # noqa: BLE001 (the streams could not be made yet: try again)
                log.warning("nats_setup_failed", url=self.url, error=repr(exc))
                await asyncio.sleep(1.0)

    async def _connect(self) -> None:
        nc = await nats.connect(
            self.url, name="fnhost", connect_timeout=2, allow_reconnect=True,
            max_reconnect_attempts=-1, reconnect_time_wait=0.5,
            # Never hold publishes in memory while disconnected: a put must fail, not be "accepted".
            pending_size=0,
            error_cb=self._on_error, disconnected_cb=self._on_disconnect, reconnected_cb=self._on_reconnect)
        try:
            js = nc.jetstream(timeout=API_TIMEOUT_S)
            await self._ensure_stream(js, EVENTS, "fnhost.async.>", api.RetentionPolicy.WORK_QUEUE)
            await self._ensure_stream(js, DLQ, "fnhost.dlq.>", api.RetentionPolicy.LIMITS, per_subject=1)
            await self._ensure_stream(js, QUEUES, "fnhost.queue.>", api.RetentionPolicy.LIMITS)
        except BaseException:
            await nc.close()
            raise
        self.nc, self.js = nc, js
        log.info("nats_connected", url=self.url)

    @staticmethod
    async def _ensure_stream(js: Any, name: str, subjects: str, retention: api.RetentionPolicy,
                             per_subject: int = -1) -> None:
        config = api.StreamConfig(name=name, subjects=[subjects], retention=retention,
                                  storage=api.StorageType.FILE, max_msgs_per_subject=per_subject)
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError:
            # It exists (another daemon made it, perhaps with other limits an operator set): use it.
            await js.stream_info(name)

    async def _on_error(self, exc: Exception) -> None:
        # While the server is down nats-py reports every reconnect attempt (twice a second): one
        # warning a minute says it all.
        now = time.monotonic()
        if now - self._last_error_log >= 60.0:
            self._last_error_log = now
            log.warning("nats_error", url=self.url, error=repr(exc))

    async def _on_disconnect(self) -> None:
        log.warning("nats_disconnected", url=self.url)

    async def _on_reconnect(self) -> None:
        log.info("nats_reconnected", url=self.url)

    async def close(self) -> None:
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._connector
            self._connector = None
        nc, self.nc, self.js = self.nc, None, None
        self._subs.clear()
        if nc is not None and not nc.is_closed:
            await nc.close()

    # --- accepting ----------------------------------------------------------------------------

    async def put(self, event: QueuedEvent) -> None:
        await self._publish(f"fnhost.async.{_token(event.function)}", event.payload,
                            self._event_headers(event, msg_id=event.request_id))

    @staticmethod
    def _event_headers(event: QueuedEvent, *, msg_id: str, not_before: float = 0.0) -> dict[str, str]:
        headers = {
            "Nats-Msg-Id": msg_id,
            _H + "Request-Id": event.request_id,
            _H + "Function": event.function,
            _H + "Qualifier": event.qualifier,
            _H + "Received-At": repr(event.received_at),
            _H + "Attempts": str(event.attempts),
            _H + "Failures": str(event.failures),
        }
        if event.client_context:
            headers[_H + "Client-Context"] = base64.b64encode(event.client_context).decode()
        if event.last_error:
            headers[_H + "Last-Error"] = json.dumps(event.last_error)  # one line, whatever it holds
        if not_before:
            headers[_H + "Not-Before"] = repr(not_before)
            headers[_H + "Parked"] = "1"
        return headers

    @staticmethod
    def _event(msg: Any) -> QueuedEvent:
        """The QueuedEvent of a delivered message, its counts derived from JetStream's delivery count."""
        h = msg.headers or {}
        delivered = msg.metadata.num_delivered
        parked = 1 if h.get(_H + "Parked") else 0
        # Deliveries before this one, less the parked one: each was a counted Nak or a daemon that died.
        earlier = max(0, delivered - 1 - parked)
        return QueuedEvent(
            request_id=h.get(_H + "Request-Id", ""), function=h.get(_H + "Function", ""),
            qualifier=h.get(_H + "Qualifier", ""), payload=msg.data,
            received_at=float(h.get(_H + "Received-At", "0")),
            client_context=base64.b64decode(h[_H + "Client-Context"]) if h.get(_H + "Client-Context") else b"",
            attempts=int(h.get(_H + "Attempts", "0")) + earlier + 1,
            failures=int(h.get(_H + "Failures", "0")) + earlier,
            last_error=json.loads(h[_H + "Last-Error"]) if h.get(_H + "Last-Error") else "",
            not_before=float(h.get(_H + "Not-Before", "0")), handle=msg)

    # --- delivering ---------------------------------------------------------------------------

    async def _subscription(self, function: str, lease_s: float) -> Any:
        """The pull subscription on the function's durable consumer, created (or its AckWait
        raised to ``lease_s``) as needed: every daemon binds to the same consumer."""
        js = self._js()
        sub = self._subs.get(function)
        if sub is not None and self._ack_wait.get(function, 0.0) >= lease_s:
            return sub
        durable = f"fnhost-{_token(function)}"
        config = api.ConsumerConfig(
            durable_name=durable, filter_subject=f"fnhost.async.{_token(function)}",
            ack_policy=api.AckPolicy.EXPLICIT, deliver_policy=api.DeliverPolicy.ALL,
            ack_wait=max(1.0, lease_s), max_deliver=MAX_DELIVER, max_ack_pending=-1,
            description=f"fnhost asynchronous events of {function}")
        try:
            # Creating a durable that exists with another AckWait updates it (nats-server >= 2.7).
            await js.add_consumer(EVENTS, config)
            if sub is None:
                sub = await js.pull_subscribe_bind(durable, stream=EVENTS)
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            raise _unavailable(exc) from exc
        self._subs[function] = sub
        self._ack_wait[function] = lease_s
        return sub

    async def ready_functions(self) -> set[str]:
        js = self._js()
        try:
            info = await js.stream_info(EVENTS, subjects_filter="fnhost.async.>")
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            raise _unavailable(exc) from exc
        # Every function with a stored event: over-approximate (some may be leased or waiting on
        # a Nak's delay; JetStream knows when, and lease's short fetch finds out).
        return {_untoken(subject.split(".", 2)[2]) for subject, n in (info.state.subjects or {}).items() if n}

    async def lease(self, function: str, max_events: int, lease_s: float) -> list[QueuedEvent]:
        if max_events <= 0:
            return []
        sub = await self._subscription(function, lease_s)
        try:
            msgs = await sub.fetch(batch=max_events, timeout=FETCH_WAIT_S)
        except asyncio.TimeoutError:  # nothing deliverable (nats-py raises either TimeoutError)
            return []
        except nats.errors.Error as exc:
            # Bind again next time: the consumer may have been deleted (its function was, on
            # another daemon) or the connection replaced.
            self._subs.pop(function, None)
            raise _unavailable(exc) from exc
        events, now = [], time.time()
        for msg in msgs:
            event = self._event(msg)
            if msg.headers and msg.headers.get(_H + "Parked") and msg.metadata.num_delivered == 1:
                # A re-published (throttled) event's first delivery: JetStream waits out the rest.
                await self._quietly(msg.nak(delay=max(0.0, event.not_before - now)))
                continue
            events.append(event)
        return events

    @staticmethod
    async def _quietly(awaitable: Any) -> bool:
        """Send an acknowledgement; False when the connection is down (JetStream redelivers then)."""
        try:
            await awaitable
            return True
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            log.warning("nats_ack_failed", error=repr(exc))
            return False

    async def extend(self, event: QueuedEvent, lease_s: float) -> None:
        await self._quietly(event.handle.in_progress())

    async def complete(self, event: QueuedEvent) -> None:
        try:
            await event.handle.ack_sync(timeout=API_TIMEOUT_S)
        except nats.errors.MsgAlreadyAckdError:
            pass
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            raise _unavailable(exc) from exc

    async def retry(self, event: QueuedEvent, delay_s: float, *, counted: bool, error: str) -> None:
        msg = event.handle
        if counted:
            await self._quietly(msg.nak(delay=max(0.0, delay_s)))
            return
        again = QueuedEvent(event.request_id, event.function, event.qualifier, event.payload, event.received_at,
                            event.client_context, attempts=event.attempts, failures=event.failures,
                            last_error=error)
        meta = msg.metadata
        await self._publish(msg.subject, event.payload, self._event_headers(
            again, msg_id=f"{event.request_id}.{meta.sequence.stream}.{meta.num_delivered}",
            not_before=time.time() + max(0.0, delay_s)))
        await self.complete(event)

    async def dead_letter(self, event: QueuedEvent, reason: str, error: str) -> DeadLetter:
        record = DeadLetter(event.request_id, event.function, event.qualifier, event.payload, event.attempts,
                            error, event.received_at, time.time(), reason, event.client_context)
        await self._put_dead_letter(record)
        await self.complete(event)
        return record

    async def depth(self) -> dict[str, tuple[int, float]]:
        js = self._js()
        out: dict[str, tuple[int, float]] = {}
        try:
            info = await js.stream_info(EVENTS, subjects_filter="fnhost.async.>")
            for subject, count in (info.state.subjects or {}).items():
                first = await self._first(js, EVENTS, subject)
                received = float((first.headers or {}).get(_H + "Received-At", "0")) if first else time.time()
                out[_untoken(subject.split(".", 2)[2])] = (count, received)
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            raise _unavailable(exc) from exc
        return out

    async def forget_function(self, function: str) -> int:
        js, subject = self._js(), f"fnhost.async.{_token(function)}"
        try:
            info = await js.stream_info(EVENTS, subjects_filter=subject)
            count = int((info.state.subjects or {}).get(subject, 0))
            await js.purge_stream(EVENTS, subject=subject)
            self._subs.pop(function, None)
            with_consumer = f"fnhost-{_token(function)}"
            try:
                await js.delete_consumer(EVENTS, with_consumer)
            except nats.js.errors.NotFoundError:
                pass
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            raise _unavailable(exc) from exc
        return count
