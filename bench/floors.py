"""The two floors fnhost is judged against, measured in the same run.

- gRPC floor: ``bench.echo_server`` in its own process, driven by the same client pool as fnhost.
- worker-hop floor: this process talking straight to a runtime's shim over the worker protocol,
  started through the daemon's own path (``fnhost.control.worker_specs.compose_worker_spec`` composes
  the argv, environment and INIT frame from ``runtimes/<lang>/runtime.toml``, after a build for
  compiled runtimes; ``fnhost.execution.spawn.spawn`` starts it), then spoken to with blocking
  reads and writes: the least any parent can do per invocation, with no daemon, event loop or
  gRPC in between.
"""

from __future__ import annotations

import asyncio
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from array import array
from pathlib import Path

from fnhost.control.worker_specs import compose_worker_spec
from fnhost.control.runtimes import Runtime
from fnhost.execution import protocol
from fnhost.execution.spawn import PIPE_SIZE, Spawned, spawn

from .echo_server import UNARY
from .functions import ROOT, EchoFunction, child_env
from .load import Target


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
        self.log_path = workdir / f"hop-{fn.runtime}.log"
        self._spawned: Spawned | None = None
        self._drain: threading.Thread | None = None

    def start(self, timeout: float = 90.0) -> None:
        """Build (compiled runtimes), spawn, HELLO, INIT; raises RuntimeError on any failure."""
        fn, rt = self.fn, self.runtime
        build_dir = fn.code_dir
        if fn.compiled:
            build_dir = self.workdir / f"hop-build-{fn.runtime}"
            scratch = self.workdir / f"hop-scratch-{fn.runtime}"
            build_dir.mkdir(exist_ok=True)
            scratch.mkdir(exist_ok=True)
            if not (build_dir / ".hop-built").exists():  # several hops of one runtime share a build
                t0 = time.perf_counter()
                rt.build(fn.code_dir, build_dir, fn.handler, scratch)
                self.build_s = time.perf_counter() - t0
                (build_dir / ".hop-built").touch()
        scratch_root = self.workdir / "hop-workers"
        scratch_root.mkdir(mode=0o711, exist_ok=True)
        # The daemon's own composition and spawn: same argv, environment, INIT frame, pipes (1 MiB
        # control pipes, stdout/stderr captured) and process group as a worker fnhost starts; only
        # the identity is this process's own.
        spec = compose_worker_spec(
            rt, name=f"hop-{fn.runtime}", handler=fn.handler, code_dir=fn.code_dir, build_dir=build_dir,
            memory_mb=128, timeout_s=60, environment={}, identity=None, scratch_root=scratch_root,
            init_timeout_s=timeout, kill_grace_s=0.5)
        started = time.perf_counter()
        try:
            self._spawned = spawned = spawn(spec)
        except OSError as exc:
            raise RuntimeError(f"{fn.runtime}: could not start the shim: {exc}") from exc
        self.proc, self.to_worker, self.from_worker = spawned.proc, spawned.to_worker, spawned.from_worker
        # spawn() leaves the control pipes non-blocking for an event loop; this hop blocks on them.
        os.set_blocking(self.to_worker, True)
        os.set_blocking(self.from_worker, True)
        self._drain = threading.Thread(target=_drain_output, args=((spawned.stdout, spawned.stderr), self.log_path),
                                       name=f"hop-{fn.runtime}-output", daemon=True)
        self._drain.start()
        hello = self._read_frame(timeout)
        if hello.kind != protocol.Kind.HELLO:
            raise RuntimeError(f"{fn.runtime}: expected HELLO, got {hello.kind.name}")
        self.hello = protocol.decode_json(hello.body)
        os.write(self.to_worker, spec.init_frame)
        reply = self._read_frame(timeout)
        if reply.kind != protocol.Kind.INIT_OK:
            raise RuntimeError(f"{fn.runtime}: INIT answered {reply.kind.name}: {bytes(reply.body)[:500]!r}")
        self.spawn_to_ready_ms = (time.perf_counter() - started) * 1000

    def _read_frame(self, timeout: float | None = None) -> protocol.Frame:
        if timeout is not None:
            ready, _, _ = select.select([self.from_worker], [], [], timeout)
            if not ready:
                raise RuntimeError(f"{self.fn.runtime}: no frame from the shim within {timeout:.0f} s")
        while True:
            data = os.read(self.from_worker, PIPE_SIZE)
            if not data:
                raise RuntimeError(f"{self.fn.runtime}: the shim closed its control pipe (see {self.log_path})")
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
        if self._drain is not None:
            self._drain.join(5)  # EOF on both once the shim's whole group is gone
            self._drain = None
        if self._spawned is not None:
            if self._spawned.scratch is not None:
                shutil.rmtree(self._spawned.scratch, ignore_errors=True)
            self._spawned = None


def _drain_output(fds: tuple[int, ...], log_path: Path) -> None:
    """Copy a shim's stdout and stderr to its log until both close, then close them.

    Off the measured path: an echo writes nothing, so this thread sleeps in ``select``; without
    it a chatty shim would fill the pipe and stall.
    """
    open_fds = list(fds)
    try:
        with open(log_path, "ab") as log:
            while open_fds:
                ready, _, _ = select.select(open_fds, [], [])
                for fd in ready:
                    data = os.read(fd, 65536)
                    if data:
                        log.write(data)
                        log.flush()
                    else:
                        open_fds.remove(fd)
    except OSError:
        pass
    finally:
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass


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
