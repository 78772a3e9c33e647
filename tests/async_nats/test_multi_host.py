"""Two fnhost daemons on one JetStream, with real workers and a real nats-server.

- Both serve the same function and compete for its events; one is SIGKILLed mid-batch and the
  other finishes every event, including the ones the dead one was running (JetStream redelivers
  them once their ack deadline passes).
- nats-server is killed and restarted mid-run: every event answered 202 runs; while the server is
  down, Event invocations are refused with a clear error; the daemons reconnect by themselves.
- A daemon SIGKILLed one instant after a 202: every event it accepted runs (on the other daemon).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from fnhost import errors
from fnhost.client import Client

from tests.async_invoke.wire_support import Recorder
from tests.conftest import Daemon, short_tempdir, unique, zipped
from tests.nats_server import NatsServer

# Reports each attempt's start and end (its host, tag and request id) to the recorder; works a while between.
APP = '''
import json, os, socket, time

def report(phase, event, context):
    with socket.create_connection(("127.0.0.1", int(os.environ["RECORDER_PORT"])), timeout=10) as s:
        s.sendall((json.dumps({"phase": phase, "host": os.environ["HOST_NAME"], "tag": event["tag"],
                               "request_id": context.aws_request_id, "at": time.time()}) + "\\n").encode())

def handler(event, context):
    report("start", event, context)
    time.sleep(event.get("sleep", 0))
    report("done", event, context)
    return {"tag": event["tag"]}
'''


def _config(url: str) -> str:
    # A short init timeout and queue wait keep the ack deadline (function timeout + both +
    # a margin) short, so the dead daemon's events come back within the test's patience.
    return f'[daemon]\ninit_timeout_s = 5\nqueue_timeout_s = 0.3\nasync_retry_base_s = 0.3\nqueue = "{url}"\n'


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    r = Recorder()
    yield r
    r.close()


def _start(name: str, url: str) -> Daemon:
    d = Daemon(short_tempdir() / name, config=_config(url))
    d.start()
    return d


def _deploy(client: Client, function: str, host: str, recorder: Recorder, concurrency: int) -> None:
    client.create_function(function, runtime="python", handler="app.handler", code=zipped({"app.py": APP}),
                           environment={"RECORDER_PORT": str(recorder.port), "HOST_NAME": host},
                           max_concurrency=concurrency, timeout_s=3)


def _collect(recorder: Recorder, want: set[int], within_s: float, calls: list[dict] | None = None) -> list[dict]:
    """``calls`` and the reports after them, until every tag of ``want`` finished (or time is up)."""
    calls = list(calls or [])
    deadline = time.monotonic() + within_s
    while not want <= {c["tag"] for c in calls if c["phase"] == "done"} and time.monotonic() < deadline:
        try:
            calls.append(recorder.next(timeout=max(0.1, deadline - time.monotonic())))
        except queue.Empty:
            break
    return calls


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_daemons_compete_and_one_sigkilled_mid_batch_leaves_its_events_to_the_other(
        nats_server: NatsServer, recorder: Recorder) -> None:
    a, b = _start("a", nats_server.url), _start("b", nats_server.url)
    try:
        function, events = unique("mh"), 40
        with a.client() as ca, b.client() as cb:
            _deploy(ca, function, "a", recorder, concurrency=8)
            _deploy(cb, function, "b", recorder, concurrency=8)
            for tag in range(events):  # all accepted through a; both run them
                assert ca.invoke_async(function, json.dumps({"tag": tag, "sleep": 0.5}).encode()).status_code == 202
        # Mid-batch: once each host has run a few, a dies with its attempts still running.
        def started(host: str) -> int:
            return sum(1 for c in calls if c["host"] == host and c["phase"] == "start")

        calls: list[dict] = []
        while started("a") < 3 or started("b") < 1 or (calls[-1]["host"], calls[-1]["phase"]) != ("a", "start"):
            calls.append(recorder.next(timeout=60))
        a.stop(signal.SIGKILL)  # the instant a reported an attempt's start: that attempt is running
        killed_at, killed_wall = time.monotonic(), time.time()
        calls = _collect(recorder, set(range(events)), within_s=120, calls=calls)
        done = [c for c in calls if c["phase"] == "done"]
        assert {c["tag"] for c in done} == set(range(events)), \
            f"never finished: {sorted(set(range(events)) - {c['tag'] for c in done})}"
        by_host = Counter(c["host"] for c in done)
        assert started("a") >= 3 and by_host["b"] >= 1, by_host  # competing consumers, not one taking all
        # What a was running when it died ran again on b, under the same request id.
        cut = {c["tag"]: c["request_id"] for c in calls if c["host"] == "a" and c["phase"] == "start"}
        cut = {tag: rid for tag, rid in cut.items() if not any(d["tag"] == tag and d["host"] == "a" for d in done)}
        assert cut, "a was killed mid-attempt, so at least that attempt was cut short"
        for tag, request_id in cut.items():
            assert [(d["host"], d["request_id"]) for d in done if d["tag"] == tag] == [("b", request_id)]
        again_after = sorted(round(d["at"] - killed_wall, 1) for d in done if d["tag"] in cut)
        print(f"\n{events} events on two daemons: a started {started('a')} and finished {by_host['a']}, b finished "
              f"{by_host['b']}; a SIGKILLed with "
              f"{len(cut)} attempts running, which b ran again ({again_after} s after the kill); "
              f"all done {time.monotonic() - killed_at:.1f} s after the kill")
        with b.client() as cb:
            assert cb.list_dead_letters(function) == []
    finally:
        a.stop(signal.SIGKILL)
        b.stop()
    assert b.leftovers == []


def _sender(client: Client, function: str, accepted: list[int], refused: list[str], stop: threading.Event) -> None:
    tag = 0
    while not stop.is_set():
        try:
            client.invoke_async(function, json.dumps({"tag": tag}).encode())
            accepted.append(tag)
        except errors.FnhostError as exc:
            refused.append(f"{exc.code}: {exc.message}")
            time.sleep(0.05)
        tag += 1


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_nats_server_restarted_mid_run_loses_nothing_accepted(nats_server: NatsServer, recorder: Recorder) -> None:
    a, b = _start("a", nats_server.url), _start("b", nats_server.url)
    try:
        function = unique("mh")
        with a.client() as ca, b.client() as cb:
            _deploy(ca, function, "a", recorder, concurrency=4)
            _deploy(cb, function, "b", recorder, concurrency=4)
            accepted: list[int] = []
            refused: list[str] = []
            stop = threading.Event()
            sender = threading.Thread(target=_sender, args=(ca, function, accepted, refused, stop))
            sender.start()
            try:
                while len(accepted) < 200:
                    time.sleep(0.05)
                nats_server.stop(kill=True)  # a crash of the queue's server, mid-run
                # Down until an invocation was refused (one already waiting for its PubAck when the
                # server died waits out its timeout first) and 2 s more.
                deadline = time.monotonic() + 15
                while not refused and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(2.0)
                down_refusals, accepted_while_down = len(refused), len(accepted)
                time.sleep(0.5)
                assert len(accepted) == accepted_while_down, "accepted with the queue's server down"
                nats_server.start()  # same port, same store directory
                deadline = time.monotonic() + 30
                while len(accepted) < 400 and time.monotonic() < deadline:  # the daemons reconnected
                    time.sleep(0.05)
            finally:
                stop.set()
                sender.join()
        assert len(accepted) >= 400, f"no events accepted after the restart; refusals: {refused[-3:]}"
        # While the server was down the events were refused, clearly, not accepted into memory.
        assert down_refusals > 0
        assert all(r.startswith("ServiceUnavailableException") and "NATS" in r for r in refused), refused[:3]
        calls = [c for c in _collect(recorder, set(accepted), within_s=90) if c["phase"] == "done"]
        missing = set(accepted) - {c["tag"] for c in calls}
        assert not missing, f"{len(missing)} accepted events never ran, e.g. {sorted(missing)[:10]}"
        twice = sum(1 for n in Counter(c["tag"] for c in calls).values() if n > 1)
        print(f"\nnats-server killed and restarted: {len(accepted)} accepted, {len(refused)} refused while down, "
              f"all accepted ran ({twice} twice), on a {Counter(c['host'] for c in calls)['a']} times, "
              f"on b {Counter(c['host'] for c in calls)['b']}")
    finally:
        a.stop()
        b.stop()
    assert a.leftovers == [] and b.leftovers == []


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_events_accepted_an_instant_before_sigkill_run_on_the_other_daemon(
        nats_server: NatsServer, recorder: Recorder) -> None:
    """The 202 follows JetStream's PubAck: a daemon SIGKILLed right after answering loses nothing."""
    a, b = _start("a", nats_server.url), _start("b", nats_server.url)
    try:
        function = unique("mh")
        with a.client() as ca, b.client() as cb:
            _deploy(ca, function, "a", recorder, concurrency=4)
            _deploy(cb, function, "b", recorder, concurrency=4)
        accepted: list[int] = []
        with a.client(timeout=5) as ca:
            for tag in range(100_000):
                try:
                    result = ca.invoke_async(function, json.dumps({"tag": tag}).encode())
                except errors.FnhostError:
                    break  # a is dead: this one was not accepted
                assert result.status_code == 202
                accepted.append(tag)
                if len(accepted) == 300:
                    os.kill(a.pid, signal.SIGKILL)  # one instant after a 202
        a.stop(signal.SIGKILL)
        assert 300 <= len(accepted) < 100_000
        calls = [c for c in _collect(recorder, set(accepted), within_s=120) if c["phase"] == "done"]
        missing = set(accepted) - {c["tag"] for c in calls}
        assert not missing, f"{len(missing)} accepted events never ran, e.g. {sorted(missing)[:10]}"
        hosts = Counter(c["host"] for c in calls)
        print(f"\n{len(accepted)} accepted by a before its SIGKILL: all ran (a {hosts['a']}, b {hosts['b']})")
        assert hosts["b"] > 0
    finally:
        a.stop(signal.SIGKILL)
        b.stop()
    assert b.leftovers == []
