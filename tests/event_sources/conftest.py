"""Event source mappings end to end: a real nats-server, a real daemon polling it, real Python
workers, boto3 for Lambda's API. Handlers report what they received over a loopback TCP "sink"
(a worker's /tmp is its own, so files would not reach the test)."""

from __future__ import annotations

import asyncio
import json
import queue
import shutil
import socketserver
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import nats
import pytest

from tests.conftest import Daemon, short_tempdir, unique, zipped
from tests.lambda_api.conftest import ROLE, lambda_client
from tests.nats_server import NatsServer, _free_port, running_nats_server

# Reports its batch to the sink, then: raises when a record asks ("crash"), sleeps when one asks,
# and names in batchItemFailures the records whose body says "fail" until their nth delivery.
HANDLER = '''
import json, os, socket, time

def handler(event, context):
    start = time.time()
    failures = []
    crash = False
    nap = 0
    for r in event.get("Records", []):  # a failure destination's record has none
        body = json.loads(r["body"])
        if int(r["attributes"]["ApproximateReceiveCount"]) < body.get("fail_until", 0):
            failures.append({"itemIdentifier": r["messageId"]})
        crash = crash or body.get("crash", False)
        nap = max(nap, body.get("sleep", 0))
    time.sleep(nap)
    report = {"function": context.function_name, "start": start, "end": time.time(), "event": event}
    with socket.create_connection(("127.0.0.1", int(os.environ["SINK_PORT"])), timeout=10) as s:
        s.sendall(json.dumps(report).encode() + b"\\n")
    if crash:
        raise RuntimeError("asked to crash")
    return {"batchItemFailures": failures}
'''


class Sink:
    """A loopback TCP server collecting the JSON lines handlers send."""

    def __init__(self) -> None:
        self.reports: queue.Queue[dict[str, Any]] = queue.Queue()
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                for line in self.rfile:
                    sink.reports.put(json.loads(line))

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def take(self, count: int | None = None, *, timeout: float = 20.0, records: int | None = None,
             function: str | None = None) -> list[dict[str, Any]]:
        """Reports until ``count`` reports (or ``records`` records in all) arrived; fails on timeout."""
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            if count is not None and len(out) >= count:
                return out
            if records is not None and sum(len(r["event"].get("Records", [])) for r in out) >= records:
                return out
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"only {len(out)} reports in {timeout} s: {out!r:.2000}")
            try:
                report = self.reports.get(timeout=left)
            except queue.Empty:
                continue
            if function is None or report["function"] == function:
                out.append(report)

    def quiet(self, seconds: float) -> list[dict[str, Any]]:
        """Whatever arrives within ``seconds``."""
        out = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                out.append(self.reports.get(timeout=left))
            except queue.Empty:
                break
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def _js_call(url: str, work: Callable[[Any], Any]) -> Any:
    nc = await nats.connect(url)
    try:
        return await work(nc.jetstream())
    finally:
        await nc.close()


class Stream:
    """A JetStream stream of its own for one test, and a way to publish to it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = unique("S").replace("-", "_")
        self.subject = self.name.lower()

    def arn(self, subject: str = "") -> str:
        return f"arn:aws:jetstream:us-east-1:000000000000:stream/{self.name}" + (f"/{subject}" if subject else "")

    def create(self) -> Stream:
        asyncio.run(_js_call(self.url, lambda js: js.add_stream(name=self.name, subjects=[f"{self.subject}.>"])))
        return self

    def publish(self, bodies: list[Any], subject: str = "", headers: dict[str, str] | None = None) -> None:
        async def work(js: Any) -> None:
            for body in bodies:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                await js.publish(subject or f"{self.subject}.in", data, headers=headers)

        asyncio.run(_js_call(self.url, work))

    def consumer_pending(self, consumer: str) -> int:
        async def work(js: Any) -> int:
            info = await js.consumer_info(self.name, consumer)
            return info.num_pending + info.num_ack_pending

        return asyncio.run(_js_call(self.url, work))


@pytest.fixture(scope="module")
def nats_js() -> Iterator[NatsServer]:
    with running_nats_server() as server:
        yield server


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    s = Sink()
    yield s
    s.close()


@pytest.fixture(scope="module")
def esm_daemon(nats_js: NatsServer) -> Iterator[Daemon]:
    state = short_tempdir()
    d = Daemon(state / "state", config=f'[daemon]\ninit_timeout_s = 10\nevent_source_nats = "{nats_js.url}"\n'
                                       f'async_retry_base_s = 1\nmetrics_listen = "127.0.0.1:{_free_port()}"\n')
    d.start()
    yield d
    code = d.stop()
    assert code == 0, d.log_tail()
    assert d.leftovers == []
    shutil.rmtree(state, ignore_errors=True)


def metrics(daemon: Daemon) -> str:
    """The daemon's Prometheus exposition text."""
    listen = next(line.split('"')[1] for line in (daemon.config or "").splitlines() if "metrics_listen" in line)
    with urllib.request.urlopen(f"http://{listen}/metrics", timeout=10) as response:
        return response.read().decode()


@pytest.fixture(scope="module")
def lam(esm_daemon: Daemon) -> Any:
    return lambda_client(esm_daemon.http_url)


@pytest.fixture
def stream(nats_js: NatsServer, sink: Sink) -> Stream:
    while not sink.reports.empty():  # a previous test's late reports
        sink.reports.get_nowait()
    return Stream(nats_js.url).create()


@pytest.fixture(scope="module")
def make_function(lam: Any, sink: Sink) -> Callable[..., str]:
    def make(prefix: str = "esm", **members: Any) -> str:
        name = unique(prefix)
        lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role=ROLE,
                            Code={"ZipFile": zipped({"app.py": HANDLER})},
                            Environment={"Variables": {"SINK_PORT": str(sink.port)}}, **members)
        return name

    return make
