"""Running as a service: sd_notify, drain on SIGTERM, reload on SIGHUP, metrics, systemd unit."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from fnhost import errors
from tests.conftest import FIXTURES, Daemon, payload, wait_gone

PY = FIXTURES / "python"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NotifyListener:
    """The receiving end of $NOTIFY_SOCKET, read continuously as systemd reads it."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.path = path
        self.messages: list[dict[str, str]] = []
        self._cursor = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            self.messages.append(dict(line.split("=", 1) for line in data.splitlines()))

    def wait_for(self, key: str, timeout: float = 30) -> dict[str, str]:
        """The next message, after the last one returned, that carries ``key``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i in range(self._cursor, len(self.messages)):
                if key in self.messages[i]:
                    self._cursor = i + 1
                    return self.messages[i]
            time.sleep(0.01)
        raise AssertionError(f"no {key} notification; got {self.messages}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def test_sd_notify_ready_watchdog_reload_stopping(fresh_daemon: Daemon, tmp_path: Path) -> None:
    listener = NotifyListener(fresh_daemon.state_dir.parent / "notify.sock")
    fresh_daemon.env = {"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": "200000"}
    fresh_daemon.config = f'[functions.warm]\nruntime="python"\nhandler="app.pid"\ncode="{PY}"\nmin_warm=2\n'
    fresh_daemon.start()
    ready = listener.wait_for("READY")
    assert "2 idle" in ready["STATUS"], ready  # READY only once min_warm workers are warm
    for _ in range(3):  # pinged at half of WatchdogSec, from the event loop
        listener.wait_for("WATCHDOG", timeout=2)
    with fresh_daemon.client() as c:  # workers never see the daemon's NOTIFY_SOCKET
        assert c.get_function("warm").function_name == "warm"
    fresh_daemon.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    assert "MONOTONIC_USEC" in listener.wait_for("RELOADING")
    listener.wait_for("READY")
    fresh_daemon.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    listener.wait_for("STOPPING")
    assert fresh_daemon.proc.wait(30) == 0  # type: ignore[union-attr]
    listener.close()


def test_drain_lets_running_invocations_finish(fresh_daemon: Daemon) -> None:
    fresh_daemon.start()
    with fresh_daemon.client() as c:
        c.create_function("slow", runtime="python", handler="app.sleep", code=str(PY), timeout_s=30)
        c.create_function("fast", runtime="python", handler="app.pid", code=str(PY))
        c.invoke("fast", b"{}")
        workers = fresh_daemon.descendants()
        with ThreadPoolExecutor(3) as pool:
            running = [pool.submit(c.invoke, "slow", b'{"seconds": 2}') for _ in range(3)]
            deadline = time.monotonic() + 10
            while len(fresh_daemon.descendants()) < 4 and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.3)
            workers = fresh_daemon.descendants()
            fresh_daemon.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            time.sleep(0.3)
            with pytest.raises((errors.ShuttingDown, errors.FnhostError)) as refused:
                c.invoke("fast", b"{}")
            assert "shutting down" in refused.value.message or "no fnhost daemon" in refused.value.message
            assert [payload(f.result()) for f in running] == ["slept"] * 3
    assert fresh_daemon.stop() == 0
    assert wait_gone(workers) == []
    assert "drain" in fresh_daemon.log()


def test_drain_grace_expiry_and_second_signal(fresh_daemon: Daemon) -> None:
    fresh_daemon.config = "[daemon]\nshutdown_grace_s = 60\n"
    fresh_daemon.start()
    with fresh_daemon.client() as c:
        c.create_function("stuck", runtime="python", handler="app.sleep", code=str(PY), timeout_s=120)
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(c.invoke, "stuck", b'{"seconds": 100}')
            time.sleep(1.0)
            workers = fresh_daemon.descendants()
            started = time.monotonic()
            fresh_daemon.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            time.sleep(0.5)
            fresh_daemon.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]: the second one forces
            with pytest.raises(errors.ShuttingDown) as info:
                running.result()
            assert info.value.status == grpc.StatusCode.UNAVAILABLE
    assert fresh_daemon.stop() == 0
    assert time.monotonic() - started < 30, "the second signal did not cut the 60 s grace short"
    assert wait_gone(workers) == []


def test_sighup_reload_good_and_bad(fresh_daemon: Daemon) -> None:
    fresh_daemon.config = f'[functions.one]\nruntime="python"\nhandler="app.echo"\ncode="{PY}"\n'
    fresh_daemon.start()
    config_path = fresh_daemon.state_dir.parent / f"{fresh_daemon.state_dir.name}.toml"
    with fresh_daemon.client() as c:
        config_path.write_text(
            f'[daemon]\nqueue_timeout_s = 0.5\n'
            f'[functions.one]\nruntime="python"\nhandler="app.pid"\ncode="{PY}"\n'
            f'[functions.two]\nruntime="node"\nhandler="app.echo"\ncode="{FIXTURES / "node"}"\n')
        fresh_daemon.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        deadline = time.monotonic() + 30
        while "reloaded" not in fresh_daemon.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        pid = payload(c.invoke("one", b"{}"))
        assert isinstance(pid, int)
        assert payload(c.invoke("two", b"[2]")) == [2]

        # Reloading an unchanged file leaves warm workers alone.
        fresh_daemon.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        deadline = time.monotonic() + 30
        while fresh_daemon.log().count('"reloaded"') < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert payload(c.invoke("one", b"{}")) == pid

        config_path.write_text("[daemon\nbroken")
        fresh_daemon.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        deadline = time.monotonic() + 30
        while "reload_failed" not in fresh_daemon.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "not valid TOML" in fresh_daemon.log()
        config_path.write_text(f'[functions.one]\nruntime="python"\nhandler="../x.y"\ncode="{PY}"\n')
        fresh_daemon.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        deadline = time.monotonic() + 30
        while fresh_daemon.log().count("reload_failed") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "outside the function's code directory" in fresh_daemon.log()
        assert isinstance(payload(c.invoke("one", b"{}")), int), "the old configuration stays in force"
        assert c.get_function("one").handler == "app.pid"
    assert fresh_daemon.stop() == 0


def test_metrics_over_http(fresh_daemon: Daemon) -> None:
    port = free_port()
    fresh_daemon.start("--metrics-listen", f"127.0.0.1:{port}")
    with fresh_daemon.client() as c:
        c.create_function("m", runtime="python", handler="app.fail", code=str(PY))
        c.create_function("ok", runtime="python", handler="app.echo", code=str(PY))
        for _ in range(2):
            c.invoke("ok", b"{}")
        c.invoke("m", b'{"message": "x"}')
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert 'fnhost_invocations_total{function="ok",outcome="success"} 2.0' in text
    assert 'fnhost_invocations_total{function="m",outcome="function_error"} 1.0' in text
    assert 'fnhost_cold_starts_total{function="ok"} 1.0' in text
    assert 'fnhost_workers{function="ok",state="idle"} 1.0' in text
    assert 'fnhost_invocation_duration_seconds_count{function="ok"} 2.0' in text
    assert 'fnhost_init_duration_seconds_count{function="ok"} 1.0' in text
    assert "fnhost_process_resident_memory_bytes" in text
    assert 'fnhost_queue_depth{function="ok"} 0.0' in text
    memory = [l for l in text.splitlines() if l.startswith('fnhost_worker_memory_bytes{function="ok"}')]
    assert memory and float(memory[0].split()[-1]) > 1_000_000


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_shipped_unit_verifies(tmp_path: Path) -> None:
    unit = subprocess.run([sys.executable, "-m", "fnhost", "systemd-unit"], capture_output=True, text=True, check=True)
    path = tmp_path / "fnhost.service"
    path.write_text(unit.stdout)
    assert "Type=notify" in unit.stdout and "KillMode=mixed" in unit.stdout
    verify = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr


def test_cost_report(fresh_daemon: Daemon) -> None:
    fresh_daemon.config = "[daemon]\nbilling_granularity_ms = 100\n"
    fresh_daemon.start()
    with fresh_daemon.client() as c:
        c.create_function("costly", runtime="python", handler="app.sleep", code=str(PY), memory_mb=1024)
        for _ in range(3):
            c.invoke("costly", b'{"seconds": 0.15}')
        usage = c.usage(0)
    (f,) = usage.functions
    assert f.requests == 3
    # 150 ms rounds up to 200 ms at a 100 ms granularity: 3 × 0.2 s × 1 GB.
    assert f.billed_duration_ms == 600 and f.gb_seconds == pytest.approx(0.6)
    assert f.cost_usd == pytest.approx(3 / 1e6 * 0.20 + 0.6 * 0.0000166667)
    assert usage.cost_usd == 0.0  # inside the free tier
    out = subprocess.run([sys.executable, "-m", "fnhost", "--address", fresh_daemon.address, "cost", "--since", "1h"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    line = next(l for l in out.stdout.splitlines() if l.startswith("costly"))
    assert line.split()[1:4] == ["3", "600", "ms"]
    assert fresh_daemon.stop() == 0
    fresh_daemon.start()  # usage is persisted across restarts
    with fresh_daemon.client() as c:
        assert c.usage(0).functions[0].requests == 3


def test_journald_priorities(fresh_daemon: Daemon) -> None:
    fresh_daemon.state_dir.mkdir(parents=True)
    fresh_daemon.log_path.touch()
    st = fresh_daemon.log_path.stat()
    fresh_daemon.env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
    fresh_daemon.start()
    with fresh_daemon.client() as c:
        with pytest.raises(errors.InvalidParameter):
            c.create_function("bad", runtime="python", handler="app.echo", code="/nonexistent")
    assert fresh_daemon.stop() == 0
    lines = [l for l in fresh_daemon.log().splitlines() if l.startswith("<")]
    assert any(l.startswith('<6>{') and '"serving"' in l for l in lines)
    assert all(l[:3] in ("<7>", "<6>", "<4>", "<3>", "<2>") for l in lines)
