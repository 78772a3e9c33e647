"""Secure by default on the network (issue #10), against real daemons and real clients.

A daemon refuses to listen where other hosts reach it without TLS and client authentication
(unless told ``--insecure``), says what a loopback listener leaves open, takes no code from its
own filesystem over TCP, and keeps its log private; a client never sends its token in clear to
another host; and a client that stops reading an InvokeStream stops the daemon from running more
of it. Only loopback addresses are contacted; wildcard binds appear only to be refused or, with
--insecure, reached over loopback.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from fnhost import errors
from fnhost.api import grpc_wire as wire
from fnhost.client import Client
from fnhost.v1 import fnhost_pb2 as pb
from fnhost.v1 import fnhost_pb2_grpc as pb_grpc
from tests.conftest import Daemon, function_stats, payload, short_tempdir, wait_gone, zipped
from tests.test_security import _wait, pki  # noqa: F401  (pki is a fixture)
from tests.test_service import free_port

ECHO = "def echo(event, context):\n    return event\n"


def events(d: Daemon, name: str) -> list[dict]:
    return [e for e in d.log_events() if e.get("event") == name]


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.parametrize("host, how", [("0.0.0.0", "flag"), ("[::]", "config")])
def test_a_wildcard_listener_needs_tls_and_a_token_or_insecure(fresh_daemon: Daemon, host: str, how: str) -> None:
    if host == "[::]" and not has_ipv6_loopback():
        pytest.skip("no IPv6 loopback on this host")
    port = free_port()
    fresh_daemon.address = f"{host}:{port}"
    fresh_daemon.start(wait=False)
    assert fresh_daemon.proc is not None
    assert fresh_daemon.proc.wait(60) == 2, fresh_daemon.log_tail()
    message = fresh_daemon.log()
    assert f"refusing to listen on {host}:{port} without TLS and client authentication" in message
    for what in ("--tls-cert FILE --tls-key FILE", "--token-file FILE", "--insecure"):
        assert what in message
    # Refused before it claimed the state directory, let alone bound the port.
    assert not (fresh_daemon.state_dir / "fnhost.pid").exists()

    if how == "flag":
        fresh_daemon.start("--insecure", wait=False)
    else:
        fresh_daemon.config = "[daemon]\ninsecure = true\n"
        fresh_daemon.start(wait=False)
    local = f"127.0.0.1:{port}" if host == "0.0.0.0" else f"[::1]:{port}"
    with Client(local, timeout=30) as c:
        _wait(c.list_functions)
        assert c.list_functions() == []
    assert events(fresh_daemon, "insecure_listener")


def test_tls_and_a_token_on_a_wildcard_listener_take_code_only_as_zips(fresh_daemon: Daemon, pki: Path,
                                                                      public_dir: Path) -> None:
    port = free_port()
    fresh_daemon.address = f"0.0.0.0:{port}"
    fresh_daemon.start("--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
                       "--token-file", str(pki / "token"), wait=False)
    (public_dir / "app.py").write_text(ECHO)
    with Client(f"127.0.0.1:{port}", token="s3cret-token", tls_ca=str(pki / "ca.pem"), timeout=30) as c:
        _wait(c.list_functions)
        with pytest.raises(errors.InvalidParameter) as refused:
            c.create_function("from-dir", runtime="python", handler="app.echo", code=str(public_dir))
        assert "takes code only as a zip" in refused.value.message
        assert "allow_directory_code" in refused.value.message
        c.create_function("from-zip", runtime="python", handler="app.echo", code=zipped({"app.py": ECHO}))
        assert payload(c.invoke("from-zip", b'{"over": "tcp"}')) == {"over": "tcp"}
        with pytest.raises(errors.InvalidParameter):
            c.update_function_code("from-zip", str(public_dir))
        assert [f.function_name for f in c.list_functions()] == ["from-zip"]
    assert not events(fresh_daemon, "insecure_listener")


def test_a_tcp_daemon_can_be_told_to_take_directories(fresh_daemon: Daemon, public_dir: Path) -> None:
    fresh_daemon.address = f"127.0.0.1:{free_port()}"
    fresh_daemon.config = "[daemon]\nallow_directory_code = true\n"
    fresh_daemon.start()
    (public_dir / "app.py").write_text(ECHO)
    with Client(fresh_daemon.address, timeout=30) as c:
        c.create_function("from-dir", runtime="python", handler="app.echo", code=str(public_dir))
        assert payload(c.invoke("from-dir", b"[1]")) == [1]
    # Loopback without a token: served, and the log says who else can call it.
    assert events(fresh_daemon, "tcp_without_authentication")


def test_a_token_without_tls_on_loopback_is_served_with_a_warning(fresh_daemon: Daemon, pki: Path) -> None:
    fresh_daemon.address = f"127.0.0.1:{free_port()}"
    fresh_daemon.start("--token-file", str(pki / "token"))
    [warning] = events(fresh_daemon, "token_without_tls")
    assert "travel in clear" in warning["note"] and warning["level"] == "warning"
    assert not events(fresh_daemon, "tcp_without_authentication")
    with Client(fresh_daemon.address, token="s3cret-token", timeout=30) as c:  # loopback: the client sends it
        assert c.list_functions() == []
    with Client(fresh_daemon.address, timeout=30) as anonymous, pytest.raises(errors.Unauthenticated):
        anonymous.list_functions()


def test_the_client_sends_no_token_in_clear_to_another_host(pki: Path) -> None:
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): nothing is sent to it, the client refuses before any channel.
    with pytest.raises(errors.ConfigError) as refused:
        Client("192.0.2.1:50051", token="s3cret-token")
    assert "refusing to send the token in clear to 192.0.2.1:50051" in refused.value.message
    assert "FNHOST_TLS_CA" in refused.value.message
    Client("192.0.2.1:50051").close()  # no token: nothing to leak
    Client("192.0.2.1:50051", token="s3cret-token", tls_ca=str(pki / "ca.pem")).close()
    for local in ("127.0.0.1:50051", "[::1]:50051", "localhost:50051", "unix:/nonexistent.sock"):
        Client(local, token="s3cret-token").close()

    cli = subprocess.run([sys.executable, "-m", "fnhost", "--address", "192.0.2.1:50051", "list"],
                         env={**os.environ, "FNHOST_TOKEN": "s3cret-token"}, capture_output=True, text=True,
                         timeout=60)
    assert cli.returncode == 2
    assert "FNHOST_TLS_CA" in cli.stderr and "Traceback" not in cli.stderr


def test_detach_keeps_its_log_private_and_sees_a_tls_daemon_ready(pki: Path) -> None:
    root = short_tempdir()
    state = root / "state"
    port = free_port()
    detach = [sys.executable, "-m", "fnhost", "serve", "--detach", "--state-dir", str(state), "--http-listen", "none"]
    secured = ["--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
               "--token-file", str(pki / "token")]
    env = {**os.environ, "FNHOST_TLS_CA": str(pki / "ca.pem")}
    env.pop("FNHOST_TOKEN", None)
    exposed = subprocess.run([*detach, "--listen", f"0.0.0.0:{port}"], env=env, capture_output=True,
                             text=True, timeout=60)
    assert exposed.returncode == 2 and "--insecure" in exposed.stderr
    assert not (state / "fnhost.log").exists(), "refused before anything was started"

    # Before, --detach checked health over plaintext and never saw a TLS daemon ready.
    started = subprocess.run([*detach, "--listen", f"127.0.0.1:{port}", *secured], env=env,
                             capture_output=True, text=True, timeout=100)
    assert started.returncode == 0, started.stderr
    pid = int(re.search(r"\(pid (\d+),", started.stdout).group(1))  # type: ignore[union-attr]
    try:
        assert stat.S_IMODE(os.stat(state / "fnhost.log").st_mode) == 0o600
        with Client(f"127.0.0.1:{port}", token="s3cret-token", tls_ca=str(pki / "ca.pem"), timeout=30) as c:
            assert c.list_functions() == []
    finally:
        os.kill(pid, signal.SIGTERM)
        if wait_gone([pid], 30):
            os.killpg(pid, signal.SIGKILL)  # it leads its own session: only what we started
        shutil.rmtree(root, ignore_errors=True)


def test_a_client_that_stops_reading_holds_at_most_the_stream_window(fresh_daemon: Daemon, public_dir: Path) -> None:
    """Results wait for gRPC, not the other way round: a client that keeps sending but never
    reads gets at most max_stream_in_flight invocations run beyond what the transport took."""
    window, sent, result_bytes = 4, 150, 1024 * 1024
    fresh_daemon.config = f"[daemon]\nmax_stream_in_flight = {window}\n"
    fresh_daemon.start()
    (public_dir / "big.py").write_text(f"def handler(event, context):\n    return 'x' * {result_bytes}\n")
    with fresh_daemon.client() as c:
        c.create_function("big", runtime="python", handler="big.handler", code=str(public_dir))
        channel = grpc.insecure_channel(fresh_daemon.address, options=wire.MESSAGE_OPTIONS)
        stub = pb_grpc.FnhostStub(channel)
        request = wire.invoke_request("big", b"{}", "RequestResponse", "None")
        requests = (pb.InvokeStreamRequest(invocations=[pb.StreamInvocation(id=i, request=request)])
                    for i in range(sent))
        call = stub.InvokeStream(requests)  # sent by gRPC's own thread; the results are never read
        try:
            ran, steady_since = -1, time.monotonic()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and time.monotonic() - steady_since < 3:
                now = function_stats(c, "big").invocations
                if now != ran:
                    ran, steady_since = now, time.monotonic()
                time.sleep(0.2)
            # What ran: the window, plus the few results HTTP/2 let through before the client's
            # receive window filled (3 of 1 MiB here: 7 ran). Before, all 150 ran, their results
            # piling up in the daemon.
            assert 0 < ran <= window + 10, f"{ran} of {sent} invocations ran for a client that reads nothing"
        finally:
            call.cancel()
            channel.close()
        # The daemon goes on serving.
        assert payload(c.invoke("big", b"{}")) == "x" * result_bytes


@pytest.mark.skipif(os.geteuid() != 0, reason="a daemon that is not root says no_function_isolation instead")
def test_the_log_says_when_functions_are_not_isolated(fresh_daemon: Daemon) -> None:
    # The tests run as root, so this is the branch they can reach; a daemon that is not root gets
    # no_function_isolation from the same start-up check.
    fresh_daemon.config = '[daemon]\nworker_user = "root"\n'
    fresh_daemon.start()
    [warning] = events(fresh_daemon, "functions_run_as_root")
    assert warning["level"] == "warning"
    assert not events(fresh_daemon, "no_function_isolation")
