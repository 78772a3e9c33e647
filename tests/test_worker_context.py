"""Worker protocol version 2's per-invocation context, daemon side, against scripted fake runtimes.

What the pool sends a worker (``tests/fake_runtimes/echo_context.py`` answers with what reached
it): no context at all when an invocation has neither a client context nor an ARN, the JSON
object ``{"client_context", "invoked_function_arn"}`` when it has them, nothing but the payload to
a version-1 worker, and a refusal before any worker is touched for a client context that is not a
JSON object. The shims' side is in tests/conformance/test_client_context.py.
"""

from __future__ import annotations

import json

import anyio
import pytest

from fnhost.errors import InvalidParameter
from fnhost.execution.invocation import CLIENT_CONTEXT_MAX, Invocation
from tests.test_fake_runtimes import fake_spec, real_pool

CLIENT = {"client": {"installation_id": "i-1", "app_title": "tëst ✓"}, "custom": {"k": "v"},
          "env": {"locale": "en_GB"}}
ARN = "arn:aws:lambda:us-east-1:000000000000:function:fake:live"


async def _seen(version: int, *invocations: Invocation) -> list[dict[str, object]]:
    """What a worker of ``version`` received for each invocation, in order, on one warm worker."""
    async with real_pool(fake_spec("echo_context.py", str(version))) as pool:
        seen = []
        with anyio.fail_after(10):
            for invocation in invocations:
                outcome = await pool.invoke(invocation)
                assert outcome.function_error == "", outcome.payload
                seen.append(json.loads(outcome.payload))
        assert pool.snapshot().counters.cold_starts == 1
    return seen


async def test_a_version_2_worker_gets_a_context_only_when_there_is_one() -> None:
    plain, both, arn_only, again = await _seen(
        2,
        Invocation("fake", b'{"n":1}'),
        Invocation("fake", b'{"n":2}', client_context=json.dumps(CLIENT).encode(), invoked_function_arn=ARN),
        Invocation("fake", b'{"n":3}', invoked_function_arn=ARN),
        Invocation("fake", b""),
    )
    assert plain == {"version": 2, "context": None, "payload": '{"n":1}'}
    assert json.loads(both["context"]) == {"client_context": CLIENT, "invoked_function_arn": ARN}  # type: ignore[arg-type]
    assert both["payload"] == '{"n":2}'
    assert json.loads(arn_only["context"]) == {"invoked_function_arn": ARN}  # type: ignore[arg-type]
    assert again == {"version": 2, "context": None, "payload": "{}"}  # the previous context is gone


async def test_a_version_1_worker_still_serves_and_gets_no_context() -> None:
    # A Go, Java or C# function built before the upgrade carries a version-1 shim in its build.
    plain, with_context = await _seen(
        1,
        Invocation("fake", b'{"n":1}'),
        Invocation("fake", b'{"n":2}', client_context=b'{"custom":{"a":"b"}}', invoked_function_arn=ARN),
    )
    assert plain == {"version": 1, "context": None, "payload": '{"n":1}'}
    assert with_context == {"version": 1, "context": None, "payload": '{"n":2}'}


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"a string"', b"null", b"[" * 100_000,
                                 b'{"custom": {"k": "' + b"x" * CLIENT_CONTEXT_MAX + b'"}}'])
async def test_a_client_context_that_is_not_a_json_object_is_refused_before_any_worker_starts(raw: bytes) -> None:
    async with real_pool(fake_spec("echo_context.py")) as pool:
        with anyio.fail_after(10), pytest.raises(InvalidParameter) as info:
            await pool.invoke(Invocation("fake", b"{}", client_context=raw))
        assert info.value.code == "InvalidRequestContentException"  # Lambda's, a 400 as InvalidParameter is
        assert "Client context must be" in info.value.message
        assert pool.snapshot().counters.invocations == 0 and pool.live == 0


async def test_a_worker_of_an_unknown_protocol_version_is_refused_clearly() -> None:
    async with real_pool(fake_spec("echo_context.py", "4")) as pool:
        with anyio.fail_after(10):
            outcome = await pool.invoke(Invocation("fake", b"{}"))
    error = json.loads(outcome.payload)
    assert outcome.function_error == "Unhandled"
    assert error["errorType"] == "Runtime.InvalidResponse"
    assert "speaks worker protocol 4; this daemon speaks 1, 2 and 3" in error["errorMessage"]
