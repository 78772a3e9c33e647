"""Lambda's asynchronous semantics on a real daemon with real Python workers, through the gRPC
client: attempts and their spacing, the dead-letter queue, destinations and their records,
events dropped by age, throttled events, and synchronous calls beside a flood of events."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterator

import pytest
from fnhost import errors
from fnhost.client import Client

from tests.conftest import Daemon, short_tempdir, unique, zipped

from .wire_support import Recorder

BASE_S = 0.3  # async_retry_base_s: retries come 0.3 s, then 0.6 s after a failure
ACCOUNT = "000000000000"

# Reports each call to the recorder (the port in the event, or in RECORDER_PORT for records a
# destination sends), sleeps if asked, then fails if asked.
APP = '''
import json, os, socket, time

def handler(event, context):
    port = event.get("port") or int(os.environ["RECORDER_PORT"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall((json.dumps({"request_id": context.aws_request_id, "event": event,
                               "at": time.time()}) + "\\n").encode())
    time.sleep(event.get("sleep", 0))
    if event.get("fail"):
        raise ValueError("asked to fail: " + str(event.get("tag", "")))
    return {"ok": True, "tag": event.get("tag")}
'''

CONFIG = f"[daemon]\ninit_timeout_s = 10\nqueue_timeout_s = 0.3\nasync_retry_base_s = {BASE_S}\n"


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    state = short_tempdir()
    d = Daemon(state / "state", config=CONFIG)
    d.start()
    yield d
    code = d.stop()
    assert code == 0, d.log_tail()
    assert d.leftovers == [], "workers outlived their daemon"


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    r = Recorder()
    yield r
    r.close()


@pytest.fixture
def client(daemon: Daemon) -> Iterator[Client]:
    with daemon.client() as c:
        yield c


def deploy(client: Client, recorder: Recorder, **options: int) -> str:
    name = unique("aq")
    client.create_function(name, runtime="python", handler="app.handler", code=zipped({"app.py": APP}),
                           environment={"RECORDER_PORT": str(recorder.port)}, **options)
    return name


def send(client: Client, name: str, recorder: Recorder, **event: object) -> str:
    result = client.invoke_async(name, json.dumps({"port": recorder.port, **event}).encode())
    assert result.status_code == 202
    return result.request_id


def async_stats(client: Client, name: str):  # type: ignore[no-untyped-def]
    for queue in client.stats().async_queues:
        if queue.function_name == name:
            return queue
    raise AssertionError(f"no async stats for {name}")


def wait_for(predicate, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_always_failing_event_is_tried_1_plus_retries_times_with_lambdas_spacing_then_dead_lettered(
        daemon: Daemon, client: Client, recorder: Recorder) -> None:
    name = deploy(client, recorder)  # no config: Lambda's default of 2 retries
    request_id = send(client, name, recorder, fail=True, tag="doomed")
    calls = [recorder.next() for _ in range(3)]
    assert recorder.none_within(BASE_S * 6), "a fourth attempt ran"
    assert {c["request_id"] for c in calls} == {request_id}  # the same request id in every attempt
    first_gap, second_gap = calls[1]["at"] - calls[0]["at"], calls[2]["at"] - calls[1]["at"]
    assert BASE_S <= first_gap < BASE_S + 2.0
    assert 2 * BASE_S <= second_gap < 2 * BASE_S + 2.0
    letters = wait_for(lambda: client.list_dead_letters(name))
    assert [(d.request_id, d.attempts, d.reason) for d in letters] == [(request_id, 3, "RetriesExhausted")]
    error = json.loads(letters[0].last_error)
    assert error["errorType"] == "ValueError" and "asked to fail: doomed" in error["errorMessage"]
    assert json.loads(letters[0].payload)["tag"] == "doomed"
    stats = async_stats(client, name)
    assert (stats.received, stats.retries, stats.dead_lettered) == (1, 2, 1)
    # Each attempt wrote its REPORT line, all under the event's request id.
    assert wait_for(lambda: sum(1 for e in daemon.log_events()
                                if e.get("event") == "REPORT" and e.get("request_id") == request_id) == 3)

    # Replayed: the same request id runs again (three more attempts), and is dead-lettered again.
    assert client.replay_dead_letters(name) == 1
    assert client.list_dead_letters(name) == [] or client.list_dead_letters(name)[0].dead_lettered_at > \
        letters[0].dead_lettered_at
    again = [recorder.next() for _ in range(3)]
    assert {c["request_id"] for c in again} == {request_id}
    wait_for(lambda: client.list_dead_letters(name))
    assert client.purge_dead_letters(name) == 1
    assert client.list_dead_letters(name) == []


def test_maximum_retry_attempts_zero_sends_the_failure_record_to_a_queue_field_by_field(
        client: Client, recorder: Recorder) -> None:
    name = deploy(client, recorder)
    queue = unique("failures")
    client.put_function_event_invoke_config(name, maximum_retry_attempts=0,
                                            on_failure=f"arn:aws:sqs:us-east-1:{ACCOUNT}:{queue}")
    request_id = send(client, name, recorder, fail=True, tag="once")
    assert recorder.next()["request_id"] == request_id
    messages = wait_for(lambda: client.receive_queue_messages(queue))
    assert recorder.none_within(BASE_S * 4), "retried despite MaximumRetryAttempts 0"
    assert len(messages) == 1
    record = json.loads(messages[0].body)
    assert list(record) == ["version", "timestamp", "requestContext", "requestPayload", "responseContext",
                            "responsePayload"]
    assert record["version"] == "1.0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["timestamp"])
    assert record["requestContext"] == {
        "requestId": request_id, "functionArn": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}:$LATEST",
        "condition": "RetriesExhausted", "approximateInvokeCount": 1}
    assert record["requestPayload"] == {"port": recorder.port, "fail": True, "tag": "once"}
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST",
                                         "functionError": "Unhandled"}
    assert record["responsePayload"]["errorType"] == "ValueError"
    assert record["responsePayload"]["errorMessage"] == "asked to fail: once"
    assert client.list_dead_letters(name) == []  # a failure destination took it
    assert async_stats(client, name).delivered_failure == 1
    assert client.delete_queue_messages(queue) == 1


def test_success_destination_function_receives_lambdas_record(client: Client, recorder: Recorder) -> None:
    name = deploy(client, recorder)
    target = deploy(client, recorder)
    client.put_function_event_invoke_config(
        name, on_success=f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{target}")
    request_id = send(client, name, recorder, tag="fine")
    assert recorder.next()["request_id"] == request_id
    delivered = recorder.next()  # the destination function, run asynchronously with the record
    assert delivered["request_id"] != request_id
    record = delivered["event"]
    assert record["requestContext"] == {
        "requestId": request_id, "functionArn": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}:$LATEST",
        "condition": "Success", "approximateInvokeCount": 1}
    assert record["requestPayload"] == {"port": recorder.port, "tag": "fine"}
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert record["responsePayload"] == {"ok": True, "tag": "fine"}
    assert wait_for(lambda: async_stats(client, name).delivered_success == 1)


def test_throttled_event_waits_and_runs_without_using_a_retry(client: Client, recorder: Recorder) -> None:
    name = deploy(client, recorder, max_concurrency=1)
    client.put_function_event_invoke_config(name, maximum_retry_attempts=0)
    busy = threading.Thread(target=lambda: client.invoke(
        name, json.dumps({"port": recorder.port, "sleep": 2.0, "tag": "sync"}).encode()))
    busy.start()
    assert recorder.next()["event"]["tag"] == "sync"  # the only worker is taken for 2 s
    request_id = send(client, name, recorder, tag="waits")
    call = recorder.next(timeout=30)
    busy.join()
    assert call["request_id"] == request_id and call["event"]["tag"] == "waits"
    stats = async_stats(client, name)
    assert stats.throttled >= 1  # it found no worker at least once, and waited
    assert stats.dead_lettered == 0 and client.list_dead_letters(name) == []


def test_synchronous_calls_are_not_starved_by_a_flood_of_events(client: Client, recorder: Recorder) -> None:
    name = deploy(client, recorder, max_concurrency=4)  # async_max_share 0.5: events take at most 2
    # 15 s of work at 2 at once: the synchronous calls below finish long before, even on a
    # loaded host (with 30 events, once, the flood was over first).
    for i in range(60):
        send(client, name, recorder, sleep=0.5, tag=f"flood-{i}")
    time.sleep(0.5)
    latencies = []
    for i in range(8):
        started = time.monotonic()
        result = client.invoke(name, json.dumps({"port": recorder.port, "tag": f"sync-{i}"}).encode())
        latencies.append(time.monotonic() - started)
        assert result.function_error == "" and json.loads(result.payload)["tag"] == f"sync-{i}"
    synchronous_done = time.time()
    # None was throttled (the worker queue wait is 0.3 s: a refusal would have raised), and once a
    # worker of their own was warm none waited behind the flood (bounds loose: the host is shared).
    assert max(latencies[1:]) < 1.0, latencies
    calls = [recorder.next() for _ in range(68)]
    starts = sorted(c["at"] for c in calls if c["event"]["tag"].startswith("flood"))
    assert starts[-1] > synchronous_done, "the flood was over before the synchronous calls"
    # At most 2 events at once: any 3 consecutive starts span at least one 0.5 s run.
    assert all(b - a >= 0.48 for a, b in zip(starts, starts[2:])), starts


def test_event_older_than_its_maximum_age_is_dropped_counted_and_never_run(recorder: Recorder) -> None:
    state = short_tempdir()
    d = Daemon(state / "state", config=CONFIG)
    d.start()
    try:
        with d.client() as c:
            name = deploy(c, recorder)
            c.put_function_event_invoke_config(name, maximum_event_age_s=60)
        assert d.stop() == 0
        # An event accepted 2 minutes ago that the daemon had no chance to run (it was down).
        with sqlite3.connect(d.state_dir / "async.sqlite3") as db:
            old = time.time() - 120
            db.execute("INSERT INTO events (request_id, function, qualifier, payload, client_context, received_at, "
                       "attempts, failures, last_error, not_before, due, lease_id) "
                       "VALUES ('old-event', ?, '', ?, x'', ?, 0, 0, '', ?, ?, NULL)",
                       (name, json.dumps({"port": recorder.port, "tag": "stale"}).encode(), old, old, old))
        d.start()
        with d.client() as c:
            letters = wait_for(lambda: c.list_dead_letters(name))
            assert [(x.request_id, x.reason, x.attempts) for x in letters] == [("old-event", "EventAgeExceeded", 0)]
            assert recorder.none_within(1.0), "an expired event ran"
            stats = async_stats(c, name)
            assert (stats.dropped_age, stats.dead_lettered, stats.depth) == (1, 1, 0)
    finally:
        d.stop()
        assert d.leftovers == []


def test_event_invoke_config_is_validated_with_lambdas_messages(client: Client, recorder: Recorder) -> None:
    name = deploy(client, recorder)
    with pytest.raises(errors.InvalidParameter, match="maximumRetryAttempts.*less than or equal to 2"):
        client.put_function_event_invoke_config(name, maximum_retry_attempts=3)
    with pytest.raises(errors.InvalidParameter, match="maximumEventAgeInSeconds.*greater than or equal to 60"):
        client.put_function_event_invoke_config(name, maximum_event_age_s=59)
    with pytest.raises(errors.InvalidParameter, match="destination"):
        client.put_function_event_invoke_config(name, on_failure="arn:aws:sns:us-east-1:000000000000:topic")
    with pytest.raises(errors.ResourceNotFound, match="doesn't have an EventInvokeConfig"):
        client.get_function_event_invoke_config(name)
    put = client.put_function_event_invoke_config(name, maximum_retry_attempts=1)
    updated = client.update_function_event_invoke_config(name, maximum_event_age_s=120)
    assert (put.maximum_retry_attempts, updated.maximum_retry_attempts, updated.maximum_event_age_s) == (1, 1, 120)
    replaced = client.put_function_event_invoke_config(name, maximum_event_age_s=300)
    assert (replaced.maximum_retry_attempts, replaced.maximum_event_age_s) == (2, 300)  # put replaces


def test_an_aliases_own_config_applies_to_events_sent_to_that_alias(client: Client, recorder: Recorder) -> None:
    name = deploy(client, recorder)
    client.publish_version(name)
    client.create_alias(name, "live", "1")
    queue = unique("alias-failures")
    client.put_function_event_invoke_config(name, "live", maximum_retry_attempts=0,
                                            on_failure=f"arn:aws:sqs:us-east-1:{ACCOUNT}:{queue}")
    assert [c.qualifier for c in client.list_function_event_invoke_configs(name)] == ["live"]
    result = client.invoke_async(name, json.dumps({"port": recorder.port, "fail": True}).encode(), qualifier="live")
    assert recorder.next()["request_id"] == result.request_id
    record = json.loads(wait_for(lambda: client.receive_queue_messages(queue))[0].body)
    assert recorder.none_within(BASE_S * 3), "retried: the alias's MaximumRetryAttempts 0 was not applied"
    assert record["requestContext"]["functionArn"].endswith(f":function:{name}:live")
    assert record["responseContext"]["executedVersion"] == "1"


def test_an_event_the_store_cannot_take_is_refused_not_accepted_into_memory(
        daemon: Daemon, client: Client, recorder: Recorder) -> None:
    name = deploy(client, recorder)
    locker = sqlite3.connect(daemon.state_dir / "async.sqlite3", isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another writer holds the store past the daemon's busy timeout
    try:
        with pytest.raises(errors.ShuttingDown, match="asynchronous queue"):
            client.invoke_async(name, json.dumps({"port": recorder.port, "tag": "refused"}).encode())
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert recorder.none_within(1.0), "a refused event ran"
    request_id = send(client, name, recorder, tag="after")  # the store is back: accepted again
    assert recorder.next()["request_id"] == request_id
