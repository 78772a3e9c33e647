"""SigV4 on Lambda's API: with access keys every request must be signed by one, correctly and
recently; a function's own key may only invoke; without keys only loopback and unix listeners."""

from __future__ import annotations

import datetime
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import boto3
import botocore.auth
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from fnhost.control.config import Settings
from fnhost.control.credentials import Credentials
from fnhost.api.exposure import listener_refusal

from tests.conftest import Daemon, short_tempdir, unique, zipped

from .conftest import APP, ROLE, lambda_client

KEY, SECRET = "AKIAFNHOSTTESTKEY0001", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYFNHOSTKEY"


@pytest.fixture(scope="module")
def keyed_daemon() -> Iterator[Daemon]:
    state = short_tempdir()
    keys = state / "keys"
    keys.write_text(f"[ops]\naws_access_key_id = {KEY}\naws_secret_access_key = {SECRET}\n")
    keys.chmod(0o600)
    d = Daemon(state / "state", config=f'[daemon]\nhttp_credentials_file = "{keys}"\n')
    d.start()
    yield d
    assert d.stop() == 0, d.log_tail()
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def signed_function(keyed_daemon: Daemon) -> str:
    name = unique("signed")
    lambda_client(keyed_daemon.http_url, key=KEY, secret=SECRET).create_function(
        FunctionName=name, Runtime="python3.12", Role=ROLE, Handler="app.handler", Code={"ZipFile": zipped({"app.py": APP})})
    return name


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    return exc.value.response["Error"]["Code"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_signed_with_an_operator_key_works(keyed_daemon: Daemon, signed_function: str) -> None:
    lam = lambda_client(keyed_daemon.http_url, key=KEY, secret=SECRET)
    assert lam.invoke(FunctionName=signed_function, Payload=b'{"x": 1}')["StatusCode"] == 200
    with_token = boto3.client("lambda", endpoint_url=keyed_daemon.http_url, region_name="us-east-1",
                              aws_access_key_id=KEY, aws_secret_access_key=SECRET, aws_session_token="tok")
    assert with_token.get_function(FunctionName=signed_function)["Configuration"]["FunctionName"] == signed_function
    assert any(e.get("event") == "http_serving" and e.get("authentication") == "sigv4"
               for e in keyed_daemon.log_events())


@pytest.mark.parametrize("client_args, code, words", [
    ({"config": Config(signature_version=UNSIGNED)}, "MissingAuthenticationTokenException", "Missing Authentication"),
    ({"aws_access_key_id": "AKIAUNKNOWNKEY000001", "aws_secret_access_key": SECRET},
     "UnrecognizedClientException", "security token included in the request is invalid"),
    ({"aws_access_key_id": KEY, "aws_secret_access_key": "wrong"}, "InvalidSignatureException", "does not match"),
    ({"aws_access_key_id": KEY, "aws_secret_access_key": SECRET, "region_name": "eu-west-1"},
     "InvalidSignatureException", "region"),
])
def test_refused_requests_get_lambdas_403(keyed_daemon: Daemon, signed_function: str, client_args: dict,
                                          code: str, words: str) -> None:
    args = {"region_name": "us-east-1", **client_args}
    lam = boto3.client("lambda", endpoint_url=keyed_daemon.http_url, **args)
    with pytest.raises(ClientError) as caught:
        lam.invoke(FunctionName=signed_function, Payload=b"{}")
    assert _code(caught) == (code, 403)
    assert words in caught.value.response["Error"]["Message"]
    assert lambda_client(keyed_daemon.http_url, key=KEY, secret=SECRET).invoke(
        FunctionName=signed_function, Payload=b"{}")["StatusCode"] == 200  # and it keeps serving


@pytest.mark.parametrize("skew_min, words", [(-20, "Signature expired"), (20, "Signature not yet current"),
                                             (-10, None), (10, None)])
def test_clock_skew_is_bounded_at_15_minutes(keyed_daemon: Daemon, signed_function: str, skew_min: int,
                                             words: str | None) -> None:
    lam = lambda_client(keyed_daemon.http_url, key=KEY, secret=SECRET)
    skewed = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) + datetime.timedelta(minutes=skew_min)
    with mock.patch.object(botocore.auth, "get_current_datetime", lambda *a, **k: skewed):
        if words is None:
            assert lam.invoke(FunctionName=signed_function, Payload=b"{}")["StatusCode"] == 200
            return
        with pytest.raises(ClientError) as caught:
            lam.invoke(FunctionName=signed_function, Payload=b"{}")
    assert _code(caught) == ("InvalidSignatureException", 403)
    assert words in caught.value.response["Error"]["Message"]


