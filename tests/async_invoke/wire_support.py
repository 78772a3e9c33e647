"""What the wire tests share: a daemon with short retry spacing and metrics, and a recorder that
functions report to over loopback TCP (their /tmp is their own, so a file would not be seen)."""

from __future__ import annotations

import json
import queue
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from tests.conftest import Daemon, short_tempdir
from tests.nats_server import running_nats_server

# Reports each call (request id and event) to the recorder, then fails if asked to.
RECORDING_APP = '''
import json, socket

def handler(event, context):
    with socket.create_connection(("127.0.0.1", event["port"]), timeout=10) as s:
        s.sendall((json.dumps({"request_id": context.aws_request_id, "event": event}) + "\\n").encode())
    if event.get("fail"):
        raise ValueError("asked to fail: " + str(event.get("tag", "")))
    return {"ok": True, "tag": event.get("tag")}
'''


class Recorder:
    """A loopback listener collecting one JSON line per connection."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.calls: queue.Queue[dict] = queue.Queue()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            if data:
                self.calls.put(json.loads(data))

    def next(self, timeout: float = 30.0) -> dict:
        """The next call reported; raises queue.Empty after ``timeout``."""
        return self.calls.get(timeout=timeout)

    def none_within(self, seconds: float) -> bool:
        try:
            self.calls.get(timeout=seconds)
        except queue.Empty:
            return True
        return False

    def close(self) -> None:
        self.sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", params=["sqlite", "jetstream"])
def async_daemon(request: pytest.FixtureRequest) -> Iterator[Daemon]:
    """A daemon of this module's own, on each queue backend (the embedded SQLite queue; JetStream
    on a nats-server of its own): retries 0.3 s then 0.6 s apart, metrics on a loopback port."""
    with ExitStack() as stack:
        queue = ""
        if request.param == "jetstream":
            queue = stack.enter_context(running_nats_server()).url
        state = short_tempdir()
        stack.callback(shutil.rmtree, state, ignore_errors=True)
        d = Daemon(state / "state",
                   config=f'[daemon]\ninit_timeout_s = 10\nasync_retry_base_s = 0.3\nqueue = "{queue}"\n')
        d.metrics_port = free_port()  # type: ignore[attr-defined]
        d.start("--metrics-listen", f"127.0.0.1:{d.metrics_port}")  # type: ignore[attr-defined]
        yield d
        code = d.stop()
        assert code == 0, d.log_tail()
        assert d.leftovers == [], "workers outlived their daemon"


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    r = Recorder()
    yield r
    r.close()
