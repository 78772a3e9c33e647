"""The conformance suite: one set of behaviours, every runtime, real workers behind a real daemon."""

from __future__ import annotations

import json
import tomllib
from concurrent.futures import ThreadPoolExecutor

import pytest

from fnhost.client import Client
from fnhost.errors import BuildFailed
from tests.conformance.conftest import REGISTRY
from tests.conftest import FIXTURES, deploy_case, function_stats, payload

ECHO_EVENTS = [
    {"a": 1, "b": [1, 2, {"c": None}], "d": True},
    [1, "two", 3.5, None],
    "just a string",
    42,
    {"unicode": "héllo ✓ 日本語 🎉", "escapes": "quote\" backslash\\ newline\n tab\t"},
]


def expected_error(runtime: str, case: str, default: str) -> str:
    """A runtime's documented exception to the common expectation (handlers.toml [expect])."""
    data = tomllib.loads((FIXTURES / runtime / "handlers.toml").read_text())
    return data.get("expect", {}).get(case, default)


def error_of(result) -> dict:  # type: ignore[no-untyped-def]
    assert result.function_error == "Unhandled", result.payload
    err = json.loads(result.payload)
    assert set(err) >= {"errorType", "errorMessage", "stackTrace"}
    assert isinstance(err["stackTrace"], list)
    return err


def test_echo_json_values(client: Client, runtime: str) -> None:
    name = deploy_case(client, runtime, "echo")
    for event in ECHO_EVENTS:
        result = client.invoke(name, json.dumps(event).encode())
        assert result.function_error == "", result.payload
        assert payload(result) == event
        assert result.status_code == 200


def test_echo_five_megabytes(client: Client, runtime: str) -> None:
    name = deploy_case(client, runtime, "echo", memory_mb=512)
    event = {"blob": "x" * 5_000_000, "tail": "end"}
    result = client.invoke(name, json.dumps(event).encode())
    assert result.function_error == "", result.payload[:500]
    assert payload(result) == event


def test_context_fields(client: Client, runtime: str) -> None:
    name = deploy_case(client, runtime, "context", memory_mb=256, timeout_s=7)
    result = client.invoke(name, b"{}")
    ctx = payload(result)
    assert ctx["request_id"] == result.request_id
    assert ctx["function_name"] == name
    assert ctx["function_version"] == "$LATEST"
    assert int(ctx["memory_limit_in_mb"]) == 256
    assert 0 < ctx["remaining_ms"] <= 7000
    assert ctx["log_group_name"] == f"/aws/lambda/{name}"
    assert "[$LATEST]" in ctx["log_stream_name"]
    again = client.invoke(name, b"{}")
    assert payload(again)["request_id"] == again.request_id != result.request_id


def test_environment(client: Client, runtime: str) -> None:
    name = deploy_case(client, runtime, "env", environment={"GREETING": "hi there", "EMPTY": ""})
    names = ["GREETING", "EMPTY", "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
             "AWS_LAMBDA_FUNCTION_VERSION", "_HANDLER", "LAMBDA_TASK_ROOT",
             "FNHOST_TEST_SECRET", "FNHOST_CONTROL_FDS", "NOTIFY_SOCKET"]
    env = payload(client.invoke(name, json.dumps({"names": names}).encode()))
    assert env["GREETING"] == "hi there"
    assert env["EMPTY"] == ""
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "128"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["_HANDLER"]
    assert env["LAMBDA_TASK_ROOT"]
    # The daemon's own environment, the protocol's fds and systemd's variables stay out.
    assert env["FNHOST_TEST_SECRET"] is None
    assert env["FNHOST_CONTROL_FDS"] is None
    assert env["NOTIFY_SOCKET"] is None


def test_output_is_captured_per_invocation(client: Client, runtime: str) -> None:
    name = deploy_case(client, runtime, "print")
    first = client.invoke(name, json.dumps({"stdout": "out-line-1", "stderr": "err-line-1"}).encode(),
                          log_type="Tail")
    second = client.invoke(name, json.dumps({"stdout": "out-line-2", "stderr": "err-line-2"}).encode(),
                           log_type="Tail")
    assert payload(first) == "printed" and payload(second) == "printed"
    assert "out-line-1" in first.log_result and "err-line-1" in first.log_result
    assert "out-line-2" not in first.log_result
    assert "out-line-2" in second.log_result and "out-line-1" not in second.log_result
    assert first.log_result.startswith(f"START RequestId: {first.request_id}")
    assert f"REPORT RequestId: {first.request_id}" in first.log_result


