"""Each worker sees the host as a Lambda function sees its sandbox (issue #10, "a private
filesystem view per function"): a private, size-limited /tmp, its code read-only, nothing of the
daemon's state directory but its own code, build and scratch, and only its own processes.

Real daemon as root, real Python workers; the function reports what it can see and the test
checks it against what the host holds.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from fnhost.client import Client
from fnhost.execution import isolation
from tests.conftest import Daemon, public_code, short_tempdir, unique, wait_gone
from tests.test_service import free_port
from tests.worker_pids import host_pid

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or isolation.probe(True) is not None,
    reason=f"namespaces per worker need a root daemon and bubblewrap: {isolation.probe(os.geteuid() == 0)}",
)


APP = '''\
import json
import os
import time


def handler(event, context):
    time.sleep(event.get("sleep", 0))
    if event.get("crash_leaving_a_child"):
        import subprocess
        subprocess.Popen(["sleep", "300"])
        os._exit(3)
    out = {"uid": os.getuid(), "pid": os.getpid()}
    with open("/proc/self/status") as f:
        out["hwm_kb"] = int(next(line for line in f if line.startswith("VmHWM:")).split()[1])
    if event.get("write"):
        with open("/tmp/" + event["write"], "w") as f:
            f.write("secret")
    out["tmp"] = sorted(os.listdir("/tmp"))
    st = os.statvfs("/tmp")
    out["tmp_mb"] = st.f_blocks * st.f_frsize // (1024 * 1024)
    out["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    try:
        open(os.path.join(os.environ["LAMBDA_TASK_ROOT"], "planted.py"), "w").close()
        out["code_writable"] = True
    except OSError as exc:
        out["code_writable"] = exc.strerror
    for name in event.get("probe", []):
        try:
            out[name] = sorted(os.listdir(name)) if os.path.isdir(name) else open(name, "rb").read(64).decode(errors="replace")
        except OSError as exc:
            out[name] = "error: " + exc.strerror
    return out
'''


@pytest.fixture(scope="module", params=["forked", "spawned"])
def daemon(request: pytest.FixtureRequest) -> Iterator[Daemon]:
    """Every test twice: Python workers forked from the zygote (the default) and spawned."""
    state = short_tempdir()
    # No worker_namespaces: on by default where the host allows it.
    zygote = str(request.param == "forked").lower()
    metrics = f"127.0.0.1:{free_port()}"
    d = Daemon(state / "state", config=f'[daemon]\ninit_timeout_s = 10\nmetrics_listen = "{metrics}"\n'
                                       f'zygote = {zygote}\n')
    d.metrics = metrics  # type: ignore[attr-defined]
    d.start()
    yield d
    assert d.stop() == 0, d.log()[-3000:]
    assert d.leftovers == []
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def code() -> Iterator[Path]:
    path = public_code({"app.py": APP})
    yield path
    shutil.rmtree(path, ignore_errors=True)


def invoke(client: Client, name: str, **event: object) -> dict:
    result = client.invoke(name, json.dumps(event).encode())
    assert result.ok, result.payload
    return json.loads(result.payload)


def test_tmp_is_private_to_each_worker_and_sized(daemon: Daemon, code: Path) -> None:
    a, b = unique("view-a"), unique("view-b")
    with daemon.client() as client:
        client.create_function(a, runtime="python", handler="app.handler", code=str(code))
        client.create_function(b, runtime="python", handler="app.handler", code=str(code),
                               ephemeral_storage_mb=1024)
        seen_a = invoke(client, a, write="a-was-here")
        seen_b = invoke(client, b)
        assert "a-was-here" in seen_a["tmp"]
        assert "a-was-here" not in seen_b["tmp"]  # another function's /tmp
        assert seen_a["tmp_mb"] == 512 and seen_b["tmp_mb"] == 1024
        assert not any(Path("/tmp").glob("a-was-here"))  # not the host's /tmp either
        config = client.get_function(b)
        assert config.ephemeral_storage_mb == 1024
        assert "mount and pid namespace" in config.isolation and f"uid {seen_b['uid']}" in config.isolation


def test_code_is_read_only_and_the_state_directory_is_hidden(daemon: Daemon, code: Path) -> None:
    name, other = unique("view-c"), unique("view-d")
    state = daemon.state_dir
    with daemon.client() as client:
        client.create_function(other, runtime="python", handler="app.handler", code=str(code))
        invoke(client, other)
        client.create_function(name, runtime="python", handler="app.handler", code=str(code))
        registry = str(state / "functions.sqlite3")
        seen = invoke(client, name, probe=[str(state), registry, str(state / "work"), str(state / "code")])
    assert seen["code_writable"] == "Read-only file system"
    assert seen[str(state)] == "error: Permission denied"  # the hidden tmpfs: 0711, never listable
    assert seen[registry].startswith("error:")  # the registry is not there at all
    assert seen[str(state / "work")].startswith("error:")  # no scratch of anyone's: HOME and TMPDIR are /tmp


def test_a_worker_sees_only_its_own_processes(daemon: Daemon, code: Path) -> None:
    name = unique("view-e")
    with daemon.client() as client:
        client.create_function(name, runtime="python", handler="app.handler", code=str(code))
        seen = invoke(client, name)
    assert len(seen["pids"]) <= 3, seen["pids"]  # bubblewrap's init and the worker: no daemon, no neighbour
    assert daemon.pid not in seen["pids"] or daemon.pid <= 3


def test_isolation_is_logged_at_start(daemon: Daemon) -> None:
    # The module's daemon does not ask for namespaces: they are the default where the host allows.
    events = [e for e in daemon.log_events() if e.get("event") == "worker_isolation"]
    assert events and "namespaces" in events[0]["view"]


def test_namespaces_can_be_turned_off(fresh_daemon: Daemon, code: Path) -> None:
    fresh_daemon.config = "[daemon]\nworker_namespaces = false\n"
    fresh_daemon.start()
    [event] = [e for e in fresh_daemon.log_events() if e.get("event") == "worker_isolation"]
    assert event["reason"] == "worker_namespaces is off" and "host" in event["view"]
    with fresh_daemon.client() as client:
        name = unique("view-off")
        client.create_function(name, runtime="python", handler="app.handler", code=str(code))
        seen = invoke(client, name)
        assert "shared filesystem view" in client.get_function(name).isolation
    assert seen["pid"] > 2 and psutil.Process(seen["pid"]).uids().real == seen["uid"]  # the host's pid
    assert len(seen["pids"]) > 3  # every process of the host


def test_the_daemon_measures_the_worker_not_bubblewrap(daemon: Daemon, code: Path) -> None:
    # The process the daemon starts is bubblewrap; the worker is its grandchild, pid 2 inside
    # (forked: the process it watches is the namespace's init, the worker its child).
    # Its memory high-water mark must be the worker's: read from bubblewrap's pid, Max Memory Used
    # said 5 MB for a Python worker whose own VmHWM was 11 MB, and the memory metric 2 MB.
    name = unique("view-pid")
    with daemon.client() as client:
        client.create_function(name, runtime="python", handler="app.handler", code=str(code))
        invoke(client, name)
        time.sleep(0.3)  # past limits.HWM_REFRESH_S: the REPORT reads VmHWM afresh
        result = client.invoke(name, b"{}")
        seen = json.loads(result.payload)
        assert seen["pid"] == isolation.WORKER_NS_PID  # what a function sees of itself
        worker = host_pid(daemon.pid, seen["pid"], uid=seen["uid"])
        assert result.report is not None
        assert result.report.max_memory_used_mb >= math.ceil(seen["hwm_kb"] / 1024) > 8, (result.report, seen)
        metrics = urllib.request.urlopen(f"http://{daemon.metrics}/metrics", timeout=10).read().decode()
        [line] = [m for m in metrics.splitlines() if m.startswith(f'fnhost_worker_memory_bytes{{function="{name}"}}')]
        rss = psutil.Process(worker).memory_info().rss
        assert float(line.split()[-1]) >= rss * 0.9, (line, rss)  # the worker's resident memory


@pytest.mark.slow
def test_workers_outlive_the_threads_that_spawned_them(daemon: Daemon, code: Path) -> None:
    # Workers are spawned from the daemon's worker threads, which anyio ends after 10 s idle. With
    # bubblewrap's --die-with-parent, a thread's end SIGKILLed every worker it had spawned: idle
    # ones (4 of 6 here, a cold start each) and busy ones ("Runtime exited with error: signal:
    # kill" mid-invocation, in the soak bench).
    name = unique("view-threads")
    with daemon.client() as client:
        client.create_function(name, runtime="python", handler="app.handler", code=str(code), idle_ttl_s=600)
        with ThreadPoolExecutor(6) as pool:  # six workers, spawned from as many threads
            list(pool.map(lambda _: invoke(client, name, sleep=0.5), range(6)))
        time.sleep(11)  # the spawning threads idle past anyio's 10 s
        other = unique("view-threads-b")
        client.create_function(other, runtime="python", handler="app.handler", code=str(code))
        invoke(client, other)  # work for the thread pool: it ends the threads idle for 10 s
        time.sleep(0.5)
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(lambda _: invoke(client, name, sleep=0.5), range(6)))
        [stats] = [f for f in client.stats().functions if f.function_name == name]
        assert stats.cold_starts == 6, "workers died with the threads that spawned them"


def test_a_worker_that_dies_leaving_children_fails_at_once(daemon: Daemon, code: Path) -> None:
    # bubblewrap's init waits for every process in the namespace, but bubblewrap itself (the
    # process the daemon watches) ends with the worker's status as soon as the worker ends, and the
    # init dies with it (--die-with-parent): the call fails at once, not at its timeout.
    name = unique("view-crash")
    with daemon.client() as client:
        client.create_function(name, runtime="python", handler="app.handler", code=str(code), timeout_s=20)
        started = time.monotonic()
        result = client.invoke(name, b'{"crash_leaving_a_child": true}')
        elapsed = time.monotonic() - started
        assert json.loads(result.payload)["errorType"] == "Runtime.ExitError", result.payload
        assert elapsed < 5, f"answered after {elapsed:.1f} s"
        seen = invoke(client, name)  # a new worker serves the next call
    assert seen["pid"] == isolation.WORKER_NS_PID
    left = [p.pid for p in psutil.process_iter(["name", "uids"])
            if p.info["name"] == "sleep" and p.info["uids"] and p.info["uids"].real == seen["uid"]]
    assert wait_gone(left, timeout=5) == [], "the child it left died with its namespace"
