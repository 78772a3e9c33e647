"""The Runtime API endpoint of the provided runtime, end to end: a real daemon starts the adapter
(fnhost-runtime-api) as the worker, the adapter starts tests/fixtures/provided/probe/bootstrap, a
Python program that calls the endpoint with Python's own HTTP client — correctly, and in the
ways a broken or hostile runtime would — and returns what it was answered."""

from __future__ import annotations

import json
import os
import re
import socket
import time

import pytest

from fnhost.client import Client
from tests.conftest import deploy_case, function_stats, payload

TRACE = re.compile(r"^Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=0$")


def api_error(answer: list, status: int, error_type: str) -> None:
    assert answer[0] == status, answer
    assert answer[1]["errorType"] == error_type, answer
    assert answer[1]["errorMessage"], answer


@pytest.fixture(scope="module")
def probe(daemon) -> str:  # type: ignore[no-untyped-def]
    with daemon.client() as c:
        return deploy_case(c, "provided", "probe", memory_mb=256, timeout_s=10)


def test_next_answers_lambdas_headers_and_the_event(client: Client, probe: str) -> None:
    event = {"do": "report", "unicode": "héllo ✓"}
    result = client.invoke(probe, json.dumps(event).encode())
    seen = payload(result)
    assert seen["event"] == event
    h = seen["headers"]
    assert h["lambda-runtime-aws-request-id"] == result.request_id
    deadline = int(h["lambda-runtime-deadline-ms"])
    assert 0 < deadline - time.time() * 1000 <= 10_000
    assert h["lambda-runtime-invoked-function-arn"].endswith(f":function:{probe}")
    assert TRACE.match(h["lambda-runtime-trace-id"]), h
    assert h["content-type"] == "application/json"
    assert "lambda-runtime-client-context" not in h  # none was sent
    assert "lambda-runtime-cognito-identity" not in h  # fnhost has no Cognito identities
    # Each invocation gets a trace id of its own.
    again = payload(client.invoke(probe, b'{"do": "report"}'))
    assert again["headers"]["lambda-runtime-trace-id"] != h["lambda-runtime-trace-id"]


def test_client_context_header_is_the_callers_json(client: Client, probe: str) -> None:
    context = {"custom": {"tenant": "acme", "n": 5}, "env": {"locale": "en_GB"}}
    seen = payload(client.invoke(probe, b'{"do": "report"}', client_context=json.dumps(context).encode()))
    assert json.loads(seen["headers"]["lambda-runtime-client-context"]) == context


def test_calls_out_of_order_get_the_apis_errors(client: Client, probe: str) -> None:
    seen = payload(client.invoke(probe, b'{"do": "report"}'))
    init = seen["init"]
    api_error(init["unknown_path"], 404, "InvalidPath")
    api_error(init["other_version"], 404, "InvalidPath")
    api_error(init["response_during_init"], 403, "InvalidStateTransition")
    assert init["next_by_post"] == 405
    api_error(seen["wrong_id"], 400, "InvalidRequestID")
    api_error(seen["second_next"], 403, "InvalidStateTransition")
    api_error(seen["init_error_now"], 403, "InvalidStateTransition")
    # What the previous invocation saw after its own answer (reported by this one).
    later = payload(client.invoke(probe, b'{"do": "report"}'))["leftover"]
    assert later["response_status"] == [202, {"status": "OK"}]
    api_error(later["again"], 400, "InvalidRequestID")  # answered already


def test_malformed_and_oversized_requests(client: Client, probe: str) -> None:
    seen = payload(client.invoke(probe, b'{"do": "report"}'))
    assert seen["init"]["garbage"].startswith("HTTP/1.1 400")
    assert seen["init"]["huge_header"].startswith("HTTP/1.1 431")
    # 50 MB announced, nothing sent: refused from the length alone.
    api_error(seen["huge_error"], 413, "RequestEntityTooLarge")


