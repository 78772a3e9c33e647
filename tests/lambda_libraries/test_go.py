"""Go functions written with AWS's github.com/aws/aws-lambda-go, unchanged: built by the user for
provided.al2023 (an executable named bootstrap), and the same source deployed to fnhost's go runtime
(go1.x), from source and prebuilt, where the go runtime puts it behind the Runtime API adapter."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fnhost import errors

from tests.conftest import FIXTURES as PUBLIC_FIXTURES
from tests.conftest import function_stats, short_tempdir, unique, zipped

from .conftest import FIXTURES, ROLE, go_env, run, zip_tree

GO_SOURCE = FIXTURES / "go"


@pytest.fixture(scope="module")
def go_module() -> Iterator[Path]:
    """The function's source, readable by worker users, with its modules in the module cache of
    the daemon's user: `go mod download` as that user (HOME = go-home), as a user does before a
    go runtime deploy, since fnhost's builds are offline. From proxy.golang.org once; cached."""
    if shutil.which("go") is None:
        pytest.fail("go is not on PATH: the go runtime's toolchain (see runtimes/go/runtime.toml)")
    work = short_tempdir(0o755)
    src = work / "hello"
    shutil.copytree(GO_SOURCE, src)
    for path in [src, *src.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    run(["go", "mod", "download"], cwd=src, env=go_env())
    yield src
    shutil.rmtree(work, ignore_errors=True)


def build_bootstrap(src: Path, out: Path, *tags: str) -> bytes:
    """``go build`` for Linux as the user does for Lambda (CGO_ENABLED=0, GOOS=linux); the
    executable's bytes. Go's build cache under go-home makes a rerun a cache hit."""
    argv = ["go", "build", "-o", str(out)]
    if tags:
        argv += ["-tags", ",".join(tags)]
    run([*argv, "."], cwd=src, env={**go_env(), "CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": "amd64"})
    return out.read_bytes()


@pytest.fixture(scope="module")
def provided_zip(go_module: Path) -> bytes:
    """What AWS's docs tell a provided.al2023 user to upload: `bootstrap`, built with the
    lambda.norpc tag, zipped."""
    exe = build_bootstrap(go_module, go_module.parent / "bootstrap", "lambda.norpc")
    return zip_tree(None, {"bootstrap": exe})


def check_hello(reply: dict, name: str, request_id: str, timeout_s: int) -> None:
    """The reply of main.go's handler: the event's name, and aws-lambda-go's lambdacontext."""
    assert reply["greeting"] == "hello Ada"
    assert reply["request_id"] == request_id
    assert reply["function_arn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert reply["function_name"] == name
    assert reply["has_deadline"] is True
    assert 0 < reply["deadline_left_ms"] <= timeout_s * 1000
    assert reply["runtime_api_set"] is True


def check_errors(invoke) -> None:  # type: ignore[no-untyped-def]
    """aws-lambda-go's error shapes: a returned error's type name (errorString for errors.New,
    the function's own type for its errors), and a panic's value type with a stack trace."""
    status, err = invoke({"fail": "quota exceeded"})
    assert status == "Unhandled"
    assert (err["errorType"], err["errorMessage"]) == ("errorString", "quota exceeded")
    status, err = invoke({"fail": "notfound", "name": "Ada"})
    assert (err["errorType"], err["errorMessage"]) == ("NotFound", "Ada not found")
    status, err = invoke({"panic": "oh no"})
    assert status == "Unhandled"
    assert (err["errorType"], err["errorMessage"]) == ("string", "oh no")
    # aws-lambda-go's frames are {"path", "line", "label"} objects; fnhost's worker protocol carries
    # stackTrace as strings (the adapter passes each frame as its JSON text).
    assert any("main.go" in str(frame) and "handler" in str(frame) for frame in err["stackTrace"]), err


def test_provided_al2023_runs_an_aws_lambda_go_bootstrap(lam, provided_zip: bytes) -> None:
    name = unique("alg-provided")
    out = lam.create_function(FunctionName=name, Runtime="provided.al2023", Handler="bootstrap", Role=ROLE,
                              Code={"ZipFile": provided_zip}, Timeout=7, MemorySize=256)
    assert out["Runtime"] == "provided.al2023"
    got = lam.invoke(FunctionName=name, Payload=json.dumps({"name": "Ada"}).encode())
    assert "FunctionError" not in got
    reply = json.loads(got["Payload"].read())
    check_hello(reply, name, got["ResponseMetadata"]["RequestId"], 7)
    assert reply["memory_mb"] == 256 and reply["handler"] == "bootstrap"

    def invoke(event: dict) -> tuple[str, dict]:
        r = lam.invoke(FunctionName=name, Payload=json.dumps(event).encode())
        return r.get("FunctionError", ""), json.loads(r["Payload"].read())

    check_errors(invoke)
    # aws-lambda-go ends its process after reporting a panic (Lambda then starts a new one): the
    # next invocation is served all the same.
    status, reply = invoke({"name": "Ada"})
    assert status == "" and reply["greeting"] == "hello Ada", reply
    lam.delete_function(FunctionName=name)


def test_the_go_runtime_builds_an_aws_lambda_go_module(client, go_module: Path) -> None:
    """--runtime go, from source: build.sh builds the module (offline, aws-lambda-go read from the
    daemon user's module cache) and launches it behind the Runtime API adapter."""
    name = unique("alg-go-src")
    client.create_function(name, runtime="go", handler="hello", code=str(go_module), timeout_s=5)
    result = client.invoke(name, json.dumps({"name": "Ada"}).encode())
    assert result.function_error == "", result.payload
    check_hello(json.loads(result.payload), name, result.request_id, 5)

    def invoke(event: dict) -> tuple[str, dict]:
        r = client.invoke(name, json.dumps(event).encode())
        return r.function_error, json.loads(r.payload)

    # Warm: the worker (adapter and executable) serves the next invocations.
    for _ in range(2):
        assert invoke({"name": "Ada"})[1]["greeting"] == "hello Ada"
    assert function_stats(client, name).cold_starts == 1
    check_errors(invoke)
    # After the panic (aws-lambda-go then ends its process) the function serves on.
    assert invoke({"name": "Ada"})[1]["greeting"] == "hello Ada"
    client.delete_function(name)


def test_the_go_runtime_runs_a_prebuilt_aws_lambda_go_executable(lam, go_module: Path) -> None:
    """go1.x with a prebuilt executable named as the handler, built without the lambda.norpc tag
    as go1.x users built theirs (aws-lambda-go picks the Runtime API when _LAMBDA_SERVER_PORT is unset)."""
    exe = build_bootstrap(go_module, go_module.parent / "prebuilt-hello")
    name = unique("alg-go-pre")
    out = lam.create_function(FunctionName=name, Runtime="go1.x", Handler="hello", Role=ROLE, Timeout=4,
                              Code={"ZipFile": zip_tree(None, {"hello": exe})})
    assert out["Runtime"] == "go1.x"
    got = lam.invoke(FunctionName=name, Payload=b'{"name": "Ada"}')
    reply = json.loads(got["Payload"].read())
    check_hello(reply, name, got["ResponseMetadata"]["RequestId"], 4)
    assert reply["handler"] == "hello"
    lam.delete_function(FunctionName=name)


def test_the_cli_deploys_an_aws_lambda_go_module(daemon, go_module: Path) -> None:
    """runtimes/go/README.md's command, then `fnhost invoke` with its REPORT and log tail."""
    name = unique("alg-cli")

    def fnhost(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "fnhost", *args], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "FNHOST_ADDRESS": daemon.address})

    deployed = fnhost("deploy", name, "--runtime", "go", "--handler", "hello", "--code", str(go_module))
    assert deployed.returncode == 0, deployed.stderr
    out = fnhost("invoke", name, '{"name": "Ada"}', "--report", "--log-type", "tail")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["greeting"] == "hello Ada"
    request_id = out.stderr.split("START RequestId: ", 1)[1].split()[0]
    assert f"greeting Ada in request {request_id}" in out.stderr  # the handler's log.Printf, in its tail
    assert "REPORT RequestId:" in out.stderr and "Init Duration:" in out.stderr
    failed = fnhost("invoke", name, '{"fail": "nope"}')
    assert failed.returncode == 1 and json.loads(failed.stdout)["errorType"] == "errorString"
    assert fnhost("delete", name).returncode == 0


