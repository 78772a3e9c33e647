"""The reference emulator: serverless-offline serving the bench's Python echo through Lambda's
Invoke API (``POST /2015-03-31/functions/echo/invocations`` on its lambda port).

Installed outside the repository with npm (``install()``: ``serverless@3.40.0`` and
``serverless-offline@13.10.1`` under ``/var/cache/fnhost-bench/sls``, or ``$FNHOST_BENCH_SLS``).
Each run writes a throw-away service (``serverless.yml`` + the echo fixture's ``app.py``) into a
temporary directory and starts ``serverless offline start`` there with fake AWS credentials and
the framework's telemetry, notifications and update checks off, so it starts without an AWS
account or network. The python3.11 runtime runs each handler instance as a ``python3`` child of
node (serverless-offline cannot run Python in-process), one per call in flight, started lazily
like fnhost's pool and kept while used.

It always stops: it runs under coreutils ``timeout`` (``max_s``, then SIGKILL 5 s later) in a
session of its own, and ``stop()`` signals that process group by the PID we started — node and
every Python handler process with it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from fnhost.testing.fixtures import SOURCE as FIXTURES

SLS_VERSION = "3.40.0"
OFFLINE_VERSION = "13.10.1"
DEFAULT_HOME = Path(os.environ.get("FNHOST_BENCH_SLS", "/var/cache/fnhost-bench/sls"))
FUNCTION = "echo"
INVOKE_PATH = f"/2015-03-31/functions/{FUNCTION}/invocations"

SERVERLESS_YML = """\
service: fnhost-bench
frameworkVersion: "3"
provider:
  name: aws
  runtime: python3.11
  region: us-east-1
  stage: dev
  memorySize: 128
  timeout: 30
functions:
  echo:
    name: echo          # invoked as "echo", like fnhost's function, not fnhost-bench-dev-echo
    handler: app.echo
plugins:
  - serverless-offline
"""

# No account, no network: fake credentials, and every phone-home of the framework off.
QUIET_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIDBENCHFAKE",
    "AWS_SECRET_ACCESS_KEY": "bench-fake-secret",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "SLS_TELEMETRY_DISABLED": "1",
    "SLS_TRACKING_DISABLED": "1",
    "SLS_NOTIFICATIONS_MODE": "off",
    "SLS_DEPRECATION_DISABLE": "*",
    "SLS_INTERACTIVE_SETUP_DISABLE": "1",
    "SLS_DISABLE_AUTO_UPDATE": "1",
    "SLS_OFFLINE_NO_SPONSOR": "1",
    "CI": "1",  # no interactive prompts
}


class SlsUnavailable(RuntimeError):
    """serverless-offline is not installed (and could not be), or did not come up."""


def cli_path(home: Path = DEFAULT_HOME) -> Path:
    return home / "node_modules" / "serverless" / "bin" / "serverless.js"


def installed(home: Path = DEFAULT_HOME) -> bool:
    return cli_path(home).is_file() and (home / "node_modules" / "serverless-offline" / "package.json").is_file()


def install(home: Path = DEFAULT_HOME, timeout_s: float = 600) -> None:
    """``npm install`` the pinned versions into ``home``; raises ``SlsUnavailable`` on failure."""
    npm = shutil.which("npm")
    if npm is None:
        raise SlsUnavailable("npm is not installed")
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "package.json").exists():
        (home / "package.json").write_text('{"name": "fnhost-bench-sls", "private": true}\n')
    try:
        proc = subprocess.run([npm, "install", "--no-audit", "--no-fund", f"serverless@{SLS_VERSION}",
                               f"serverless-offline@{OFFLINE_VERSION}"], cwd=home, capture_output=True,
                              text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise SlsUnavailable(f"npm install took longer than {timeout_s:.0f} s") from exc
    if proc.returncode != 0 or not installed(home):
        raise SlsUnavailable(f"npm install failed: {proc.stderr[-800:]}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlsOffline:
    """One ``serverless offline start``; ``start()`` waits for its lambda port, ``stop()`` kills it."""

    def __init__(self, *, home: Path = DEFAULT_HOME, max_s: float = 900, log_path: Path | None = None,
                 yml: str = SERVERLESS_YML, app: Path | None = None) -> None:
        self.home = home
        self.yml = yml  # another service (bench.function_urls: an ``http`` event) and its app.py
        self.app = app or FIXTURES / "python" / "app.py"
        self.http_port = 0
        self.max_s = max_s
        self.dir = Path(tempfile.mkdtemp(prefix="fnhost-bench-sls-"))
        self.log_path = log_path or self.dir / "offline.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90) -> SlsOffline:
        """Raises ``SlsUnavailable`` when not installed, or when it exits or does not listen in time."""
        if not installed(self.home):
            raise SlsUnavailable(f"serverless-offline is not installed under {self.home} (bench.slsoffline.install)")
        (self.dir / "serverless.yml").write_text(self.yml)
        shutil.copy(self.app, self.dir / "app.py")
        (self.dir / "node_modules").symlink_to(self.home / "node_modules")  # where plugins are resolved
        self.port = _free_port()
        http_port = self.http_port = _free_port()
        node = shutil.which("node") or "node"
        argv = ["timeout", "--kill-after=5", f"{self.max_s:.0f}", node, str(cli_path(self.home)),
                "offline", "start", "--host", "127.0.0.1", "--lambdaPort", str(self.port),
                "--httpPort", str(http_port), "--noTimeout", "--noSponsor", "--terminateIdleLambdaTime", "3600"]
        env = {**os.environ, **QUIET_ENV, "HOME": str(self.dir)}  # no ~/.serverless state of ours is touched
        with open(self.log_path, "ab") as log:
            # A session of its own: timeout(1) then leads the group that node and its python3
            # children join, so one killpg by our PID ends all of them.
            self.proc = subprocess.Popen(argv, cwd=self.dir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SlsUnavailable(f"serverless-offline exited ({self.proc.returncode}): {self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise SlsUnavailable(f"serverless-offline did not listen within {timeout:.0f} s: {self.log_tail()}")

    def node_pid(self) -> int:
        """node's PID (timeout(1)'s child): its children are the python3 handler processes."""
        import psutil

        assert self.proc is not None
        kids = psutil.Process(self.proc.pid).children()
        return kids[0].pid if kids else self.proc.pid

    def log_tail(self, n: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def pids(self) -> list[int]:
        """Every process of its group (node, the shells and python3 handler processes)."""
        import psutil

        if self.proc is None:
            return []
        out = []
        for p in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(p.pid) == self.proc.pid and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p.pid)
            except (ProcessLookupError, PermissionError, psutil.Error):
                pass
        return out

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self.proc is not None:
            try:  # handler processes left in the group after timeout(1) itself exited
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 5
            while self.pids() and time.monotonic() < deadline:  # SIGKILL is delivered, not yet done
                time.sleep(0.05)
        shutil.rmtree(self.dir, ignore_errors=True)
