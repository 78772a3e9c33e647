"""Bad input: the right gRPC status, a message that says what to fix, and nothing else disturbed."""

from __future__ import annotations

import io
import json
import zipfile

import grpc
import pytest

from fnhost import errors
from fnhost.client import Client
from tests.conftest import FIXTURES, deploy_case, payload, unique

PY = str(FIXTURES / "python")


@pytest.fixture
def bystander(client: Client):  # type: ignore[no-untyped-def]
    """A warm function whose worker must survive every bad request."""
    name = deploy_case(client, "python", "pid")
    pid = payload(client.invoke(name, b"{}"))
    yield name
    assert payload(client.invoke(name, b"{}")) == pid, "a bad request disturbed another function"


def create(client: Client, name: str | None = None, **overrides: object) -> None:
    args: dict[str, object] = dict(runtime="python", handler="app.echo", code=PY)
    args.update(overrides)
    client.create_function(unique("bad") if name is None else name, **args)  # type: ignore[arg-type]


CASES = [
    ("unknown runtime", dict(runtime="cobol"), errors.InvalidParameter, "unknown runtime 'cobol'"),
    ("malformed handler", dict(handler="nodots"), errors.InvalidParameter, "module.function"),
    ("handler outside code", dict(handler="../etc.passwd"), errors.InvalidParameter, "outside"),
    ("absolute handler", dict(handler="/etc/passwd.x"), errors.InvalidParameter, "outside"),
    ("missing code dir", dict(code="/nonexistent/fnhost/code"), errors.InvalidParameter, "does not exist"),
    ("memory too small", dict(memory_mb=64), errors.InvalidParameter, "memory_mb 64 is out of range: use 128-10240"),
    ("memory too large", dict(memory_mb=20000), errors.InvalidParameter, "memory_mb 20000"),
    ("timeout zero", dict(timeout_s=0), errors.InvalidParameter, "timeout_s 0 is out of range: use 1-900"),
    ("timeout too long", dict(timeout_s=901), errors.InvalidParameter, "timeout_s 901"),
    ("reserved env", dict(environment={"_HANDLER": "x"}), errors.InvalidParameter, "reserved"),
    ("bad env name", dict(environment={"1BAD": "x"}), errors.InvalidParameter, "1BAD"),
    ("env over 4 KB", dict(environment={"BIG": "x" * 5000}), errors.InvalidParameter, "4096"),
    ("invalid zip", dict(code=b"this is not a zip"), errors.InvalidParameter, "not a valid zip"),
]


@pytest.mark.parametrize(("label", "overrides", "error", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_bad_create(client: Client, bystander: str, label: str, overrides: dict, error: type, fragment: str) -> None:
    name = unique("bad")
    with pytest.raises(error) as info:
        create(client, name, **overrides)
    assert fragment in info.value.message
    assert info.value.status == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(errors.ResourceNotFound):
        client.get_function(name)


@pytest.mark.parametrize("name", ["has space", "x" * 65, "slash/name", "dot.name", ""])
def test_invalid_function_name(client: Client, bystander: str, name: str) -> None:
    with pytest.raises(errors.InvalidParameter, match="function name"):
        create(client, name)


def test_zip_slip_is_refused(client: Client, bystander: str) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../escape.py", "x = 1")
    with pytest.raises(errors.InvalidParameter, match="outside the code directory"):
        create(client, code=buf.getvalue())


def test_duplicate_create_conflicts(client: Client, bystander: str) -> None:
    name = unique("dup")
    create(client, name)
    with pytest.raises(errors.ResourceConflict) as info:
        create(client, name)
    assert info.value.status == grpc.StatusCode.ALREADY_EXISTS


def test_unknown_function(client: Client, bystander: str) -> None:
    for call in (lambda: client.invoke("no-such-function", b"{}"),
                 lambda: client.get_function("no-such-function"),
                 lambda: client.delete_function("no-such-function"),
                 lambda: client.update_function_code("no-such-function", PY)):
        with pytest.raises(errors.ResourceNotFound) as info:
            call()
        assert info.value.status == grpc.StatusCode.NOT_FOUND
        assert "no-such-function" in info.value.message


def test_payload_over_six_megabytes(client: Client, bystander: str) -> None:
    name = deploy_case(client, "python", "echo")
    with pytest.raises(errors.RequestTooLarge) as info:
        client.invoke(name, b'"' + b"x" * (6 * 1024 * 1024) + b'"')
    assert info.value.status == grpc.StatusCode.INVALID_ARGUMENT
    assert "6291456" in info.value.message
    assert function_cold_starts(client, name) == 0


def function_cold_starts(client: Client, name: str) -> int:
    return next(f.cold_starts for f in client.stats().functions if f.function_name == name)


def test_response_over_six_megabytes(client: Client, bystander: str) -> None:
    name = deploy_case(client, "python", "echo", memory_mb=512)
    # 4 MB in, ~12 MB out: Python's json escapes each "é" (2 bytes of UTF-8) as \u00e9 (6 bytes).
    result = client.invoke(name, json.dumps("é" * (2 * 1024 * 1024), ensure_ascii=False).encode())
    assert result.function_error == "Unhandled"
    assert json.loads(result.payload)["errorType"] == "Function.ResponseSizeTooLarge"


def test_bad_update_leaves_function_untouched(client: Client, bystander: str) -> None:
    name = deploy_case(client, "python", "pid")
    before = client.get_function(name)
    with pytest.raises(errors.InvalidParameter):
        client.update_function_configuration(name, memory_mb=1)
    with pytest.raises(errors.InvalidParameter):
        client.update_function_configuration(name, handler="../x.y")
    after = client.get_function(name)
    assert after.revision_id == before.revision_id
    assert payload(client.invoke(name, b"{}")) > 0


def test_max_concurrency_above_cap(client: Client, bystander: str) -> None:
    with pytest.raises(errors.InvalidParameter, match="cap"):
        create(client, max_concurrency=100_000)


def test_dry_run_and_event(client: Client, bystander: str) -> None:
    name = deploy_case(client, "python", "echo")
    dry = client.invoke(name, b"{}", invocation_type="DryRun")
    assert dry.status_code == 204 and dry.payload == b""
    accepted = client.invoke(name, b"{}", invocation_type="Event")
    assert accepted.status_code == 202 and accepted.payload == b"" and accepted.request_id
    with pytest.raises(errors.ResourceNotFound):
        client.invoke("no-such-function", b"{}", invocation_type="DryRun")
