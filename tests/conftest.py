"""Shared fixtures: a real daemon process on a temporary unix socket, and a real client."""

from __future__ import annotations

import atexit
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fnhost.client import Client, InvokeResult
from tests.fixture_cases import fixture_case as _fixture_case
from tests.fixture_cases import readable_copy

ROOT = Path(__file__).resolve().parents[1]


def short_tempdir(mode: int = 0o711) -> Path:
    """A fresh directory in /tmp that other users may enter.

    Unix socket paths are limited to 108 bytes, and pytest's tmp_path can be longer; and run as
    root, the daemon starts each function's workers as its own unprivileged user, who must be
    able to reach the code and the state directory's shared parts (mkdtemp makes 0700).
    """
    path = Path(tempfile.mkdtemp(prefix="fnh-", dir="/tmp"))
    path.chmod(mode)
    return path


def _public_fixtures() -> Path:
    """The fixture functions, copied where any worker user can read them (the checkout may not be)."""
    target = readable_copy(short_tempdir(0o755) / "fixtures")
    atexit.register(shutil.rmtree, target.parent, True)
    return target


FIXTURES = _public_fixtures()

_names = itertools.count()


def unique(prefix: str) -> str:
    """A function name no other test in this daemon uses."""
    return f"{prefix}-{os.getpid()}-{next(_names)}"


class Daemon:
    """``fnhost serve`` in a child process, as an operator would run it."""

    def __init__(self, state_dir: Path, *, config: str | None = None, env: dict[str, str] | None = None) -> None:
        self.state_dir = state_dir
        self.socket = state_dir / "fnhost.sock"
        self.address = f"unix:{self.socket}"
        self.log_path = state_dir.parent / f"{state_dir.name}.log"
        self.config = config
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *extra_args: str, wait: bool = True) -> Daemon:
        args = [sys.executable, "-m", "fnhost", "serve", "--state-dir", str(self.state_dir),
                "--listen", self.address, *extra_args]
        if self.config is not None:
            config_path = self.state_dir.parent / f"{self.state_dir.name}.toml"
            config_path.write_text(self.config)
            args += ["--config", str(config_path)]
        env = {**os.environ, "FNHOST_TEST_SECRET": "daemon-only", **self.env}
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
                try:
                    if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.05)
        raise RuntimeError(f"daemon not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> list[dict]:
        events = []
        for line in self.log().splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                pass
        return events

    def descendants(self) -> list[int]:
        """Pids of the daemon's workers and their children, while the daemon lives."""
        assert self.proc is not None
        try:
            return [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def client(self, timeout: float | None = 60) -> Client:
        return Client(self.address, timeout=timeout)


def wait_gone(pids: list[int], timeout: float = 10) -> list[int]:
    """Pids still alive after ``timeout`` (zombies count as gone)."""
    deadline = time.monotonic() + timeout
    alive = pids
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive:
            return []
        time.sleep(0.05)
    return alive


def payload(result: InvokeResult) -> object:
    return json.loads(result.payload)


@pytest.fixture(scope="session")
def daemon() -> Iterator[Daemon]:
    """One daemon shared by the tests that only deploy and invoke their own functions."""
    state = short_tempdir()
    d = Daemon(state / "state", config="[daemon]\ninit_timeout_s = 5\nqueue_timeout_s = 1.0\n")
    d.start()
    yield d
    code = d.stop()
    assert code == 0, d.log()[-3000:]
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def fresh_daemon() -> Iterator[Daemon]:
    """A daemon of this test's own; stopped (if still running) and cleaned up after it."""
    state = short_tempdir()
    d = Daemon(state / "state")
    yield d
    if d.proc is not None and d.proc.poll() is None:
        left = d.descendants()
        d.stop(signal.SIGKILL)
        assert wait_gone(left) == [], "workers outlived their daemon"
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """Like tmp_path, but readable by the daemon's unprivileged worker users."""
    path = short_tempdir(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def client(daemon: Daemon) -> Iterator[Client]:
    with daemon.client() as c:
        yield c


def fixture_case(runtime: str, case: str) -> tuple[str, Path]:
    return _fixture_case(FIXTURES, runtime, case)


def deploy_case(client: Client, runtime: str, case: str, **options: object) -> str:
    """Deploy one fixture case as a new function; returns its name."""
    handler, code = fixture_case(runtime, case)
    name = unique(f"{runtime}-{case}".replace("_", "-"))
    client.create_function(name, runtime=runtime, handler=handler, code=str(code.resolve()), **options)
    return name


def function_stats(client: Client, name: str):  # type: ignore[no-untyped-def]
    for f in client.stats().functions:
        if f.function_name == name:
            return f
    raise KeyError(name)
