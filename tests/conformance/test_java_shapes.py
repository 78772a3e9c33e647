"""Java: Lambda's method shapes, POJO binding, and aws-lambda-java-core handlers with the real jar."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from fnhost import errors
from fnhost.client import Client
from fnhost.control.runtimes import RuntimeRegistry
from tests.conformance.conftest import awscore_code_with_jar
from tests.conftest import deploy_case, function_stats, payload, unique

try:
    RuntimeRegistry().get("java").select()
except errors.ToolchainMissing as exc:
    pytest.skip(f"java: toolchain not installed on this host ({exc.message})", allow_module_level=True)


def call(client: Client, case: str, event: object = None, raw: bytes | None = None):  # type: ignore[no-untyped-def]
    return client.invoke(deploy_case(client, "java", case), raw if raw is not None else json.dumps(event).encode())


@pytest.mark.parametrize(
    ("case", "event", "expected"),
    [
        ("stream_no_context", {"a": 1}, {"bytes": 8}),
        ("class_only", 1, [1]),
        ("string_context", "abc", "ABC"),
        ("string_only", 12, "<12>"),
        ("map_context", {"b": 1, "a": 2}, ["b", "a"]),
        ("map_typed", {"a": 1, "b": 2}, 3),
        ("list_typed", [1, 2, 3], [2, 4, 6]),
        ("no_args", {}, "no arguments"),
        ("void_return", {}, None),
        ("primitive_boolean", 4, True),
        ("primitive_double", 3.0, 1.5),
        ("pojo", {"customer": "ann", "items": [{"sku": "b", "quantity": 2, "price": 1.5},
                                                {"sku": "a", "quantity": 1, "price": 3}]},
         {"customer": "ann", "items": 2, "total": 6.0, "skus": ["a", "b"]}),
        ("record", {"x": 1, "y": -2, "label": "p"}, {"x": -1.0, "y": 2.0, "label": "p"}),
        ("overload", {}, "with context"),
    ],
)
def test_shapes(client: Client, case: str, event: object, expected: object) -> None:
    result = call(client, case, event)
    assert result.function_error == "", result.payload
    assert payload(result) == expected


def test_stream_handler_passes_bytes_verbatim(client: Client) -> None:
    assert call(client, "stream_echo", raw=b"not json at all").payload == b"not json at all"


def test_instance_is_built_once_per_worker(client: Client) -> None:
    name = deploy_case(client, "java", "instance_counter")
    calls = [payload(client.invoke(name, b"{}"))["calls"] for _ in range(3)]
    assert calls == [1, 2, 3] and function_stats(client, name).cold_starts == 1


@pytest.mark.parametrize(
    ("case", "event", "error_type"),
    [
        ("string_context", {"a": 1}, "Runtime.UnmarshalError"),
        ("map_typed", {"a": "x"}, "Runtime.UnmarshalError"),
        ("checked_exception", {}, "java.io.IOException"),
        ("marshal_nan", {}, "Runtime.MarshalError"),
        ("marshal_cycle", {}, "Runtime.MarshalError"),
        ("bad_signature", {}, "Runtime.HandlerNotFound"),
        ("constructor_error", {}, "Runtime.InitError"),
    ],
)
def test_errors(client: Client, case: str, event: object, error_type: str) -> None:
    result = call(client, case, event)
    assert result.function_error == "Unhandled"
    assert json.loads(result.payload)["errorType"] == error_type


@pytest.fixture(scope="module")
def awscore_code() -> Path:
    """The aws-lambda-java-core fixtures with the real jar from Maven Central in lib/."""
    return awscore_code_with_jar()


def _aws(client: Client, code: Path, case: str, **options: object) -> str:
    handler = tomllib.loads((code / "handlers.toml").read_text())["extra"][case]
    name = unique(f"aws-{case}".replace("_", "-"))
    client.create_function(name, runtime="java", handler=handler, code=str(code), **options)  # type: ignore[arg-type]
    return name


def test_aws_request_handler_and_context(client: Client, awscore_code: Path) -> None:
    name = _aws(client, awscore_code, "request_handler", memory_mb=512)
    result = client.invoke(name, b'{"say": "hi", "n": [1, 2]}', log_type="Tail")
    body = payload(result)
    assert body["request_id"] == result.request_id and body["function_name"] == name
    assert body["memory_limit_in_mb"] == 512 and body["event"] == {"say": "hi", "n": [1, 2]}
    assert body["invoked_function_arn"].endswith(f":function:{name}")
    assert "aws logger: hi" in result.log_result


def test_aws_stream_and_generic_handlers(client: Client, awscore_code: Path) -> None:
    stream = client.invoke(_aws(client, awscore_code, "request_stream_handler"), b'{"a":"xyz"}')
    assert stream.payload == b'{"A":"XYZ"}'
    typed = client.invoke(_aws(client, awscore_code, "generic_base"), b'{"name": "ann", "count": 2}')
    assert payload(typed) == "hello ann hello ann"
    err = client.invoke(_aws(client, awscore_code, "aws_exception"), b"{}")
    assert json.loads(err.payload)["errorType"] == "java.lang.IllegalArgumentException"
