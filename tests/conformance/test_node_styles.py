"""Node.js handler styles Lambda users bring: ESM, callbacks, legacy context methods, rejections."""

from __future__ import annotations

import json

import pytest

from fnhost.client import Client
from fnhost.control.runtimes import RuntimeRegistry
from tests.conftest import deploy_case, function_stats, payload

try:
    RuntimeRegistry().get("node").select()
except Exception as exc:  # noqa: BLE001 - any missing-toolchain error skips, with its reason
    pytest.skip(f"node: toolchain not installed on this host ({exc})", allow_module_level=True)

RESULTS = [
    ("esm_mjs", {"esm": True}),
    ("esm_package_type", {"esm_js": True}),
    ("subdir_cjs", {"nested_cjs": True}),
    ("callback", {"callback": True}),
    ("callback_waits", {"timerRan": True}),
    ("legacy_succeed", {"legacy": "succeed"}),
    ("plain_value", {"plain": True}),
]


@pytest.mark.parametrize(("case", "subset"), RESULTS, ids=[c for c, _ in RESULTS])
def test_result_styles(client: Client, case: str, subset: dict) -> None:
    name = deploy_case(client, "node", case)
    result = client.invoke(name, b'{"k": "v"}')
    assert result.function_error == "", result.payload
    body = payload(result)
    assert isinstance(body, dict) and subset.items() <= body.items(), body


def test_plain_results(client: Client) -> None:
    assert payload(client.invoke(deploy_case(client, "node", "nested_export"), b"{}")) == "nested"
    assert payload(client.invoke(deploy_case(client, "node", "callback_no_wait"), b"{}")) == "answered"
    assert payload(client.invoke(deploy_case(client, "node", "legacy_done"), b"{}")) == "legacy done"
    assert payload(client.invoke(deploy_case(client, "node", "returns_nothing"), b"{}")) is None
    assert payload(client.invoke(deploy_case(client, "node", "marshal_function"), b"{}")) is None
    assert payload(client.invoke(deploy_case(client, "node", "string_length"), json.dumps("日本🎉").encode())) == {
        "chars": 4, "bytes": 10}  # JS counts UTF-16 units: 🎉 is two


ERRORS = [
    ("callback_error", "Error"),
    ("legacy_fail", "Error"),
    ("marshal_bigint", "Runtime.MarshalError"),
    ("marshal_circular", "Runtime.MarshalError"),
    ("reject_string", "string"),
    ("reject_object", "object"),
    ("reject_undefined", "undefined"),
    ("type_error", "TypeError"),
    ("unhandled_rejection", "Runtime.UnhandledPromiseRejection"),
    ("uncaught_exception", "TypeError"),
]


@pytest.mark.parametrize(("case", "error_type"), ERRORS, ids=[c for c, _ in ERRORS])
def test_error_styles_keep_the_worker(client: Client, case: str, error_type: str) -> None:
    name = deploy_case(client, "node", case)
    for _ in range(2):
        result = client.invoke(name, b"{}")
        assert result.function_error == "Unhandled"
        assert json.loads(result.payload)["errorType"] == error_type
    assert function_stats(client, name).cold_starts == 1


INIT_ERRORS = [
    ("esm_import_error", "Runtime.ImportModuleError"),
    ("esm_syntax_error", "Runtime.UserCodeSyntaxError"),
    ("missing_file", "Runtime.ImportModuleError"),
    ("not_a_function", "Runtime.HandlerNotFound"),
]


@pytest.mark.parametrize(("case", "error_type"), INIT_ERRORS, ids=[c for c, _ in INIT_ERRORS])
def test_init_error_styles(client: Client, case: str, error_type: str) -> None:
    result = client.invoke(deploy_case(client, "node", case), b"{}")
    assert json.loads(result.payload)["errorType"] == error_type


def test_child_processes_never_see_the_control_pipes(client: Client) -> None:
    fds = payload(client.invoke(deploy_case(client, "node", "child_fds"), b"{}"))
    ctx = payload(client.invoke(deploy_case(client, "node", "context_full"), b"{}"))
    assert ctx["control_fds"] is None
    assert set(map(int, fds)) <= {0, 1, 2, 3}, fds
