"""The provided runtime's bootstrap over its life, end to end through a real daemon: what happens
when it is missing, cannot run, never becomes ready, fails its init, crashes mid-invocation or
leaves processes behind, and a function deployed by boto3 (a client we did not write) with
Lambda's runtime identifier."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import time
import zipfile
from pathlib import Path

import psutil
import pytest

from fnhost.client import Client
from fnhost.control.runtimes import load_runtime
from fnhost.errors import InvalidParameter, ToolchainMissing
from tests.conftest import FIXTURES, ROOT, deploy_case, function_stats, payload, public_code, unique


def error_of(result) -> dict:  # type: ignore[no-untyped-def]
    assert result.function_error == "Unhandled", result.payload
    return json.loads(result.payload)


def test_no_bootstrap_is_an_invalid_entrypoint(client: Client) -> None:
    code = public_code({"function.sh": "handler() { :; }\n"})
    try:
        name = unique("noboot")
        client.create_function(name, runtime="provided", handler="function.handler", code=str(code))
        err = error_of(client.invoke(name, b"{}"))
        assert err["errorType"] == "Runtime.InvalidEntrypoint", err
        assert "bootstrap" in err["errorMessage"] and str(code / "bootstrap") in err["errorMessage"]
    finally:
        shutil.rmtree(code)


def test_a_bootstrap_that_is_not_executable_says_so(client: Client) -> None:
    code = public_code({"bootstrap": "#!/bin/sh\nexit 0\n"})  # 0644
    try:
        name = unique("noexec")
        client.create_function(name, runtime="provided", handler="x", code=str(code))
        err = error_of(client.invoke(name, b"{}"))
        assert err["errorType"] == "Runtime.InvalidEntrypoint", err
        assert "not executable" in err["errorMessage"] and "chmod +x" in err["errorMessage"]
    finally:
        shutil.rmtree(code)


def test_a_bootstrap_that_never_asks_for_work_hits_the_init_timeout(client: Client) -> None:
    name = deploy_case(client, "provided", "probe", environment={"PROBE_INIT": "never"})
    started = time.monotonic()
    err = error_of(client.invoke(name, b"{}"))
    assert err["errorType"] == "Runtime.InitError", err
    assert "did not finish within" in err["errorMessage"]
    assert time.monotonic() - started < 30  # the shared daemon's init_timeout_s is 5


def test_a_bootstrap_exiting_during_init_is_an_exit_error(client: Client) -> None:
    name = deploy_case(client, "provided", "probe", environment={"PROBE_INIT": "exit"})
    err = error_of(client.invoke(name, b"{}"))
    assert err["errorType"] == "Runtime.ExitError", err
    assert "exit status 4" in err["errorMessage"]


@pytest.mark.parametrize("mode", ["init_error", "init_error_exit"])
def test_init_error_reaches_the_caller_in_lambdas_shape(client: Client, mode: str) -> None:
    name = deploy_case(client, "provided", "probe", environment={"PROBE_INIT": mode})
    for _ in range(2):  # each attempt is a fresh init (and the adapter does not linger)
        started = time.monotonic()
        err = error_of(client.invoke(name, b"{}"))
        assert err == {"errorType": "Probe.InitFailed", "errorMessage": "no config",
                       "stackTrace": ["probe line 1", "2"]}
        assert time.monotonic() - started < 10


@pytest.mark.parametrize(("event", "words"), [
    ({"do": "exit", "code": 7}, "exit status 7"),
    ({"do": "kill"}, "signal: kill"),
])
def test_a_bootstrap_crash_mid_invocation_is_an_exit_error(client: Client, event: dict, words: str) -> None:
    name = deploy_case(client, "provided", "probe")
    first = payload(client.invoke(name, b'{"do": "report"}'))
    err = error_of(client.invoke(name, json.dumps(event).encode()))
    assert err["errorType"] == "Runtime.ExitError", err
    assert words in err["errorMessage"], err
    # The next call gets a new worker, which works.
    again = payload(client.invoke(name, b'{"do": "report"}'))
    assert again["endpoint"] != first["endpoint"] or again["pid"] != first["pid"]
    assert function_stats(client, name).cold_starts == 2


def test_a_bootstrap_exiting_after_its_answer_is_started_again(client: Client) -> None:
    """aws-lambda-go exits right after reporting a panic. Its error is the answer, and the next
    invocation (which the daemon may send before it sees any exit) gets the bootstrap started
    again in the same worker, as Lambda resets the environment, never a Runtime.ExitError."""
    name = deploy_case(client, "provided", "probe")
    pids = set()
    for _ in range(3):
        err = error_of(client.invoke(name, b'{"do": "error_then_exit"}'))
        assert err["errorType"] == "Probe.Panic", err
        seen = payload(client.invoke(name, b'{"do": "report"}'))
        assert "event" in seen, seen
        pids.add(seen["pid"])
    assert len(pids) == 3  # a new bootstrap each time
    assert function_stats(client, name).cold_starts == 1  # in the same worker


def test_a_bootstrap_killed_while_waiting_for_work_is_started_again(client: Client) -> None:
    name = deploy_case(client, "provided", "probe")
    pid = payload(client.invoke(name, b'{"do": "die_later"}'))
    time.sleep(1)  # killed meanwhile, in its GET /next
    seen = payload(client.invoke(name, b'{"do": "report"}'))
    assert seen["pid"] != pid
    assert function_stats(client, name).cold_starts == 1


def _with_marker(marker: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if marker in " ".join(p.info["cmdline"] or []):
            found.append(p)
    return found


def test_a_child_in_its_own_session_ends_with_the_worker(client: Client) -> None:
    name = deploy_case(client, "provided", "probe")
    marker = f"fnhost-orphan-{os.getpid()}-{time.monotonic_ns()}"
    client.invoke(name, json.dumps({"do": "orphan", "marker": marker}).encode())
    assert _with_marker(marker), "the child did not start"
    client.delete_function(name)  # stops the worker
    deadline = time.monotonic() + 10
    while _with_marker(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _with_marker(marker), "the bootstrap's child outlived its worker"


def test_the_handler_string_is_lambdas_and_reaches_the_bootstrap(client: Client) -> None:
    with pytest.raises(InvalidParameter, match="without spaces"):
        client.create_function(unique("badh"), runtime="provided", handler="has space",
                               code=str(FIXTURES / "provided"))
    name = deploy_case(client, "provided", "env")
    env = payload(client.invoke(name, b'{"names": ["_HANDLER", "AWS_LAMBDA_RUNTIME_API"]}'))
    assert env["_HANDLER"] == "cases.env_values"
    assert env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")


def _zip_with_modes(root: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for path in sorted(root.iterdir()):
            if path.is_file():
                info = zipfile.ZipInfo(path.name)
                info.external_attr = (stat.S_IFREG | (0o755 if os.access(path, os.X_OK) else 0o644)) << 16
                z.writestr(info, path.read_bytes())
    return buf.getvalue()


def test_boto3_deploys_a_shell_function_as_provided_al2023(daemon) -> None:  # type: ignore[no-untyped-def]
    from tests.lambda_api.conftest import ROLE, lambda_client
    lam = lambda_client(daemon.http_url)
    name = unique("shell")
    out = lam.create_function(FunctionName=name, Runtime="provided.al2023", Role=ROLE, Handler="cases.echo_event",
                              Code={"ZipFile": _zip_with_modes(FIXTURES / "provided")})
    assert out["Runtime"] == "provided.al2023"
    answer = lam.invoke(FunctionName=name, Payload=b'{"hello": "shell"}')
    assert json.loads(answer["Payload"].read()) == {"hello": "shell"}
    assert "FunctionError" not in answer
    failed = lam.invoke(FunctionName=name, Payload=b"{nope")
    assert failed["FunctionError"] == "Unhandled"
    assert json.loads(failed["Payload"].read())["errorType"] == "Runtime.UnmarshalError"
    lam.delete_function(FunctionName=name)


def test_without_go_the_runtime_says_what_to_install(tmp_path: Path) -> None:
    text = (ROOT / "runtimes" / "provided" / "runtime.toml").read_text()
    text = text.replace('find = ["go", "/usr/local/go/bin/go", "/usr/lib/go/bin/go"]', 'find = ["fnhost-no-such-go"]')
    assert "fnhost-no-such-go" in text
    (tmp_path / "provided").mkdir()
    (tmp_path / "provided" / "runtime.toml").write_text(text)
    with pytest.raises(ToolchainMissing, match="install Go 1.21 or newer"):
        load_runtime(tmp_path / "provided").select()
