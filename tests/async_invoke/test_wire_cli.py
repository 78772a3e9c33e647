"""Asynchronous invocation from the ``fnhost`` command, the client library and the metrics
endpoint, against a real daemon and real Python workers: ``invoke --async``,
``event-invoke-config``, ``dlq list|show|replay|purge`` on a real dead-lettered event, ``queue``
(a queue destination's records), ``stats`` and Prometheus' async queue metrics."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from fnhost import errors
from fnhost.client import AsyncClient
from tests.conftest import Daemon, unique, zipped

from .wire_support import RECORDING_APP, async_daemon, recorder  # noqa: F401 - fixtures

SUCCEEDING_APP = RECORDING_APP.replace('if event.get("fail"):', 'if False:')


def fnhost(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fnhost", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "FNHOST_ADDRESS": daemon.address})


def _ok(daemon: Daemon, *args: str) -> str:
    out = fnhost(daemon, *args)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _deploy(daemon: Daemon, app: str = RECORDING_APP) -> str:
    name = unique("wire")
    with daemon.client() as client:
        client.create_function(name, runtime="python", handler="app.handler", code=zipped({"app.py": app}))
    return name


def _wait(predicate, timeout: float = 30.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_invoke_async_prints_the_request_id_and_the_event_runs(async_daemon, recorder) -> None:  # noqa: F811
    name = _deploy(async_daemon)
    accepted = json.loads(_ok(async_daemon, "invoke", "--async", name,
                              json.dumps({"port": recorder.port, "tag": "cli-async"})))
    assert accepted["status_code"] == 202
    call = recorder.next()
    assert call["event"]["tag"] == "cli-async" and call["request_id"] == accepted["request_id"]


def test_event_invoke_config_commands(async_daemon) -> None:  # noqa: F811
    name = _deploy(async_daemon)
    put = json.loads(_ok(async_daemon, "event-invoke-config", "put", name, "--maximum-retry-attempts", "1",
                         "--maximum-event-age-s", "600", "--on-failure", "arn:aws:sqs:us-east-1:000000000000:q1"))
    assert put["maximum_retry_attempts"] == 1 and put["maximum_event_age_s"] == 600
    assert put["destination_config"]["on_failure"] == "arn:aws:sqs:us-east-1:000000000000:q1"
    updated = json.loads(_ok(async_daemon, "event-invoke-config", "update", name, "--maximum-retry-attempts", "0"))
    assert updated["maximum_event_age_s"] == 600 and updated.get("maximum_retry_attempts", 0) == 0
    listed = _ok(async_daemon, "event-invoke-config", "list", name)
    assert "$LATEST" in listed and "600 s" in listed and "q1" in listed
    bad = fnhost(async_daemon, "event-invoke-config", "put", name, "--maximum-retry-attempts", "5")
    assert bad.returncode == 2 and "InvalidParameterValueException" in bad.stderr
    _ok(async_daemon, "event-invoke-config", "delete", name)
    missing = fnhost(async_daemon, "event-invoke-config", "get", name)
    assert missing.returncode == 2 and "ResourceNotFoundException" in missing.stderr


def test_dlq_list_show_replay_purge_on_a_real_dead_letter(async_daemon, recorder) -> None:  # noqa: F811
    name = _deploy(async_daemon)
    _ok(async_daemon, "event-invoke-config", "put", name, "--maximum-retry-attempts", "1")
    with async_daemon.client() as client:
        accepted = client.invoke_async(name, json.dumps({"port": recorder.port, "fail": True, "tag": "t1"}).encode())
        assert accepted.status_code == 202
        # Tried exactly 1 + MaximumRetryAttempts times, with the same request id, then dead-lettered.
        assert [recorder.next()["request_id"] for _ in range(2)] == [accepted.request_id] * 2
        letters = _wait(lambda: client.list_dead_letters(name), what="the dead letter")
    assert recorder.none_within(1.0)
    [letter] = letters
    assert letter.request_id == accepted.request_id and letter.attempts == 2
    assert letter.reason == "RetriesExhausted" and "asked to fail: t1" in letter.last_error

    table = _ok(async_daemon, "dlq", "list", name)
    assert accepted.request_id in table and "RetriesExhausted" in table and "asked to fail" in table
    shown = json.loads(_ok(async_daemon, "dlq", "show", name, accepted.request_id))
    assert shown["payload"]["tag"] == "t1" and shown["attempts"] == 2
    assert shown["last_error"]["errorType"] == "ValueError"
    missing = fnhost(async_daemon, "dlq", "show", name, "no-such-request")
    assert missing.returncode == 2 and "ResourceNotFoundException" in missing.stderr

    # The fix is deployed, then the dead letter replayed: it runs (and succeeds) with its request id.
    with async_daemon.client() as client:
        client.update_function_code(name, zipped({"app.py": SUCCEEDING_APP}))
    assert "replayed 1 event of" in _ok(async_daemon, "dlq", "replay", name)
    call = recorder.next()
    assert call["request_id"] == accepted.request_id and call["event"]["tag"] == "t1"
    with async_daemon.client() as client:
        _wait(lambda: not client.list_dead_letters(name), what="the replayed letter to leave the DLQ")
        assert recorder.none_within(1.0)  # it succeeded: not tried again, not dead-lettered again

        client.update_function_code(name, zipped({"app.py": RECORDING_APP}))
        client.put_function_event_invoke_config(name, maximum_retry_attempts=0)
        ids = [client.invoke_async(name, json.dumps({"port": recorder.port, "fail": True}).encode()).request_id
               for _ in range(2)]
        _wait(lambda: len(client.list_dead_letters(name)) == 2, what="two dead letters")
    assert "purged 1 dead letter of" in _ok(async_daemon, "dlq", "purge", name, ids[0])
    assert [line.split()[0] for line in _ok(async_daemon, "dlq", "list", name).splitlines()[1:]] == [ids[1]]
    assert "purged 1 dead letter" in _ok(async_daemon, "dlq", "purge", name)
    assert _ok(async_daemon, "dlq", "list", name).splitlines()[1:] == []


def test_queue_destination_records_are_readable_from_the_cli(async_daemon, recorder) -> None:  # noqa: F811
    name = _deploy(async_daemon)
    queue = unique("failures")
    _ok(async_daemon, "event-invoke-config", "put", name, "--maximum-retry-attempts", "0",
        "--on-failure", f"arn:aws:sqs:us-east-1:000000000000:{queue}")
    with async_daemon.client() as client:
        request_id = client.invoke_async(name, json.dumps({"port": recorder.port, "fail": True}).encode()).request_id
        recorder.next()
        _wait(lambda: client.list_destination_queues().get(queue), what="the failure record")
        assert client.list_dead_letters(name) == []  # a failure destination takes it instead of the DLQ
    assert queue in _ok(async_daemon, "queue", "list")
    [line] = _ok(async_daemon, "queue", "receive", queue).splitlines()
    record = json.loads(line)["body"]
    assert record["requestContext"]["requestId"] == request_id
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert "deleted 1 message" in _ok(async_daemon, "queue", "delete", queue)
    assert _ok(async_daemon, "queue", "receive", queue) == ""


def test_stats_and_metrics_show_the_async_queue(async_daemon, recorder) -> None:  # noqa: F811
    name = _deploy(async_daemon)
    with async_daemon.client() as client:
        for i in range(3):
            client.invoke_async(name, json.dumps({"port": recorder.port, "tag": i}).encode())
    for _ in range(3):
        recorder.next()
    with async_daemon.client() as client:
        stats = _wait(lambda: next((q for q in client.stats().async_queues
                                    if q.function_name == name and q.depth == 0), None), what="the queue to drain")
    assert stats.received == 3 and stats.dead_lettered == 0
    table = _ok(async_daemon, "stats")
    row = next(line for line in table.splitlines() if line.startswith(name) and " s " in line)
    assert row.split()[1:4] == ["0", "0.0", "s"] and row.split()[4] == "3"

    def drained() -> str | None:
        text = urllib.request.urlopen(f"http://127.0.0.1:{async_daemon.metrics_port}/metrics", timeout=10).read()
        return text.decode() if f'fnhost_async_queue_depth{{function="{name}"}} 0.0' in text.decode() else None

    # Depth is read from the queue about once a second: wait for a reading after the last completion.
    text = _wait(drained, what="depth 0 in the metrics")
    assert f'fnhost_async_events_received_total{{function="{name}"}} 3.0' in text
    assert f'fnhost_async_events_dropped_total{{function="{name}"}} 0.0' in text
    assert f'fnhost_async_event_age_seconds{{function="{name}"}}' in text
    assert "AsyncEventsReceived" in text and "AsyncEventAge" in text and "AsyncEventsDropped" in text


def test_async_client_library(async_daemon, recorder) -> None:  # noqa: F811
    name = _deploy(async_daemon)

    async def run() -> None:
        async with AsyncClient(async_daemon.address, timeout=30) as client:
            config = await client.put_function_event_invoke_config(name, maximum_retry_attempts=0,
                                                                   maximum_event_age_s=60)
            assert (config.maximum_retry_attempts, config.maximum_event_age_s) == (0, 60)
            assert [c.maximum_event_age_s for c in await client.list_function_event_invoke_configs(name)] == [60]
            accepted = await client.invoke_async(name, json.dumps({"port": recorder.port, "tag": "aio"}).encode())
            assert accepted.status_code == 202
            await client.delete_function_event_invoke_config(name)
            with pytest.raises(errors.ResourceNotFound):
                await client.get_function_event_invoke_config(name)
            with pytest.raises(errors.InvalidParameter):
                await client.put_function_event_invoke_config(name, maximum_event_age_s=30)
            assert await client.list_dead_letters(name) == []

    asyncio.run(run())
    assert recorder.next()["event"]["tag"] == "aio"
