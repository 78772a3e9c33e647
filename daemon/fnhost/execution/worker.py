"""One worker process: spawn, handshake, invoke, kill — and its state machine.

I/O is callback-driven on the event loop (``add_reader`` on the control pipe in ``Channel``, on
the log pipes and on a pidfd), so an idle worker costs no task and an invocation costs one future.
Only the task that holds the worker (the pool while IDLE, the invoking request while BUSY) changes
its state; the callbacks only record what happened and wake that task — except for a worker that
breaks the protocol (``protocol.Inbox`` says what it may send when): the channel reports it, and
the worker is killed and moved to STOPPING at once, so the pool can never hand it out again, and
nothing it sent is kept.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import anyio
import structlog

from ..errors import (
    ForkLost,
    FunctionError,
    InitError,
    OutOfMemory,
    RuntimeExit,
    SandboxTimeout,
    WorkerProtocolError,
)
from . import isolation, protocol
from .channel import Channel
from .limits import MemoryBackend
from .logcapture import LogCapture
from .spawn import WorkerSpec, describe_exit, start_process
from .states import IllegalTransition, State
from .worker_limits import WorkerLimits
from .zygote import Forked, ZygoteUnavailable
from .zygotes import Zygotes

log = structlog.get_logger("fnhost.worker")

STDERR_TAIL = 2048

_RESULT = protocol.Kind.RESULT


class _DeadlinePassed(Exception):
    """The invocation's timer fired while its reply was awaited (internal to Worker.invoke)."""


@dataclass(slots=True)
class Reply:
    """What the worker answered to one invocation (when it answered at all)."""

    ok: bool  # RESULT (True) or ERROR (False)
    body: bytes
    duration_ms: float
    peak_bytes: int
    log: bytes


