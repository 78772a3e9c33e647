"""Security: TLS and bearer tokens on TCP, and what a worker of a root daemon can reach."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import grpc
import pytest

from fnhost import errors
from fnhost.client import Client
from fnhost.execution import isolation
from tests.conftest import FIXTURES, Daemon, payload
from tests.test_service import free_port


# Workers get namespaces of their own by default where the host allows it (root, bubblewrap).
NAMESPACES = os.geteuid() == 0 and isolation.probe(True) is None


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl."""
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=fnhost test CA",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"), ("client", "extendedKeyUsage=clientAuth")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
                "-out", f"{name}.csr", cwd=d)
        (d / f"{name}.ext").write_text(ext + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=d)
    (d / "token").write_text("s3cret-token\n")
    os.chmod(d / "token", 0o600)
    return d


def test_tls_and_bearer_token(fresh_daemon: Daemon, pki: Path) -> None:
    fresh_daemon.address = f"127.0.0.1:{free_port()}"
    fresh_daemon.config = "[daemon]\nallow_directory_code = true\n"  # TCP takes zips only by default
    fresh_daemon.start("--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
                       "--token-file", str(pki / "token"), wait=False)
    good = Client(fresh_daemon.address, token="s3cret-token", tls_ca=str(pki / "ca.pem"), timeout=30)
    _wait(lambda: good.list_functions())
    good.create_function("tls", runtime="python", handler="app.echo", code=str(FIXTURES / "python"))
    assert payload(good.invoke("tls", b'{"over": "tls"}')) == {"over": "tls"}

    for token in (None, "wrong-token"):
        with Client(fresh_daemon.address, token=token or "", tls_ca=str(pki / "ca.pem"), timeout=30) as bad:
            with pytest.raises(errors.Unauthenticated) as info:
                bad.invoke("tls", b"{}")
            assert info.value.status == grpc.StatusCode.UNAUTHENTICATED
    with Client(fresh_daemon.address, token="s3cret-token", timeout=5) as plaintext:
        with pytest.raises(errors.FnhostError):
            plaintext.list_functions()
    assert "unauthenticated_request" in fresh_daemon.log()
    assert fresh_daemon.log().count('"function": "tls"') <= 3, "refused calls must never reach the function"
    good.close()


def test_client_certificates(fresh_daemon: Daemon, pki: Path) -> None:
    fresh_daemon.address = f"127.0.0.1:{free_port()}"
    fresh_daemon.start("--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
                       "--tls-client-ca", str(pki / "ca.pem"), wait=False)
    with Client(fresh_daemon.address, tls_ca=str(pki / "ca.pem"), tls_cert=str(pki / "client.pem"),
                tls_key=str(pki / "client.key"), timeout=30) as good:
        _wait(lambda: good.list_functions())
        assert good.list_functions() == []
    with Client(fresh_daemon.address, tls_ca=str(pki / "ca.pem"), timeout=5) as anonymous:
        with pytest.raises(errors.FnhostError):
            anonymous.list_functions()


def _wait(call, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            call()
            return
        except errors.FnhostError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.skipif(os.geteuid() != 0, reason="workers change identity only under a root daemon")
@pytest.mark.parametrize("zygote", [True, False], ids=["forked", "spawned"])
def test_workers_of_a_root_daemon_are_sandboxed(fresh_daemon: Daemon, pki: Path, zygote: bool) -> None:
    fresh_daemon.config = f"[daemon]\nzygote = {str(zygote).lower()}\n"
    fresh_daemon.start()
    event = {"state_dir": str(fresh_daemon.state_dir), "socket": str(fresh_daemon.socket),
             "token_file": str(pki / "token")}
    import json

    with fresh_daemon.client() as c:
        c.create_function("probe-a", runtime="python", handler="app.probe", code=str(FIXTURES / "python"))
        c.create_function("probe-b", runtime="python", handler="app.probe", code=str(FIXTURES / "python"))
        a = payload(c.invoke("probe-a", json.dumps(event).encode()))
        b = payload(c.invoke("probe-b", json.dumps(event).encode()))
    assert a["uid"] != 0 and a["gid"] != 0 and a["groups"] == []
    assert a["uid"] != b["uid"], "each function runs as its own user"
    assert a["created_mode"] == "0o600"  # umask 077
    assert a["nofile"] == 1024
    assert a["list_state"] == "denied"
    assert a["status"]["CapEff"] == a["status"]["CapPrm"] == "0000000000000000"
    # Nothing open but stdio and its two protocol pipes: no socket, nothing of the daemon or a zygote.
    fds = sorted(a["open_fds"].values())
    assert fds.count("pipe:") == 4 and "socket:" not in fds and len(fds) == 5, a["open_fds"]
    if NAMESPACES:
        # No capability of any kind, and none to be had (bounding set empty, no_new_privs).
        assert {k: int(v, 16) if k.startswith("Cap") else int(v) for k, v in a["status"].items() if k != "Seccomp"} == {
            "CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapBnd": 0, "CapAmb": 0, "NoNewPrivs": 1}
        # TMPDIR and HOME are its own /tmp (a tmpfs no other worker sees: tests/hostile/
        # test_filesystem_view.py); the state directory is an empty 0711 tmpfs with only its own
        # code bound back, read-only; the token lived in the host's /tmp, which it cannot see.
        assert a["scratch"] == b["scratch"] == "/tmp" and a["scratch_mode"] == "0o777"  # 1777
        assert a["list_code_store"] == a["read_registry"] == a["read_token"] == a["connect_socket"] == "error 2"
        assert a["write_code"] == "error 30"  # EROFS
        return
    assert a["scratch_owner"] == a["uid"] and a["scratch_mode"] == "0o700"
    assert a["scratch"] != b["scratch"]
    assert a["list_code_store"] == "denied"
    assert a["read_registry"] == "denied"
    assert a["read_token"] == "denied"
    assert a["connect_socket"] == "denied"
    assert a["write_code"] == "denied"
