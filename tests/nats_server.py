"""A real nats-server with JetStream for tests: started on a free loopback port with its own store.

Use the `nats_server` pytest fixture (import it into a conftest.py or a test module:
``from tests.nats_server import nats_server  # noqa: F401``), or the context manager
``running_nats_server()`` where a test needs more than one or needs its own lifetime:

    with running_nats_server() as server:
        ... server.url ...          # "nats://127.0.0.1:<port>"
        server.restart()            # same port, same store directory: what JetStream stored survives
        server.stop(kill=True)      # SIGKILL; server.start() brings it back

The server is Debian's `nats-server` package (tests/install-deps.sh installs it); it is started as
`nats-server -c <conf: max_payload 2MB> -js -sd <store> -a 127.0.0.1 -p <port>` and stopped by its PID, never by name, so
several tests (and several test runs on one machine) can each have their own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

#: How long a starting server may take to answer with its INFO line (JetStream recovers its
#: store before it accepts clients, and a loaded 2-core build host is slow).
START_TIMEOUT_S = 20.0


def _free_port() -> int:
    """A TCP port nobody listens on at the moment (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nats_server_binary() -> str:
    """The nats-server executable.

    Raises:
        RuntimeError: it is not installed (tests/install-deps.sh installs Debian's package).
    """
    path = shutil.which("nats-server") or ("/usr/sbin/nats-server" if os.path.exists("/usr/sbin/nats-server") else None)
    if path is None:
        raise RuntimeError("nats-server is not installed: run tests/install-deps.sh (apt-get install nats-server)")
    return path


class NatsServer:
    """One nats-server process with JetStream, restartable on the same port and store directory."""

    def __init__(self, store_dir: Path, port: int | None = None) -> None:
        self.store_dir = store_dir
        self.port = port or _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = store_dir.parent / f"nats-server-{self.port}.log"
        self.conf_path = store_dir.parent / f"nats-server-{self.port}.conf"

    @property
    def url(self) -> str:
        """The client URL (what `fnhost serve --queue` takes)."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The running server's PID, or None when it is stopped."""
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    def start(self) -> None:
        """Starts the server and returns once it serves clients.

        Raises:
            RuntimeError: it exited or did not answer within START_TIMEOUT_S (its log is in the message).
        """
        if self.pid is not None:
            return
        self.store_dir.mkdir(parents=True, exist_ok=True)
        # Lambda accepts 1 MiB asynchronous payloads; nats-server's default max_payload is exactly
        # 1 MiB, so the event's headers would not fit: the README tells operators the same.
        self.conf_path.write_text("max_payload: 2MB\n")
        log = open(self.log_path, "ab")  # noqa: SIM115 (the child keeps writing to it)
        try:
            self.process = subprocess.Popen(
                [nats_server_binary(), "-c", str(self.conf_path), "-js", "-sd", str(self.store_dir), "-a", "127.0.0.1", "-p", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.process.returncode}: {self._log_tail()}")
            if self._answers():
                return
            time.sleep(0.05)
        self.stop(kill=True)
        raise RuntimeError(f"nats-server did not answer on port {self.port} in {START_TIMEOUT_S} s: {self._log_tail()}")

    def _answers(self) -> bool:
        """True when the server sends its INFO line: it enables JetStream (and recovers the store)
        before it starts accepting clients, so a greeting means JetStream is there too."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                return sock.recv(5) == b"INFO "
        except OSError:
            return False

    def stop(self, *, kill: bool = False, timeout_s: float = 10.0) -> None:
        """Stops the server by its PID: SIGTERM (a clean shutdown) or SIGKILL (a crash)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout_s)

    def restart(self, *, kill: bool = False, down_s: float = 0.0) -> None:
        """Stops and starts the server on the same port and store directory, down for `down_s`."""
        self.stop(kill=kill)
        if down_s:
            time.sleep(down_s)
        self.start()

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"


@contextlib.contextmanager
def running_nats_server(store_dir: Path | None = None) -> Iterator[NatsServer]:
    """A started NatsServer, stopped (and its temporary store removed) on exit."""
    owned = store_dir is None
    base = Path(tempfile.mkdtemp(prefix="fnhost-nats-")) if owned else None
    server = NatsServer((base / "jetstream") if base is not None else store_dir)  # type: ignore[arg-type]
    try:
        server.start()
        yield server
    finally:
        server.stop()
        if base is not None:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    """A real nats-server with JetStream on a free loopback port, its own store, stopped afterwards."""
    with running_nats_server() as server:
        yield server