def test_handler_exception_is_a_function_error(client: Client, runtime: str) -> None:
    name = deploy_case(client, runtime, "raise")
    for _ in range(2):
        err = error_of(client.invoke(name, json.dumps({"message": "boom"}).encode()))
        assert err["errorMessage"] == "boom"
        assert err["errorType"]
    stats = function_stats(client, name)
    assert stats.cold_starts == 1, "the worker must stay warm after a handler exception"
    assert stats.errors == 2


def test_invalid_json_payload_is_a_function_error(client: Client, runtime: str) -> None:
    name = deploy_case(client, runtime, "echo")
    err = error_of(client.invoke(name, b"{not json"))
    assert err["errorType"] == "Runtime.UnmarshalError"
    assert payload(client.invoke(name, b"[1]")) == [1]


@pytest.mark.slow
def test_timeout_kills_and_replaces_the_worker(client: Client, runtime: str) -> None:
    name = deploy_case(client, runtime, "sleep", timeout_s=1)
    result = client.invoke(name, json.dumps({"seconds": 5}).encode())
    err = error_of(result)
    assert err["errorType"] == "Sandbox.Timeout"
    assert err["errorMessage"] == "Task timed out after 1.00 seconds"
    assert result.report is not None and result.report.duration_ms >= 1000
    assert payload(client.invoke(name, json.dumps({"seconds": 0}).encode())) == "slept"
    assert function_stats(client, name).cold_starts == 2


def test_memory_limit(client: Client, runtime: str) -> None:
    # A generous timeout: the limit must be what stops the hog, however slowly a loaded host
    # lets it touch 400 MB (Mono did not get there within the default 3 s once). The provided
    # fixture's bash hog thrashes near the limit (its own text pages evicted and faulted back):
    # 13-15 s to its OOM kill on an idle 2-core VM, past 30 s once under CI's load.
    name = deploy_case(client, runtime, "hog", memory_mb=128, timeout_s=120)
    err = error_of(client.invoke(name, json.dumps({"mb": 400}).encode()))
    assert err["errorType"] == "Runtime.OutOfMemory", err
    small = client.invoke(name, json.dumps({"mb": 1}).encode())
    assert payload(small) == "survived"
    assert small.report is not None and 0 < small.report.max_memory_used_mb <= 128


def test_exit_in_handler(client: Client, runtime: str) -> None:
    name = deploy_case(client, runtime, "exit")
    err = error_of(client.invoke(name, json.dumps({"code": 3}).encode()))
    assert err["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in err["errorMessage"]


@pytest.mark.parametrize(
    ("case", "error_type"),
    [
        ("import_error", "Runtime.ImportModuleError"),
        ("syntax_error", "Runtime.UserCodeSyntaxError"),
        ("handler_missing", "Runtime.HandlerNotFound"),
        ("init_error", "Runtime.InitError"),
    ],
)
def test_init_errors(client: Client, runtime: str, case: str, error_type: str) -> None:
    try:
        name = deploy_case(client, runtime, case)
    except BuildFailed as exc:
        # Compiled runtimes reject code that does not compile (or link) at deploy, as a build error.
        assert case in ("syntax_error", "import_error") and REGISTRY.get(runtime).builds, exc.message
        return
    err = error_of(client.invoke(name, b"{}"))
    assert err["errorType"] == expected_error(runtime, case, error_type), err
    assert err["errorMessage"]


@pytest.mark.slow
def test_slow_init_hits_the_init_timeout(client: Client, runtime: str) -> None:
    name = deploy_case(client, runtime, "slow_init")
    err = error_of(client.invoke(name, b"{}"))
    assert err["errorType"] == "Runtime.InitError"
    assert "did not finish within" in err["errorMessage"]


def test_warm_reuse(client: Client, runtime: str) -> None:
    name = deploy_case(client, runtime, "pid")
    pids = {payload(client.invoke(name, b"{}")) for _ in range(5)}
    assert len(pids) == 1
    assert function_stats(client, name).cold_starts == 1


def test_concurrent_calls_get_their_own_workers(client: Client, runtime: str) -> None:
    name = deploy_case(client, runtime, "sleep")
    n = 4
    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(lambda _: client.invoke(name, b'{"seconds": 1.0}'), range(n)))
    assert [payload(r) for r in results] == ["slept"] * n
    assert len({r.request_id for r in results}) == n
    stats = function_stats(client, name)
    assert stats.cold_starts == n
    assert sum(stats.workers.values()) == n
