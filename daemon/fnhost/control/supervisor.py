"""The supervisor: functions and their pools. Every front end calls only this.

Deploy-time work (validating, hashing and unpacking code, building, composing a worker's argv,
environment and INIT frame) happens once per function version, so ``invoke`` is: find the pool,
let it run the invocation (``Pool.invoke``).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Awaitable, Callable
from functools import partial

import anyio
import structlog
from prometheus_client import CollectorRegistry

from ..errors import LimitExceeded, ResourceConflict, ResourceNotFound, ShuttingDown
from ..execution import isolation, sandbox, uids
from ..execution.accounting import PoolSnapshot
from ..execution.invocation import (
    LATEST,
    Invocation,
    InvocationType,
    Outcome,
    function_arn,
)
from ..execution.limits import LimitSettings, MemoryBackend, choose_backend
from ..execution.stemcell import CellStats, StemCells
from ..execution.zygote import ZygoteKey
from ..execution.zygotes import Zygotes
from .zygote_stats import ZygoteReport, cell_report, forked_workers
from .zygote_stats import report as zygote_report
from ..execution.pool import Pool, PoolConfig
from ..execution.spawn import WorkerSpec
from ..observability.billing import FLUSH_INTERVAL_S, FunctionUsage, Meter, UsageStore
from ..observability.logs import ReportLog
from ..observability.report import RequestIds
from . import codestore
from .async_backends import open_backend
from .async_invoke import AsyncInvocations
from .config import FunctionConfig, Settings
from .deploy import CodeSource, Deployer
from .worker_specs import plain_zygote
from .event_configs import EventConfigs
from .event_sources import EventSources
from .function_urls import UrlConfigs
from .layers import LayerStore, SupervisorLayers
from .qualifiers import Qualifiers, Route
from .registry import FunctionRecord, Registry
from .runtimes import RuntimeRegistry, data_dir
from .storekeeper import StoreKeeper
from .versions import AliasRecord, VersionStore, is_version

log = structlog.get_logger("fnhost.supervisor")

REAP_INTERVAL_S = 1.0


class Supervisor(Qualifiers, SupervisorLayers):
    def __init__(self, settings: Settings, runtimes: RuntimeRegistry | None = None) -> None:
        self.settings = settings
        self.public = sandbox.privilege_drop_enabled(settings.worker_user)
        if runtimes is None:
            root = data_dir("runtimes")
            if self.public:  # shims must be readable by workers wherever fnhost is installed
                root = sandbox.publish_runtimes(root, settings.state_dir)
            runtimes = RuntimeRegistry(root, public=self.public)
        self.runtimes = runtimes
        self.registry = Registry(settings.state_dir, uids.uid_claims(
            settings.worker_user, settings.worker_uid_base, settings.worker_uid_count))
        self.versions = VersionStore(self.registry.db)
        self.urls = UrlConfigs(self.registry.db)  # function URLs (api/url_server serves them)
        self.layers = LayerStore(self.registry, settings.region, settings.account_id)
        # Event source mappings: JetStream polled for functions (control/event_sources.py).
        nats_url = settings.event_source_nats or (settings.queue if settings.queue.startswith("nats://") else "")
        self.event_sources = EventSources(self, self.registry.db, nats_url)
        self.usage = UsageStore(settings.state_dir / "functions.sqlite3")
        self.scratch_root = settings.state_dir / "work"
        shutil.rmtree(self.scratch_root, ignore_errors=True)  # left by a daemon that was killed
        self.scratch_root.mkdir(mode=0o711)
        self.scratch_root.chmod(0o711)  # the daemon's umask is 077; workers pass through to theirs
        swept = codestore.sweep_leftovers((self.registry.code_root, self.registry.build_root, self.layers.root))
        if swept:
            log.info("leftovers_removed", paths=swept)
        self.deployer = Deployer(settings, runtimes, self.registry, self.scratch_root, self.public)
        self.deployer.layers = self.layers
        self.backend: MemoryBackend = choose_backend(settings.memory_backend, LimitSettings(
            settings.worker_pids_max, settings.cpu_mb_per_vcpu, settings.memory_sample_interval_s))
        self.deployer.backend = self.backend  # builds get memory groups as workers do
        # Namespaces of its own for each worker where the host allows them; the log says which.
        unavailable = isolation.probe(self.public) if settings.worker_namespaces else None
        self.deployer.isolated = settings.worker_namespaces and unavailable is None
        if self.deployer.isolated:
            log.info("worker_isolation", view="mount and pid namespaces (bubblewrap)")
        else:
            (log.warning if unavailable else log.info)(
                "worker_isolation", view="the host's filesystem view",
                reason=unavailable or "worker_namespaces is off",
                note="file permissions and uids keep functions apart; /tmp is shared")
        self.zygotes = Zygotes(enabled=settings.zygote, namespaced=self.deployer.isolated, groups=self.backend)
        self.cells = StemCells(per_key=settings.stem_cells, backend=self.backend, zygotes=self.zygotes,
                               exec_zygote=self.deployer.exec_zygote, spawn_background=self._spawn_background,
                               kill_grace_s=settings.kill_grace_s, scratch_root=self.scratch_root)
        self.pools: dict[str, Pool] = {}  # by label: "name" ($LATEST), "name:N" (a version)
        self.published: dict[str, FunctionRecord] = {}  # versions, by label
        self.routes: dict[str, Route] = {}  # aliases, by "name:alias"
        self._aliases: dict[str, dict[str, AliasRecord]] = {}
        self.request_ids = RequestIds()
        self.async_events = AsyncInvocations(self, open_backend(settings), EventConfigs(
            self.registry.db, self.get_function, region=settings.region, account_id=settings.account_id))
        self.report_log = ReportLog(log)
        self.metrics_registry = CollectorRegistry()
        self.busy: set = set()  # workers mid-invocation, for the memory sampler
        self.started = time.monotonic()
        self.draining = False
        self._closed = False
        self._deploy_locks: dict[str, anyio.Lock] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self.store = StoreKeeper(settings, self.registry, self.versions, self.layers, lambda: self.busy,
                                 self._spawn_background)
        self.collector = self.store.collector

    # --- lifecycle ----------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Load persisted functions, then reap and sample until cancelled; stops every worker.

        No function can end this: a record that does not load is logged and skipped, and every
        background task logs what it raises and ends alone (``_spawn_background``).
        """
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                try:
                    await self.store.tidy()
                    for record in self.registry.all():
                        try:
                            self._install(record)
                        except Exception as exc:
                            log.error("function_not_loaded", function=record.config.name,
                                      error=getattr(exc, "message", None) or repr(exc))
                    self._load_versions()
                    self._warm_zygotes()
                    await tg.start(self.async_events.run)  # after the functions: events need their pools
                    await tg.start(self.event_sources.run)
                    tg.start_soon(self._reaper)
                    tg.start_soon(self._flush_usage)
                    if not self.backend.kernel_enforced:
                        tg.start_soon(self._memory_sampler)
                    task_status.started()
                    await anyio.sleep_forever()
                finally:
                    # Shutting down: the group's tasks are being cancelled. A worker killed now
                    # must not start a replacement (spawned, then killed, as the group unwinds);
                    # shutdown()'s stop_all stops whatever is left.
                    self._tg = None
        finally:
            with anyio.CancelScope(shield=True):
                await self.shutdown()

    def _warm_zygotes(self) -> None:
        """Start each runtime's plain zygote now: a first worker that finds its zygote still
        starting is spawned instead."""
        for runtime in self.deployer.runtimes:
            if (key := plain_zygote(runtime)) is not None:
                self._warm(key)

    def _warm(self, key: ZygoteKey) -> None:
        """Start the zygote for ``key`` in the background unless it runs (or is off)."""
        if self.zygotes.needs_start(key):
            self._spawn_background(partial(anyio.to_thread.run_sync, self.zygotes.warm, key))

    async def shutdown(self) -> None:
        """Stop every worker and release the host resources; safe to call twice."""
        self.draining = True
        if self._closed:
            return
        self._closed = True
        await self.cells.close()
        async with anyio.create_task_group() as tg:
            for pool in self.pools.values():
                tg.start_soon(pool.stop_all)
        self.flush_usage()
        self.report_log.flush()
        await anyio.to_thread.run_sync(self.zygotes.close)
        self.backend.close()
        self.usage.close()
        self.registry.close()

    async def _recorded(self, record: FunctionRecord) -> FunctionRecord:
        """After ``registry.put``: open the build to its function, then run the new version."""
        await anyio.to_thread.run_sync(self.registry.seal_build, record, self.store.build_group(record))
        self._install(record)
        return record

    def _spawn_background(self, fn: Callable[[], Awaitable[None]]) -> bool:
        """Run a pool's background work (a respawn, a stop) in the supervisor's task group.

        Dropped (False) once the group is shutting down. What it raises is one function's fault:
        logged, and the daemon, its other tasks and every other function go on.
        """
        if self._tg is None:
            return False
        self._tg.start_soon(_background, fn, name=getattr(fn, "__qualname__", None))
        return True

    async def _flush_usage(self) -> None:
        while True:
            await anyio.sleep(FLUSH_INTERVAL_S)
            await anyio.to_thread.run_sync(self.usage.write, self.usage.take(self._meters()))

    def _meters(self) -> dict[str, Meter]:
        return {name: pool.accounts.meter for name, pool in self.pools.items()}

    def flush_usage(self) -> None:
        self.usage.flush(self._meters())

    async def _reaper(self) -> None:
        while True:
            await anyio.sleep(REAP_INTERVAL_S)
            now = time.monotonic()
            for pool in list(self.pools.values()):
                if pool.idle:
                    try:
                        pool.reap_idle(now)
                    except Exception:  # one pool's fault; the reaper goes on for the others
                        log.exception("reap_failed", function=pool.config.function)

    async def _memory_sampler(self) -> None:
        """psutil backend only: kill any busy worker tree over its limit."""
        interval = self.settings.memory_sample_interval_s
        while True:
            await anyio.sleep(interval)
            for worker in list(self.busy):
                memory = worker.memory
                if memory is None:
                    continue
                try:
                    rss = await anyio.to_thread.run_sync(memory.tree_rss)
                except Exception:  # e.g. the tree vanished mid-walk; its next sample decides
                    log.debug("memory_sample_failed", function=worker.spec.function, pid=worker.pid,
                              exc_info=True)
                    continue
                if rss > memory.limit_bytes:
                    log.warning("memory_limit_exceeded", function=worker.spec.function, pid=worker.pid)
                    worker.kill_for_memory()

    # --- function management ------------------------------------------------------------------

    def _lock(self, name: str) -> anyio.Lock:
        return self._deploy_locks.setdefault(name, anyio.Lock())

    def check(self, config: FunctionConfig, *, cap: int | None = None) -> FunctionConfig:
        return self.deployer.check(config, cap=cap)

    def apply_settings(self, settings: Settings) -> None:
        """A reloaded config's daemon settings; those needing a restart were kept by the caller."""
        self.settings = settings
        self.deployer.settings = settings
        for key in self.zygotes.reconfigure(settings.zygote):  # turned back on: warm before they are needed
            self._warm(key)
        self.cells.reconfigure(settings.stem_cells)
        for label, pool in list(self.pools.items()):
            record = self.published.get(label) or self.registry.get(label)
            pool.apply_settings(self._pool_config(record.config, label, self._min_warm(record)))

    async def create_function(self, config: FunctionConfig, code: CodeSource) -> FunctionRecord:
        try:
            async with self._lock(config.name), self.collector.deploying():
                config = self.deployer.check(config)
                if self.registry.exists(config.name):
                    raise ResourceConflict(f"Function already exist: {config.name}")
                functions = sum(1 for label in self.pools if ":" not in label)
                if functions >= self.settings.max_functions:
                    raise LimitExceeded(
                        f"this daemon holds {functions} functions, its max_functions; delete some "
                        "or raise max_functions in the daemon config"
                    )
                ref = await self.deployer.resolve_code(code)
                self.store.check_storage(config.name, ref)
                await self.merge_layers(config.layers, kept=[])
                slot = self.registry.reserve_slot()  # the build runs as the function's uid
                try:
                    build_dir = await self.deployer.build(config, ref, slot=slot)
                    record = self.registry.put(config, ref, build_dir, create=True, slot=slot)
                finally:
                    self.registry.release_slot(slot)
                record = await self._recorded(record)
                log.info("function_created", function=config.name, runtime=config.runtime)
                return record
        finally:
            self.collector.request()  # a failed deploy may have stored code nothing uses

    async def update_code(self, name: str, code: CodeSource) -> FunctionRecord:
        try:
            async with self._lock(name), self.collector.deploying():
                current = self.registry.get(name)
                ref = await self.deployer.resolve_code(code)
                self.store.check_storage(name, ref)
                build_dir = await self.deployer.build(current.config, ref)
                record = await self._recorded(self.registry.put(current.config, ref, build_dir, create=False))
                log.info("function_code_updated", function=name, code_sha256=ref.sha256)
                return record
        finally:
            self.collector.request()  # the previous code and build, once no invocation uses them

    async def update_config(self, name: str, **changes: object) -> FunctionRecord:
        try:
            async with self._lock(name), self.collector.deploying():
                current = self.registry.get(name)
                config = self.deployer.check(current.config.replace(**changes), kept=current.config.layers)
                await self.merge_layers(config.layers, kept=current.config.layers)
                build_dir = await self.deployer.build(config, current.code)
                record = await self._recorded(self.registry.put(config, current.code, build_dir, create=False))
                log.info("function_configuration_updated", function=name, changed=sorted(changes))
                return record
        finally:
            self.collector.request()  # a new handler means a new build; the old one goes

    def get_function(self, name: str, qualifier: str = "") -> FunctionRecord:
        """$LATEST's record, or (``qualifier``: a version or alias) that version's. Raises ResourceNotFound."""
        latest = self.registry.get(name)
        if not qualifier or qualifier == LATEST:
            return latest
        if not is_version(qualifier):
            qualifier = self.versions.get_alias(name, qualifier).version
            if qualifier == LATEST:
                return latest
        return self.versions.get(name, qualifier)

    def list_functions(self) -> list[FunctionRecord]:
        return self.registry.all()

    async def delete_function(self, name: str, qualifier: str = "") -> None:
        """The function with all its versions and aliases; with ``qualifier``, only that version
        (see ``_delete_version``). Raises ResourceNotFound."""
        if qualifier:
            await self._delete_version(name, qualifier)
        else:
            async with self._lock(name):
                self.registry.delete(name)
                self.versions.forget_function(name)
                self.urls.forget(name)
                await self.async_events.forget_function(name)
                self.event_sources.forget(name)
                pools = self._forget_versions(name)
                latest = self.pools.pop(name, None)
                if latest is not None:
                    pools.append(latest)
                for pool in pools:  # each lets its running invocations finish
                    await pool.close()
                log.info("function_deleted", function=name)
        self.collector.request()

    def _pool_config(self, config: FunctionConfig, label: str = "", min_warm: int | None = None) -> PoolConfig:
        settings = self.settings
        return PoolConfig(
            function=label or config.name,
            memory_mb=config.memory_mb,
            timeout_s=config.timeout_s,
            min_warm=config.min_warm if min_warm is None else min_warm,
            idle_ttl_s=config.idle_ttl_s,
            limit=config.max_concurrency or settings.max_concurrency_cap,
            queue_timeout_s=settings.queue_timeout_s,
            billing_granularity_ms=settings.billing_granularity_ms,
        )

    def _install(self, record: FunctionRecord) -> None:
        """Create the function's pool, or move it to the new version (old workers drain)."""
        config = self._pool_config(record.config)
        spec = self.deployer.worker_spec(record)
        pool = self.pools.get(config.function)
        if pool is None:
            self.pools[config.function] = self._new_pool(config, record, spec)
        else:
            pool.reconfigure(config, spec)

    def _new_pool(self, config: PoolConfig, record: FunctionRecord, spec: WorkerSpec | None = None) -> Pool:
        """A pool for one version of a function, starting its min_warm workers in the background."""
        pool = Pool(config, spec or self.deployer.worker_spec(record), backend=self.backend,
                    spawn_background=self._spawn_background, busy_registry=self.busy,
                    request_ids=self.request_ids, report_log=self.report_log, zygotes=self.zygotes,
                    cells=self.cells)
        if pool.spec.zygote is not None:  # warm before its first worker needs it
            self._warm(pool.spec.zygote)
        self._spawn_background(pool.ensure_warm)
        return pool

    def isolation_of(self, record: FunctionRecord) -> str:
        """What the function's workers get on this host, for ``fnhost get``."""
        identity = self.deployer.identity(record)
        who = f"uid {identity.uid}, gid {identity.gid}" if identity else "the daemon's own user"
        view = self.deployer.view_for(record, self.runtimes.get(record.config.runtime)) if identity else None
        layers = ""
        if record.config.layers:
            layers = ("; layers: at /opt in its mount namespace" if view is not None else
                      f"; layers: through the runtimes' search paths at {self.deployer.layers_dir(record)} "
                      "(no mount namespace, so not at /opt)")
        return f"{who}; memory limits: {self.backend.name}; {isolation.describe(view)}{layers}"

    def snapshot(self, *, with_histograms: bool = False) -> list[PoolSnapshot]:
        """Every pool's counts, by function name: for stats, metrics, status and readiness."""
        return [self.pools[name].snapshot(with_histograms=with_histograms) for name in sorted(self.pools)]

    async def cell_report(self) -> list[CellStats]:
        """Each kind of stem cell: how many are ready and what they cost (for stats and metrics)."""
        return await anyio.to_thread.run_sync(cell_report, self.cells.snapshot())

    async def zygote_report(self) -> list[ZygoteReport]:
        """Each zygote with its live workers and their memory (for stats and metrics)."""
        workers = forked_workers(w for pool in list(self.pools.values()) for w in pool.workers)
        return await anyio.to_thread.run_sync(zygote_report, self.zygotes, workers)

    @property
    def uptime_s(self) -> int:
        return int(time.monotonic() - self.started)

    def usage_since(self, since_unix_s: int) -> list[FunctionUsage]:
        self.flush_usage()
        return self.usage.since(since_unix_s)

    # --- invoke -------------------------------------------------------------------------------

    async def invoke(self, invocation: Invocation) -> Outcome:
        """Resolve the function and qualifier ($LATEST, a version, an alias: for a weighted alias,
        its version is drawn now) and run the invocation on that version's pool; the Outcome's
        ``executed_version`` says which ran.

        Raises ShuttingDown, ResourceNotFound (unknown function or qualifier) and whatever
        ``Pool.invoke`` raises.
        """
        if self.draining:
            raise ShuttingDown("fnhost is shutting down and accepts no new invocations")
        if invocation.invocation_type is InvocationType.EVENT:  # stored durably, then 202
            return await self.async_events.accept(invocation)
        qualifier = invocation.qualifier
        if not qualifier or qualifier == LATEST:
            pool = self.pools.get(invocation.function)
            if pool is None:
                raise ResourceNotFound(f"Function not found: {invocation.function}")
            return await pool.invoke(invocation)
        pool, version = self.resolve(invocation.function, qualifier)
        if not invocation.invoked_function_arn:  # the handler's context names it as it was called
            invocation.invoked_function_arn = function_arn(invocation.function, qualifier,
                                                           region=self.settings.region)
        outcome = await pool.invoke(invocation)
        outcome.executed_version = version
        return outcome


async def _background(fn: Callable[[], Awaitable[None]]) -> None:
    try:
        await fn()
    except Exception:  # cancellation is not an Exception: shutdown still ends the task
        log.exception("background_task_failed", task=getattr(fn, "__qualname__", repr(fn)))