class Worker:
    """A worker process and the protocol conversation with it."""

    def __init__(self, spec: WorkerSpec, generation: int, on_dead: Callable[[Worker], None],
                 observe: Callable[[Worker, State | None, State], None]) -> None:
        self.spec = spec
        self.generation = generation
        self.state = State.STARTING
        # The worker (the shim) on the host; in namespaces not the process started (_leader: bubblewrap).
        self.pid = self._leader = 0
        self.init_duration_ms = 0.0
        self.invocations = 0
        self.last_used = time.monotonic()
        self.returncode: int | None = None
        self.memory: WorkerLimits | None = None
        self.killed_for: type[FunctionError] | None = None
        self._protocol_error = ""
        self.final_peak = 0
        self._on_dead = on_dead
        self._observe = observe
        self._loop = asyncio.get_running_loop()
        self._encode_invoke = protocol.encode_invoke  # the INVOKE of the version its HELLO gave
        self._exited = asyncio.Event()
        self._channel = Channel(self._loop, self._exited, self._exit_error, self._violation)
        self._pidfd = -1
        self._logs: LogCapture | None = None
        self._proc: subprocess.Popen[bytes] | Forked | None = None
        self._has_init = False  # the process started leads a pid namespace: the worker is below it
        self.forked = False  # by a zygote, not spawned
        self.protocol_version = 0  # what its HELLO said
        self._scratch: Path | None = None
        self._init_rest: list[bytes] | None = None  # INIT written ahead of HELLO: what is left of it
        observe(self, None, State.STARTING)

    @property
    def scratch(self) -> Path | None:
        """Its private directory (TMPDIR and HOME) outside a mount namespace; None: none or /tmp."""
        return self._scratch

    @property
    def leader(self) -> int:
        """The process the daemon started and watches: the worker, or the init above it."""
        return self._leader

    # --- state machine ------------------------------------------------------------------------

    def _set(self, new: State) -> None:
        old = self.state
        if new not in old.allowed:  # type: ignore[attr-defined]
            raise IllegalTransition(f"worker {self.pid}: {old.value} -> {new.value}")
        self.state = new
        self._observe(self, old, new)

    # --- start --------------------------------------------------------------------------------

    async def start(self, backend: MemoryBackend, zygotes: Zygotes | None = None) -> None:
        """Spawn (or fork from the spec's zygote), then HELLO and INIT within the init timeout.

        Raises InitError, RuntimeExit, WorkerProtocolError (HELLO or INIT's reply was not what
        the protocol says: the worker was killed).
        """
        started = time.perf_counter()
        deadline = anyio.current_time() + self.spec.init_timeout_s
        await self.launch(backend, zygotes, deadline=deadline, init=self.spec.init_frame)
        await self._initialise(self.spec.init_frame, started, deadline)

    async def launch(self, backend: MemoryBackend, zygotes: Zygotes | None = None, *,
                     deadline: float | None = None, forked_only: bool = False, init: bytes | None = None) -> int:
        """Start the process and read its HELLO by ``deadline`` (anyio's clock; default: the
        init timeout from now); the protocol version HELLO gave. A stem cell stops here until
        ``specialise``. ``forked_only``: raise ZygoteUnavailable rather than spawn.

        ``init``: the INIT frame, written as soon as the process exists rather than after its
        HELLO (every shim reads INIT after it has sent HELLO, and the pipe holds it until then):
        the round trip through the daemon's event loop between the two is off the cold start.
        HELLO is still checked first; a worker whose HELLO is refused is killed unread."""
        spec = self.spec
        if deadline is None:
            deadline = anyio.current_time() + spec.init_timeout_s
        try:
            spawned, limits = await start_process(spec, backend, zygotes, forked_only=forked_only)
        except (OSError, ZygoteUnavailable) as exc:
            # No process: nothing will ever exit, so the worker's death is reported here.
            self._exited.set()
            self._set(State.DEAD)
            self._on_dead(self)
            if isinstance(exc, ZygoteUnavailable):
                raise
            if not os.path.isdir(spec.cwd):
                raise RuntimeExit(f"cannot start the worker: its code directory {spec.cwd} is gone") from exc
            raise RuntimeExit(f"cannot start the worker {spec.argv[0]}: {exc.strerror}") from exc
        self._proc = spawned.proc
        self._has_init = spawned.has_init
        self.forked = isinstance(spawned.proc, Forked)
        self._scratch = spawned.scratch
        channel = self._channel
        channel.attach(spawned.to_worker, spawned.from_worker)
        self.pid = self._leader = self._proc.pid
        self._logs = LogCapture(spec.function, spawned.stdout, spawned.stderr, self._loop, spec.log_max_bytes)
        if limits is not None:
            self.memory = limits
            limits.started(self._leader, self.kill_for_memory)  # its tree: bubblewrap's, in namespaces
        channel.inbox.expect = protocol.EXPECT_HELLO
        if init is not None:
            channel.inbox.then = protocol.EXPECT_INIT_REPLY
            try:
                self._init_rest = channel.send_now([init])
            except OSError:  # EPIPE: it is gone already; its exit says why, after HELLO's wait
                self._init_rest = []
        self._pidfd = os.pidfd_open(self._leader)
        self._loop.add_reader(self._pidfd, self._on_exit)
        try:
            with anyio.fail_after(max(0.0, deadline - anyio.current_time())):
                try:
                    hello = await channel.receive()
                except RuntimeExit as exc:
                    if self.forked and self.returncode is not None and (self.returncode > 128 or self.returncode < 0):
                        # A signal before HELLO: no function code ran (specialisation had not
                        # ended); a failure to specialise exits 125 and is reported as it is.
                        raise ForkLost(exc.message) from exc
                    raise
                version = protocol.parse_hello(hello.body)["protocol"]
        except BaseException as exc:
            await self._handshake_failed(exc)
        if self._has_init:  # the shim's host pid (HELLO's "pid" is the namespace's 2)
            self.pid = isolation.worker_pid(self._leader, spec.view is not None) or self._leader
            if self.memory is not None and self.pid != self._leader:
                self.memory.measure(self.pid)  # VmHWM: the shim's, not bubblewrap's
        self._encode_invoke = protocol.INVOKE_ENCODERS[version]
        if version < protocol.CONTEXT_VERSION:  # built before an upgrade: redeploy to rebuild
            log.warning("worker_protocol_outdated", function=spec.function, protocol=version)
        self.protocol_version = version
        return version

    def adopt(self, spec: WorkerSpec, generation: int, on_dead: Callable[[Worker], None],
              observe: Callable[[Worker, State | None, State], None]) -> None:
        """This stem cell (launched, waiting) now belongs to ``spec``'s pool; ``specialise`` next."""
        self.spec, self.generation, self._on_dead, self._observe = spec, generation, on_dead, observe
        observe(self, None, State.STARTING)
        if self._logs is not None:
            self._logs.function = spec.function
        if self.memory is not None and spec.identity is not None:
            self.memory.adopt(spec.identity)

    async def specialise(self, frame: bytes, prepare: Callable[[Worker], Awaitable[None]]) -> None:
        """Give this stem cell its function: ``prepare`` (binds its code into the cell's view),
        then SPECIALISE, within the init timeout. Raises what ``start`` raises; ForkLost when
        the cell was lost or could not be prepared before any of the function ran."""
        started = time.perf_counter()
        deadline = anyio.current_time() + self.spec.init_timeout_s
        try:
            await prepare(self)
        except (OSError, ZygoteUnavailable) as exc:
            await self._kill_and_reap()
            raise ForkLost(f"the stem cell could not be prepared: {exc}") from exc
        if self.state is not State.STARTING or self._exited.is_set():
            await self._kill_and_reap()
            raise ForkLost("the stem cell died before it got its function")
        await self._initialise(frame, started, deadline)

    async def _initialise(self, frame: bytes, started: float, deadline: float) -> None:
        """Send INIT (or SPECIALISE), or what is left of it after ``launch``, and take the
        answer by ``deadline``; IDLE on INIT_OK."""
        try:
            with anyio.fail_after(max(0.0, deadline - anyio.current_time())):
                parts, self._init_rest = self._init_rest, None
                if parts is None:  # not written ahead of HELLO (a stem cell's SPECIALISE)
                    self._channel.inbox.expect = protocol.EXPECT_INIT_REPLY
                    parts = [frame]
                if parts:
                    await self._channel.send(parts)
                reply = await self._channel.receive()
                if reply.kind is protocol.Kind.INIT_OK:
                    protocol.parse_init_ok(reply.body)
                    error = None
                else:
                    error = protocol.parse_init_error(reply.body)
        except BaseException as exc:
            await self._handshake_failed(exc)
        if error is not None:
            if self.state is State.STARTING:  # it may already have exited, as shims do after INIT_ERROR
                self._set(State.FAILED)
            await self._kill_and_reap()
            raise InitError(*error)
        if self._exited.is_set() or self.killed_for is not None:
            # INIT_OK, then it died, or sent more than INIT_OK, before we got to read it.
            await self._kill_and_reap()
            raise self._exit_error()
        self.init_duration_ms = (time.perf_counter() - started) * 1000
        if self.memory is not None:
            self.memory.init_done()  # from the start-up allowance to the function's CPU share
        self._logs.flush_init()
        self._set(State.IDLE)

    async def _handshake_failed(self, exc: BaseException) -> NoReturn:
        """Raise what HELLO or INIT's failure ``exc`` becomes, the worker killed and reaped first."""
        if isinstance(exc, protocol.ProtocolError):  # a body that the callback could not judge alone
            self._violation(str(exc))
            await self._kill_and_reap()
            raise self._exit_error() from exc
        if isinstance(exc, TimeoutError):
            await self._kill_and_reap()
            raise InitError(
                "Runtime.InitError",
                f"init did not finish within {self.spec.init_timeout_s:.2f} seconds; the worker was stopped",
            ) from None
        if isinstance(exc, FunctionError):
            await self._kill_and_reap()
        raise exc

    # --- invoke -------------------------------------------------------------------------------

    def claim(self) -> None:
        self._set(State.BUSY)

    def release(self) -> None:
        self.last_used = time.monotonic()
        self._set(State.IDLE)

    async def invoke(self, request_id: str, payload: bytes, timeout_s: float, context: bytes = b"") -> Reply:
        """Run one invocation on a BUSY worker; ``context``: its context JSON (``protocol.encode_context``).

        Raises SandboxTimeout, OutOfMemory, RuntimeExit, WorkerProtocolError.
        """
        logs = self._logs
        assert logs is not None
        logs.begin(request_id)
        if self.state is not State.BUSY:
            # It broke the protocol after it was handed to this caller (in the pool's checkpoint
            # before an invoke): the killed worker answers for it.
            await self._exited.wait()
            raise self._exit_error()
        rid = request_id.encode()
        deadline_ms = int(time.time() * 1000 + timeout_s * 1000)
        channel = self._channel
        channel.inbox.expect_reply(rid)  # before the write: the reply may race the rest of the payload
        started = time.perf_counter()
        self.invocations += 1
        timed_out = False
        try:
            try:
                rest = channel.send_now(self._encode_invoke(rid, deadline_ms, payload, context))
            except OSError:  # EPIPE: the worker is gone; its exit says why
                rest = [b""]
            if rest:
                # A payload bigger than the pipe, or a worker that is not reading: the slow path.
                with anyio.move_on_after(timeout_s) as scope:
                    await channel.send(rest)
                    frame = await channel.receive()
                timed_out = scope.cancelled_caught
            else:
                # The common case costs one timer handle instead of a cancel scope.
                deadline = self._loop.call_later(timeout_s, self._on_deadline)
                try:
                    frame = await channel.receive()
                except _DeadlinePassed:
                    timed_out = True
                finally:
                    deadline.cancel()
        except FunctionError:
            self._check_memory_kill()
            raise
        except BaseException:
            # The caller went away mid-invocation (client cancelled, stream closed): the worker
            # would later send this invocation's reply to the next caller. It cannot be reused.
            channel.inbox.expect = protocol.EXPECT_NOTHING
            if self.state is State.BUSY:
                self._set(State.STOPPING)
                self._signal_group(signal.SIGKILL)
            raise
        finally:
            duration_ms = (time.perf_counter() - started) * 1000
        if timed_out:
            channel.inbox.expect = protocol.EXPECT_NOTHING  # a late reply is refused: it is being stopped
            self.killed_for = SandboxTimeout
            await self.stop(signal.SIGTERM)
            raise SandboxTimeout(f"Task timed out after {timeout_s:.2f} seconds")
        # The inbox checked kind, size and request id: the reply is this invocation's own. A frame
        # after it (even in the same read) stopped the worker, but this answer stands.
        return Reply(
            ok=frame.kind is _RESULT,
            body=bytes(frame.body[1 + len(rid) :]),
            duration_ms=duration_ms,
            peak_bytes=self.peak_bytes(),  # it may be dead already: peak_bytes() knows
            log=logs.end(),
        )

    def peak_bytes(self) -> int:
        """The worker's memory high-water mark, also after it died (read just before)."""
        if self.state is State.DEAD or self.memory is None:
            return self.final_peak
        return self.memory.peak_bytes()

    def invocation_log(self) -> bytes:
        """What the current (failed) invocation printed before it ended."""
        return self._logs.end() if self._logs is not None else b""

    def _check_memory_kill(self) -> None:
        if self.killed_for is OutOfMemory:
            limit_mb = self.spec.memory_limit_bytes // (1024 * 1024)
            raise OutOfMemory(
                f"worker exceeded the function's memory limit of {limit_mb} MB and was killed"
            )

    def kill_for_memory(self) -> None:
        """Called by the sampler when the tree is over its limit (psutil backend)."""
        self.killed_for = OutOfMemory
        if self.state is State.IDLE:
            # Out of the pool at once (its escaped child grew while it waited): the exit is seen
            # a moment later, and an invocation handed the dead worker meanwhile would fail as
            # out of memory for memory it never used.
            self._set(State.STOPPING)
        self._signal_group(signal.SIGKILL)

    def _on_deadline(self) -> None:
        self._channel.interrupt(_DeadlinePassed())

    # --- death --------------------------------------------------------------------------------

    def _violation(self, reason: str) -> None:
        """The worker broke the protocol: stop reading, kill its group, STOPPING (never handed out
        again). A task awaiting a frame raises WorkerProtocolError once the exit is seen."""
        self._channel.refuse_all()
        if self.state in (State.STOPPING, State.DEAD, State.FAILED):
            return  # already on its way out; what it writes now does not matter
        log.error("worker_protocol_error", function=self.spec.function, pid=self.pid,
                  state=self.state.value, error=reason)
        if self.killed_for is None:
            self.killed_for = WorkerProtocolError
            self._protocol_error = f"while {self.state.value}: {reason}"
        self._signal_group(signal.SIGKILL)
        self._set(State.STOPPING)

    def _on_exit(self) -> None:
        if self._pidfd < 0:
            return  # queued before _finish() closed it
        self._loop.remove_reader(self._pidfd)
        # Descendants may outlive the leader; the group dies with it. The leader is not reaped
        # yet, so its pid (the group id) cannot have been reused.
        self._signal_group(signal.SIGKILL)
        assert self._proc is not None
        self.returncode = self._proc.wait()
        # Read the OOM verdict and the peak now: _finish() releases the cgroup that holds them.
        if self.memory is not None:
            self.final_peak = self.memory.peak_bytes()
            if self.killed_for is None and self.memory.oom_killed():
                self.killed_for = OutOfMemory
        if self._logs is not None:
            self._logs.drain()
        self._exited.set()
        self._channel.wake()
        if self.state is not State.DEAD:
            self._finish()

    def _exit_error(self) -> FunctionError:
        self._check_memory_kill()
        if self.killed_for is WorkerProtocolError:
            return WorkerProtocolError(
                f"the worker broke the worker protocol and was killed {self._protocol_error} "
                "(only the runtime's shim may write to its control pipe, one frame when asked)")
        code = self.returncode if self.returncode is not None else -signal.SIGKILL
        tail = self._logs.stderr_tail(STDERR_TAIL) if self._logs else ""
        message = f"Runtime exited with error: {describe_exit(code, self._has_init)}"
        return RuntimeExit(f"{message}\n{tail}" if tail else message)

    def _signal_group(self, sig: int) -> None:
        if self._leader and self.returncode is None:
            try:
                os.killpg(self._leader, sig)
            except (ProcessLookupError, PermissionError):
                pass

    # --- stop ---------------------------------------------------------------------------------

    async def stop(self, sig: int | None = None) -> None:
        """Stop the worker: EOF on its control pipe (or ``sig``), a grace period, then SIGKILL."""
        if self.state in (State.STOPPING, State.DEAD):
            await self._exited.wait()
            return
        self._set(State.STOPPING)
        await self._kill_and_reap(sig)

    async def _kill_and_reap(self, sig: int | None = None) -> None:
        if self._proc is None:
            return
        self._channel.hang_up()
        if sig is not None:
            self._signal_group(sig)
        if self._pidfd < 0:  # spawned but never watched
            self._signal_group(signal.SIGKILL)
            self.returncode = self._proc.wait()
            if self.state is not State.DEAD:
                self._finish()
            return
        with anyio.move_on_after(self.spec.kill_grace_s):
            await self._exited.wait()
        if not self._exited.is_set():
            self._signal_group(signal.SIGKILL)
            await self._exited.wait()

    def _finish(self) -> None:
        self._channel.close()
        if self._pidfd >= 0:
            try:
                self._loop.remove_reader(self._pidfd)
            except (ValueError, OSError):
                pass
            os.close(self._pidfd)
            self._pidfd = -1
        if self._logs is not None:
            self._logs.close()
        if self.memory is not None:
            self.memory.close()
        if self._scratch is not None:
            # In a thread: a function can leave a million files in its TMPDIR, and removing
            # them here would stall every other function's invocations for seconds.
            self._loop.run_in_executor(None, shutil.rmtree, self._scratch, True)
        self._set(State.DEAD)
        self._on_dead(self)

    def __repr__(self) -> str:
        return f"<Worker {self.spec.function} pid={self.pid} {self.state.value}>"

