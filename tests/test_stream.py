"""InvokeStream: many invocations on one stream, answered out of order, with flow control."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import anyio
import pytest

from fnhost import errors
from fnhost.client import AsyncClient, Client
from tests.conftest import FIXTURES, Daemon, deploy_case, function_stats, payload, unique


def test_results_arrive_as_they_complete(client: Client) -> None:
    name = deploy_case(client, "python", "sleep", timeout_s=10)
    events = [(name, b'{"seconds": 1.0}')] + [(name, b'{"seconds": 0}')] * 5
    order = [index for index, outcome in client.invoke_stream(events)]
    assert sorted(order) == list(range(6))
    assert order[-1] == 0, "the slow first invocation must not hold back the fast ones"


def test_errors_travel_per_invocation(client: Client) -> None:
    echo = deploy_case(client, "python", "echo")
    fail = deploy_case(client, "python", "raise")
    outcomes = dict(client.invoke_stream([(echo, b"[1]"), ("no-such-function", b"{}"),
                                          (fail, b'{"message": "m"}'), (echo, b'"big"')]))
    assert payload(outcomes[0]) == [1]
    assert isinstance(outcomes[1], errors.ResourceNotFound)
    assert outcomes[2].function_error == "Unhandled"  # type: ignore[union-attr]
    assert json.loads(outcomes[2].payload)["errorMessage"] == "m"  # type: ignore[union-attr]
    assert payload(outcomes[3]) == "big"


async def test_async_stream_many_callers(daemon: Daemon) -> None:
    async with AsyncClient(daemon.address) as client:
        name = unique("stream")
        await client.create_function(name, runtime="python", handler="app.echo",
                                     code=str(FIXTURES / "python"), max_concurrency=4)
        results: dict[int, object] = {}
        async with client.stream() as stream:
            async def call(i: int) -> None:
                r = await stream.invoke(name, json.dumps({"i": i}).encode())
                results[i] = json.loads(r.payload)

            async with anyio.create_task_group() as tg:
                for i in range(200):
                    tg.start_soon(call, i)
        assert results == {i: {"i": i} for i in range(200)}


def test_flow_control_bounds_what_the_daemon_reads(fresh_daemon: Daemon) -> None:
    fresh_daemon.config = "[daemon]\nmax_stream_in_flight = 3\n"
    fresh_daemon.start()
    with fresh_daemon.client() as c:
        name = "slow"
        c.create_function(name, runtime="python", handler="app.sleep", code=str(FIXTURES / "python"))
        outcomes = list(c.invoke_stream([(name, b'{"seconds": 0.2}')] * 12))
        assert len(outcomes) == 12 and all(payload(o) == "slept" for _, o in outcomes)
        # With 64 allowed by the function, only the stream's window of 3 ever ran at once.
        assert function_stats(c, name).cold_starts == 3


def test_cli_stream_keeps_input_order(daemon: Daemon) -> None:
    with daemon.client() as c:
        name = deploy_case(c, "python", "echo")
    lines = b"".join(json.dumps({"n": i}).encode() + b"\n" for i in range(20)) + b"not json\n"
    out = subprocess.run([sys.executable, "-m", "fnhost", "invoke", name, "--stream"], input=lines,
                         capture_output=True, timeout=60, env={**os.environ, "FNHOST_ADDRESS": daemon.address})
    results = out.stdout.decode().splitlines()
    assert [json.loads(r) for r in results[:20]] == [{"n": i} for i in range(20)]
    assert json.loads(results[20])["errorType"] == "Runtime.UnmarshalError"
    assert out.returncode == 1  # a function error among the results


@pytest.mark.slow
def test_client_going_away_does_not_leak_a_busy_worker(client: Client, daemon: Daemon) -> None:
    name = deploy_case(client, "python", "sleep", timeout_s=10)
    with Client(daemon.address, timeout=0.5) as impatient:
        with pytest.raises(errors.FnhostError):
            impatient.invoke(name, b'{"seconds": 3}')
    # The worker the cancelled call held must not serve the next call its stale reply.
    assert payload(client.invoke(name, b'{"seconds": 0}')) == "slept"


def test_cli_stream_keeps_many_in_flight_and_input_order(daemon: Daemon) -> None:
    import time

    env = {**os.environ, "FNHOST_ADDRESS": daemon.address}

    def cli_stream(name: str, lines: list[bytes]) -> tuple[subprocess.CompletedProcess[bytes], float]:
        started = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "fnhost", "invoke", name, "--stream"],
                             input=b"".join(line + b"\n" for line in lines), capture_output=True,
                             timeout=120, env=env, check=False)
        return out, time.monotonic() - started

    with daemon.client() as c:
        echo = deploy_case(c, "python", "echo", max_concurrency=4)
        sleep = deploy_case(c, "python", "sleep", max_concurrency=16, timeout_s=10)

        # A few hundred lines, blank ones among them (skipped): one result per line, in order.
        payloads = [{"n": i, "pad": "x" * (i % 37)} for i in range(400)]
        lines = [json.dumps(p).encode() for p in payloads]
        lines[100:100] = [b"", b"   "]
        out, _ = cli_stream(echo, lines)
        assert out.returncode == 0, out.stderr.decode()
        assert [json.loads(r) for r in out.stdout.decode().splitlines()] == payloads

        # 16 sleeps of 1 s take 16 s one at a time; sent together, 16 workers run them at once
        # (and none queues, so the fixture's 1 s queue timeout cannot throttle them).
        out, elapsed = cli_stream(sleep, [b'{"seconds": 1.0}'] * 16)
        assert out.returncode == 0, out.stderr.decode()
        assert out.stdout.decode().splitlines() == ['"slept"'] * 16
        assert elapsed < 8, f"{elapsed:.2f} s: the CLI did not keep invocations in flight"
        # One invocation at a time would have reused a single warm worker.
        assert function_stats(c, sleep).cold_starts >= 4