def test_a_body_changed_after_signing_is_refused(keyed_daemon: Daemon, signed_function: str) -> None:
    lam = lambda_client(keyed_daemon.http_url, key=KEY, secret=SECRET)

    def tamper(request: object, **_: object) -> None:
        request.body = b'{"x": 2}'  # same length: only the signature can tell  # type: ignore[attr-defined]

    lam.meta.events.register("before-send.lambda.Invoke", tamper)
    with pytest.raises(ClientError) as caught:
        lam.invoke(FunctionName=signed_function, Payload=b'{"x": 1}')
    assert _code(caught) == ("InvalidSignatureException", 403)


def test_a_functions_key_may_only_invoke(keyed_daemon: Daemon, signed_function: str) -> None:
    key_id, secret = Credentials.open(keyed_daemon.state_dir, None).for_function(signed_function)
    lam = lambda_client(keyed_daemon.http_url, key=key_id, secret=secret)
    assert lam.invoke(FunctionName=signed_function, Payload=b"{}")["StatusCode"] == 200
    with pytest.raises(lam.exceptions.ClientError) as caught:
        lam.create_function(FunctionName=unique("nope"), Runtime="python3.12", Role=ROLE, Handler="app.handler",
                            Code={"ZipFile": zipped({"app.py": APP})})
    assert _code(caught) == ("AccessDeniedException", 403)
    with pytest.raises(lam.exceptions.ClientError) as caught:
        lam.delete_function(FunctionName=signed_function)
    assert _code(caught) == ("AccessDeniedException", 403)


def test_without_keys_only_loopback_and_unix_listeners_start(tmp_path: Path) -> None:
    base = Settings(state_dir=tmp_path)
    assert listener_refusal(base) is None  # 127.0.0.1:9001
    assert listener_refusal(Settings(state_dir=tmp_path, http_listen="unix:/tmp/x.sock")) is None
    assert listener_refusal(Settings(state_dir=tmp_path, http_listen="none")) is None
    exposed = listener_refusal(Settings(state_dir=tmp_path, http_listen="0.0.0.0:9001"))
    assert exposed is not None and "TLS and access keys" in exposed
    assert listener_refusal(Settings(state_dir=tmp_path, http_listen="0.0.0.0:9001", insecure=True)) is None
    assert listener_refusal(Settings(state_dir=tmp_path, http_listen="0.0.0.0:9001", tls_cert="c", tls_key="k",
                                     http_credentials_file="keys")) is None
    proc = subprocess.run(
        [sys.executable, "-m", "fnhost", "serve", "--state-dir", str(tmp_path / "s"), "--http-listen", "0.0.0.0:0"],
        capture_output=True, text=True, timeout=60, env={**os.environ})
    assert proc.returncode != 0 and "refusing to serve Lambda's HTTP API on 0.0.0.0:0" in proc.stderr + proc.stdout


def test_sighup_rereads_the_access_keys(keyed_daemon: Daemon, signed_function: str) -> None:
    new_key, new_secret = "AKIAFNHOSTTESTKEY0002", "second/secret+key"
    newcomer = lambda_client(keyed_daemon.http_url, key=new_key, secret=new_secret)
    with pytest.raises(newcomer.exceptions.ClientError) as caught:
        newcomer.invoke(FunctionName=signed_function, Payload=b"{}")
    assert _code(caught) == ("UnrecognizedClientException", 403)
    keys = keyed_daemon.state_dir.parent / "keys"
    keys.write_text(keys.read_text() + f"[new]\naws_access_key_id = {new_key}\naws_secret_access_key = {new_secret}\n")
    reloads = keyed_daemon.log().count('"reloaded"')
    keyed_daemon.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while keyed_daemon.log().count('"reloaded"') == reloads:
        assert time.monotonic() < deadline, keyed_daemon.log_tail()
        time.sleep(0.05)
    assert newcomer.invoke(FunctionName=signed_function, Payload=b"{}")["StatusCode"] == 200
