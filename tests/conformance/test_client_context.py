"""Worker protocol version 2 in every shim: Lambda's client context and the invoked ARN reach the
handler under the language's own names and shapes, per invocation, and a context a shim cannot
read fails only that invocation.

Each runtime's ``client_context`` fixture case (tests/fixtures/README.md) returns what its
handler's context object says. Most tests run real workers (the daemon's own composition, build
and spawn) behind a real ``Pool`` in this process, so a test can hand a worker a context no front
end would let through; the last goes through a real daemon and fnhost's gRPC client.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from fnhost.client import Client
from fnhost.control.worker_specs import compose_worker_spec
from fnhost.errors import InvalidParameter, ToolchainMissing
from fnhost.execution.invocation import Invocation, function_arn
from fnhost.execution.pool import Pool
from tests.conformance.conftest import REGISTRY, awscore_code_with_jar, required_runtimes
from tests.conftest import FIXTURES, deploy_case, fixture_case, payload, short_tempdir
from tests.test_fake_runtimes import real_pool

CLIENT = {"installation_id": "inst-1", "app_title": "Tëst app ✓", "app_version_name": "1.2",
          "app_version_code": "12", "app_package_name": "com.example.app"}
CONTEXT = {"client": CLIENT, "custom": {"tenant": "acme", "emoji": "🎉"}, "env": {"locale": "en_GB"}}

_WORK = short_tempdir(0o755)
atexit.register(shutil.rmtree, _WORK, True)
_built: dict[str, tuple[str, Path, Path]] = {}


def _case(runtime: str, fixtures: str) -> tuple[str, Path, Path]:
    """(handler, code dir, build dir) of the client_context case in tests/fixtures/``fixtures``,
    built once per session."""
    if fixtures not in _built:
        handler, code = fixture_case(fixtures, "client_context")
        if fixtures == "java-awscore":
            code = awscore_code_with_jar()
        build = code
        rt = REGISTRY.get(runtime)
        if rt.builds:
            build = _WORK / f"build-{fixtures}"
            scratch = _WORK / f"scratch-{fixtures}"
            build.mkdir()
            scratch.mkdir()
            rt.build(code, build, handler, scratch)
        _built[fixtures] = (handler, code, build)
    return _built[fixtures]


@asynccontextmanager
async def function_pool(runtime: str, fixtures: str = "") -> AsyncIterator[Pool]:
    handler, code, build = _case(runtime, fixtures or runtime)
    workers = _WORK / "workers"
    workers.mkdir(mode=0o711, exist_ok=True)
    spec = compose_worker_spec(REGISTRY.get(runtime), name="ctx", handler=handler, code_dir=code,
                               build_dir=build, memory_mb=256, timeout_s=30, environment={},
                               identity=None, scratch_root=workers, init_timeout_s=60, kill_grace_s=0.5)
    async with real_pool(spec, function="ctx", memory_mb=256, timeout_s=30.0) as pool:
        yield pool


def _expected_shape(runtime: str) -> str:
    data = tomllib.loads((FIXTURES / runtime / "handlers.toml").read_text())  # [expect]
    return data.get("expect", {}).get("client_context_custom_number", "number")


async def _call(pool: Pool, **fields: object) -> dict[str, object]:
    with anyio.fail_after(60):
        outcome = await pool.invoke(Invocation("ctx", b"{}", **fields))  # type: ignore[arg-type]
    assert outcome.function_error == "", outcome.payload
    return json.loads(outcome.payload)


async def test_client_context_and_invoked_arn_reach_the_handler(runtime: str) -> None:
    await _client_context_and_arn(runtime, runtime)


async def test_java_handlers_on_aws_lambda_java_core_get_awss_client_context() -> None:
    try:  # the conformance suite's toolchain rule (conftest.runtime), for Java alone
        REGISTRY.get("java").select()
    except ToolchainMissing as exc:
        if "java" in required_runtimes():
            pytest.fail(f"runtime java is required here (FNHOST_REQUIRE_RUNTIMES) but: {exc.message}")
        pytest.skip(f"java: toolchain not installed on this host ({exc.message})")
    await _client_context_and_arn("java", "java-awscore")


async def _client_context_and_arn(runtime: str, fixtures: str) -> None:
    arn = function_arn("ctx", "live", region="eu-west-1", account_id="123456789012")
    sent = {**CONTEXT, "custom": {**CONTEXT["custom"], "n": 5}}
    async with function_pool(runtime, fixtures) as pool:
        seen = await _call(pool, client_context=json.dumps(sent).encode(), invoked_function_arn=arn)
        assert seen["invoked_function_arn"] == arn
        cc = seen["client_context"]
        assert isinstance(cc, dict), seen
        assert cc["client"] == CLIENT
        assert cc["env"] == CONTEXT["env"]
        custom = dict(cc["custom"])
        # Languages whose shape holds strings (Java, Go, C#) get a number as its JSON text.
        assert custom.pop("n") == (5 if _expected_shape(runtime) == "number" else "5")
        assert custom == CONTEXT["custom"]

        # The next invocation has none: nothing of the last one's lingers on the warm worker.
        bare = await _call(pool)
        assert bare["client_context"] is None
        assert bare["invoked_function_arn"].endswith(":000000000000:function:ctx")  # type: ignore[union-attr]
        assert bare["invoked_function_arn"].startswith("arn:aws:lambda:")  # type: ignore[union-attr]

        for _ in range(2):  # the same ARN alone, twice (a shim may keep what it parsed last)
            assert await _call(pool, invoked_function_arn=arn) == {"client_context": None, "invoked_function_arn": arn}

        # A context with only some of Lambda's keys: the rest are absent, not an error.
        partial = await _call(pool, client_context=b'{"custom": {"only": "this"}}')
        cc = partial["client_context"]
        assert isinstance(cc, dict), partial
        assert cc["custom"] == {"only": "this"}
        assert not cc.get("env") and not any((cc.get("client") or {}).values())
        assert pool.snapshot().counters.cold_starts == 1


@pytest.mark.parametrize("context", [
    b"{not json",
    b"[1, 2]",
    b'{"client_context": "a string"}',
    b'{"client_context": {"client": [1]}}',
    b'{"invoked_function_arn": 7}',
])
async def test_a_context_the_shim_cannot_read_fails_only_that_invocation(runtime: str, context: bytes) -> None:
    async with function_pool(runtime) as pool:
        with anyio.fail_after(60):
            worker, _cold = await pool.acquire()
            try:
                reply = await worker.invoke("req-bad-context", b"{}", 30.0, context)
            finally:
                pool.release(worker)
        assert not reply.ok, reply.body
        error = json.loads(reply.body)
        assert error["errorType"] == "Runtime.InvalidContext", error
        assert error["errorMessage"]
        after = await _call(pool, client_context=b'{"env": {"k": "v"}}')
        assert after["client_context"]["env"] == {"k": "v"}  # type: ignore[index]
        assert pool.workers == {worker}  # the same worker served on


def test_through_the_daemon_with_fnhosts_client(client: Client, runtime: str) -> None:
    """The same over the daemon's gRPC API: a client context in, the handler's view of it out."""
    name = deploy_case(client, runtime, "client_context", memory_mb=256)
    seen = payload(client.invoke(name, b"{}", client_context=json.dumps(CONTEXT).encode()))
    assert seen["client_context"] == CONTEXT  # type: ignore[index]
    assert seen["invoked_function_arn"].endswith(f":function:{name}")  # type: ignore[index]
    assert payload(client.invoke(name, b"{}"))["client_context"] is None  # type: ignore[index]
    with pytest.raises(InvalidParameter, match="Client context must be a valid Base64-encoded JSON object"):
        client.invoke(name, b"{}", client_context=b"[1, 2]")
    # Called by a version, the handler's ARN names that version (a version's own workers).
    version = client.publish_version(name).version
    seen = payload(client.invoke(f"{name}:{version}", b"{}", client_context=b'{"env": {"k": "v"}}'))
    assert seen["invoked_function_arn"].endswith(f":function:{name}:{version}")  # type: ignore[index]
    assert seen["client_context"]["env"] == {"k": "v"}  # type: ignore[index]
