"""The asynchronous queue's backend interface: what the dispatcher needs of a durable store.

Two backends implement it: ``async_sqlite.SqliteQueue`` (embedded, the state directory; the
default) and ``async_nats.JetStreamQueue`` (``queue = "nats://HOST:PORT"``: many daemons share
one stream as competing consumers). ``open_backend`` picks one from the ``queue`` setting.

The division of labour: the backend stores, leases and redelivers; the dispatcher
(``async_dispatch``) decides. It applies Lambda's rules (attempts, age, retry spacing,
destinations) and tells the backend the result with ``complete``, ``retry`` or
``dead_letter``. Delivery is at least once: an event whose lease runs out (its daemon died or
hung) is delivered again, to this daemon after a restart or to another one sharing the store.

Every method may raise ``QueueUnavailable`` when the store cannot be reached or written
(disk full, NATS down); nothing is ever kept only in memory instead.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .async_model import DeadLetter, QueuedEvent, QueueMessage


@runtime_checkable
class AsyncQueue(Protocol):
    """A durable store of asynchronous events, dead letters and queue destinations."""

    name: str  # "sqlite" or "jetstream", for logs, stats and ``fnhost status``

    async def start(self) -> None:
        """Open the store (create tables / streams as needed) and recover.

        Recovery: events that were leased when a daemon died are deliverable again at once
        (SQLite: every lease is this host's, so all are cleared; JetStream: the ack deadline does
        it). Raises QueueUnavailable when the store cannot be opened.
        """
        ...

    async def close(self) -> None:
        """Release the store; leased events not completed stay queued (delivered again later).
        Safe to call twice."""
        ...

    # --- accepting ----------------------------------------------------------------------------

    async def put(self, event: QueuedEvent) -> None:
        """Store a new event durably: when this returns, the event survives SIGKILL of the
        daemon (and, for SQLite, power loss as far as ``synchronous`` promises) and will be
        delivered. Concurrent puts may share one commit (group commit); each waits for its own.

        ``event.attempts``/``failures`` are stored as given (0 for a new event; a replayed dead
        letter starts over at 0). A request id already queued is a no-op (idempotent).
        Raises QueueUnavailable; the caller must then refuse the invocation.
        """
        ...

    # --- delivering ---------------------------------------------------------------------------

    async def ready_functions(self) -> set[str]:
        """Names of the functions that have an event deliverable now (not leased, ``not_before``
        passed). May over-approximate (a ``lease`` may then return nothing); must not miss one
        for longer than a poll interval."""
        ...

    async def lease(self, function: str, max_events: int, lease_s: float) -> list[QueuedEvent]:
        """Up to ``max_events`` deliverable events of ``function``, oldest first, each leased for
        ``lease_s`` seconds and with ``attempts`` already incremented (durably) for this delivery.

        A leased event is delivered to no one else until its lease runs out; the dispatcher ends
        every lease with ``complete``, ``retry`` or ``dead_letter``, or keeps it with ``extend``.
        An event's ``handle`` identifies this delivery: ending a lease that already ran out (and
        was delivered again) must not end the newer delivery (the call is then a no-op).
        """
        ...

    async def extend(self, event: QueuedEvent, lease_s: float) -> None:
        """Keep a leased event's lease for ``lease_s`` more seconds (a long-running attempt;
        JetStream: in_progress). A lease that already ran out is left alone."""
        ...

    async def complete(self, event: QueuedEvent) -> None:
        """The event is done (succeeded, or its failure was delivered to a destination): remove
        it durably. Idempotent."""
        ...

    async def retry(self, event: QueuedEvent, delay_s: float, *, counted: bool, error: str) -> None:
        """Deliver the event again in ``delay_s`` seconds.

        ``counted``: the attempt was a function error and uses one of MaximumRetryAttempts
        (``failures`` += 1, durably); otherwise it was throttled or the platform failed, and it
        is retried until its age runs out. ``error`` becomes ``last_error``.
        """
        ...

    async def dead_letter(self, event: QueuedEvent, reason: str, error: str) -> DeadLetter:
        """Move a leased event to its function's dead-letter queue, atomically (it is never in
        both, never in neither); returns the record stored."""
        ...

    async def depth(self) -> dict[str, tuple[int, float]]:
        """Per function with queued events: (events queued or leased, oldest ``received_at``)."""
        ...

    async def forget_function(self, function: str) -> int:
        """The function was deleted: drop its queued events (not its dead letters); how many."""
        ...

    # --- dead-letter queue (per function) -----------------------------------------------------

    async def dead_letters(self, function: str) -> list[DeadLetter]:
        """The function's dead letters, oldest first."""
        ...

    async def get_dead_letter(self, function: str, request_id: str) -> DeadLetter:
        """One dead letter. Raises ResourceNotFound."""
        ...

    async def replay(self, function: str, request_ids: list[str] | None) -> int:
        """Queue these dead letters (None: all of the function's) again as new deliveries of the
        same request id (attempts and failures from 0; ``received_at`` now, so age starts
        over), removing them from the dead-letter queue atomically; how many. Unknown ids are
        skipped."""
        ...

    async def purge(self, function: str, request_ids: list[str] | None) -> int:
        """Delete these dead letters (None: all of the function's); how many."""
        ...

    # --- queue destinations -------------------------------------------------------------------

    async def send(self, queue: str, body: bytes) -> QueueMessage:
        """Append a record to the named queue durably; returns it with its message id."""
        ...

    async def receive(self, queue: str, limit: int = 100) -> list[QueueMessage]:
        """The queue's oldest ``limit`` records, without removing them."""
        ...

    async def delete_messages(self, queue: str, message_ids: list[str] | None) -> int:
        """Remove these records (None: all) from the queue; how many."""
        ...

    async def queues(self) -> dict[str, int]:
        """Every queue destination that holds records, with its record count."""
        ...
