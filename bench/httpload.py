"""The HTTP load client: keep-alive ``http.client`` connections in a pool of client processes.

One client for every HTTP server the bench compares (the candidate servers of ``httpservers.py``,
fnhost's Lambda API and serverless-offline in ``lambda_http.py``), so differences between them
are the servers'. Each client is a blocking ``http.client.HTTPConnection`` kept alive across
calls — what the AWS SDKs do — in a thread of its own; 16 clients are 4 threads in each of 4
processes, so one interpreter's GIL is not the ceiling. Processes are fresh interpreters
(``python -m bench.httpload FD``), like ``load.py``'s gRPC pool, and agree on a measurement window
by CLOCK_MONOTONIC: only calls completing inside it count for throughput, only calls started in it
give latencies.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from .load import ClientError, WindowResult, _split, _unpack

CALL_TIMEOUT_S = 30.0
RAMP_S = 0.1  # calls start this long before the window so it opens on a steady state

__all__ = ["ClientError", "HttpPool", "HttpTarget", "WindowResult"]


@dataclass(frozen=True, slots=True)
class HttpTarget:
    """One POST to repeat: where, and the body; the answer must be ``expect`` (when given)."""

    label: str
    host: str
    port: int
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    expect: bytes | None = None
    method: str = "POST"  # GET sends no body (function URL benchmarks)


class _Client:
    """One keep-alive connection; reconnects only after an error (counted by the caller)."""

    def __init__(self, target: HttpTarget) -> None:
        self.target = target
        self.headers = {"Content-Type": "application/json", **target.headers}
        self.conn: http.client.HTTPConnection | None = None

    def call(self) -> bytes:
        """One POST; raises ``ClientError`` on a status other than 200 or an unexpected body,
        ``OSError``/``http.client.HTTPException`` on a transport failure (the connection is dropped)."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.target.host, self.target.port, timeout=CALL_TIMEOUT_S)
            self.conn.connect()
            # Small requests and answers: without TCP_NODELAY Nagle would hold the body back.
            self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.conn.request(self.target.method, self.target.path, body=self.target.body or None,
                              headers=self.headers)
            resp = self.conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if resp.status != 200:
            raise ClientError(f"HTTP {resp.status}: {data[:300]!r}")
        if self.target.expect is not None and data != self.target.expect and not _same_json(data, self.target.expect):
            raise ClientError(f"unexpected answer ({len(data)} B): {data[:120]!r}")
        return data

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _same_json(a: bytes, b: bytes) -> bool:
    """An echo may re-serialize the event (other spacing); only then is it parsed."""
    try:
        return json.loads(a) == json.loads(b)
    except ValueError:
        return False


# --- the client process -------------------------------------------------------------------------


def _sequential(target: HttpTarget, count: int, warmup: int) -> dict[str, Any]:
    client = _Client(target)
    clock = time.perf_counter_ns
    try:
        for _ in range(warmup):
            client.call()
        lat = array("q")
        for _ in range(count):
            t0 = clock()
            client.call()
            lat.append(clock() - t0)
    finally:
        client.close()
    return {"latencies": lat.tobytes()}


