"""Pool behaviour seen from a client: throttling, reaping, provisioned workers, updates, back-off."""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from fnhost import errors
from fnhost.client import Client
from tests.conftest import FIXTURES, Daemon, deploy_case, function_stats, payload, unique
from tests.worker_pids import WORKER_TOKEN, host_pid


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not reached in time")


def test_throttled_at_max_concurrency(client: Client) -> None:
    # The shared daemon waits queue_timeout_s = 1 s for a worker before throttling.
    name = deploy_case(client, "python", "sleep", max_concurrency=1, timeout_s=10)
    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(client.invoke, name, b'{"seconds": 3}')
        time.sleep(0.5)
        with pytest.raises(errors.TooManyRequests) as info:
            client.invoke(name, b'{"seconds": 0}')
        assert info.value.status == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "concurrency limit of 1" in info.value.message
        assert payload(slow.result()) == "slept"
    stats = function_stats(client, name)
    assert stats.throttles == 1 and stats.cold_starts == 1


def test_queued_request_gets_the_freed_worker(client: Client) -> None:
    name = deploy_case(client, "python", "sleep", max_concurrency=1)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(client.invoke, name, b'{"seconds": 0.4}')
        time.sleep(0.1)
        second = pool.submit(client.invoke, name, b'{"seconds": 0}')
        assert payload(first.result()) == payload(second.result()) == "slept"
    stats = function_stats(client, name)
    assert stats.cold_starts == 1 and stats.throttles == 0


def test_idle_workers_are_reaped(client: Client, public_dir: Path) -> None:
    # Which worker answered: a token each worker makes at start-up (in its own pid namespace every
    # worker is pid 2).
    (public_dir / "app.py").write_text(WORKER_TOKEN + "def handler(e, c):\n    return WORKER\n")
    name = unique("reaped")
    client.create_function(name, runtime="python", handler="app.handler", code=str(public_dir), idle_ttl_s=1)
    first = payload(client.invoke(name, b"{}"))
    wait_for(lambda: sum(function_stats(client, name).workers.values()) == 0)
    second = payload(client.invoke(name, b"{}"))
    assert second != first
    assert function_stats(client, name).cold_starts == 2


def test_min_warm_is_kept_warm(client: Client) -> None:
    name = deploy_case(client, "python", "pid", min_warm=2, idle_ttl_s=1)
    wait_for(lambda: function_stats(client, name).workers.get("idle") == 2)
    result = client.invoke(name, b"{}")
    assert result.report is not None and result.report.init_duration_ms is None, "provisioned: no cold start"
    time.sleep(2.5)  # past idle_ttl_s: provisioned workers stay
    assert function_stats(client, name).workers.get("idle") == 2


def test_code_update_drains_old_workers(client: Client, public_dir: Path) -> None:
    code = public_dir / "code"
    code.mkdir()
    (code / "app.py").write_text(WORKER_TOKEN + "def handler(e, c):\n    return {'v': 1, 'worker': WORKER}\n")
    name = unique("update")
    client.create_function(name, runtime="python", handler="app.handler", code=str(code))
    assert payload(client.invoke(name, b"{}"))["v"] == 1
    (code / "app.py").write_text(WORKER_TOKEN + "def handler(e, c):\n    return {'v': 2, 'worker': WORKER}\n")
    client.update_function_code(name, str(code))
    after = payload(client.invoke(name, b"{}"))
    assert after["v"] == 2
    client.update_function_configuration(name, environment={"X": "1"}, handler="app.handler")
    assert payload(client.invoke(name, b"{}"))["worker"] != after["worker"]


def test_in_flight_call_finishes_across_an_update(client: Client, public_dir: Path) -> None:
    code = public_dir / "code"
    shutil.copytree(FIXTURES / "python", code)
    name = unique("inflight")
    client.create_function(name, runtime="python", handler="app.sleep", code=str(code), timeout_s=10)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(client.invoke, name, b'{"seconds": 1.5}')
        time.sleep(0.5)
        client.update_function_configuration(name, handler="app.pid")
        assert isinstance(payload(client.invoke(name, b"{}")), int), "new calls run the new handler"
        assert payload(running.result()) == "slept", "the call in flight finishes on its old worker"
    wait_for(lambda: function_stats(client, name).workers == {"idle": 1})


def test_init_failure_backs_off(client: Client) -> None:
    name = deploy_case(client, "python", "import_error")
    first = client.invoke(name, b"{}")
    second = client.invoke(name, b"{}")
    for r in (first, second):
        assert json.loads(r.payload)["errorType"] == "Runtime.ImportModuleError"
    stats = function_stats(client, name)
    # The second call came within the back-off: answered with the same error, no new spawn.
    assert stats.cold_starts == 0 and stats.invocations == 2
    assert sum(stats.workers.values()) == 0


def gone(pid: int) -> bool:
    """Exited (a zombie counts: its parent has not reaped it yet)."""
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_grandchildren_die_with_their_worker(daemon: Daemon, client: Client) -> None:
    import psutil

    name = deploy_case(client, "python", "fork_sleeper", timeout_s=1)
    child = host_pid(daemon.pid, payload(client.invoke(name, b"{}")), name="sleep")  # its pid inside: 3
    assert psutil.pid_exists(child)
    client.delete_function(name)
    wait_for(lambda: gone(child))
