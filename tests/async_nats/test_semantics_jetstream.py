"""Lambda's asynchronous semantics again, with the queue on JetStream: the same tests as
tests/async_invoke/test_semantics.py (imported from there, so both backends pass one suite) run
against a daemon whose ``queue`` is a real nats-server; the age test, which plants an old event in
the store, has its JetStream version here."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest
from fnhost.control.async_model import QueuedEvent
from fnhost.control.async_nats import JetStreamQueue

from tests.async_invoke.test_semantics import (  # noqa: F401 (fixtures and tests, collected here again)
    CONFIG,
    async_stats,
    client,
    deploy,
    recorder,
    test_always_failing_event_is_tried_1_plus_retries_times_with_lambdas_spacing_then_dead_lettered,
    test_an_aliases_own_config_applies_to_events_sent_to_that_alias,
    test_event_invoke_config_is_validated_with_lambdas_messages,
    test_maximum_retry_attempts_zero_sends_the_failure_record_to_a_queue_field_by_field,
    test_success_destination_function_receives_lambdas_record,
    test_synchronous_calls_are_not_starved_by_a_flood_of_events,
    test_throttled_event_waits_and_runs_without_using_a_retry,
    wait_for,
)
from tests.async_invoke.wire_support import Recorder
from tests.conftest import Daemon, short_tempdir
from tests.nats_server import NatsServer, running_nats_server


@pytest.fixture(scope="module")
def module_nats_server() -> Iterator[NatsServer]:
    with running_nats_server() as server:
        yield server


@pytest.fixture(scope="module")
def daemon(module_nats_server: NatsServer) -> Iterator[Daemon]:
    """The daemon of the imported tests, its queue on JetStream."""
    d = Daemon(short_tempdir() / "state", config=CONFIG + f'queue = "{module_nats_server.url}"\n')
    d.start()
    yield d
    code = d.stop()
    assert code == 0, d.log_tail()
    assert d.leftovers == [], "workers outlived their daemon"


async def _plant(url: str, event: QueuedEvent) -> None:
    queue = JetStreamQueue(url)
    await queue.start()
    try:
        await queue.put(event)
    finally:
        await queue.close()


def test_event_older_than_its_maximum_age_is_dropped_counted_and_never_run_on_jetstream(
        daemon: Daemon, module_nats_server: NatsServer, recorder: Recorder) -> None:  # noqa: F811
    with daemon.client() as c:
        name = deploy(c, recorder)
        c.put_function_event_invoke_config(name, maximum_event_age_s=60)
        # An event accepted 2 minutes ago (by a daemon that had no chance to run it).
        old = QueuedEvent("old-event", name, "", json.dumps({"port": recorder.port, "tag": "stale"}).encode(),
                          time.time() - 120)
        asyncio.run(_plant(module_nats_server.url, old))
        letters = wait_for(lambda: c.list_dead_letters(name))
        assert [(x.request_id, x.reason, x.attempts) for x in letters] == [("old-event", "EventAgeExceeded", 0)]
        assert recorder.none_within(1.0), "an expired event ran"
        stats = async_stats(c, name)
        assert (stats.dropped_age, stats.dead_lettered) == (1, 1)
        assert wait_for(lambda: async_stats(c, name).depth == 0)
