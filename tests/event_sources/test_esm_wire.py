"""Event source mappings over the CLI and the gRPC client library, and across a daemon restart."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from typing import Any

import pytest

from fnhost import errors
from tests.conftest import Daemon, short_tempdir
from tests.event_sources.conftest import Sink, Stream
from tests.lambda_api.conftest import lambda_client
from tests.nats_server import NatsServer


def fnhost(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fnhost", "--address", daemon.address, *args],
                          capture_output=True, text=True, timeout=60)


def test_cli_create_get_update_list_delete(esm_daemon: Daemon, make_function: Any, stream: Stream,
                                           sink: Sink) -> None:
    fn = make_function()
    created = fnhost(esm_daemon, "event-source", "create", fn, stream.arn(), "--batch-size", "3",
                     "--batching-window-s", "1", "--report-batch-item-failures", "--maximum-concurrency", "2",
                     "--disabled")
    assert created.returncode == 0, created.stderr
    mapping = json.loads(created.stdout)
    uuid = mapping["uuid"]
    assert (mapping["state"], mapping["batch_size"], mapping["maximum_concurrency"]) == ("Creating", 3, 2)
    assert mapping["report_batch_item_failures"] is True
    got = json.loads(fnhost(esm_daemon, "event-source", "get", uuid).stdout)
    assert got["state"] == "Disabled" and got["event_source_arn"] == stream.arn()

    stream.publish([{"n": 1}, {"n": 2}])
    updated = fnhost(esm_daemon, "event-source", "update", uuid, "--enabled", "--batch-size", "5")
    assert updated.returncode == 0, updated.stderr
    assert json.loads(updated.stdout)["batch_size"] == 5
    assert len([r for rep in sink.take(records=2, function=fn) for r in rep["event"]["Records"]]) == 2

    listed = fnhost(esm_daemon, "event-source", "list", fn)
    assert listed.returncode == 0 and uuid in listed.stdout and "Enabled" in listed.stdout, listed.stdout
    stats = fnhost(esm_daemon, "stats")
    [row] = [line.split() for line in stats.stdout.splitlines() if line.startswith(uuid)]
    assert row[1] == fn and int(row[3]) == 2, stats.stdout  # function, records delivered
    refused = fnhost(esm_daemon, "event-source", "create", fn, "arn:aws:sqs:us-east-1:000000000000:q")
    assert refused.returncode != 0 and "InvalidParameterValueException" in refused.stderr
    deleted = fnhost(esm_daemon, "event-source", "delete", uuid)
    assert deleted.returncode == 0, deleted.stderr
    missing = fnhost(esm_daemon, "event-source", "get", uuid)
    assert missing.returncode != 0 and "ResourceNotFoundException" in missing.stderr


def test_client_library(esm_daemon: Daemon, make_function: Any, stream: Stream, sink: Sink) -> None:
    fn = make_function()
    with esm_daemon.client() as client:
        m = client.create_event_source_mapping(fn, stream.arn(), batch_size=1, maximum_retry_attempts=0)
        assert m.state == "Creating" and m.maximum_retry_attempts == 0 and m.function_name == fn
        stream.publish([{"n": 7}])
        report = sink.take(1, function=fn)[0]
        assert json.loads(report["event"]["Records"][0]["body"]) == {"n": 7}
        m = client.update_event_source_mapping(m.uuid, maximum_concurrency=5, on_failure="")
        assert m.maximum_concurrency == 5 and m.batch_size == 1
        assert [x.uuid for x in client.list_event_source_mappings(fn)] == [m.uuid]
        assert client.get_event_source_mapping(m.uuid).last_processing_result == "OK"
        with pytest.raises(errors.InvalidParameter):
            client.update_event_source_mapping(m.uuid, maximum_concurrency=1)
        client.delete_event_source_mapping(m.uuid)
        with pytest.raises(errors.ResourceNotFound):
            client.get_event_source_mapping(m.uuid)
        assert client.list_event_source_mappings(fn) == []


def test_mappings_survive_a_restart_and_keep_their_place(nats_js: NatsServer, sink: Sink) -> None:
    from tests.conftest import unique, zipped
    from tests.event_sources.conftest import HANDLER
    from tests.lambda_api.conftest import ROLE

    state = short_tempdir()
    d = Daemon(state / "state", config=f'[daemon]\nevent_source_nats = "{nats_js.url}"\n')
    try:
        d.start()
        lam = lambda_client(d.http_url)
        fn = unique("esm-restart")
        lam.create_function(FunctionName=fn, Runtime="python3.12", Handler="app.handler", Role=ROLE,
                            Code={"ZipFile": zipped({"app.py": HANDLER})},
                            Environment={"Variables": {"SINK_PORT": str(sink.port)}})
        stream = Stream(nats_js.url).create()
        uuid = lam.create_event_source_mapping(FunctionName=fn, EventSourceArn=stream.arn(), BatchSize=1)["UUID"]
        stream.publish([{"n": 1}])
        assert len(sink.take(1, function=fn)) == 1
        assert d.stop() == 0
        stream.publish([{"n": 2}, {"n": 3}])  # while the daemon is down
        d.start()
        lam = lambda_client(d.http_url)
        assert lam.get_event_source_mapping(UUID=uuid)["State"] == "Enabled"
        bodies = sorted(json.loads(r["event"]["Records"][0]["body"])["n"] for r in sink.take(2, function=fn))
        assert bodies == [2, 3]  # record 1 is not delivered again: the consumer kept its place
        assert sink.quiet(2.0) == []
    finally:
        d.stop()
        shutil.rmtree(state, ignore_errors=True)


def test_the_aws_cli_manages_mappings(esm_daemon: Daemon, make_function: Any, stream: Stream, sink: Sink,
                                      tmp_path: Any) -> None:
    from tests.lambda_api.test_aws_cli import _aws

    fn = make_function()
    url = esm_daemon.http_url
    created = json.loads(_aws(url, tmp_path, "create-event-source-mapping", "--function-name", fn,
                              "--event-source-arn", stream.arn(), "--batch-size", "2",
                              "--function-response-types", "ReportBatchItemFailures").stdout)
    assert created["State"] == "Creating" and created["BatchSize"] == 2
    stream.publish([{"n": 1}, {"n": 2}])
    assert len(sink.take(records=2, function=fn)[0]["event"]["Records"]) >= 1
    listed = json.loads(_aws(url, tmp_path, "list-event-source-mappings", "--function-name", fn).stdout)
    assert [m["UUID"] for m in listed["EventSourceMappings"]] == [created["UUID"]]
    _aws(url, tmp_path, "update-event-source-mapping", "--uuid", created["UUID"], "--no-enabled")
    got = json.loads(_aws(url, tmp_path, "get-event-source-mapping", "--uuid", created["UUID"]).stdout)
    assert got["State"] == "Disabled"
    _aws(url, tmp_path, "delete-event-source-mapping", "--uuid", created["UUID"])
    _aws(url, tmp_path, "get-event-source-mapping", "--uuid", created["UUID"], ok=False)


def test_nats_server_restart_loses_no_record(sink: Sink) -> None:
    """JetStream restarted under a polling mapping: the poller reconnects and every record arrives."""
    from tests.conftest import unique, zipped
    from tests.event_sources.conftest import HANDLER
    from tests.lambda_api.conftest import ROLE
    from tests.nats_server import running_nats_server

    with running_nats_server() as server:
        state = short_tempdir()
        d = Daemon(state / "state", config=f'[daemon]\nevent_source_nats = "{server.url}"\n')
        try:
            d.start()
            lam = lambda_client(d.http_url)
            fn = unique("esm-nats-restart")
            lam.create_function(FunctionName=fn, Runtime="python3.12", Handler="app.handler", Role=ROLE,
                                Code={"ZipFile": zipped({"app.py": HANDLER})},
                                Environment={"Variables": {"SINK_PORT": str(sink.port)}})
            stream = Stream(server.url).create()
            lam.create_event_source_mapping(FunctionName=fn, EventSourceArn=stream.arn(), BatchSize=5)
            stream.publish([{"n": i} for i in range(10)])
            first = sink.take(records=10, function=fn)
            server.restart(kill=True, down_s=1.0)
            stream.publish([{"n": i} for i in range(10, 20)])
            # At least once: a SIGKILLed server may forget its last acknowledgements and deliver again.
            seen = {json.loads(r["body"])["n"] for rep in first for r in rep["event"]["Records"]}
            deadline = time.monotonic() + 60
            while seen != set(range(20)):
                assert time.monotonic() < deadline, sorted(seen)
                for rep in sink.quiet(1.0):
                    if rep["function"] == fn:
                        seen |= {json.loads(r["body"])["n"] for r in rep["event"]["Records"]}
            d.check_alive()
        finally:
            d.stop()
            shutil.rmtree(state, ignore_errors=True)
