"""Disk hygiene (issue #10), against real daemons: what no function references is collected,
what a killed daemon left is swept at start-up, zips and stored code are bounded, an entry on
disk is checked before it is trusted, one function cannot read another's build or the
daemon's state files, and a worker's scratch is removed without stalling the daemon.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fnhost import errors
from fnhost.execution import isolation
from tests.conftest import Daemon, FIXTURES, payload, unique, zipped

ECHO = "def echo(event, context):\n    return event\n"
GO_ECHO = (FIXTURES / "go" / "echo" / "main.go").read_text()
NAMESPACES = os.geteuid() == 0 and isolation.probe(True) is None  # workers get them by default
GO_BUILD_S = 100  # a first Go build on a cold cache compiles the standard library


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entries(root: Path) -> set[str]:
    """What a store directory holds, work in progress (``.*``) aside."""
    return {n for n in os.listdir(root) if not n.startswith(".")}


def wait_until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.05)


def events(d: Daemon, name: str) -> list[dict]:
    return [e for e in d.log_events() if e.get("event") == name]


def test_collection_removes_what_no_function_references(fresh_daemon: Daemon) -> None:
    fresh_daemon.start()
    code, builds = fresh_daemon.state_dir / "code", fresh_daemon.state_dir / "builds"
    a, b = zipped({"app.py": ECHO}), zipped({"app.py": ECHO + "# b\n"})
    go1, go2 = zipped({"main.go": GO_ECHO}), zipped({"main.go": GO_ECHO + "// v2\n"})
    with fresh_daemon.client(timeout=GO_BUILD_S) as c:
        c.create_function("f1", runtime="python", handler="app.echo", code=a)
        [f1_build] = entries(builds)  # its bytecode (runtimes/python/build.py): each function its own
        c.create_function("f2", runtime="python", handler="app.echo", code=a)
        c.create_function("g", runtime="go", handler="echo", code=go1, timeout_s=10)
        [f2_build, go_build] = sorted(entries(builds) - {f1_build}, key=lambda n: n.startswith("go-"))
        assert entries(code) == {sha(a), f"{sha(a)}.ok", sha(go1), f"{sha(go1)}.ok"}

        c.update_function_code("f1", b)  # a: still f2's; f1's build of it: nobody's
        c.update_function_code("g", go2)  # go1 and its build: nobody's
        wait_until(lambda: sha(go1) not in entries(code) and not {f1_build, go_build} & entries(builds))
        assert entries(code) == {sha(a), f"{sha(a)}.ok", sha(b), f"{sha(b)}.ok", sha(go2), f"{sha(go2)}.ok"}
        assert f2_build in entries(builds) and len(entries(builds)) == 3  # f1's of b, f2's of a, g's of go2

        c.delete_function("f2")
        wait_until(lambda: sha(a) not in entries(code))
        assert f"{sha(a)}.ok" not in entries(code)
        # What is referenced stays, and runs.
        assert payload(c.invoke("f1", b"[1]")) == [1]
        assert payload(c.invoke("g", b"[2]")) == [2]

        c.delete_function("g")
        c.delete_function("f1")
        wait_until(lambda: not entries(code) and not entries(builds))
    assert events(fresh_daemon, "code_collected")


def test_start_up_sweeps_what_a_killed_daemon_left(fresh_daemon: Daemon) -> None:
    fresh_daemon.start()
    kept = zipped({"app.py": ECHO})
    with fresh_daemon.client() as c:
        c.create_function("kept", runtime="python", handler="app.echo", code=kept)
    fresh_daemon.stop(signal.SIGKILL)  # as a crash mid-deploy would

    code, builds = fresh_daemon.state_dir / "code", fresh_daemon.state_dir / "builds"
    [kept_build] = entries(builds)  # its bytecode
    planted = [code / ".incoming-x", builds / ".building-x", code / ("0" * 64), builds / "go-0123456789abcdef"]
    for d in planted:
        d.mkdir()
        (d / "file").write_text("left behind")
    (code / f"{'0' * 64}.ok").write_text("0" * 64)
    tmp = Path(tempfile.gettempdir())
    old, fresh, busy = (tmp / unique(f"fnhost-build-{tag}") for tag in ("old", "fresh", "busy"))
    for d in (old, fresh, busy):
        d.mkdir()
        (d / "go.mod").write_text("module function\n")
    for d in (old, busy):
        os.utime(d, (time.time() - 600, time.time() - 600))
    builder = subprocess.Popen(["sleep", "60"], cwd=busy)  # a build a killed daemon left running
    try:
        fresh_daemon.start()
        assert entries(code) == {sha(kept), f"{sha(kept)}.ok"}
        assert entries(builds) == {kept_build}
        assert not [n for n in os.listdir(code) + os.listdir(builds) if n.startswith(".")]
        assert not old.exists()
        assert fresh.exists(), "scratch this new may be another daemon's build in progress"
        assert busy.exists(), "a process still works in it"
        with fresh_daemon.client() as c:
            assert payload(c.invoke("kept", b'"still here"')) == "still here"
        [swept] = events(fresh_daemon, "leftovers_removed")
        # Not str(old): any fnhost starting on this host meanwhile (another test run) may sweep it.
        assert str(code / ".incoming-x") in swept["paths"]
    finally:
        builder.kill()
        builder.wait()
        for d in (old, fresh, busy):
            shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("count", [20_001, 70_000])  # 70,000: past 65,535, a ZIP64 directory
def test_a_zip_of_too_many_entries_is_refused_unopened(fresh_daemon: Daemon, count: int) -> None:
    fresh_daemon.start()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(count):
            z.writestr(f"d/{i}", b"")
    data = buf.getvalue()
    with fresh_daemon.client() as c:
        with pytest.raises(errors.CodeStorageExceeded) as refused:
            c.create_function("many", runtime="python", handler="app.echo", code=data)
        assert "more than 20,000 files" in refused.value.message
        with pytest.raises(errors.ResourceNotFound):
            c.get_function("many")
        c.create_function("few", runtime="python", handler="app.echo", code=zipped({"app.py": ECHO}))
        assert payload(c.invoke("few", b"{}")) == {}
    assert not (fresh_daemon.state_dir / "code" / sha(data)).exists()
    assert not [n for n in os.listdir(fresh_daemon.state_dir / "code") if n.startswith(".")]


def test_a_damaged_code_entry_is_not_trusted(fresh_daemon: Daemon) -> None:
    fresh_daemon.start()
    data = zipped({"app.py": ECHO})
    entry = fresh_daemon.state_dir / "code" / sha(data)
    with fresh_daemon.client() as c:
        c.create_function("first", runtime="python", handler="app.echo", code=data)
        (entry / "app.py").write_text("def echo(event, context):\n    return 'tampered'\n")
        c.create_function("second", runtime="python", handler="app.echo", code=data)  # the same zip again
        assert payload(c.invoke("second", b"[1]")) == [1]
    assert (entry / "app.py").read_text() == ECHO
    assert events(fresh_daemon, "code_entry_damaged")


def test_stored_code_has_a_quota(fresh_daemon: Daemon) -> None:
    small = zipped({"app.py": ECHO})
    large = zipped({"app.py": ECHO, "pad.txt": "x" * 4096})
    fresh_daemon.config = f"[daemon]\ncode_storage_max_bytes = {len(small) + len(large) - 1}\n"
    fresh_daemon.start()
    with fresh_daemon.client() as c:
        c.create_function("a", runtime="python", handler="app.echo", code=small)
        c.create_function("b", runtime="python", handler="app.echo", code=small)  # the same zip: counted once
        with pytest.raises(errors.CodeStorageExceeded) as refused:
            c.create_function("c", runtime="python", handler="app.echo", code=large)
        assert "code_storage_max_bytes" in refused.value.message
        with pytest.raises(errors.CodeStorageExceeded):
            c.update_function_code("a", large)  # b still holds the small zip
        c.delete_function("b")
        c.update_function_code("a", large)  # a's own previous code does not count against it
        assert payload(c.invoke("a", b"[3]")) == [3]


READER = """\
def handler(event, context):
    out = {}
    for path in event["paths"]:
        try:
            with open(path, "rb") as f:
                f.read(1)
            out[path] = "read"
        except OSError as exc:
            out[path] = type(exc).__name__
    return out