def _window(target: HttpTarget, concurrency: int, start: float, end: float) -> dict[str, Any]:
    """``concurrency`` threads, each one connection, calling back to back from ``start − RAMP_S``."""
    lock = threading.Lock()
    lat = array("q")
    done = 0
    errors: list[str] = []

    def run() -> None:
        nonlocal done
        client = _Client(target)
        clock = time.perf_counter_ns
        mono = time.monotonic
        mine = array("q")
        count = 0
        try:
            while True:
                t_start = mono()
                if t_start >= end:
                    break
                t0 = clock()
                try:
                    client.call()
                except Exception as exc:  # counted; a failing server must not become a hot loop
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}"[:300])
                    time.sleep(0.01)
                    continue
                t1 = clock()
                if start <= mono() < end:
                    count += 1
                    if t_start >= start:
                        mine.append(t1 - t0)
        finally:
            client.close()
            with lock:
                done += count
                lat.extend(mine)

    delay = start - RAMP_S - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    threads = [threading.Thread(target=run, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"latencies": lat.tobytes(), "completed": done, "errors": len(errors),
            "first_error": errors[0] if errors else None}


def _warm(target: HttpTarget, concurrency: int, per_client: int) -> dict[str, Any]:
    """Every client makes ``per_client`` calls at once: opens connections, starts workers."""
    errors: list[str] = []

    def run() -> None:
        client = _Client(target)
        try:
            for _ in range(per_client):
                try:
                    client.call()
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:300])
        finally:
            client.close()

    threads = [threading.Thread(target=run, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"errors": len(errors), "first_error": errors[0] if errors else None}


_JOBS = {"sequential": _sequential, "window": _window, "warm": _warm}


def _child_main(conn: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and closes the pipe
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            break
        if job is None:
            break
        try:
            result = _JOBS[job["kind"]](**job["args"])
        except Exception as exc:  # reported to the parent, which decides what it means
            result = {"failed": f"{type(exc).__name__}: {exc}"}
        conn.send(result)


# --- the parent's side --------------------------------------------------------------------------


class HttpPool:
    """``size`` client processes, started once and reused for every measurement; ``close()`` them."""

    def __init__(self, size: int, cwd: str, env: dict[str, str] | None = None) -> None:
        self.size = size
        self._conns: list[Connection] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        for _ in range(size):
            ours, theirs = socket.socketpair()
            proc = subprocess.Popen([sys.executable, "-m", "bench.httpload", str(theirs.fileno())],
                                    cwd=cwd, env=env, stdin=subprocess.DEVNULL, pass_fds=(theirs.fileno(),))
            theirs.close()
            self._conns.append(Connection(ours.detach()))
            self._procs.append(proc)

    def __enter__(self) -> HttpPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, jobs: list[tuple[int, str, dict[str, Any]]], timeout: float) -> list[dict[str, Any]]:
        """Send each job to its process and collect the answers; raises ``ClientError`` when one
        failed outright or did not answer within ``timeout``."""
        for i, kind, args in jobs:
            self._conns[i].send({"kind": kind, "args": args})
        results = []
        deadline = time.monotonic() + timeout
        for i, _, _ in jobs:
            conn = self._conns[i]
            if not conn.poll(max(deadline - time.monotonic(), 0.0)):
                raise ClientError(f"HTTP client process {i} did not answer within {timeout:.0f} s")
            result = conn.recv()
            if "failed" in result:
                raise ClientError(result["failed"])
            results.append(result)
        return results

    def sequential(self, target: HttpTarget, count: int, warmup: int = 20) -> list[int]:
        """``count`` calls one after another on one connection; latencies in ns."""
        (r,) = self._run([(0, "sequential", {"target": target, "count": count, "warmup": warmup})],
                         timeout=CALL_TIMEOUT_S + count * 0.5)
        return _unpack(r["latencies"])

    def _spread(self, clients: int) -> list[int]:
        return _split(clients, min(clients, self.size))

    def warm(self, target: HttpTarget, clients: int, per_client: int = 3) -> tuple[int, str | None]:
        jobs = [(i, "warm", {"target": target, "concurrency": n, "per_client": per_client})
                for i, n in enumerate(self._spread(clients))]
        results = self._run(jobs, timeout=CALL_TIMEOUT_S * (per_client + 2))
        return (sum(r["errors"] for r in results),
                next((r["first_error"] for r in results if r["first_error"]), None))

    def window(self, target: HttpTarget, clients: int, window_s: float) -> WindowResult:
        """Closed loop: ``clients`` connections calling back to back for ``window_s``."""
        start = time.monotonic() + RAMP_S + 0.05
        end = start + window_s
        jobs = [(i, "window", {"target": target, "concurrency": n, "start": start, "end": end})
                for i, n in enumerate(self._spread(clients))]
        results = self._run(jobs, timeout=window_s + CALL_TIMEOUT_S + 5)
        lat: list[int] = []
        for r in results:
            lat.extend(_unpack(r["latencies"]))
        return WindowResult(
            in_flight=clients, window_s=window_s, completed=sum(r["completed"] for r in results),
            errors=sum(r["errors"] for r in results), latencies_ns=lat,
            first_error=next((r["first_error"] for r in results if r["first_error"]), None),
            sample_response=None)

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def close(self) -> None:
        for conn in self._conns:
            try:
                conn.send(None)
            except OSError:
                pass
        for proc in self._procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for conn in self._conns:
            conn.close()


if __name__ == "__main__":
    _child_main(Connection(int(sys.argv[1])))
