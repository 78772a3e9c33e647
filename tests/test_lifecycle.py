"""The daemon's life: persistence across restarts, orphans, socket ownership, config files."""

from __future__ import annotations

import io
import json
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from fnhost import errors
from tests.conftest import FIXTURES, Daemon, payload, wait_gone
from tests.worker_pids import host_pid


def test_restart_serves_the_same_functions(fresh_daemon: Daemon) -> None:
    fresh_daemon.start()
    with fresh_daemon.client() as c:
        c.create_function("keep-me", runtime="python", handler="app.echo", code=str(FIXTURES / "python"),
                          memory_mb=256, environment={"K": "v"})
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("main.py", "def handler(e, c):\n    return 'zipped'\n")
        zipped = c.create_function("zipped", runtime="python", handler="main.handler", code=buf.getvalue())
        assert Path(zipped.code_location).parent == fresh_daemon.state_dir / "code"
        assert payload(c.invoke("zipped", b"{}")) == "zipped"
        before = c.get_function("keep-me")
    assert fresh_daemon.stop() == 0
    fresh_daemon.start()
    with fresh_daemon.client() as c:
        after = c.get_function("keep-me")
        assert (after.memory_mb, dict(after.environment), after.revision_id) == (256, {"K": "v"}, before.revision_id)
        assert payload(c.invoke("keep-me", b'{"x": 1}')) == {"x": 1}
        assert payload(c.invoke("zipped", b"{}")) == "zipped"
        c.delete_function("zipped")
        assert [f.function_name for f in c.list_functions()] == ["keep-me"]


def test_sigterm_stops_every_worker(fresh_daemon: Daemon) -> None:
    fresh_daemon.start()
    with fresh_daemon.client() as c:
        c.create_function("w", runtime="python", handler="app.pid", code=str(FIXTURES / "python"), min_warm=3)
        c.invoke("w", b"{}")
        deadline = time.monotonic() + 30
        while c.stats().functions[0].workers.get("idle") != 3 and time.monotonic() < deadline:
            time.sleep(0.05)  # provisioned workers start in the background
    workers = fresh_daemon.descendants()
    assert len(workers) >= 3
    assert fresh_daemon.stop(signal.SIGTERM) == 0
    assert wait_gone(workers) == []
    assert not fresh_daemon.socket.exists()


def test_no_worker_outlives_a_killed_daemon(fresh_daemon: Daemon) -> None:
    fresh_daemon.start()
    with fresh_daemon.client() as c:
        c.create_function("idle", runtime="python", handler="app.pid", code=str(FIXTURES / "python"), min_warm=2)
        c.create_function("busy", runtime="python", handler="app.sleep", code=str(FIXTURES / "python"),
                          timeout_s=60)
        c.create_function("forks", runtime="python", handler="app.fork_sleeper", code=str(FIXTURES / "python"))
        grandchild = host_pid(fresh_daemon.pid, payload(c.invoke("forks", b"{}")), name="sleep")  # 3 inside its namespace
        c.invoke("idle", b"{}")
    # One worker is mid-invocation when the daemon dies.
    busy = subprocess.Popen([sys.executable, "-m", "fnhost", "--address", fresh_daemon.address,
                             "invoke", "busy", '{"seconds": 50}'], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while len(fresh_daemon.descendants()) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = fresh_daemon.descendants()
    assert grandchild in workers and len(workers) >= 5
    fresh_daemon.stop(signal.SIGKILL)
    assert wait_gone(workers) == [], "worker processes outlived a SIGKILLed daemon"
    busy.wait(10)
    assert busy.returncode == 2  # the client gets an error, not a hang


def test_second_daemon_refuses_the_same_state_dir(fresh_daemon: Daemon) -> None:
    fresh_daemon.start()
    second = Daemon(fresh_daemon.state_dir)
    second.log_path = fresh_daemon.state_dir.parent / "second.log"
    second.start(wait=False)
    assert second.proc is not None and second.proc.wait(30) == 2
    assert "another fnhost daemon" in second.log()
    with fresh_daemon.client() as c:
        assert c.list_functions() == []  # the first one is undisturbed


def test_second_daemon_refuses_a_live_socket(fresh_daemon: Daemon, tmp_path: Path) -> None:
    fresh_daemon.start()
    other_state = Path(str(fresh_daemon.state_dir) + "-other")
    second = Daemon(other_state)
    second.address = fresh_daemon.address
    second.start(wait=False)
    assert second.proc is not None and second.proc.wait(30) == 2
    assert "already serving" in second.log()
    assert fresh_daemon.socket.exists()


def test_stale_socket_is_replaced(fresh_daemon: Daemon) -> None:
    fresh_daemon.state_dir.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(fresh_daemon.socket))
    stale.close()  # bound, never listening: a crashed daemon's leftover
    fresh_daemon.start()
    assert oct(fresh_daemon.socket.stat().st_mode & 0o777) == oct(0o660)
    with fresh_daemon.client() as c:
        assert c.list_functions() == []


def test_config_file_declares_functions_and_settings(fresh_daemon: Daemon) -> None:
    fresh_daemon.config = f"""
[daemon]
max_concurrency_cap = 8
memory_backend = "psutil"

[functions.declared]
runtime = "python"
handler = "app.hog"
code = "{FIXTURES / 'python'}"
memory_mb = 128
environment = {{ GREETING = "hi" }}
"""
    fresh_daemon.start()
    with fresh_daemon.client() as c:
        assert c.get_function("declared").environment["GREETING"] == "hi"
        assert c.stats().memory_backend == "psutil"
        # The psutil backend samples and kills a tree over its limit, too.
        err = json.loads(c.invoke("declared", b'{"mb": 600}').payload)
        assert err["errorType"] == "Runtime.OutOfMemory"
        assert payload(c.invoke("declared", b'{"mb": 1}')) == "survived"
        with pytest.raises(errors.InvalidParameter, match="cap of 8"):
            c.update_function_configuration("declared", max_concurrency=9)


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ("[daemon]\nmax_concurrency_cap = 'many'\n", "daemon.max_concurrency_cap: expected int"),
        ("[daemon]\nno_such = 1\n", "daemon.no_such: unknown setting"),
        ("[functions.f]\nruntime = 'python'\nhandler = 'app.echo'\n", "functions.f: missing required key 'code'"),
        ("[functions.f]\nruntime='python'\nhandler='app.echo'\ncode='.'\nmemroy_mb=1\n", "functions.f.memroy_mb: unknown key"),
        ("[daemon\n", "not valid TOML"),
    ],
)
def test_invalid_config_is_refused_naming_the_key(fresh_daemon: Daemon, config: str, fragment: str) -> None:
    fresh_daemon.config = config
    fresh_daemon.state_dir.mkdir(parents=True)
    fresh_daemon.start(wait=False)
    assert fresh_daemon.proc is not None and fresh_daemon.proc.wait(30) == 2
    assert fragment in fresh_daemon.log()


def test_max_functions(fresh_daemon: Daemon) -> None:
    fresh_daemon.config = "[daemon]\nmax_functions = 2\n"
    fresh_daemon.start()
    with fresh_daemon.client() as c:
        for name in ("one", "two"):
            c.create_function(name, runtime="python", handler="app.echo", code=str(FIXTURES / "python"))
        with pytest.raises(errors.LimitExceeded, match="max_functions"):
            c.create_function("three", runtime="python", handler="app.echo", code=str(FIXTURES / "python"))
        c.delete_function("one")
        c.create_function("three", runtime="python", handler="app.echo", code=str(FIXTURES / "python"))
