"""Ruby: Lambda's class-method handlers, nested files, and the errors Ruby users meet."""

from __future__ import annotations

import json

import pytest

from fnhost import errors
from fnhost.client import Client
from fnhost.control.runtimes import RuntimeRegistry
from tests.conftest import deploy_case, payload

try:
    RuntimeRegistry().get("ruby").select()
except errors.ToolchainMissing as exc:
    pytest.skip(f"ruby: toolchain not installed on this host ({exc.message})", allow_module_level=True)


def test_class_method_handlers(client: Client) -> None:
    greeting = payload(client.invoke(deploy_case(client, "ruby", "class_method"), b'{"name": "Ada"}'))
    assert greeting == {"greeting": "hello Ada", "via": "Greeter"}
    result = client.invoke(deploy_case(client, "ruby", "namespaced_class_method"), b'{"k": 1}')
    body = payload(result)
    assert body["event"] == {"k": 1} and body["request_id"] == result.request_id


def test_handler_in_a_subdirectory(client: Client) -> None:
    body = payload(client.invoke(deploy_case(client, "ruby", "subdirectory"), b'{"word": "hi"}'))
    assert body == {"where": "handlers/nested.rb", "helper": "HI"}


@pytest.mark.parametrize(
    ("case", "error_type"),
    [("instance_method_handler", "Runtime.HandlerNotFound"), ("marshal_error", "Runtime.MarshalError"),
     ("missing_file", "Runtime.ImportModuleError")],
)
def test_errors(client: Client, case: str, error_type: str) -> None:
    result = client.invoke(deploy_case(client, "ruby", case), b"{}")
    assert result.function_error == "Unhandled"
    assert json.loads(result.payload)["errorType"] == error_type
