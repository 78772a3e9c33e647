"""C#: Lambda's method shapes (Stream, string, JSON objects, POCOs, async), contexts and errors."""

from __future__ import annotations

import json

import pytest

from fnhost import errors
from fnhost.client import Client
from fnhost.control.runtimes import RuntimeRegistry
from tests.conftest import deploy_case, function_stats, payload

try:
    RuntimeRegistry().get("dotnet").select()
except errors.ToolchainMissing as exc:
    pytest.skip(f"dotnet: toolchain not installed on this host ({exc.message})", allow_module_level=True)


def call(client: Client, case: str, event: bytes = b"{}"):  # type: ignore[no-untyped-def]
    return client.invoke(deploy_case(client, "dotnet", case), event)


def test_stream_and_string_shapes(client: Client) -> None:
    assert call(client, "stream_echo", b"{not json").payload == b"{not json"
    assert payload(call(client, "string", b'"abc"')) == "ABC"
    refused = call(client, "string", b'{"a": 1}')
    assert json.loads(refused.payload)["errorType"] == "Runtime.UnmarshalError"
    result = call(client, "string_context", b'"ann"')
    assert payload(result).startswith("hello ann from ")


def test_json_object_and_poco_shapes(client: Client) -> None:
    described = payload(call(client, "dictionary", b'{"n": 1, "x": 1.5, "o": {}, "a": []}'))
    assert described["echo"] == {"n": 1, "x": 1.5, "o": {}, "a": []}
    order = {"order_id": "A1", "priority": "Urgent", "placedAt": "2026-11-27T10:00:00Z",
             "lines": [{"sku": "x", "quantity": 2, "unitPrice": 1.25}]}
    assert payload(call(client, "poco", json.dumps(order).encode())) == {
        "order_id": "A1", "Total": 2.5, "Items": 2, "Priority": 2, "PlacedAt": "2026-11-27", "HasCoupon": False}


def test_async_void_and_no_argument_shapes(client: Client) -> None:
    later = call(client, "async", b'{"k": 1}')
    assert payload(later) == {"after_await": {"k": 1}, "request_id": later.request_id}
    assert payload(call(client, "async_void")) is None
    assert payload(call(client, "void")) is None
    assert payload(call(client, "no_args")) == "pong"
    err = json.loads(call(client, "async_raise").payload)
    assert err["errorType"] == "Fixtures.ValidationError"


def test_instance_is_built_once_per_worker(client: Client) -> None:
    name = deploy_case(client, "dotnet", "instance_state")
    counts = [payload(client.invoke(name, b"{}")) for _ in range(3)]
    assert [c["calls"] for c in counts] == [1, 2, 3] and {c["constructed"] for c in counts} == {1}
    assert function_stats(client, name).cold_starts == 1


def test_amazon_context_interface_is_provided(client: Client) -> None:
    result = call(client, "amazon_context")
    body = payload(result)
    assert body["request_id"] == result.request_id
    assert body["identity_is_null"] is True


@pytest.mark.parametrize(("case", "error_type"), [("marshal_error", "Runtime.MarshalError"),
                                                  ("custom_error", "Fixtures.ValidationError"),
                                                  ("static_init_error", "Runtime.InitError")])
def test_errors(client: Client, case: str, error_type: str) -> None:
    result = call(client, case)
    assert result.function_error == "Unhandled"
    assert json.loads(result.payload)["errorType"] == error_type