"""


def _too_open(state_dir: Path) -> list[str]:
    """State files others than the daemon can read, beyond what workers must reach by design:
    the 0711 directories, the shims, stored code and merged layers (0755/0644 under an
    unlistable hash) and the 0660 socket; a build may be open to its function's group, never to
    others."""
    shared = {state_dir, state_dir / "code", state_dir / "builds", state_dir / "work", state_dir / "layers"}
    found = []
    for dirpath, dirnames, filenames in os.walk(state_dir):
        here = Path(dirpath)
        if here == state_dir / "runtimes" or (here.parent in (state_dir / "code", state_dir / "layers")
                                              and not here.name.startswith(".")):
            dirnames.clear()
            continue
        in_build = state_dir / "builds" in here.parents
        for path in [here, *(here / n for n in filenames)]:
            mode = stat.S_IMODE(os.lstat(path).st_mode)
            if path in shared:
                ok = mode == 0o711
            elif path == state_dir / "fnhost.sock":
                ok = mode == 0o660
            elif in_build:
                ok = mode & 0o007 == 0
            else:
                ok = mode & 0o077 == 0
            if not ok:
                found.append(f"{path} {oct(mode)}")
    return sorted(set(found))


@pytest.mark.skipif(os.geteuid() != 0, reason="functions have their own uids only under a root daemon")
def test_a_build_is_its_own_functions_and_state_files_are_private(fresh_daemon: Daemon, public_dir: Path) -> None:
    fresh_daemon.start()
    (public_dir / "reader.py").write_text(READER)
    with fresh_daemon.client(timeout=GO_BUILD_S) as c:
        c.create_function("go-fn", runtime="go", handler="echo", code=zipped({"main.go": GO_ECHO}), timeout_s=10)
        c.create_function("reader", runtime="python", handler="reader.handler", code=str(public_dir))
        assert payload(c.invoke("go-fn", b'{"runs": "its own binary"}')) == {"runs": "its own binary"}
        [entry] = [e for e in entries(fresh_daemon.state_dir / "builds") if e.startswith("go-")]
        build = fresh_daemon.state_dir / "builds" / entry
        binary = build / "echo"
        st = os.stat(binary)
        # Not root: in its own namespaces the daemon's child is bubblewrap, the worker below it.
        [go_worker] = [psutil.Process(p) for p in fresh_daemon.descendants()
                       if str(binary) in psutil.Process(p).cmdline() and psutil.Process(p).uids().real != 0]
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, go_worker.gids().real, 0o750)
        assert go_worker.gids().real != 0
        assert stat.S_IMODE(os.stat(build).st_mode) == 0o750
        # The path is no secret (it is in the Go worker's /proc/PID/cmdline); the modes are the lock.
        tried = payload(c.invoke("reader", paths_event([binary, build / ".fnhost-built"])))
        # In its own namespaces the reader does not even see builds/ (only its own files are bound
        # into its view of the state directory); without, the modes stop it.
        refused = "FileNotFoundError" if NAMESPACES else "PermissionError"
        assert tried == {str(binary): refused, str(build / ".fnhost-built"): refused}
        assert c.stats().functions  # the registry's WAL is written by now
    assert _too_open(fresh_daemon.state_dir) == []


def paths_event(paths: list[Path]) -> bytes:
    return json.dumps({"paths": [str(p) for p in paths]}).encode()


FILL = """\
import os