def test_a_response_over_six_megabytes_is_refused_unread(client: Client, probe: str) -> None:
    started = time.monotonic()
    result = client.invoke(probe, b'{"do": "too_big"}')
    err = payload(result)
    assert result.function_error == "Unhandled"
    assert err["errorType"] == "Function.ResponseSizeTooLarge", err
    assert "7340032" in err["errorMessage"]
    assert time.monotonic() - started < 5  # the 413 did not wait for the 7 MB that never came
    later = payload(client.invoke(probe, b'{"do": "report"}'))["leftover"]
    api_error(later["too_big"], 413, "RequestEntityTooLarge")
    api_error(later["after_too_big"], 400, "InvalidRequestID")  # that invocation is over


def test_a_chunked_response_over_the_limit_is_cut_off(client: Client, probe: str) -> None:
    err = payload(client.invoke(probe, b'{"do": "too_big_chunked"}'))
    assert err["errorType"] == "Function.ResponseSizeTooLarge", err
    later = payload(client.invoke(probe, b'{"do": "report"}'))["leftover"]
    # The 413 comes at the first byte over; the client may still be sending, and the rest is never
    # read, so it may see the connection reset instead of the answer.
    if isinstance(later["too_big_chunked"], str):
        assert later["too_big_chunked"].startswith("closed"), later
    else:
        api_error(later["too_big_chunked"], 413, "RequestEntityTooLarge")


def test_a_body_cut_short_leaves_the_invocation_open(client: Client, probe: str) -> None:
    seen = payload(client.invoke(probe, b'{"do": "bad_chunks"}'))
    assert seen["bad_chunks"].startswith("HTTP/1.1 400"), seen


def test_error_reports_are_normalised(client: Client, probe: str) -> None:
    text = client.invoke(probe, b'{"do": "error_text"}')
    assert text.function_error == "Unhandled"
    err = payload(text)
    assert err["errorType"] == "Probe.Text"  # from Lambda-Runtime-Function-Error-Type
    assert err["errorMessage"] == "not json at all \ufffd"
    assert err["stackTrace"] == []
    shaped = payload(client.invoke(probe, b'{"do": "error_json"}'))
    assert shaped == {"errorType": "Probe.Failure", "errorMessage": "it broke",
                      "stackTrace": ["a", '{"b": 1}']}  # a non-string entry as its JSON text


def test_keep_alive_and_warm_reuse(client: Client, probe: str) -> None:
    first = payload(client.invoke(probe, b'{"do": "report"}'))
    runs = [payload(client.invoke(probe, b'{"do": "report"}')) for _ in range(3)]
    # One worker, one bootstrap, one kept-alive connection for all of them.
    assert {r["pid"] for r in runs} == {first["pid"]}
    assert {r["local_port"] for r in runs} == {first["local_port"]}
    assert function_stats(client, probe).cold_starts == 1


def test_the_endpoint_is_the_workers_own(client: Client, probe: str) -> None:
    """Another user (this root test process; another function's worker) gets its connection
    closed with no answer; the function's own bootstrap carries on."""
    assert os.geteuid() == 0, "workers have uids of their own only under a root daemon (the suite runs as root)"
    seen = payload(client.invoke(probe, b'{"do": "report"}'))
    host, port = seen["endpoint"].rsplit(":", 1)
    assert host == "127.0.0.1"
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            answer = s.recv(100)
        except ConnectionResetError:  # closed with the request unread
            answer = b""
        assert answer == b""  # closed, nothing answered
    other = deploy_case(client, "provided", "probe", memory_mb=256, timeout_s=10)
    outcome = payload(client.invoke(other, json.dumps({"do": "connect", "endpoint": seen["endpoint"]}).encode()))
    assert outcome["outcome"].startswith("refused"), outcome
    assert payload(client.invoke(other, b'{"do": "report"}'))["uid"] != seen["uid"]
    assert payload(client.invoke(probe, b'{"do": "report"}'))["pid"] == seen["pid"]
    log = client.invoke(probe, b'{"do": "print", "text": "still here"}', log_type="Tail").log_result
    assert "still here" in log