def test_an_aws_lambda_go_function_times_out_like_any_other(client, go_module: Path) -> None:
    """Behind the adapter the executable is in the worker's process group: fnhost's timeout ends
    both, reports Lambda's message, and the next invocation gets a new worker."""
    name = unique("alg-go-timeout")
    client.create_function(name, runtime="go", handler="hello", code=str(go_module), timeout_s=1)
    result = client.invoke(name, b'{"sleep_ms": 3000}')
    assert result.function_error == "Unhandled"
    assert json.loads(result.payload)["errorMessage"] == "Task timed out after 1.00 seconds"
    assert json.loads(client.invoke(name, b'{"name": "Ada"}').payload)["greeting"] == "hello Ada"
    client.delete_function(name)


def test_fnhost_start_functions_are_unchanged(client) -> None:
    """A function using fnhost's own package still is its own worker (no adapter in front)."""
    name = unique("go-fnhost")
    client.create_function(name, runtime="go", handler="echo", code=str(PUBLIC_FIXTURES / "go"))
    assert json.loads(client.invoke(name, b'{"a": [1, 2]}').payload) == {"a": [1, 2]}
    client.delete_function(name)


def test_a_go_program_with_neither_start_fails_the_deploy(client) -> None:
    with pytest.raises(errors.BuildFailed) as info:
        client.create_function(unique("go-neither"), runtime="go", handler="plain",
                               code=zipped({"main.go": "package main\n\nfunc main() {}\n"}))
    assert "imports neither the fnhost module nor github.com/aws/aws-lambda-go/lambda" in info.value.message


def test_a_module_missing_from_the_daemon_users_cache_fails_the_deploy_saying_where(client, go_module: Path,
                                                                                   public_dir: Path) -> None:
    """Builds are offline: an aws-lambda-go version nobody downloaded fails the deploy with Go's
    error and where the build looked (the daemon user's module cache)."""
    code = public_dir / "code"
    code.mkdir()
    (code / "main.go").write_text((go_module / "main.go").read_text())
    (code / "go.mod").write_text("module example.com/old\n\ngo 1.21\n\nrequire github.com/aws/aws-lambda-go v1.47.0\n")
    for path in (code, *code.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    with pytest.raises(errors.BuildFailed) as info:
        client.create_function(unique("alg-missing"), runtime="go", handler="hello", code=str(code))
    assert "github.com/aws/aws-lambda-go" in info.value.message
    assert "module cache of the daemon's user (/var/cache/fnhost-tests/go-home/go/pkg/mod)" in info.value.message
