"""``fnhost serve`` in a child process, as an operator runs it, for the tests and the benchmark.

One class for both: start the daemon on a state directory and (by default) a unix socket inside
it, wait until its health service says SERVING, read its log, list its workers, and stop it —
SIGTERM (or the signal asked for), then whatever is left is killed by process group, so no worker
outlives a harness's ``stop()``. What had to be killed is kept in ``leftovers``: a daemon that
works stops its workers by itself, so a non-empty list is a finding, not a detail.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ..client import Client


class DaemonFailed(RuntimeError):
    """The daemon did not start, or died while in use; the message carries its log's tail."""


class Daemon:
    """One ``python -m fnhost serve`` child process.

    ``state_dir``: the daemon's state directory (created by the daemon). The log goes to
    ``<state_dir>.log`` and the config text, if any, to ``<state_dir>.toml`` beside it (both
    settable before ``start``, like ``address``, ``config``, ``env`` and ``args``).
    ``base_env``: the environment the daemon starts from (default: this process's); ``env``: what
    is added on top of it.
    """

    def __init__(self, state_dir: Path, *, config: str | None = None, env: Mapping[str, str] | None = None,
                 args: Sequence[str] = (), log_path: Path | None = None, address: str | None = None,
                 base_env: Mapping[str, str] | None = None) -> None:
        self.state_dir = state_dir
        self.socket = state_dir / "fnhost.sock"
        self.address = address or f"unix:{self.socket}"
        self.log_path = log_path or state_dir.parent / f"{state_dir.name}.log"
        self.config = config
        self.env: dict[str, str] = dict(env or {})
        self.args = list(args)
        self.base_env = dict(base_env) if base_env is not None else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.leftovers: list[int] = []  # pids any stop() had to kill, over this object's life
        self._seen: dict[int, psutil.Process] = {}  # every descendant listed so far

    # --- starting -------------------------------------------------------------------------------

    def argv(self, *extra_args: str) -> list[str]:
        argv = [sys.executable, "-m", "fnhost", "serve", "--state-dir", str(self.state_dir),
                "--listen", self.address, *self.args, *extra_args]
        if not any(a == "--http-listen" or a.startswith("--http-listen=") for a in argv):
            # Lambda's HTTP API on a port of its own (never 9001): tests run daemons side by side.
            argv[6:6] = ["--http-listen", "127.0.0.1:0"]
        if not any(a == "--url-listen" or a.startswith("--url-listen=") for a in argv):
            argv[6:6] = ["--url-listen", "127.0.0.1:0"]  # function URLs likewise (never 9002)
        if self.config is not None:
            config_path = self.state_dir.parent / f"{self.state_dir.name}.toml"
            config_path.write_text(self.config)
            argv += ["--config", str(config_path)]
        return argv

    def start(self, *extra_args: str, wait: bool = True, timeout: float = 60.0) -> Self:
        """Start the daemon (and, with ``wait``, ``wait_ready(timeout)``); returns self.

        The daemon stays in this process's process group: a Ctrl-C in a terminal reaches it too,
        and it drains and stops its workers by itself even if its parent dies right after.
        """
        self._seen = {}
        env = {**(os.environ if self.base_env is None else self.base_env), **self.env}
        argv = self.argv(*extra_args)
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Return once the health service says SERVING (over an insecure channel).

        Raises DaemonFailed, with the log's tail, if the daemon exits first or is not serving
        within ``timeout`` seconds.
        """
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
        self.check_alive()
        raise DaemonFailed(f"the daemon was not serving after {timeout:.0f} s:\n{self.log_tail()}")

    def check_alive(self) -> None:
        """Raises DaemonFailed, with the log's tail, if the daemon was started and has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise DaemonFailed(f"the daemon exited with status {self.proc.returncode}:\n{self.log_tail()}")

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise DaemonFailed("the daemon was never started")
        return self.proc.pid

    # --- reading --------------------------------------------------------------------------------

    def log(self) -> str:
        """Everything the daemon wrote to stdout and stderr so far ("" before it starts)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = 3000) -> str:
        return self.log()[-n:]

    def log_events(self) -> list[dict]:
        """The log's JSON lines, parsed; other lines are skipped."""
        events = []
        for line in self.log().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
        return events

    def _children(self, recursive: bool) -> list[psutil.Process]:
        if self.proc is None:
            return []
        try:
            found = psutil.Process(self.proc.pid).children(recursive=recursive)
        except psutil.Error:
            return []
        for p in found:
            self._seen.setdefault(p.pid, p)
        return found

    def descendants(self) -> list[int]:
        """Pids of the daemon's workers and their children, while the daemon lives."""
        return [p.pid for p in self._children(recursive=True)]

    def workers(self) -> list[psutil.Process]:
        """One process per worker (a worker's own children hang below it): the daemon's children,
        except that a zygote (execution/zygote.py) stands for its children, each a forked
        worker's init (or a spare's, which has no function yet)."""
        out = []
        for child in self._children(recursive=False):
            try:
                forked = any(arg.endswith("/zygote.py") for arg in child.cmdline())
                out += child.children() if forked else [child]
            except psutil.Error:
                continue
        return out

    @property
    def http_url(self) -> str:
        """Where the daemon serves Lambda's HTTP API (``http://127.0.0.1:PORT``), from its log.

        Raises DaemonFailed when the daemon logged no ``http_serving`` (not started, or --http-listen none).
        """
        for event in reversed(self.log_events()):
            if event.get("event") == "http_serving":
                return str(event["address"])
        raise DaemonFailed(f"the daemon does not serve Lambda's HTTP API:\n{self.log_tail()}")

    @property
    def url_url(self) -> str:
        """Where the daemon serves function URLs (``http://127.0.0.1:PORT``), from its log.

        Raises DaemonFailed when the daemon logged no ``urls_serving`` (not started, or --url-listen none).
        """
        for event in reversed(self.log_events()):
            if event.get("event") == "urls_serving":
                return str(event["address"])
        raise DaemonFailed(f"the daemon does not serve function URLs:\n{self.log_tail()}")

    def client(self, timeout: float | None = 60.0) -> Client:
        return Client(self.address, timeout=timeout)

    # --- stopping -------------------------------------------------------------------------------

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0, *, grace_s: float = 10.0) -> int | None:
        """Send ``sig`` and wait for the daemon to exit; returns its exit status (None if never started).

        If it has not exited after ``timeout`` seconds it is SIGKILLed (the status is then -9).
        Then every descendant it had (those alive now, and those seen by ``descendants()`` and
        ``workers()`` earlier) gets ``grace_s`` seconds to exit by itself — the daemon's own job,
        after SIGKILL too — and what is still alive is killed with its process group and added to
        ``leftovers``. Calling it again, or on a daemon that already exited, is safe.
        """
        if self.proc is None:
            return None
        self._children(recursive=True)  # snapshot: once the daemon is gone its orphans are unlisted
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        tree = [p for p in self._seen.values() if _running(p)]
        _, alive = psutil.wait_procs(tree, timeout=grace_s) if tree else ([], [])
        self.leftovers += [p.pid for p in alive]
        _kill_groups(alive)
        self._seen = {}
        return self.proc.returncode


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE  # is_running also checks pid reuse
    except psutil.Error:
        return False


def _kill_groups(procs: list[psutil.Process]) -> None:
    """SIGKILL each process's group when it leads one (workers do), else the process alone.

    Never a group this process belongs to: the daemon shares ours, and its workers' children may
    have been moved anywhere by a function's code.
    """
    ours = os.getpgrp()
    for p in procs:
        try:
            if not p.is_running():
                continue  # gone, or its pid reused since
            pgid = os.getpgid(p.pid)
            if pgid == p.pid and pgid != ours:
                os.killpg(pgid, signal.SIGKILL)
            else:
                p.kill()
        except (ProcessLookupError, PermissionError, psutil.Error):
            pass
    psutil.wait_procs(procs, timeout=5)
