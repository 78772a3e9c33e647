"""When the queue cannot store an event, every front end refuses the Event invocation with the
same clear error (503 ServiceUnavailableException over HTTP, UNAVAILABLE over gRPC) instead of
accepting it: a daemon on JetStream whose nats-server is down."""

from __future__ import annotations

import json
import shutil
import time

import grpc
import pytest
from botocore.exceptions import ClientError

from fnhost import errors
from tests.conftest import Daemon, short_tempdir, unique, zipped
from tests.lambda_api.conftest import lambda_client
from tests.nats_server import running_nats_server

from .wire_support import RECORDING_APP


def test_event_invoke_is_refused_while_jetstream_is_down() -> None:
    state = short_tempdir()
    with running_nats_server() as server:
        daemon = Daemon(state / "state", config=f'[daemon]\nqueue = "{server.url}"\nasync_retry_base_s = 0.3\n')
        daemon.start()
        try:
            name = unique("down")
            with daemon.client(timeout=60) as client:
                client.create_function(name, runtime="python", handler="app.handler",
                                       code=zipped({"app.py": RECORDING_APP}))
                assert client.invoke_async(name, b'{"port": 1}').status_code == 202  # stored while up
                server.stop(kill=True)
                started = time.monotonic()
                with pytest.raises(errors.ShuttingDown) as refused:
                    client.invoke_async(name, json.dumps({"port": 1}).encode())
                assert refused.value.status == grpc.StatusCode.UNAVAILABLE
                assert refused.value.code == "ServiceUnavailableException"
                assert time.monotonic() - started < 30  # refused, not left hanging
            lam = lambda_client(daemon.http_url)
            with pytest.raises(ClientError) as http_refused:
                lam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")
            response = http_refused.value.response
            assert response["ResponseMetadata"]["HTTPStatusCode"] == 503
            assert response["Error"]["Code"] == "ServiceUnavailableException"
            server.start()  # the same port and store: the daemon reconnects and accepts again
            deadline = time.monotonic() + 30
            while True:
                try:
                    assert lam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")["StatusCode"] == 202
                    break
                except ClientError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
        finally:
            daemon.stop()
            shutil.rmtree(state, ignore_errors=True)
