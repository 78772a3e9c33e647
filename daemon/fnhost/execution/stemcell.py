"""Stem cells: workers started before their function is known, which a function's next worker
takes over with one SPECIALISE frame (protos/worker-protocol.md, "Stem cells") instead of
starting a process. What is left of a cold start is then the function's own loading.

A cell is born as other runtimes' workers are, from the zygote's spare (``exec_after_fork``): a
pid and mount namespace of its own, and a control group of its own with the memory limit it
will keep. Unlike them, it is born as root holding only CAP_SETUID and CAP_SETGID, with a
generic environment, in a view with no function's code. It says HELLO and waits.

To become a function's worker, the zygote binds that function's code, build and layers into the
cell's view from outside (``Zygote.inject``), and the cell gets SPECIALISE: it takes the
function's uid and gid, environment and working directory, then loads the handler. Nothing of a
function reaches a cell before that, and a cell is used once.

Cells are kept per **CellKey**: what a process fixes as it starts and a function chooses (its
runtime, memory size, the start-up variables its runtime reads, the shape of its view). The
daemon keeps ``stem_cells`` ready of each key a deployed function has, for the ``MAX_KEYS``
keys used last, and starts one in the background each time one is taken. A key whose cells
cannot be born or specialised ``REFUSALS`` times in a row is given up until SIGHUP; until then
its functions' workers start as they would without cells.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import anyio
import structlog

from ..errors import ForkLost, FunctionError, InitError
from . import protocol
from .cellkey import CellKey
from .limits import MemoryBackend
from .spawn import WorkerSpec, private_dirs
from .states import State
from .worker import Worker
from .zygote import ZygoteKey, ZygoteUnavailable
from .zygotes import Zygotes

log = structlog.get_logger("fnhost.stemcell")

MAX_KEYS = 8  # kinds of cell kept at once, across runtimes (the least recently used go first)
REFUSALS = 3  # births or specialisations failed in a row before a key is given up
BIRTH_TIMEOUT_S = 60.0  # a JVM on a busy host; a cell is nobody's cold start while it is born
RETRY_S = (1.0, 60.0)  # a failed birth is retried after 1 s, doubling up to 60 s
SPECIALISE_ERROR = "Runtime.SpecialiseError"


@dataclass(frozen=True, slots=True)
class CellStats:
    key: CellKey
    ready: int
    starting: int
    taken: int  # cells specialised into workers
    failures: int  # births and specialisations that failed
    given_up: bool
    memory_uss_bytes: int  # the ready cells', all together


@dataclass(slots=True)
class _Cells:
    """The cells of one key."""

    ready: list[Worker] = field(default_factory=list)
    starting: int = 0
    delayed: int = 0  # of ``starting``: waiting out a back-off, not being born yet
    waiters: deque[asyncio.Future[Worker | None]] = field(default_factory=deque)
    taken: int = 0
    failures: int = 0
    in_row: int = 0  # failures since the last success
    waits: int = 0  # births put off (no zygote running) since the last success
    given_up: bool = False
    retry_at: float = 0.0


CellSnapshot = tuple[CellKey, _Cells, list[int]]  # a key, its counts, its ready cells' pids


def _retry_at(failures: int) -> float:
    """When a birth is tried again after ``failures`` in a row: 1 s, doubling up to 60 s."""
    return time.monotonic() + min(RETRY_S[1], RETRY_S[0] * 2 ** min(failures - 1, 6))


def _unobserved(worker: Worker, old: State | None, new: State) -> None:
    """A cell's state moves are nobody's count until a pool adopts it."""


class StemCells:
    """The daemon's stem cells, by key. ``per_key`` follows the ``stem_cells`` setting."""

    def __init__(self, *, per_key: int, backend: MemoryBackend, zygotes: Zygotes,
                 exec_zygote: Callable[[], ZygoteKey | None],
                 spawn_background: Callable[[Callable[[], Awaitable[None]]], bool],
                 kill_grace_s: float, scratch_root: Path | None = None) -> None:
        self.per_key = per_key
        self.backend = backend
        self.zygotes = zygotes
        self._exec_zygote = exec_zygote
        self._spawn_background = spawn_background
        self._kill_grace_s = kill_grace_s
        self._scratch_root = scratch_root
        self._keys: OrderedDict[CellKey, _Cells] = OrderedDict()
        self.closed = False

    @property
    def enabled(self) -> bool:
        return self.per_key > 0 and self.zygotes.enabled and not self.closed

    # --- which keys, how many -----------------------------------------------------------------

    def want(self, key: CellKey) -> None:
        """A function of ``key`` exists: keep its cells ready (started in the background)."""
        if not self.enabled:
            return
        cells = self._keys.get(key)
        if cells is None:
            cells = self._keys[key] = _Cells()
            while len(self._keys) > MAX_KEYS:
                old_key, old = self._keys.popitem(last=False)
                log.info("stem_cells_evicted", cells=old_key.describe(), note="kinds of cell kept: "
                         f"the {MAX_KEYS} used last")
                self._drop(old)
        self._keys.move_to_end(key)
        self._fill(key, cells)

    def reconfigure(self, per_key: int) -> None:
        """The ``stem_cells`` setting changed (SIGHUP): fill up or stop the surplus; keys given up
        get another chance."""
        self.per_key = per_key
        for key, cells in list(self._keys.items()):
            cells.given_up, cells.in_row, cells.retry_at = False, 0, 0.0
            if not self.enabled:
                self._drop(cells)
                del self._keys[key]
                continue
            while len(cells.ready) > per_key:
                self._stop(cells.ready.pop())
            self._fill(key, cells)

    def _fill(self, key: CellKey, cells: _Cells) -> None:
        if cells.given_up or not self.enabled:
            return
        while len(cells.ready) + cells.starting < self.per_key:
            cells.starting += 1
            if not self._spawn_background(lambda: self._birth(key, cells)):
                cells.starting -= 1  # shutting down: no birth will come
                return

    # --- taking one -------------------------------------------------------------------------------

    async def take(self, key: CellKey) -> Worker | None:
        """A cell of ``key`` for a new worker (one being born is waited for: it is ready sooner
        than any other start); None when there is none."""
        if not self.enabled:
            return None
        cells = self._keys.get(key)
        if cells is None:
            self.want(key)  # for the next worker
            return None
        self._keys.move_to_end(key)
        cell = None
        if cells.ready:
            cell = cells.ready.pop(0)
        elif cells.starting - cells.delayed > len(cells.waiters):
            waiter: asyncio.Future[Worker | None] = asyncio.get_running_loop().create_future()
            cells.waiters.append(waiter)
            try:
                with anyio.move_on_after(BIRTH_TIMEOUT_S):
                    cell = await waiter
            finally:
                if waiter in cells.waiters:
                    cells.waiters.remove(waiter)
                if waiter.done() and not waiter.cancelled() and cell is None:
                    cell = waiter.result()
        if cell is not None:
            cells.taken += 1
        self._fill(key, cells)
        return cell

    async def specialise(self, cell: Worker, spec: WorkerSpec) -> None:
        """Make the adopted ``cell`` ``spec``'s worker. Raises what Worker.start raises; ForkLost
        when the cell could not become it before any of the function ran (start another way)."""
        key = spec.stem_cell
        assert key is not None
        if os.geteuid() == 0:
            try:  # born at nice 10 (specialise.py): every thread of its process group back to 0
                os.setpriority(os.PRIO_PGRP, cell.leader, 0)
            except OSError:
                pass  # gone: SPECIALISE finds out
        try:
            await cell.specialise(specialise_frame(cell, spec), lambda w: self._bind(w, spec, key))
        except ForkLost as exc:
            self._failed(key, exc.message)
            raise
        except InitError as exc:
            if exc.code != SPECIALISE_ERROR:
                raise  # the function's own: its import failed, as it would have anywhere
            self._failed(key, exc.message)
            raise ForkLost(f"the stem cell could not take its function: {exc.message}") from exc
        cells = self._keys.get(key)
        if cells is not None:
            cells.in_row = 0

    async def _bind(self, cell: Worker, spec: WorkerSpec, key: CellKey) -> None:
        """The function's code, build and layers into the cell's view, by the zygote; or, in
        the shared view, the cell's scratch directory made the function's."""
        if spec.view is None or key.view is None:
            if cell.scratch is not None and spec.identity is not None:
                os.chown(cell.scratch, spec.identity.uid, spec.identity.gid)  # made as nobody's yet
            return  # the shared view: the cell sees the code already
        zygote_key = self._exec_zygote()
        zygote = self.zygotes.get(zygote_key) if zygote_key is not None else None
        if zygote is None:
            raise ZygoteUnavailable("no zygote is running to bind the function into the cell")
        if cell.pid == cell.leader:
            raise ZygoteUnavailable("the cell's process in its namespace is not known")
        await zygote.inject({
            "readable": [p for p in spec.view.readable if p not in key.view.readable],
            "opt": spec.view.opt or None,
            "covered": [*key.view.hidden, "/tmp", "/dev/shm"],
        }, cell.pid)

    # --- birth and death -------------------------------------------------------------------------

    async def _birth(self, key: CellKey, cells: _Cells) -> None:
        delay = cells.retry_at - time.monotonic()
        if delay > 0:  # backing off: no invocation waits for this one meanwhile
            cells.delayed += 1
            try:
                await anyio.sleep(delay)
            finally:
                cells.delayed -= 1
        cell = None
        why = ""
        if not cells.given_up and self.enabled and self._keys.get(key) is cells:
            cell = Worker(self._cell_spec(key), 0, self._on_dead, _unobserved)
            try:
                version = await cell.launch(self.backend, self.zygotes, forked_only=True,
                                            deadline=anyio.current_time() + BIRTH_TIMEOUT_S)
            except ZygoteUnavailable:
                # Not the cell's fault (the zygote is starting, or restarting): later, not given up.
                cells.waits = min(cells.waits + 1, 6)  # at most 32 s apart: the zygote comes back
                cells.retry_at = _retry_at(cells.waits)
                cell = None
            except FunctionError as exc:
                why, cell = str(exc), None
            else:
                if version < protocol.STEM_CELL_VERSION:
                    why = f"its shim speaks worker protocol {version}, and SPECIALISE needs {protocol.STEM_CELL_VERSION}"
                    cells.in_row = REFUSALS  # it never will
                elif key.view is not None and cell.pid == cell.leader:
                    why = "its process in its namespace was not found"
                if why:
                    await cell.stop()
                    cell = None
        cells.starting -= 1
        if cell is None:
            if why:
                self._failed(key, why, during="birth")
            if not cells.given_up and self._keys.get(key) is cells:
                self._fill(key, cells)  # after the back-off set above
            self._hand(cells, None)
            return
        if self.closed or self._keys.get(key) is not cells or len(cells.ready) >= self.per_key > 0 and not cells.waiters:
            await cell.stop()
            return
        cells.in_row = cells.waits = 0
        cells.retry_at = 0.0
        if not self._hand(cells, cell):
            cells.ready.append(cell)

    def _hand(self, cells: _Cells, cell: Worker | None) -> bool:
        """Give ``cell`` (None: a birth failed) to the oldest waiter; False when none waits."""
        while cells.waiters:
            waiter = cells.waiters.popleft()
            if not waiter.done():
                waiter.set_result(cell)
                return True
        return False

    def _failed(self, key: CellKey, why: str, during: str = "specialisation") -> None:
        cells = self._keys.get(key)
        if cells is None:
            return
        cells.failures += 1
        cells.in_row += 1
        cells.retry_at = _retry_at(cells.in_row)
        if cells.in_row >= REFUSALS and not cells.given_up:
            cells.given_up = True
            log.warning("stem_cells_given_up", cells=key.describe(), reason=why, during=during,
                        note="its functions' workers start without cells until SIGHUP")
            self._drop(cells)
        else:
            log.warning("stem_cell_failed", cells=key.describe(), reason=why, during=during)

    def _on_dead(self, cell: Worker) -> None:
        """A cell died while it waited (killed, or its runtime gave up): another takes its place."""
        for key, cells in self._keys.items():
            if cell in cells.ready:
                cells.ready.remove(cell)
                if not self.closed:
                    self._failed(key, f"it died while it waited ({cell.returncode})", during="wait")
                    self._fill(key, cells)
                return

    def _cell_spec(self, key: CellKey) -> WorkerSpec:
        return WorkerSpec(
            function=f"(stem cell {key.runtime})",
            argv=list(key.argv),
            env=dict(key.env),
            cwd="/",
            init_frame=b"",
            memory_limit_bytes=key.memory_mb * 1024 * 1024,
            init_timeout_s=BIRTH_TIMEOUT_S,
            kill_grace_s=self._kill_grace_s,
            view=key.view,
            scratch_root=self._scratch_root,
            zygote=self._exec_zygote(),
            exec_after_fork=True,
            cell=True,
            own_uid=key.own_uid,
        )

    def _stop(self, cell: Worker) -> None:
        self._spawn_background(cell.stop)

    def _drop(self, cells: _Cells) -> None:
        while cells.ready:
            self._stop(cells.ready.pop())
        self._hand(cells, None)

    async def close(self) -> None:
        self.closed = True
        cells = [c for group in self._keys.values() for c in group.ready]
        for group in self._keys.values():
            group.ready.clear()
            while self._hand(group, None):
                pass
        self._keys.clear()
        for cell in cells:
            await cell.stop()

    # --- what they cost ----------------------------------------------------------------------------

    def snapshot(self) -> list[CellSnapshot]:
        """Each key's counts and its ready cells' pids (on the event loop)."""
        return [(key, replace(cells, ready=[], waiters=deque()), [c.pid for c in cells.ready])
                for key, cells in self._keys.items()]


def specialise_frame(cell: Worker, spec: WorkerSpec) -> bytes:
    """SPECIALISE for ``cell`` to become ``spec``'s worker: its INIT, with the identity, the whole
    environment a spawned worker of ``spec`` gets (the cell's private TMPDIR and HOME) and the
    working directory."""
    init = json.loads(spec.init_frame[5:])
    env = {**spec.env, **private_dirs(spec, cell.scratch)}
    identity = spec.identity
    init.update(identity=None if identity is None else {"uid": identity.uid, "gid": identity.gid},
                process_environment=env, cwd=spec.cwd)
    return protocol.encode_json(protocol.Kind.SPECIALISE, init)
