"""The bench's own fnhost daemon: started on a temporary state directory and unix socket, exactly
as an operator runs it (``python -m fnhost serve``), and always stopped — workers included.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fnhost.client import Client

from .functions import child_env

# Generous limits: 64 JVMs starting at once on 2 cores need far longer than the default 10 s init
# timeout, and a saturated pool must queue rather than throttle while the bench warms it up.
DAEMON_CONFIG = """\
[daemon]
init_timeout_s = 90.0
queue_timeout_s = 60.0
max_concurrency_cap = 64
"""


class DaemonFailed(RuntimeError):
    """The daemon did not start, or died during the run; the message carries its log's tail."""


class BenchDaemon:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.state_dir = workdir / "state"
        self.socket = workdir / "fnhost.sock"
        self.address = f"unix:{self.socket}"
        self.log_path = workdir / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.leftovers: list[int] = []

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> None:
        config = self.workdir / "daemon.toml"
        config.write_text(DAEMON_CONFIG)
        argv = [sys.executable, "-m", "fnhost", "serve", "--state-dir", str(self.state_dir),
                "--listen", self.address, "--config", str(config)]
        with open(self.log_path, "ab") as log:
            # Same process group as the bench: a Ctrl-C in the terminal reaches the daemon too, and
            # it drains and stops its workers by itself even if the bench is killed right after.
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=child_env())
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                self.check_alive()
                try:
                    if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == \
                            health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.05)
        raise DaemonFailed(f"daemon not serving after {timeout:.0f} s:\n{self.log_tail()}")

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise DaemonFailed(f"the daemon exited with status {self.proc.returncode}:\n{self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def client(self, timeout: float = 120.0) -> Client:
        return Client(self.address, timeout=timeout)

    def workers(self) -> list[psutil.Process]:
        """The daemon's direct children: one per worker (a worker's own children hang below it)."""
        try:
            return psutil.Process(self.pid).children(recursive=False)
        except psutil.Error:
            return []

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM (the daemon drains and stops every worker), then SIGKILL to whatever is left."""
        if self.proc is None:
            return
        tree = []
        try:
            tree = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _, alive = psutil.wait_procs(tree, timeout=5)
        for p in alive:
            # Workers lead their own process groups; end each group, never anything broader.
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.leftovers = [p.pid for p in alive]
        self.proc = None
