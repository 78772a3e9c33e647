"""Shared fixtures: a real daemon process on a temporary unix socket, and a real client."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import io
import itertools
import json
import os
import shutil
import signal
import tempfile
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import psutil
import pytest
from fnhost.client import Client, InvokeResult
from fnhost.execution.pool import Pool
from fnhost.testing import harness
from fnhost.testing.fixtures import fixture_case as _fixture_case
from fnhost.testing.fixtures import readable_copy

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


def public_code(files: dict[str, str]) -> Path:
    """A code directory any worker user can read, holding ``files`` (name -> text); the caller removes it."""
    path = short_tempdir(0o755)
    for name, text in files.items():
        (path / name).write_text(text)
        (path / name).chmod(0o644)
    return path


def zipped(files: dict[str, str]) -> bytes:
    """A zip of ``files`` (name -> text), as a deploy uploads one."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return buf.getvalue()

_names = itertools.count()


def unique(prefix: str) -> str:
    """A function name no other test in this daemon uses."""
    return f"{prefix}-{os.getpid()}-{next(_names)}"


class Daemon(harness.Daemon):
    """``fnhost serve`` in a child process, as an operator would run it (``fnhost.testing.harness``),
    with a secret in its environment that no worker may see."""

    def __init__(self, state_dir: Path, *, config: str | None = None, env: dict[str, str] | None = None) -> None:
        super().__init__(state_dir, config=config, env=env,
                         base_env={**os.environ, "FNHOST_TEST_SECRET": "daemon-only"})


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
    # No stem cells: the conformance suite's -stemcell twin (tests/conformance/conftest.py) has them.
    d = Daemon(state / "state", config="[daemon]\ninit_timeout_s = 5\nqueue_timeout_s = 1.0\nstem_cells = 0\n")
    d.start()
    yield d
    code = d.stop()
    assert code == 0, d.log_tail()
    assert d.leftovers == [], "workers outlived their daemon"
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def fresh_daemon() -> Iterator[Daemon]:
    """A daemon of this test's own; stopped (if still running) and cleaned up after it."""
    state = short_tempdir()
    d = Daemon(state / "state")
    yield d
    d.stop(signal.SIGKILL)  # whatever the test did; kills (and lists) any worker left behind
    assert d.leftovers == [], "workers outlived their daemon"
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


Background = Callable[[Callable[[], Awaitable[None]]], None]


@contextlib.asynccontextmanager
async def pool_in_task_group(make: Callable[[Background], Pool],
                             finish: Callable[[Pool], Awaitable[None]]) -> AsyncIterator[Pool]:
    """A pool built by ``make`` whose background work (stops, ensure_warm) runs in a task group
    the test owns; ``finish`` runs (shielded as it chooses) before the group is cancelled. An
    error of the test is raised as itself, not inside an ExceptionGroup."""
    failed: BaseException | None = None
    async with anyio.create_task_group() as tg:
        # Through a queue rather than straight to tg.start_soon: on_dead can come from a loop
        # callback (a worker's exit), where anyio cannot tell which event loop runs unless
        # anyio.run set it up, as it does in the daemon and pytest-asyncio does not.
        background: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()

        async def run_background() -> None:
            while True:
                tg.start_soon(await background.get())

        tg.start_soon(run_background)
        pool = make(background.put_nowait)
        try:
            yield pool
        except BaseException as exc:
            failed = exc
        await finish(pool)
        tg.cancel_scope.cancel()
    if failed is not None:
        raise failed
