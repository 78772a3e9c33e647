"""Custom runtimes of the two kinds AWS documents for provided.al2023 besides compiled ones: AWS's
Python runtime interface client (awslambdaric, from PyPI) as the bootstrap of an ordinary handler,
and a bash-and-curl bootstrap like AWS's custom-runtime tutorial. Deployed and invoked with boto3."""

from __future__ import annotations

import base64
import json
import platform
import shutil
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import short_tempdir, unique

from .conftest import FIXTURES, ROLE, cache_dir, run, zip_tree


AWSLAMBDARIC = "awslambdaric==4.2.2"


def worker_python_version() -> str:
    """X.Y of the python3 the bootstrap's `exec python3` finds: the host's system one (workers'
    PATH holds the system directories; this test's own interpreter may be elsewhere, e.g. pyenv's)."""
    python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    if python is None:
        pytest.fail("no python3 in /usr/local/bin, /usr/bin or /bin for the awslambdaric bootstrap")
    return run([python, "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"]).strip()


@pytest.fixture(scope="module")
def awslambdaric_zip() -> Iterator[bytes]:
    """app.py and bootstrap, with awslambdaric installed beside them the way AWS's docs build a
    deployment package (`pip install --target`). It is a binary wheel (manylinux, cp311 here: its
    runtime_client extension is prebuilt, so nothing of aws-lambda-cpp is compiled). PyPI once:
    the installed tree is kept under /var/cache/fnhost-tests, per version and Python."""
    version = worker_python_version()
    tag = f"{AWSLAMBDARIC.replace('==', '-')}-cp{version.replace('.', '')}-{platform.machine()}"
    installed = cache_dir("pip") / tag
    if not (installed / ".complete").exists():
        shutil.rmtree(installed, ignore_errors=True)
        # For the python3 the bootstrap will run, as AWS's docs package for another Python.
        run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--only-binary=:all:", "--implementation", "cp", "--python-version", version,
             "--platform", f"manylinux2014_{platform.machine()}", "--target", str(installed), AWSLAMBDARIC])
        (installed / ".complete").touch()
    work = short_tempdir(0o755)
    code = work / "code"
    shutil.copytree(installed, code, ignore=shutil.ignore_patterns(".complete", "__pycache__"))
    shutil.copytree(FIXTURES / "python", code, dirs_exist_ok=True)
    assert list(code.glob("runtime_client*.so")), "awslambdaric's wheel brings its compiled runtime client"
    yield zip_tree(code)
    shutil.rmtree(work, ignore_errors=True)


def tail(out: dict) -> str:
    return base64.b64decode(out["LogResult"]).decode()


def test_awslambdaric_runs_an_ordinary_handler(lam, awslambdaric_zip: bytes) -> None:
    name = unique("ric")
    lam.create_function(FunctionName=name, Runtime="provided.al2023", Handler="app.handler", Role=ROLE,
                        Code={"ZipFile": awslambdaric_zip}, Timeout=6, MemorySize=192)
    out = lam.invoke(FunctionName=name, Payload=b'{"a": [1, "two"]}', LogType="Tail")
    assert "FunctionError" not in out
    reply = json.loads(out["Payload"].read())
    request_id = out["ResponseMetadata"]["RequestId"]
    assert reply["echo"] == {"a": [1, "two"]}
    assert reply["request_id"] == request_id
    assert reply["function_name"] == name
    assert reply["invoked_function_arn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert reply["memory_limit_in_mb"] == 192
    assert 0 < reply["remaining_ms"] <= 6000
    assert reply["runtime_api_set"] is True
    assert reply["python"].startswith(("/usr/local/bin/", "/usr/bin/", "/bin/"))
    assert f"handling {request_id}" in tail(out)  # the handler's print, in the invocation's log

    out = lam.invoke(FunctionName=name, Payload=b'{"fail": "over quota"}', LogType="Tail")
    assert out["FunctionError"] == "Unhandled"
    err = json.loads(out["Payload"].read())
    assert (err["errorType"], err["errorMessage"]) == ("QuotaExceeded", "over quota")
    assert any("app.py" in line for line in err["stackTrace"]), err
    # The same process serves on (awslambdaric keeps running after a handler's exception).
    again = json.loads(lam.invoke(FunctionName=name, Payload=b"{}")["Payload"].read())
    assert again["echo"] == {}
    lam.delete_function(FunctionName=name)


def test_awslambdaric_with_a_handler_that_does_not_exist(lam, awslambdaric_zip: bytes) -> None:
    """awslambdaric reports a missing handler through the Runtime API (init error, or each
    invocation's error, as it does on Lambda): the caller sees Runtime.HandlerNotFound."""
    name = unique("ric-missing")
    lam.create_function(FunctionName=name, Runtime="provided.al2023", Handler="app.nosuch", Role=ROLE,
                        Code={"ZipFile": awslambdaric_zip}, Timeout=6)
    out = lam.invoke(FunctionName=name, Payload=b"{}")
    assert out["FunctionError"] == "Unhandled"
    err = json.loads(out["Payload"].read())
    assert err["errorType"] == "Runtime.HandlerNotFound", err
    assert "nosuch" in err["errorMessage"]
    lam.delete_function(FunctionName=name)


def shell_zip() -> bytes:
    return zip_tree(FIXTURES / "shell")


def test_a_bash_and_curl_bootstrap_like_aws_tutorial(lam) -> None:
    name = unique("sh-runtime")
    lam.create_function(FunctionName=name, Runtime="provided", Handler="function.handler", Role=ROLE,
                        Code={"ZipFile": shell_zip()}, Timeout=5)
    out = lam.invoke(FunctionName=name, Payload=b'{"name": "Ada"}', LogType="Tail")
    assert "FunctionError" not in out
    reply = json.loads(out["Payload"].read())
    assert reply == {"echo": {"name": "Ada"}, "request_id_seen": out["ResponseMetadata"]["RequestId"]}
    assert 'event: {"name": "Ada"}' in tail(out)  # the handler's stderr, in the invocation's log

    out = lam.invoke(FunctionName=name, Payload=b'{"fail": true}')
    assert out["FunctionError"] == "Unhandled"
    err = json.loads(out["Payload"].read())
    assert (err["errorType"], err["errorMessage"]) == ("HandlerFailed", "handler failed")
    # The loop goes on: the next invocation is answered by the same bootstrap.
    out = lam.invoke(FunctionName=name, Payload=b"[1, 2]")
    assert json.loads(out["Payload"].read())["echo"] == [1, 2]
    lam.delete_function(FunctionName=name)


def test_a_bash_bootstrap_whose_handler_script_is_missing(lam) -> None:
    """The tutorial's bootstrap reports a handler script it cannot load to /runtime/init/error."""
    name = unique("sh-missing")
    lam.create_function(FunctionName=name, Runtime="provided.al2", Handler="nosuch.handler", Role=ROLE,
                        Code={"ZipFile": shell_zip()}, Timeout=5)
    out = lam.invoke(FunctionName=name, Payload=b"{}")
    assert out["FunctionError"] == "Unhandled"
    err = json.loads(out["Payload"].read())
    assert err["errorType"] == "Runtime.ImportModuleError", err
    assert "cannot load nosuch.sh" in err["errorMessage"]
    lam.delete_function(FunctionName=name)
