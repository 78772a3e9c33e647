"""Functions that print as fast as they can, against a real daemon (issue #10, item 4).

Their output is untrusted input: however fast it comes — during an invocation, between
invocations, or from a descendant still holding the pipe after the worker exited — the daemon's
event loop keeps answering (health checks, other invocations), timeouts fire on time, and what
reaches the log is bounded per invocation and ends with a line saying it was cut.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fnhost.client import InvokeResult
from tests.conftest import Daemon, public_code, unique

BUDGET = 1024 * 1024  # the default function_log_max_bytes
TIMEOUT_S = 1

# 100-byte lines, 10 kB a write: the reader's cost is per line, the writer's per write.
APP = '''\
import os
import sys
import threading
import time

LINES = ("x" * 99 + "\\n") * 100


def flood(seconds, write):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        write(LINES)


def handler(event, context):
    if "flood" in event:  # in the invocation, past its timeout
        flood(event["flood"], sys.stdout.write)
        return "done"
    if "background" in event:  # after it, from a thread of the (idle) worker
        threading.Thread(target=flood, args=(event["background"], sys.stdout.write), daemon=True).start()
        return "started"
    if "orphan" in event:  # from a descendant in its own session, which outlives the worker
        if os.fork() == 0:
            os.setsid()
            try:
                flood(event["orphan"], lambda text: os.write(1, text.encode()))
            finally:
                os._exit(0)
        time.sleep(0.2)
        os._exit(3)
    for i in range(event.get("lines", 0)):
        print(f"polite-{event.get('tag', '')}-{i:03d}")
    return "ok"
'''


@pytest.fixture(scope="module")
def code() -> Iterator[Path]:
    path = public_code({"app.py": APP})
    yield path
    shutil.rmtree(path, ignore_errors=True)


def deploy(daemon: Daemon, code: Path, prefix: str) -> str:
    name = unique(prefix)
    with daemon.client() as client:
        client.create_function(name, runtime="python", handler="app.handler", code=str(code), timeout_s=TIMEOUT_S)
        assert json.loads(client.invoke(name, b"{}").payload) == "ok"  # a warm worker to start from
    return name


def _health(stub: health_pb2_grpc.HealthStub) -> float:
    started = time.perf_counter()
    status = stub.Check(health_pb2.HealthCheckRequest(), timeout=30).status
    assert status == health_pb2.HealthCheckResponse.SERVING
    return time.perf_counter() - started


def health_while(daemon: Daemon, busy: Callable[[], bool]) -> list[float]:
    """Health-check latencies, one every 50 ms while ``busy()`` (the first one connects)."""
    with grpc.insecure_channel(daemon.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        found = [_health(stub)]
        while busy():
            found.append(_health(stub))
            time.sleep(0.05)
    return found


def log_since(daemon: Daemon, offset: int) -> str:
    with open(daemon.log_path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def events(log: str, **match: object) -> list[dict]:
    found = []
    for line in log.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and all(event.get(k) == v for k, v in match.items()):
            found.append(event)
    return found


def wait_for_report(daemon: Daemon, offset: int, request_id: str) -> str:
    """The log since ``offset``, once it holds the REPORT of ``request_id`` (written off the loop)."""
    deadline = time.monotonic() + 10
    while True:
        log = log_since(daemon, offset)
        if events(log, event="REPORT", request_id=request_id) or time.monotonic() > deadline:
            return log
        time.sleep(0.05)


def assert_bounded(log: str, **match: object) -> list[dict]:
    """The function's events in ``log`` fit the budget and end with the truncation marker."""
    lines = events(log, event="function_log", **match)
    assert lines, "nothing was logged"
    assert sum(len(json.dumps(e)) + 1 for e in lines[:-1]) <= BUDGET
    assert "output truncated" in lines[-1]["line"] and str(BUDGET) in lines[-1]["line"], lines[-1]
    return lines


def kill_workers_of(name: str) -> None:
    """Whatever process still runs as the function (an escaped descendant), killed."""
    for p in psutil.process_iter():
        try:
            if p.environ().get("AWS_LAMBDA_FUNCTION_NAME") == name:
                p.kill()
        except psutil.Error:
            pass


# --- a flood inside an invocation, past its timeout ----------------------------------------------


@dataclass
class Flood:
    name: str
    result: InvokeResult | None = None
    elapsed_s: float = 0.0
    health_s: list[float] = field(default_factory=list)
    polite: InvokeResult | None = None  # a well-behaved call made while the flood ran
    polite_s: float = 0.0
    log: str = ""  # what the daemon logged from the flood's start until its REPORT


