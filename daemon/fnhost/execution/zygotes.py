"""The daemon's zygotes (execution/zygote.py), one per interpreter start-up that functions share:
made on first use, at most MAX_ZYGOTES of them, turned on and off by the reloadable ``zygote``
setting, and set aside after REFUSALS forks in a row that could not be specialised."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

import structlog

from .limits import MemoryBackend
from .zygote import MAX_ZYGOTES, REFUSALS, Zygote, ZygoteKey, ZygoteStats, ZygoteUnavailable

log = structlog.get_logger("fnhost.zygote")


@dataclass(slots=True)
class Zygotes:
    """The daemon's zygotes, by key; ``enabled`` follows the ``zygote`` setting (reloadable)."""

    enabled: bool = True
    namespaced: bool = False  # its workers get namespaces of their own (the daemon's isolation)
    groups: MemoryBackend | None = None  # where held spares get their workers' groups ahead
    _zygotes: dict[ZygoteKey, Zygote] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _lifeline: tuple[int, int] = (-1, -1)
    _refused: set[ZygoteKey] = field(default_factory=set)

    def __post_init__(self) -> None:
        # Every forked worker's init holds the read end; only the daemon holds the write end, so
        # when the daemon dies, however it dies, every forked worker dies with it.
        self._lifeline = os.pipe()

    def get(self, key: ZygoteKey) -> Zygote | None:
        """The zygote for ``key``, made (not started) on first use; None when off or too many."""
        if not self.enabled:
            return None
        with self._lock:
            zygote = self._zygotes.get(key)
            if zygote is not None and zygote.refusals_in_row >= REFUSALS:
                if key not in self._refused:
                    self._refused.add(key)
                    log.warning("zygote_disabled", zygote=key.describe(), refusals=REFUSALS,
                                note="its workers are spawned until the configuration is reloaded (SIGHUP)")
                return None
            if zygote is None:
                if len(self._zygotes) >= MAX_ZYGOTES:
                    if key not in self._refused:
                        self._refused.add(key)
                        log.info("zygote_limit", zygote=key.describe(), limit=MAX_ZYGOTES,
                                 note="workers of this start-up environment are spawned")
                    return None
                zygote = self._zygotes[key] = Zygote(key, self._lifeline[0], self.namespaced, self.groups)
            return zygote

    def stats(self) -> list[ZygoteStats]:
        with self._lock:
            zygotes = list(self._zygotes.values())
        return [z.stats() for z in zygotes]

    def reconfigure(self, enabled: bool) -> list[ZygoteKey]:
        """A reload: the ``zygote`` setting, and another chance for a zygote that kept failing.
        Returns the zygotes to start again (in the background: ``warm``) when it is turned on."""
        was, self.enabled = self.enabled, enabled
        with self._lock:
            self._refused.clear()
            for zygote in self._zygotes.values():
                zygote.refusals_in_row = 0
            zygotes = list(self._zygotes.values())
        if not enabled:
            for zygote in zygotes:
                zygote.close()  # each exits at EOF; the workers it forked live on; its counters stay
            return []
        return [z.key for z in zygotes] if not was else []

    def needs_start(self, key: ZygoteKey) -> bool:
        """Whether ``warm`` would have anything to do: on, and that zygote not running."""
        zygote = self.get(key)
        return zygote is not None and not zygote.running

    def warm(self, key: ZygoteKey) -> None:
        """Start the zygote for ``key`` now (blocking; for a background thread), so that the first
        worker does not wait for it; logs rather than raises."""
        zygote = self.get(key)
        if zygote is None:
            return
        try:
            zygote.ensure()
        except ZygoteUnavailable as exc:
            log.warning("zygote_unavailable", zygote=key.describe(), reason=str(exc))

    def close(self) -> None:
        with self._lock:
            zygotes = list(self._zygotes.values())
        for zygote in zygotes:
            zygote.close()
        # The lifeline stays open: forked workers still running are stopped by the daemon's
        # shutdown, and those it could not reach die when the daemon exits.
