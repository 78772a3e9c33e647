"""Event source mappings: a NATS JetStream stream (or one subject of it) polled in batches for a function.

A mapping's source is named by an ARN botocore accepts (its ``EventSourceArn`` pattern is
``arn:aws…:<service>:<region>?:<account>?:<anything>``)::

    arn:aws:jetstream:<region>:<account>:stream/<STREAM>               every subject of the stream
    arn:aws:jetstream:<region>:<account>:stream/<STREAM>/<SUBJECT>     one subject (wildcards allowed)

Region and account may be empty (``arn:aws:jetstream:::stream/ORDERS``). The stream must exist on
the JetStream server the daemon's ``event_source_nats`` setting names (or, when that is empty, the
``queue`` setting's ``nats://`` server); fnhost never creates or changes the stream, only its own
durable consumer ``fnhost-esm-<UUID>``.

Mappings live in the registry's database (functions.sqlite3), one row per UUID with its members as
JSON; ``EventSources`` keeps them in a dict and runs one ``esm_poller.Poller`` per enabled mapping.
Everything here runs on the daemon's event loop, between awaits, so the dict needs no lock.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from dataclasses import asdict, replace
from typing import Any

import anyio
import structlog

from ..errors import InvalidParameter, ResourceConflict, ResourceNotFound
from .esm_metrics import EsmCollector
from .esm_model import BATCH_SIZE_DEFAULT, RETRY_DEFAULT, Mapping, consumer_name, validate
from .esm_poller import Connection, Poller

log = structlog.get_logger("fnhost.event_sources")


# --- the table and the pollers --------------------------------------------------------------------


class EventSources:
    """The event_source_mappings table of one registry database, and a poller per enabled mapping.

    ``sup`` is the supervisor (functions are checked and invoked through it); ``nats_url`` the
    JetStream server ("" refuses every mapping with a clear message).
    """

    def __init__(self, sup: Any, db: sqlite3.Connection, nats_url: str) -> None:
        self.sup = sup
        self.nats_url = nats_url
        self._db = db
        db.execute("CREATE TABLE IF NOT EXISTS event_source_mappings (uuid TEXT PRIMARY KEY, "
                   "function TEXT NOT NULL, members TEXT NOT NULL)")
        self._mappings: dict[str, Mapping] = {}
        for (members,) in db.execute("SELECT members FROM event_source_mappings"):
            m = Mapping(**json.loads(members))
            self._mappings[m.uuid] = m
        self._pollers: dict[str, Any] = {}  # uuid → esm_poller.Poller
        self._connection: Any = None  # esm_poller.Connection, opened by ``run``
        self._tg: Any = None
        self._collector_registered = False

    # --- lifecycle ----------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start the pollers of the enabled mappings; stop them all when cancelled."""
        self._connection = Connection(self.nats_url)
        if not self._collector_registered:
            self.sup.metrics_registry.register(EsmCollector(self.stats))
            self._collector_registered = True
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                for m in self._mappings.values():
                    self._start(m)
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._tg = None
            with anyio.CancelScope(shield=True):
                await self._connection.close()

    def _start(self, m: Mapping) -> None:
        if not m.enabled or self._tg is None or m.uuid in self._pollers:
            return
        poller = Poller(self, m, self._connection)
        self._pollers[m.uuid] = poller
        self._tg.start_soon(poller.run)

    def _stop(self, mapping_uuid: str) -> None:
        poller = self._pollers.pop(mapping_uuid, None)
        if poller is not None:
            poller.stop()

    def stats(self) -> list[tuple[str, str, dict[str, int]]]:
        """(uuid, function, counts) of each running poller: batches, records, failed and exhausted
        records, sent to the failure destination, concurrent batches, backlog.

        Also read by the metrics scrape on its own thread: ``list(dict.items())`` copies atomically
        under the GIL, and each poller's counts are plain ints."""
        return [(u, p.m.function, p.stats()) for u, p in list(self._pollers.items())]

    # --- the table ----------------------------------------------------------------------------

    def _write(self, m: Mapping) -> None:
        self._db.execute("INSERT OR REPLACE INTO event_source_mappings VALUES (?, ?, ?)",
                         (m.uuid, m.function, json.dumps(asdict(m))))
        self._mappings[m.uuid] = m

    def _check_function(self, function: str, qualifier: str) -> None:
        """Raises ResourceNotFound for an unknown function, version or alias."""
        self.sup.get_function(function, qualifier)

    def _check_source(self) -> None:
        if not self.nats_url:
            raise InvalidParameter("Event source mappings need a NATS JetStream server: set [daemon] "
                                   "event_source_nats (or queue) to nats://HOST:PORT")

    def create(self, function: str, qualifier: str, source_arn: str, *, batch_size: int | None = None,
               window_s: int | None = None, enabled: bool | None = None, report_batch_item_failures: bool = False,
               maximum_concurrency: int | None = None, maximum_retry_attempts: int | None = None,
               on_failure: str = "") -> Mapping:
        """A new mapping, polled at once when enabled.

        Raises InvalidParameter (a bad member, no JetStream configured), ResourceNotFound (no such
        function), ResourceConflict (the function already has a mapping for this source).
        """
        self._check_source()
        self._check_function(function, qualifier)
        for other in self._mappings.values():
            if other.function == function and other.qualifier == qualifier and other.source_arn == source_arn:
                raise ResourceConflict(f"An event source mapping with event source ({source_arn}) and function "
                                       f"({function}) already exists. Please update or delete the existing "
                                       f"mapping with UUID {other.uuid}")
        m = validate(Mapping(
            str(uuid.uuid4()), function, qualifier, source_arn,
            batch_size=BATCH_SIZE_DEFAULT if batch_size is None else batch_size,
            window_s=window_s or 0, enabled=True if enabled is None else enabled,
            report_batch_item_failures=report_batch_item_failures,
            maximum_concurrency=maximum_concurrency or 0,
            maximum_retry_attempts=RETRY_DEFAULT if maximum_retry_attempts is None else maximum_retry_attempts,
            on_failure=on_failure, last_modified=time.time()))
        self._write(m)
        self._start(m)
        log.info("event_source_mapping_created", uuid=m.uuid, function=function, source=source_arn)
        return m

    def get(self, mapping_uuid: str) -> Mapping:
        """Raises ResourceNotFound."""
        m = self._mappings.get(mapping_uuid)
        if m is None:
            raise ResourceNotFound(f"The resource you requested does not exist. (Service: Lambda, "
                                   f"Status Code: 404, event source mapping {mapping_uuid})")
        return m

    def update(self, mapping_uuid: str, *, function: str | None = None, qualifier: str | None = None,
               **changes: Any) -> Mapping:
        """Change the members given (None: unchanged); the poller restarts with them.

        ``changes``: batch_size, window_s, enabled, report_batch_item_failures, maximum_concurrency
        (0: the function's limit), maximum_retry_attempts, on_failure. Raises ResourceNotFound,
        InvalidParameter.
        """
        current = self.get(mapping_uuid)
        given = {k: v for k, v in changes.items() if v is not None}
        if function is not None:
            self._check_function(function, qualifier or "")
            given.update(function=function, qualifier=qualifier or "")
        m = validate(replace(current, **given, last_modified=time.time()))
        self._write(m)
        self._stop(m.uuid)  # the consumer keeps its place; a new poller reads the new members
        self._start(m)
        return m

    def set_result(self, mapping_uuid: str, result: str) -> None:
        """LastProcessingResult, kept in memory (written with the next change of the mapping)."""
        m = self._mappings.get(mapping_uuid)
        if m is not None and m.last_processing_result != result:
            self._mappings[mapping_uuid] = replace(m, last_processing_result=result)

    def delete(self, mapping_uuid: str) -> Mapping:
        """Stop polling and forget the mapping; its durable consumer is deleted too (best effort:
        with NATS away the consumer stays, holding only a position).

        Raises ResourceNotFound.
        """
        m = self.get(mapping_uuid)
        self._db.execute("DELETE FROM event_source_mappings WHERE uuid = ?", (mapping_uuid,))
        del self._mappings[mapping_uuid]
        self._stop(mapping_uuid)  # its batch in flight finishes; its acknowledgements then go nowhere
        if self._tg is not None:
            self._tg.start_soon(self._connection.delete_consumer, m.stream, consumer_name(m.uuid))
        return m

    def list(self, function: str = "", qualifier: str | None = None, source_arn: str = "") -> list[Mapping]:
        """The mappings, filtered by function (and qualifier) and source, oldest first."""
        out = [m for m in self._mappings.values()
               if (not function or m.function == function) and (qualifier is None or m.qualifier == qualifier)
               and (not source_arn or m.source_arn == source_arn)]
        return sorted(out, key=lambda m: (m.last_modified, m.uuid))

    def forget(self, function: str) -> None:
        """Drop the mappings of a deleted function; never raises."""
        for m in [m for m in self._mappings.values() if m.function == function]:
            self.delete(m.uuid)
