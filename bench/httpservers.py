"""Which HTTP server to put fnhost's Lambda API on: ``python -m bench.httpservers``.

Each candidate serves the same raw echo (a POST's body back, 200, ``application/json``) on uvloop,
in a process of its own, and is driven by the same keep-alive ``http.client`` client
(``httpload.py``):

- ``uvicorn``: uvicorn with its httptools protocol, a raw ASGI app, access log and lifespan off;
- ``aiohttp``: aiohttp's low-level server (``aiohttp.web.Server``, no router or application);
- ``bare``: an ``asyncio.Protocol`` on the httptools parser, writing the answer itself — the
  floor of any server on this loop and parser, not a candidate (we will not hand-roll a server);
- ``bare-split`` (only when asked for, ``--kinds``): the same, writing the head and the body in two
  sends as uvicorn's protocols do — what that second send costs.

Per repetition, interleaved so outside load lands on all alike: sequential p50/p99 (``--calls``,
100 B), then requests/s and p99 with ``--clients`` connections spread over ``--procs`` client
processes for ``--seconds``. Ratios are taken per repetition against ``bare``. Writes
``<out>/<date>-vm-httpservers.{md,json}``; nothing is asserted.
A server alone is ``python -m bench.httpservers serve KIND``: it binds 127.0.0.1:0, prints its
port and serves until its stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from .functions import ROOT, child_env, json_payload
from .httpload import HttpPool, HttpTarget
from .machine import LoadMonitor
from .report_http import markdown_table, ratio_rows, series_summary, today, write_report

KINDS = ("uvicorn", "aiohttp", "bare")


# --- the servers (child process) ----------------------------------------------------------------


async def _asgi_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _serve_uvicorn(sock: socket.socket) -> None:
    import uvicorn

    config = uvicorn.Config(_asgi_echo, loop="none", http="httptools", access_log=False,
                            lifespan="off", log_level="warning")
    await uvicorn.Server(config).serve(sockets=[sock])


async def _serve_aiohttp(sock: socket.socket) -> None:
    from aiohttp import web

    async def echo(request: web.BaseRequest) -> web.Response:
        return web.Response(body=await request.read(), content_type="application/json")

    server = web.Server(echo, access_log=None)
    await asyncio.get_running_loop().create_server(server, sock=sock)
    await asyncio.Event().wait()


class _BareEcho(asyncio.Protocol):
    """HTTP/1.1 keep-alive echo straight on httptools' callbacks (no pipelining concerns: the
    client sends one request at a time per connection)."""

    def __init__(self) -> None:
        import httptools

        self.parser = httptools.HttpRequestParser(self)
        self.body: list[bytes] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    split = False  # write the head and the body apart (two send syscalls), as uvicorn does

    def on_message_complete(self) -> None:
        body = b"".join(self.body)
        self.body.clear()
        assert self.transport is not None
        head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode() + b"\r\n\r\n")
        if self.split:
            self.transport.write(head)
            self.transport.write(body)
        else:
            self.transport.write(head + body)


class _BareSplitEcho(_BareEcho):
    split = True


async def _serve_bare(sock: socket.socket, protocol: type[_BareEcho] = _BareEcho) -> None:
    await asyncio.get_running_loop().create_server(protocol, sock=sock)
    await asyncio.Event().wait()


async def _serve_bare_split(sock: socket.socket) -> None:
    await _serve_bare(sock, _BareSplitEcho)


_SERVERS = {"uvicorn": _serve_uvicorn, "aiohttp": _serve_aiohttp, "bare": _serve_bare,
            "bare-split": _serve_bare_split}


def _serve_main(kind: str) -> None:
    import uvloop

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    print(sock.getsockname()[1], flush=True)
    # Exit when the parent closes our stdin (or dies): no server outlives its bench.
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    uvloop.run(_SERVERS[kind](sock))


# --- the parent's side --------------------------------------------------------------------------


class ServerProcess:
    """``python -m bench.httpservers serve KIND``, started and stopped by PID."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.httpservers", "serve", kind],
                                     cwd=ROOT, env=child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip():
            self.stop()
            raise RuntimeError(f"the {kind} server did not start (exit status {self.proc.returncode})")
        self.port = int(line)

    def stop(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def measure(kinds: tuple[str, ...], reps: int, calls: int, clients: int, procs: int, seconds: float,
            size: int = 100) -> dict[str, Any]:
    """{kind: {"sequential": [[ns…] per rep], "throughput": [rps…], "window_latencies": [[ns…]],
    "errors": n}}; every server runs the whole time, measured in turn within each repetition."""
    payload = json_payload(size)
    servers = {k: ServerProcess(k) for k in kinds}
    raw: dict[str, Any] = {k: {"sequential": [], "throughput": [], "window_latencies": [], "errors": 0,
                               "first_error": None} for k in kinds}
    try:
        with HttpPool(procs, str(ROOT), child_env()) as pool:
            targets = {k: HttpTarget(k, "127.0.0.1", s.port, "/echo", payload, expect=payload)
                       for k, s in servers.items()}
            for k, t in targets.items():
                pool.warm(t, clients)
            for rep in range(reps):
                order = kinds if rep % 2 == 0 else tuple(reversed(kinds))  # no server always goes first
                for k in order:
                    raw[k]["sequential"].append(pool.sequential(targets[k], calls))
                for k in order:
                    w = pool.window(targets[k], clients, seconds)
                    raw[k]["throughput"].append(w.throughput)
                    raw[k]["window_latencies"].append(w.latencies_ns)
                    raw[k]["errors"] += w.errors
                    raw[k]["first_error"] = raw[k]["first_error"] or w.first_error
    finally:
        for s in servers.values():
            s.stop()
    return raw


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("uvicorn", "httptools", "uvloop", "aiohttp"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "missing"
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        _serve_main(argv[1])
        return 0
    p = argparse.ArgumentParser(prog="python -m bench.httpservers", description=__doc__.split("\n\n")[0])
    p.add_argument("--kinds", default=",".join(KINDS))
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--procs", type=int, default=4)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--name", default="", help="file name stem (default <date>-vm-httpservers)")
    a = p.parse_args(argv)
    kinds = tuple(a.kinds.split(","))
    monitor = LoadMonitor()
    monitor.mark("start")
    raw = measure(kinds, a.reps, a.calls, a.clients, a.procs, a.seconds)
    monitor.mark("run")
    outside = monitor.summary()
    summary = {k: series_summary(v) for k, v in raw.items()}
    base = "bare" if "bare" in kinds else kinds[0]
    ratios = ratio_rows(raw, base)
    params = {"reps": a.reps, "calls": a.calls, "clients": a.clients, "procs": a.procs, "seconds": a.seconds,
              "payload_bytes": 100, "versions": _versions(), "outside_load": outside}
    md = [f"# HTTP servers for fnhost's Lambda API ({today()}, `python -m bench.httpservers`)", "",
          f"Raw 100 B POST echo on uvloop, each server in its own process; the same keep-alive `http.client` "
          f"client; {a.reps} repetitions interleaved; sequential {a.calls} calls; throughput with "
          f"{a.clients} clients over {a.procs} client processes for {a.seconds:g} s. Versions: "
          + ", ".join(f"{k} {v}" for k, v in params["versions"].items()) + ". Other processes took "
          f"{outside['whole_run']['outside_share'] * 100:.0f} % of the machine meanwhile (load average "
          f"{outside['loadavg_before'][0]:.1f} → {outside['loadavg_after'][0]:.1f}).", "",
          markdown_table(summary), "", f"Ratios to `{base}`, per repetition (median, range):", "",
          *ratios["markdown"], ""]
    stem = a.name or f"{today()}-vm-httpservers"
    write_report(a.out, stem, {"params": params, "summary": summary, "ratios": ratios["values"]}, "\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