def handler(event, context):
    scratch = os.environ["TMPDIR"]
    for i in range(event["files"]):
        open(os.path.join(scratch, str(i)), "wb").close()
    return scratch
"""


class HealthProbe:
    """Health checks back to back in a thread; the slowest answer is how long the loop stalled."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.worst = 0.0
        self._stop = threading.Event()
        self._timing = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with grpc.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            stub.Check(health_pb2.HealthCheckRequest(), timeout=10)  # connected before timing
            while not self._stop.is_set():
                started = time.monotonic()
                stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
                self.worst = max(self.worst, time.monotonic() - started)
                self._timing.set()
                time.sleep(0.005)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        assert self._timing.wait(15), "the daemon does not answer health checks"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


# With namespaces a worker's scratch is its own /tmp, a tmpfs the kernel frees with its mount
# namespace; without, a directory under the state directory that the daemon removes.
@pytest.mark.parametrize("namespaces", [False, True] if NAMESPACES else [False])
def test_a_worker_scratch_full_of_files_is_removed_off_the_event_loop(
        fresh_daemon: Daemon, public_dir: Path, namespaces: bool) -> None:
    fresh_daemon.config = f"[daemon]\nworker_namespaces = {str(namespaces).lower()}\n"
    fresh_daemon.start()
    (public_dir / "fill.py").write_text(FILL)
    with fresh_daemon.client() as c:
        # Memory for the kernel's inode and dentry caches, which the worker's memory group pays for.
        c.create_function("fill", runtime="python", handler="fill.handler", code=str(public_dir),
                          timeout_s=100, memory_mb=2048)
        scratch = Path(payload(c.invoke("fill", b'{"files": 80000}')))
        if namespaces:
            assert scratch == Path("/tmp") and not Path("/tmp/79999").exists()  # not the host's /tmp
            [worker] = [p for p in fresh_daemon.descendants() if psutil.Process(p).uids().real != 0]
            scratch = Path(f"/proc/{worker}")  # its tmpfs goes when its last process does
        else:
            assert len(os.listdir(scratch)) == 80_000
        with HealthProbe(fresh_daemon.address) as probe:
            started = time.monotonic()
            c.delete_function("fill")  # its worker stops, and its scratch goes
            wait_until(lambda: not scratch.exists(), timeout=60)
            removal = time.monotonic() - started
    # Removed on the event loop, every other call waited the whole removal out (7 s here, 10 ms now).
    assert probe.worst < 0.5, f"a health check took {probe.worst:.2f} s while the scratch went ({removal:.2f} s)"
