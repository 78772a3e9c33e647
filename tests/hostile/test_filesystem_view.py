"""Each worker sees the host as a Lambda function sees its sandbox (issue #10, "a private
filesystem view per function"): a private, size-limited /tmp, its code read-only, nothing of the
daemon's state directory but its own code, build and scratch, and only its own processes.

Real daemon as root, real Python workers; the function reports what it can see and the test
checks it against what the host holds.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from fnhost.client import Client
from fnhost.execution import isolation
from tests.conftest import Daemon, public_code, short_tempdir, unique

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or isolation.probe(True) is not None,
    reason=f"namespaces per worker need a root daemon and bubblewrap: {isolation.probe(os.geteuid() == 0)}",
)

APP = '''\
import json
import os


def handler(event, context):
    out = {"uid": os.getuid()}
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


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    state = short_tempdir()
    d = Daemon(state / "state", config="[daemon]\ninit_timeout_s = 10\nworker_namespaces = true\n")
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
    events = [e for e in daemon.log_events() if e.get("event") == "worker_isolation"]
    assert events and "namespaces" in events[0]["view"]