@pytest.fixture(scope="module")
def flood(daemon: Daemon, code: Path) -> Flood:
    run = Flood(deploy(daemon, code, "flood"))
    offset = daemon.log_path.stat().st_size
    with daemon.client() as client:

        def invoke_flood() -> None:
            started = time.perf_counter()
            run.result = client.invoke(run.name, json.dumps({"flood": 4}).encode())
            run.elapsed_s = time.perf_counter() - started

        def invoke_polite() -> None:
            started = time.perf_counter()
            run.polite = client.invoke(run.name, json.dumps({"lines": 40, "tag": "during"}).encode(),
                                       log_type="Tail")
            run.polite_s = time.perf_counter() - started

        flooding = threading.Thread(target=invoke_flood)
        flooding.start()
        time.sleep(0.2)
        polite = threading.Thread(target=invoke_polite)  # on a second worker of the same function
        polite.start()
        run.health_s = health_while(daemon, flooding.is_alive)
        flooding.join()
        polite.join()
    assert run.result is not None
    run.log = wait_for_report(daemon, offset, run.result.request_id)
    return run


def test_flood_times_out_on_time(flood: Flood) -> None:
    assert flood.result is not None
    assert flood.result.function_error == "Unhandled"
    assert json.loads(flood.result.payload)["errorType"] == "Sandbox.Timeout"
    assert flood.elapsed_s < TIMEOUT_S + 1.5, f"the flood was stopped after {flood.elapsed_s:.2f} s"


def test_health_checks_answer_during_flood(flood: Flood) -> None:
    assert len(flood.health_s) >= 3, flood.health_s
    assert max(flood.health_s) < 0.5, f"health checks during the flood: {flood.health_s}"


def test_flood_log_is_bounded_and_marked(flood: Flood) -> None:
    assert flood.result is not None
    assert len(flood.log.encode()) < 2 * BUDGET, f"{len(flood.log.encode())} bytes logged"
    assert_bounded(flood.log, request_id=flood.result.request_id)


def test_well_behaved_calls_keep_every_line(daemon: Daemon, flood: Flood) -> None:
    # During the flood, on a second worker: answered promptly, with all of its lines.
    assert flood.polite is not None
    assert json.loads(flood.polite.payload) == "ok"
    assert flood.polite_s < 1.0, f"a well-behaved call during the flood took {flood.polite_s:.2f} s"
    for i in range(40):
        assert f"polite-during-{i:03d}" in flood.polite.log_result
    # After it, on the same function: the budget is per invocation.
    offset = daemon.log_path.stat().st_size
    with daemon.client() as client:
        after = client.invoke(flood.name, json.dumps({"lines": 40, "tag": "after"}).encode(), log_type="Tail")
    assert json.loads(after.payload) == "ok"
    for i in range(40):
        assert f"polite-after-{i:03d}" in after.log_result
    logged = events(wait_for_report(daemon, offset, after.request_id), event="function_log",
                    request_id=after.request_id)
    assert [e["line"] for e in logged] == [f"polite-after-{i:03d}" for i in range(40)]


# --- a flood between invocations, and one from a descendant that outlives its worker ----------


def test_output_between_invocations_is_bounded(daemon: Daemon, code: Path) -> None:
    name = deploy(daemon, code, "background")
    offset = daemon.log_path.stat().st_size
    with daemon.client() as client:
        assert json.loads(client.invoke(name, json.dumps({"background": 2}).encode()).payload) == "started"
    until = time.monotonic() + 1.5
    health = health_while(daemon, lambda: time.monotonic() < until)
    assert len(health) >= 3 and max(health) < 0.5, f"health checks during the flood: {health}"
    log = log_since(daemon, offset)
    lines = assert_bounded(log, function=name, request_id=None)
    assert "between invocations" in lines[-1]["line"]
    assert len(log.encode()) < 2 * BUDGET, f"{len(log.encode())} bytes logged"


def test_exit_while_a_descendant_keeps_writing(daemon: Daemon, code: Path) -> None:
    name = deploy(daemon, code, "orphan")
    offset = daemon.log_path.stat().st_size
    try:
        with daemon.client() as client:
            result: list[InvokeResult] = []
            started = time.perf_counter()
            calling = threading.Thread(
                target=lambda: result.append(client.invoke(name, json.dumps({"orphan": 5}).encode())))
            calling.start()
            health = health_while(daemon, calling.is_alive)
            calling.join()
            elapsed = time.perf_counter() - started
        assert json.loads(result[0].payload)["errorType"] == "Runtime.ExitError"
        assert elapsed < 1.5, f"the worker's exit was answered after {elapsed:.2f} s"
        assert max(health, default=0) < 0.5, f"health checks during the flood: {health}"
        log = wait_for_report(daemon, offset, result[0].request_id)
        assert len(log.encode()) < 2 * BUDGET, f"{len(log.encode())} bytes logged"
        assert_bounded(log, request_id=result[0].request_id)
    finally:
        kill_workers_of(name)
