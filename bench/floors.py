"""The two floors fnhost is judged against, measured in the same run.

- gRPC floor: ``bench.echo_server`` in its own process, driven by the same client pool as fnhost.
- worker-hop floor: this process talking straight to a runtime's shim over the worker protocol,
  launched exactly as ``runtimes/<lang>/runtime.toml`` says (fnhost.runtimes builds the argv, and
  builds the code first for compiled runtimes), with blocking reads and writes: the least any
  parent can do per invocation, with no daemon, event loop or gRPC in between.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from array import array
from pathlib import Path

from fnhost import protocol
from fnhost.runtimes import Runtime

from .echo_server import UNARY
from .functions import ROOT, EchoFunction, child_env
from .load import Target

PIPE_SIZE = 1024 * 1024  # what the daemon gives its workers' control pipes (fnhost.worker)


def blob(payload: bytes) -> bytes:
    """``bench.Blob{data=payload}`` serialized by hand (bench/echo.proto), for the floor and ghz."""
    n, varint = len(payload), bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        varint.append(byte | (0x80 if n else 0))
        if not n:
            break
    return b"\x0a" + bytes(varint) + payload


class GrpcFloor:
    """The bare echo server process; ``stop()`` always ends it."""

    def __init__(self, workdir: Path) -> None:
        self.address = f"unix:{workdir / 'floor.sock'}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.echo_server", self.address],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_env(),
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = self.proc.stdout.readline()  # "ready" once it serves; EOF if it died
        if line.strip() != b"ready" or time.monotonic() > deadline:
            self.stop()
            raise RuntimeError("the gRPC floor server did not start")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def target(self, payload: bytes) -> Target:
        return Target("grpc-floor", self.address, UNARY, blob(payload))

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # the server exits at EOF on its stdin
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None


def _set_pipe_size(fd: int) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass


class WorkerHop:
    """One shim process of one runtime, spoken to directly."""

    def __init__(self, runtime: Runtime, fn: EchoFunction, workdir: Path) -> None:
        self.runtime = runtime
        self.fn = fn
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.to_worker = self.from_worker = -1
        self.decoder = protocol.Decoder()
        self.hello: dict[str, object] = {}
        self.spawn_to_ready_ms = 0.0
        self.build_s: float | None = None

    def start(self, timeout: float = 90.0) -> None:
        """Build (compiled runtimes), spawn, HELLO, INIT; raises RuntimeError on any failure."""
        fn, rt = self.fn, self.runtime
        build_dir = fn.code_dir
        if fn.compiled:
            build_dir = self.workdir / f"hop-build-{fn.runtime}"
            scratch = self.workdir / f"hop-scratch-{fn.runtime}"
            build_dir.mkdir()
            scratch.mkdir()
            t0 = time.perf_counter()
            rt.build(fn.code_dir, build_dir, fn.handler, scratch)
            self.build_s = time.perf_counter() - t0
        values = rt.values(code_dir=str(fn.code_dir), build_dir=str(build_dir), handler=fn.handler,
                           memory_mb="128")
        argv, launch_env = rt.launch(values)
        name = f"hop-{fn.runtime}"
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "TZ": ":UTC",
            **launch_env,
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"bench/[$LATEST]{uuid.uuid4().hex}",
            "_HANDLER": fn.handler,
            "LAMBDA_TASK_ROOT": str(fn.code_dir),
            "LAMBDA_RUNTIME_DIR": str(rt.directory),
            "FNHOST_BUILD_DIR": str(build_dir),
        }
        child_in, self.to_worker = os.pipe()
        self.from_worker, child_out = os.pipe()
        for fd in (self.to_worker, self.from_worker):
            _set_pipe_size(fd)
        env[protocol.CONTROL_FDS_ENV] = f"{child_in},{child_out}"
        log = open(self.workdir / f"{name}.log", "ab")
        started = time.perf_counter()
        try:
            self.proc = subprocess.Popen(argv, cwd=fn.code_dir, env=env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, pass_fds=(child_in, child_out),
                                         start_new_session=True)
        finally:
            os.close(child_in)
            os.close(child_out)
            log.close()
        hello = self._read_frame(timeout)
        if hello.kind != protocol.Kind.HELLO:
            raise RuntimeError(f"{fn.runtime}: expected HELLO, got {hello.kind.name}")
        self.hello = protocol.decode_json(hello.body)
        init = {
            "handler": fn.handler, "code_dir": str(fn.code_dir), "build_dir": str(build_dir),
            "function_name": name, "function_version": "$LATEST", "memory_mb": 128, "timeout_s": 60,
            "log_group_name": env["AWS_LAMBDA_LOG_GROUP_NAME"],
            "log_stream_name": env["AWS_LAMBDA_LOG_STREAM_NAME"], "environment": {},
        }
        os.write(self.to_worker, protocol.encode(protocol.Kind.INIT, json.dumps(init).encode()))
        reply = self._read_frame(timeout)
        if reply.kind != protocol.Kind.INIT_OK:
            raise RuntimeError(f"{fn.runtime}: INIT answered {reply.kind.name}: {bytes(reply.body)[:500]!r}")
        self.spawn_to_ready_ms = (time.perf_counter() - started) * 1000

    def _read_frame(self, timeout: float | None = None) -> protocol.Frame:
        if timeout is not None:
            import select

            ready, _, _ = select.select([self.from_worker], [], [], timeout)
            if not ready:
                raise RuntimeError(f"{self.fn.runtime}: no frame from the shim within {timeout:.0f} s")
        while True:
            data = os.read(self.from_worker, PIPE_SIZE)
            if not data:
                raise RuntimeError(f"{self.fn.runtime}: the shim closed its control pipe "
                                   f"(see {self.workdir}/hop-{self.fn.runtime}.log)")
            frames = self.decoder.feed(data)
            if frames:
                return frames[0]  # one invocation in flight: never more than one frame

    def roundtrips(self, payload: bytes, count: int, warmup: int) -> tuple[list[int], bytes]:
        """``count`` INVOKE→RESULT round trips after ``warmup``; latencies in ns, and one result."""
        rid = b"bench-00000000-0000-0000-0000-000000000000"
        frame = protocol.encode_invoke(rid, int(time.time() * 1000) + 3_600_000, payload)
        roundtrip, clock = self.roundtrip, time.perf_counter_ns
        lat = array("q")
        body = b""
        for i in range(warmup + count):
            t0 = clock()
            reply = roundtrip(frame)
            t1 = clock()
            if i >= warmup:
                lat.append(t1 - t0)
            body = reply.body
        if reply.kind != protocol.Kind.RESULT:
            raise RuntimeError(f"{self.fn.runtime}: echo answered {reply.kind.name}: {bytes(body)[:300]!r}")
        return lat.tolist(), protocol.split_reply(body)[1]

    def roundtrip(self, frame: list[bytes]) -> protocol.Frame:
        """One INVOKE out and its reply back, blocking: the least any parent can do per invocation."""
        os.writev(self.to_worker, frame)  # a 1 MiB pipe takes a 64 KiB frame in one write
        return self._read_frame()

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None else []

    def close(self) -> None:
        if self.to_worker >= 0:
            os.close(self.to_worker)  # shims exit at EOF on their input
            self.to_worker = -1
        if self.proc is not None:
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                pass
            if self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)  # it leads its own group
                except ProcessLookupError:
                    pass
                self.proc.wait()
            self.proc = None
        if self.from_worker >= 0:
            os.close(self.from_worker)
            self.from_worker = -1


class LoopHop:
    """A started ``WorkerHop`` driven from an event loop instead: one ``writev``, a reader callback
    and one future per round trip — the least an asyncio daemon can do per invocation."""

    def __init__(self, hop: WorkerHop, loop: asyncio.AbstractEventLoop) -> None:
        self.hop = hop
        self._loop = loop
        self._reply: asyncio.Future[None] | None = None
        os.set_blocking(hop.from_worker, False)
        loop.add_reader(hop.from_worker, self._readable)

    def _readable(self) -> None:
        if self.hop.decoder.feed(os.read(self.hop.from_worker, PIPE_SIZE)) and self._reply is not None:
            self._reply.set_result(None)
            self._reply = None

    async def roundtrip(self, frame: list[bytes]) -> None:
        self._reply = reply = self._loop.create_future()
        os.writev(self.hop.to_worker, frame)
        await reply

    def close(self) -> None:
        self._loop.remove_reader(self.hop.from_worker)
        self.hop.close()
