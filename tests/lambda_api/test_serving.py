"""The HTTP listener's life: TLS, a unix socket, off, and a graceful stop with calls in flight."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import threading
import time
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path

import pytest
from fnhost.testing.harness import DaemonFailed

from tests.conftest import Daemon, short_tempdir, zipped
from tests.test_security import pki  # noqa: F401 - the fixture: a CA and a server certificate

from .conftest import APP, ROLE, lambda_client


@pytest.fixture
def own_daemon() -> Iterator[Daemon]:
    state = short_tempdir()
    d = Daemon(state / "state")
    yield d
    d.stop(signal.SIGKILL)
    assert d.leftovers == []


class _UnixConnection(HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def test_tls_and_a_graceful_stop_with_a_call_in_flight(own_daemon: Daemon, pki: Path) -> None:  # noqa: F811
    # gRPC takes TLS on its unix socket too, where the harness's health check speaks plaintext.
    own_daemon.start("--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"), wait=False)
    deadline = time.monotonic() + 60
    while not any(e.get("event") == "serving" for e in own_daemon.log_events()):
        own_daemon.check_alive()
        assert time.monotonic() < deadline, own_daemon.log_tail()
        time.sleep(0.05)
    url = own_daemon.http_url
    assert url.startswith("https://127.0.0.1:")
    lam = lambda_client(url, verify=str(pki / "ca.pem"))
    lam.create_function(FunctionName="slow", Runtime="python3.12", Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": zipped({"app.py": APP})})
    results: list[dict] = []
    with socket.create_server(("127.0.0.1", 0)) as sign:  # the call connects once it runs
        sign.settimeout(30)
        event = json.dumps({"sleep": 1.5, "ping": sign.getsockname()[1]}).encode()
        caller = threading.Thread(target=lambda: results.append(lam.invoke(FunctionName="slow", Payload=event)))
        caller.start()
        sign.accept()[0].close()
    own_daemon.proc.send_signal(signal.SIGTERM)  # drains: the call in flight finishes, new ones are refused
    with pytest.raises(lam.exceptions.ClientError) as refused:
        for _ in range(100):  # until the daemon has begun its drain
            lam.invoke(FunctionName="slow", Payload=b"{}")
            time.sleep(0.01)
    assert refused.value.response["Error"]["Code"] == "ServiceUnavailableException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert own_daemon.proc.wait(30) == 0  # by itself, once the call in flight has answered
    caller.join()
    assert results and results[0]["StatusCode"] == 200 and "FunctionError" not in results[0]
    assert json.loads(results[0]["Payload"].read())["echo"]["sleep"] == 1.5


def test_a_unix_socket_listener(own_daemon: Daemon) -> None:
    path = own_daemon.state_dir.parent / "lambda.sock"
    own_daemon.start("--http-listen", f"unix:{path}")
    assert own_daemon.http_url == f"unix:{path}"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    conn = _UnixConnection(str(path))
    conn.request("GET", "/2016-08-19/account-settings")
    response = conn.getresponse()
    assert response.status == 200 and "AccountLimit" in json.loads(response.read())
    conn.close()
    assert own_daemon.stop() == 0
    assert not path.exists()


def test_http_listen_none_serves_no_http(own_daemon: Daemon) -> None:
    own_daemon.start("--http-listen", "none")
    with pytest.raises(DaemonFailed, match="does not serve"):
        own_daemon.http_url
    assert own_daemon.client().list_functions() == []
