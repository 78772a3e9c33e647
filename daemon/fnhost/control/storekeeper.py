"""What the code store keeps, and for whom: the entries functions, versions and layers use, the
ones workers run from right now, the quota, and the start-up tidy.

The supervisor owns one; the collector (codestore.Collector) asks it what to keep.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import anyio
import structlog

from ..errors import CodeStorageExceeded
from ..execution import sandbox
from . import codestore
from .config import Settings
from .layers import LayerStore
from .registry import CodeRef, FunctionRecord, Registry
from .versions import VersionStore

log = structlog.get_logger("fnhost.storekeeper")


class StoreKeeper:
    def __init__(self, settings: Settings, registry: Registry, versions: VersionStore, layers: LayerStore,
                 busy: Callable[[], Iterable[Any]],
                 background: Callable[[Callable[[], Awaitable[None]]], None]) -> None:
        self.settings = settings
        self.registry = registry
        self.versions = versions
        self.layers = layers
        self._busy = busy  # the workers mid-invocation
        self.collector = codestore.Collector([registry.code_root, registry.build_root, layers.root],
                                             self.referenced, self.in_use, background)

    async def tidy(self) -> None:
        """Start-up: builds readable by their own function only (an older fnhost made them
        world-readable), and what no function references removed. A failure is logged: the
        functions still load."""
        records = self.registry.all() + self.versions.all()  # a version's build may be $LATEST's no more
        groups = [self.build_group(r) for r in records]

        def seal_all() -> None:
            for record, gid in zip(records, groups, strict=True):
                self.registry.seal_build(record, gid)

        try:
            await anyio.to_thread.run_sync(seal_all)
            await self.collector.collect()
        except Exception:  # a damaged store must not keep the functions from loading
            log.exception("code_store_tidy_failed")

    def build_group(self, record: FunctionRecord) -> int | None:
        """The group a function's build output belongs to: its workers' (None: no privilege drop)."""
        try:
            identity = sandbox.identity_for(record.slot, self.settings.worker_user, self.settings.worker_uid_base)
        except ValueError:
            return None  # worker_spec says what is wrong when the function is installed
        return None if identity is None else identity.gid

    def check_storage(self, name: str, ref: CodeRef) -> None:
        """Raises CodeStorageExceeded when a new zip would take the stored code past the quota."""
        if not ref.stored:
            return
        limit = self.settings.code_storage_max_bytes
        used = self.versions.stored_code_bytes(besides=name, sha256=ref.sha256) + self.layers.stored_bytes()
        if used + ref.size > limit:
            raise CodeStorageExceeded(
                f"the functions' stored code takes {used} bytes and this zip {ref.size}, past this daemon's "
                f"code_storage_max_bytes of {limit}: delete functions you no longer need, or raise the limit"
            )

    def referenced(self) -> set[str]:
        """Every code/, builds/ and layers/ entry a function or a published version uses."""
        lists = [r.config.layers for r in self.registry.all() + self.versions.all()]
        return self.registry.referenced() | self.versions.referenced() | self.layers.referenced(lists)

    def in_use(self) -> set[str]:
        """Names of the code, build and layer entries of workers running an invocation right now."""
        names: set[str] = set()
        for worker in self._busy():
            names.add(Path(worker.spec.cwd).name)
            names.add(Path(worker.spec.env.get("FNHOST_BUILD_DIR", "/")).name)
            view = worker.spec.view  # its layers: bound at /opt, or read where they are
            names.add(Path(view.opt if view is not None and view.opt
                           else worker.spec.env.get("FNHOST_LAYERS_DIR", "/")).name)
        return names
