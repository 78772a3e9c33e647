"""The supervisor: functions, their pools, and the invoke path. The gRPC layer calls only this.

Deploy-time work (validating, hashing and unpacking code, building, composing a worker's argv,
environment and INIT frame) happens once per function version, so an invocation is: find the
pool, take a worker, write one frame, wait for one frame, give the worker back.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import structlog
from prometheus_client import CollectorRegistry

from . import logs, sandbox
from .billing import FLUSH_INTERVAL_S, FunctionUsage, UsageStore
from .config import SYNC_PAYLOAD_MAX, FunctionConfig, Settings
from .deploy import CodeSource, Deployer
from .errors import (
    ApiError,
    FunctionError,
    LimitExceeded,
    NotImplementedYet,
    OutOfMemory,
    RequestTooLarge,
    ResourceConflict,
    ResourceNotFound,
    ResponseTooLarge,
    SandboxTimeout,
    ShuttingDown,
)
from .limits import MemoryBackend, choose_backend
from .pool import Pool
from .registry import FunctionRecord, Registry
from .report import Report, RequestIds, tail_log
from .runtimes import RuntimeRegistry, data_dir

log = structlog.get_logger("fnhost.supervisor")
report_log = logs.ReportLog(log)

REAP_INTERVAL_S = 1.0


@dataclass(slots=True)
class InvokeResult:
    status_code: int
    payload: bytes
    function_error: str
    request_id: str
    report: Report | None
    log_result: str = ""


class Supervisor:
    def __init__(self, settings: Settings, runtimes: RuntimeRegistry | None = None) -> None:
        self.settings = settings
        self.public = sandbox.privilege_drop_enabled(settings.worker_user)
        if runtimes is None:
            root = data_dir("runtimes")
            if self.public:  # shims must be readable by workers wherever fnhost is installed
                root = sandbox.publish_runtimes(root, settings.state_dir)
            runtimes = RuntimeRegistry(root, public=self.public)
        self.runtimes = runtimes
        self.registry = Registry(settings.state_dir)
        self.usage = UsageStore(settings.state_dir / "functions.sqlite3")
        self.scratch_root = settings.state_dir / "work"
        shutil.rmtree(self.scratch_root, ignore_errors=True)  # left by a daemon that was killed
        self.scratch_root.mkdir(mode=0o711)
        self.deployer = Deployer(settings, runtimes, self.registry, self.scratch_root, self.public)
        self.backend: MemoryBackend = choose_backend(settings.memory_backend)
        self.pools: dict[str, Pool] = {}
        self.request_ids = RequestIds()
        self.metrics_registry = CollectorRegistry()
        self.busy: set = set()  # workers mid-invocation, for the memory sampler
        self.started = time.monotonic()
        self.draining = False
        self._closed = False
        self._deploy_locks: dict[str, anyio.Lock] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Load persisted functions, then reap and sample until cancelled; stops every worker."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                for record in self.registry.all():
                    try:
                        self._install(record)
                    except ApiError as exc:
                        log.error("function_not_loaded", function=record.config.name, error=exc.message)
                tg.start_soon(self._reaper)
                tg.start_soon(self._flush_usage)
                if not self.backend.kernel_enforced:
                    tg.start_soon(self._memory_sampler)
                task_status.started()
                await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await self.shutdown()

    async def shutdown(self) -> None:
        """Stop every worker and release the host resources; safe to call twice."""
        self.draining = True
        if self._closed:
            return
        self._closed = True
        async with anyio.create_task_group() as tg:
            for pool in self.pools.values():
                tg.start_soon(pool.stop_all)
        self.flush_usage()
        report_log.flush()
        self.backend.close()
        self.usage.close()
        self.registry.close()

    def _spawn_background(self, fn: Callable[[], Awaitable[None]]) -> None:
        if self._tg is not None:
            self._tg.start_soon(fn)

    async def _flush_usage(self) -> None:
        while True:
            await anyio.sleep(FLUSH_INTERVAL_S)
            self.flush_usage()

    def flush_usage(self) -> None:
        self.usage.flush({name: pool.meter for name, pool in self.pools.items()})

    async def _reaper(self) -> None:
        while True:
            await anyio.sleep(REAP_INTERVAL_S)
            now = time.monotonic()
            for pool in self.pools.values():
                if pool.idle:
                    pool.reap_idle(now)

    async def _memory_sampler(self) -> None:
        """psutil backend only: kill any busy worker tree over its limit."""
        interval = self.settings.memory_sample_interval_s
        while True:
            await anyio.sleep(interval)
            for worker in list(self.busy):
                memory = worker.memory
                if memory is not None and await anyio.to_thread.run_sync(memory.tree_rss) > memory.limit_bytes:
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
        for pool in self.pools.values():
            pool.queue_timeout_s = settings.queue_timeout_s
            pool.limit = pool.config.max_concurrency or settings.max_concurrency_cap

    async def create_function(self, config: FunctionConfig, code: CodeSource) -> FunctionRecord:
        async with self._lock(config.name):
            self.deployer.check(config)
            if self.registry.exists(config.name):
                raise ResourceConflict(f"Function already exist: {config.name}")
            if len(self.pools) >= self.settings.max_functions:
                raise LimitExceeded(
                    f"this daemon holds {len(self.pools)} functions, its max_functions; delete some "
                    "or raise max_functions in the daemon config"
                )
            ref = await self.deployer.resolve_code(code)
            build_dir = await self.deployer.build(config, ref)
            record = self.registry.put(config, ref, build_dir, create=True)
            self._install(record)
            log.info("function_created", function=config.name, runtime=config.runtime)
            return record

    async def update_code(self, name: str, code: CodeSource) -> FunctionRecord:
        async with self._lock(name):
            current = self.registry.get(name)
            ref = await self.deployer.resolve_code(code)
            build_dir = await self.deployer.build(current.config, ref)
            record = self.registry.put(current.config, ref, build_dir, create=False)
            self._install(record)
            log.info("function_code_updated", function=name, code_sha256=ref.sha256)
            return record

    async def update_config(self, name: str, **changes: object) -> FunctionRecord:
        async with self._lock(name):
            current = self.registry.get(name)
            config = self.deployer.check(current.config.replace(**changes))
            build_dir = await self.deployer.build(config, current.code)
            record = self.registry.put(config, current.code, build_dir, create=False)
            self._install(record)
            log.info("function_configuration_updated", function=name, changed=sorted(changes))
            return record

    def get_function(self, name: str) -> FunctionRecord:
        return self.registry.get(name)

    def list_functions(self) -> list[FunctionRecord]:
        return self.registry.all()

    async def delete_function(self, name: str) -> None:
        async with self._lock(name):
            self.registry.delete(name)
            pool = self.pools.pop(name, None)
            if pool is not None:
                await pool.close()
            log.info("function_deleted", function=name)

    def _install(self, record: FunctionRecord) -> None:
        """Create the function's pool, or move it to the new version (old workers drain)."""
        config = record.config
        spec = self.deployer.worker_spec(record)
        limit = config.max_concurrency or self.settings.max_concurrency_cap
        pool = self.pools.get(config.name)
        if pool is None:
            pool = Pool(
                config=config,
                spec=spec,
                backend=self.backend,
                limit=limit,
                queue_timeout_s=self.settings.queue_timeout_s,
                spawn_background=self._spawn_background,
                busy_registry=self.busy,
            )
            self.pools[config.name] = pool
            self._spawn_background(pool.ensure_warm)
        else:
            pool.reconfigure(config, spec, limit)

    def stats(self) -> dict[str, object]:
        """The snapshot GetStats and `fnhost stats` show."""
        functions = []
        for name in sorted(self.pools):
            pool = self.pools[name]
            c = pool.counters
            functions.append(
                {
                    "function_name": name,
                    "workers": pool.worker_states(),
                    "invocations": c.invocations,
                    "errors": c.errors,
                    "throttles": c.throttles,
                    "cold_starts": c.cold_starts,
                    "timeouts": c.timeouts,
                    "queued": pool.queued,
                }
            )
        return {
            "functions": functions,
            "uptime_s": int(time.monotonic() - self.started),
            "memory_backend": self.backend.name,
        }

    def usage_since(self, since_unix_s: int) -> list[FunctionUsage]:
        self.flush_usage()
        return self.usage.since(since_unix_s)

    def metrics_snapshot(self) -> list[dict[str, object]]:
        """What Prometheus scrapes, taken on the event loop (see metrics.PoolCollector)."""
        out = []
        for name, pool in self.pools.items():
            c = pool.counters
            failed = c.errors - c.timeouts - c.out_of_memory
            out.append(
                {
                    "function": name,
                    "outcomes": {
                        "success": c.invocations - c.errors - c.throttles,
                        "function_error": failed,
                        "timeout": c.timeouts,
                        "out_of_memory": c.out_of_memory,
                        "throttled": c.throttles,
                    },
                    "throttles": c.throttles,
                    "cold_starts": c.cold_starts,
                    "workers": pool.worker_states(),
                    "queued": pool.queued,
                    "pids": [w.pid for w in pool.workers if w.pid],
                    "durations": pool.durations.snapshot(),
                    "inits": pool.inits.snapshot(),
                }
            )
        return out

    # --- invoke -------------------------------------------------------------------------------

    async def invoke(self, name: str, payload: bytes, *, dry_run: bool = False,
                     event: bool = False, tail: bool = False) -> InvokeResult:
        if self.draining:
            raise ShuttingDown("fnhost is shutting down and accepts no new invocations")
        pool = self.pools.get(name)
        if pool is None:
            raise ResourceNotFound(f"Function not found: {name}")
        if len(payload) > SYNC_PAYLOAD_MAX:
            raise RequestTooLarge(
                f"Request must be smaller than {SYNC_PAYLOAD_MAX} bytes for the Invoke operation "
                f"(payload is {len(payload)} bytes)"
            )
        if event:
            raise NotImplementedYet("InvocationType Event (asynchronous invocation) is not implemented yet")
        if dry_run:
            return InvokeResult(204, b"", "", self.request_ids.next(), None)
        request_id = self.request_ids.next()
        config = pool.config
        counters = pool.counters
        counters.invocations += 1
        started = time.perf_counter()
        try:
            worker, cold = await pool.acquire()
        except FunctionError as exc:  # the cold start failed: Lambda reports it as Unhandled
            report = Report.failed(request_id, config.memory_mb, started,
                                   self.settings.billing_granularity_ms)
            return self._error_result(pool, request_id, exc, report, b"", tail)
        if cold:
            counters.cold_starts += 1
        try:
            outcome = await worker.invoke(request_id, payload or b"{}", config.timeout_s)
        except FunctionError as exc:
            if self._closed:
                raise ShuttingDown(
                    "fnhost shut down before the invocation finished (the drain grace ran out)"
                ) from exc
            if isinstance(exc, SandboxTimeout):
                counters.timeouts += 1
            elif isinstance(exc, OutOfMemory):
                counters.out_of_memory += 1
            report = Report.failed(request_id, config.memory_mb, started,
                                   self.settings.billing_granularity_ms,
                                   init_ms=worker.init_duration_ms if cold else None,
                                   peak=worker.peak_bytes())
            return self._error_result(pool, request_id, exc, report, worker.invocation_log(), tail)
        finally:
            pool.release(worker)
        pool.durations.observe(outcome.duration_ms / 1000)
        if cold:
            pool.inits.observe(worker.init_duration_ms / 1000)
        report = Report.of(
            request_id,
            outcome.duration_ms,
            config.memory_mb,
            outcome.peak_bytes,
            worker.init_duration_ms if cold else None,
            self.settings.billing_granularity_ms,
        )
        body = outcome.body
        function_error = ""
        if not outcome.ok:
            function_error = "Unhandled"
            counters.errors += 1
        elif len(body) > SYNC_PAYLOAD_MAX:
            exc = ResponseTooLarge(
                f"Response payload size ({len(body)} bytes) exceeded maximum allowed payload size "
                f"({SYNC_PAYLOAD_MAX} bytes)."
            )
            return self._error_result(pool, request_id, exc, report, outcome.log, tail)
        pool.meter.add(report.billed_duration_ms, config.memory_mb)
        report_log.emit(name, report)
        return InvokeResult(
            200, body, function_error, request_id, report,
            tail_log(request_id, outcome.log, report) if tail else "",
        )

    def _error_result(self, pool: Pool, request_id: str, exc: FunctionError, report: Report,
                      log_bytes: bytes, tail: bool) -> InvokeResult:
        """A platform failure as Lambda reports it: Unhandled, counted, billed, logged."""
        pool.counters.errors += 1
        pool.meter.add(report.billed_duration_ms, report.memory_size_mb)
        log.info("REPORT", function=pool.config.name, request_id=request_id, report=report.line(),
                 error_type=exc.code, error=exc.message)
        return InvokeResult(
            200, exc.to_json(), "Unhandled", request_id, report,
            tail_log(request_id, log_bytes + f"{exc.code}: {exc.message}\n".encode(), report) if tail else "",
        )
