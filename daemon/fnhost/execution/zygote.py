"""Zygotes: warm interpreters that fork workers instead of starting them.

A runtime whose descriptor has a ``[zygote]`` table (Python's: runtimes/python/zygote.py) gets
one long-lived process per interpreter and start-up environment, started as the daemon's user
with the shim already imported. A new worker of a function that matches it is a fork of it,
specialised there, before any of the function's code loads, exactly as a spawned worker is set up
(control groups, namespaces and view, rlimits, umask, uid and gid, capabilities, environment,
working directory); the zygote's docstring says how. A fork costs a few hundred microseconds where
a spawn costs an interpreter's start-up, and shares every page the worker does not write.

What the daemon gets back is the pid of the worker's *init* (the first process of its pid
namespace, as bubblewrap's is for a spawned worker): it watches it with a pidfd, signals its
process group, and reads how the worker ended from a status pipe, because the process is the
zygote's child, not the daemon's. The zygote keeps it unreaped (so its pid, which is also its
process group's id, cannot be reused) until the daemon says ``reap``.

A zygote starts with the environment variables the interpreter reads only as it starts
(``startup_env`` in the descriptor: ``PYTHONPATH``, ``LD_PRELOAD``, a locale...) as the daemon
sets them, and never as a function chose them: it runs as root (control/worker_specs.py's
``unsafe_startup``; such a function's workers are exec'd by a spare). A key differs only in
what the daemon chose (a layered function's ``LD_LIBRARY_PATH=/opt/lib``); past MAX_ZYGOTES of
them, workers are spawned (the log says so). So is every worker while its zygote is unavailable.
A zygote that dies is started again at the next fork; the worker being forked then is spawned
instead, so no invocation waits on it.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import structlog

from .limits import MemoryBackend
from .spare import AHEAD_AFTER_S, HeldSpare, SpareLost, receive_with_fds

log = structlog.get_logger("fnhost.zygote")

START_TIMEOUT_S = 30.0  # a cold interpreter on a saturated host; the zygote says "ready" when warm
FORK_TIMEOUT_S = 10.0  # a fork answers in about a millisecond: this only catches a stuck zygote
MAX_ZYGOTES = 4  # distinct interpreter start-ups kept warm; past that, functions are spawned
REFUSALS = 3  # forks in a row it could not specialise: it is not used again until a reload


class ZygoteUnavailable(Exception):
    """This fork cannot be had from the zygote now (the worker is spawned instead)."""


@dataclass(frozen=True, slots=True)
class ZygoteKey:
    """Which zygote can fork a worker: the same program, directory and start-up environment."""

    runtime: str
    argv: tuple[str, ...]
    cwd: str  # the runtime's directory: the zygote's program, and init.c if it has one
    env: tuple[tuple[str, str], ...]  # the variables the interpreter reads as it starts, sorted
    cache_dir: str = ""  # where init.c is compiled to, once per host; "": no cache, no fnhost-init

    def describe(self) -> str:
        return " ".join(self.argv)


def startup_env(env: dict[str, str], patterns: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in env.items() if any(fnmatch.fnmatchcase(k, p) for p in patterns)))


def key_for(runtime: str, argv: list[str], cwd: str, env: dict[str, str], patterns: tuple[str, ...],
            cache_dir: str = "") -> ZygoteKey:
    return ZygoteKey(runtime, tuple(argv), cwd, startup_env(env, patterns), cache_dir)


def init_binary(key: ZygoteKey) -> str:
    """fnhost-init built from the runtime's ``init.c`` into the cache (once per host and source),
    or "" when there is no source, no cache or no C compiler (the zygote's Python init stands in:
    a megabyte more per worker). Blocking: a compile is a fraction of a second."""
    source = Path(key.cwd) / "init.c"
    compiler = shutil.which("cc") or shutil.which("gcc")
    if not key.cache_dir or not source.is_file() or compiler is None:
        return ""
    text = source.read_bytes()
    target = Path(key.cache_dir) / f"fnhost-init-{hashlib.sha256(text).hexdigest()[:16]}"
    if os.access(target, os.X_OK):
        return str(target)
    target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
    for static in (["-static"], []):  # static: a few pages per init; glibc's static archive may be missing
        done = subprocess.run([compiler, "-O2", *static, "-o", str(partial), str(source)], capture_output=True,
                              timeout=120)
        if done.returncode == 0:
            os.chmod(partial, 0o755)
            os.replace(partial, target)
            return str(target)
    log.warning("zygote_init_not_built", source=str(source), compiler=compiler,
                error=done.stderr.decode(errors="replace")[-500:], note="the Python init stands in")
    return ""


@dataclass(slots=True)
class ZygoteStats:
    key: ZygoteKey
    pid: int
    forks: int
    failures: int
    restarts: int
    uss_bytes: int


class Forked:
    """A worker the zygote forked, as the daemon sees it: its init's pid and how it ended.

    Duck-types the two things Worker uses of a Popen: ``pid`` and ``wait()``.
    """

    def __init__(self, pid: int, status_r: int, zygote: Zygote) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._status_r = status_r
        self._zygote = zygote
        self._process = zygote.process

    def wait(self) -> int:
        """How the worker ended (its init has exited: the pidfd said so, or it was SIGKILLed)."""
        if self.returncode is None:
            data = os.read(self._status_r, 1)  # EOF once init has exited; one byte if it reported
            os.close(self._status_r)
            # No report: the init itself was killed (SIGKILL to its group), as bubblewrap's would be.
            self.returncode = data[0] if data else -signal.SIGKILL
            self._zygote.reap(self._process, self.pid)
        return self.returncode


class Zygote:
    """One zygote process; forks are one at a time (the zygote is single-threaded)."""

    def __init__(self, key: ZygoteKey, lifeline: int, namespaced: bool, groups: MemoryBackend | None = None) -> None:
        self.key = key
        self._lifeline = lifeline
        self._namespaced = namespaced  # the kind of worker to keep a spare of from the start
        self._lock = threading.Lock()  # starting and stopping (threads)
        self._forking = asyncio.Lock()  # one fork at a time (the event loop)
        self.process: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self.forks = self.failures = self.restarts = 0
        self.refusals_in_row = 0  # forks it answered with an error: a host that cannot (see Zygotes.get)
        self._died = False  # lost (not stopped): its next start is a restart
        # A spare the zygote handed over: its init's pid and the socket its worker waits on. A
        # fork gives it its file descriptors directly, without a hop through the zygote.
        self._spare: HeldSpare | None = None
        self._fetching: asyncio.Task[None] | None = None
        self._groups = groups  # where a held spare's group comes from (spare.py); None: no groups

    # --- lifecycle ------------------------------------------------------------------------------

    def _start(self) -> None:
        """Start the zygote and wait until it is warm; raises ZygoteUnavailable."""
        try:
            init = init_binary(self.key)
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("zygote_init_not_built", error=str(exc), note="the Python init stands in")
            init = ""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {"FNHOST_ZYGOTE_INIT": init, "PATH": os.environ.get("PATH", "/usr/bin:/bin"), **dict(self.key.env),
               "FNHOST_ZYGOTE_FDS": f"{theirs.fileno()},{self._lifeline}",
               "FNHOST_ZYGOTE_SPARE": "namespaced" if self._namespaced else "shared"}
        try:
            process = subprocess.Popen(
                list(self.key.argv), cwd=self.key.cwd, env=env, stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(), self._lifeline), start_new_session=True)
        except OSError as exc:
            ours.close()
            raise ZygoteUnavailable(f"cannot start {self.key.describe()}: {exc.strerror}") from exc
        finally:
            theirs.close()
        ours.settimeout(START_TIMEOUT_S)
        try:
            ready = json.loads(ours.recv(4096) or b"null")
        except (OSError, ValueError) as exc:
            ready = None
            log.warning("zygote_not_ready", zygote=self.key.describe(), error=str(exc))
        if not isinstance(ready, dict) or "ready" not in ready:
            ours.close()
            _end(process)
            raise ZygoteUnavailable(f"{self.key.describe()} did not come up (its output is in the daemon's log)")
        try:  # the spare it made as it started, held here for the first fork
            ours.send(json.dumps(self._spare_message()).encode())
            raw, fds, _flags, _addr = socket.recv_fds(ours, 4096, 1)
            spare = HeldSpare.from_answer(json.loads(raw or b"null"), fds)
            if isinstance(spare, str):
                raise ValueError(spare)
            self._spare = spare  # it joins its worker's group with the request (no loop here to prepare one)
        except (OSError, ValueError) as exc:
            log.warning("zygote_spare_not_held", zygote=self.key.describe(), error=str(exc),
                        note="the first fork goes through the zygote")
        ours.setblocking(False)
        if self._died:
            self.restarts += 1
            self._died = False
        self.process, self._sock = process, ours
        log.info("zygote_started", zygote=self.key.describe(), pid=process.pid)

    def _lost(self, why: str) -> None:
        """Forget a zygote that failed (blocking: it is waited for)."""
        self._died = True
        log.warning("zygote_lost", zygote=self.key.describe(), pid=self.process.pid if self.process else 0,
                    reason=why, note="it is started again at the next fork; this worker is spawned")
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._let_go_of_spare()
        if self.process is not None:
            _end(self.process)

    def ensure(self) -> None:
        """Start it if it is not running (blocking)."""
        with self._lock:
            if self._sock is None:
                self._start()

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()  # the zygote exits on EOF; its workers live on (their lifeline is the daemon)
                self._sock = None
            self._let_go_of_spare()
            if self.process is not None:
                _end(self.process)

    # --- fork and reap --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._sock is not None

    def take_spare(self, namespaced: bool) -> HeldSpare | None:
        """The spare held here, if it is of the kind wanted: the caller hands it its request
        (``fork``), or lets it go (``release`` it, then ``drop``)."""
        if self._spare is None or namespaced != self._namespaced:
            return None
        spare, self._spare = self._spare, None
        return spare

    async def fork(self, request: dict[str, Any], fds: list[int], spare: HeldSpare | None = None) -> int:
        """Fork one worker; the pid of its init. On the event loop: given to ``spare`` (taken
        with ``take_spare``: one datagram, no answer to wait for; the next is asked for in the
        background), else the zygote is asked, one datagram, and answers in well under a
        millisecond. Raises SpareLost when ``spare`` has died.

        ``request``: ``{"namespaced": bool}``, all the zygote is told. ``fds``: the worker's
        control input and output, stdout, stderr, the status pipe's write end, the spec pipe's
        read end and each cgroup.procs to enter; the caller keeps (and closes) them. Raises
        ZygoteUnavailable, at once when the zygote is not running (it takes a cold interpreter's
        start-up to start one: never on this path).
        """
        if spare is not None:
            if not spare.hand(fds):
                self._drop(spare.pid)  # it died waiting (killed by someone): its group goes with the caller's
                raise SpareLost(f"the spare {spare.pid} died before it got its request")
            self.forks += 1
            self.refusals_in_row = 0
            self._fetch_spare()
            return spare.pid
        reply, _ = await self._request({"fork": request}, fds, counted=True)
        if "pid" not in reply:
            self.failures += 1
            self.refusals_in_row += 1
            raise ZygoteUnavailable(str(reply.get("error", reply)))
        self.forks += 1
        self.refusals_in_row = 0
        self._fetch_spare()
        return int(reply["pid"])

    # --- the spare held here --------------------------------------------------------------------

    def _spare_message(self) -> dict[str, Any]:
        return {"spare": {"namespaced": self._namespaced}}

    def _fetch_spare(self) -> None:
        """Ask for the next spare in the background (the zygote makes it as SCHED_IDLE)."""
        if self._fetching is None or self._fetching.done():
            self._fetching = asyncio.get_running_loop().create_task(self._fetch())

    async def _fetch(self) -> None:
        await asyncio.sleep(AHEAD_AFTER_S)  # after the start that took the last one (spare.py)
        sock = self._sock
        if sock is None or self._spare is not None:
            return
        try:
            reply, fds = await self._request(self._spare_message(), [], takes_fd=True)
        except ZygoteUnavailable:
            return  # not running, or lost (and logged): the next start brings a fresh one
        spare = HeldSpare.from_answer(reply, fds)
        if isinstance(spare, str):
            log.warning("zygote_spare_not_held", zygote=self.key.describe(), error=spare)
            return
        if self._groups is not None and self._groups.hierarchies:
            try:
                spare.join(self._groups)
            except OSError as exc:
                log.warning("spare_group_not_joined", zygote=self.key.describe(), error=str(exc),
                            note="its worker joins its group when it gets its request")
            asyncio.get_running_loop().run_in_executor(None, self._groups.make_ready)  # join took the one made ahead
        if self._sock is sock and self._spare is None:
            self._spare = spare
        else:  # lost meanwhile
            spare.release()

    def _drop(self, pid: int) -> None:
        """A held spare not used: the zygote reaps its init once it has gone."""
        sock = self._sock
        if sock is not None:
            try:
                sock.send(json.dumps({"drop": pid}).encode())
            except OSError:
                pass

    def _let_go_of_spare(self) -> None:
        spare, self._spare = self._spare, None
        if spare is not None:
            self.let_go(spare)

    def let_go(self, spare: HeldSpare) -> None:
        """A spare taken and not used: it exits, its group goes, the zygote reaps its init."""
        spare.release()
        self._drop(spare.pid)

    async def inject(self, part: dict[str, Any], pid: int) -> None:
        """Bind a function's paths into stem cell ``pid``'s view (zygote.py's ``inject``); raises
        ZygoteUnavailable. The cell is named by a pidfd: a pid reused meanwhile is never entered."""
        pidfd = os.pidfd_open(pid)  # OSError: the cell is gone
        try:
            reply, _ = await self._request({"inject": part}, [pidfd])
        finally:
            os.close(pidfd)
        if not reply.get("ok"):
            raise ZygoteUnavailable(f"cannot bind the function into the stem cell: {reply.get('error', reply)}")

    async def _request(self, message: dict[str, Any], fds: list[int], *, counted: bool = False,
                       takes_fd: bool = False) -> tuple[dict[str, Any], list[int]]:
        """Send one request with ``fds`` (the caller keeps them) and take its answer, and with
        ``takes_fd`` the file descriptor it carries (a spare's socket, the caller's then), one at a
        time. Raises ZygoteUnavailable, at once when the zygote is not running, and after
        forgetting it when it died or hangs (a fresh one is started next time; ``counted``: a
        fork's failure, in ``failures``)."""
        loop = asyncio.get_running_loop()
        async with self._forking:
            sock = self._sock
            if sock is None:
                raise ZygoteUnavailable("the zygote is not running")
            try:
                socket.send_fds(sock, [json.dumps(message).encode()], fds)
                raw, received = await asyncio.wait_for(receive_with_fds(loop, sock), FORK_TIMEOUT_S)
            except (OSError, asyncio.TimeoutError) as exc:  # it died (or hangs): a fresh one next time
                self.failures += counted
                why = str(exc) or type(exc).__name__
                await loop.run_in_executor(None, self._lost, why)
                raise ZygoteUnavailable(f"the zygote failed: {why}") from exc
            if not raw:
                self.failures += counted
                await loop.run_in_executor(None, self._lost, "it exited")
                raise ZygoteUnavailable("the zygote exited")
        if not takes_fd:
            for fd in received:
                os.close(fd)
            received = []
        return json.loads(raw), received

    def reap(self, process: subprocess.Popen[bytes] | None, pid: int) -> None:
        """Let the zygote that forked ``pid`` reap it (a restarted zygote is not its parent)."""
        sock = self._sock
        if process is not self.process or sock is None:
            return  # its zygote is gone: the init was reparented to the host's init, which reaps it
        try:
            sock.send(json.dumps({"reap": pid}).encode())  # one datagram: atomic beside a fork's
        except OSError:
            pass  # a full socket (a stuck zygote): the zombie is the host init's once it goes

    def stats(self) -> ZygoteStats:
        pid = self.process.pid if self.process is not None and self._sock is not None else 0
        uss = 0
        if pid:
            try:
                uss = psutil.Process(pid).memory_full_info().uss
            except psutil.Error:
                pass
        return ZygoteStats(self.key, pid, self.forks, self.failures, self.restarts, uss)


def _end(process: subprocess.Popen[bytes]) -> None:
    """Stop a zygote: EOF first (it exits at once), SIGKILL if it does not."""
    try:
        process.wait(timeout=2)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
