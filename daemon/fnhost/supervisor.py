"""The supervisor: functions, their pools, and the invoke path. The gRPC layer calls only this.

Deploy-time work (validating, hashing and unpacking code, building, composing a worker's argv,
environment and INIT frame) happens once per function version, so an invocation is: find the
pool, take a worker, write one frame, wait for one frame, give the worker back.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import anyio
import structlog

from .billing import FLUSH_INTERVAL_S, FunctionUsage, UsageStore
from .config import SYNC_PAYLOAD_MAX, FunctionConfig, Settings, validate_config
from .errors import (
    ApiError,
    FunctionError,
    InvalidParameter,
    LimitExceeded,
    NotImplementedYet,
    RequestTooLarge,
    ResourceConflict,
    ResourceNotFound,
    ResponseTooLarge,
    OutOfMemory,
    SandboxTimeout,
    ShuttingDown,
)
from prometheus_client import CollectorRegistry

from .limits import MemoryBackend, choose_backend
from .metrics import Histograms
from .pool import Pool
from .registry import CodeRef, FunctionRecord, Registry, code_from_directory
from .report import Report, tail_log
from . import sandbox
from .runtimes import RuntimeRegistry, data_dir
from .worker import WorkerSpec, init_frame

log = structlog.get_logger("fnhost.supervisor")

REAP_INTERVAL_S = 1.0
VERSION = "$LATEST"


@dataclass(slots=True)
class InvokeResult:
    status_code: int
    payload: bytes
    function_error: str
    request_id: str
    report: Report | None
    log_result: str = ""


@dataclass(slots=True)
class CodeSource:
    """Code as a request gives it: a host directory or zip bytes (exactly one)."""

    directory: str | None = None
    zip_file: bytes | None = None


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
        self.backend: MemoryBackend = choose_backend(settings.memory_backend)
        self.pools: dict[str, Pool] = {}
        self.metrics_registry = CollectorRegistry()
        self.histograms = Histograms(self.metrics_registry)
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

    def apply_settings(self, settings: Settings) -> None:
        """A reloaded config's daemon settings; those needing a restart were kept by the caller."""
        self.settings = settings
        for pool in self.pools.values():
            pool.queue_timeout_s = settings.queue_timeout_s
            pool.limit = pool.config.max_concurrency or settings.max_concurrency_cap

    def check(self, config: FunctionConfig, *, cap: int | None = None) -> FunctionConfig:
        """Validate a configuration fully (runtime, handler, toolchain included) without applying it."""
        validate_config(config, max_concurrency_cap=cap or self.settings.max_concurrency_cap)
        runtime = self.runtimes.get(config.runtime)
        runtime.check_handler(config.handler)
        runtime.select()  # raises ToolchainMissing, naming what to install
        return config

    async def _resolve_code(self, code: CodeSource) -> CodeRef:
        if code.directory and code.zip_file:
            raise InvalidParameter("give the code as a directory or as a zip, not both")
        if code.directory:
            ref = await anyio.to_thread.run_sync(code_from_directory, code.directory)
            blocked = sandbox.readable_by_others(ref.location, directory=True) if self.public else None
            if blocked is not None:
                raise InvalidParameter(
                    f"code directory {code.directory} is not readable by the function's worker, which runs "
                    f"as its own unprivileged user: {blocked} lacks read/search permission for others "
                    "(chmod o+rx), or deploy the code as a zip"
                )
            return ref
        if code.zip_file:
            return await anyio.to_thread.run_sync(self.registry.store_zip, code.zip_file)
        raise InvalidParameter("code is required: a directory path on the daemon's host, or zip bytes")

    async def _build(self, config: FunctionConfig, code: CodeRef) -> Path:
        runtime = self.runtimes.get(config.runtime)
        if not runtime.builds:
            return code.location
        build_dir = self.registry.build_dir_for(config.runtime, code, config.handler)
        if (build_dir / ".fnhost-built").exists():
            return build_dir

        def build() -> Path:
            import shutil
            import tempfile

            staging = Path(tempfile.mkdtemp(dir=self.registry.build_root, prefix=".building-"))
            scratch = Path(tempfile.mkdtemp(prefix="fnhost-build-"))
            try:
                started = time.perf_counter()
                runtime.build(code.location, staging, config.handler, scratch)
                sandbox.make_readable(staging)
                (staging / ".fnhost-built").write_text(f"{time.perf_counter() - started:.3f}\n")
                try:
                    os.rename(staging, build_dir)
                except OSError:
                    if not (build_dir / ".fnhost-built").exists():
                        raise
                log.info("built", function=config.name, runtime=config.runtime,
                         seconds=round(time.perf_counter() - started, 3))
                return build_dir
            finally:
                shutil.rmtree(staging, ignore_errors=True)
                shutil.rmtree(scratch, ignore_errors=True)

        return await anyio.to_thread.run_sync(build)

    async def create_function(self, config: FunctionConfig, code: CodeSource) -> FunctionRecord:
        async with self._lock(config.name):
            self.check(config)
            if self.registry.exists(config.name):
                raise ResourceConflict(f"Function already exist: {config.name}")
            if len(self.pools) >= self.settings.max_functions:
                raise LimitExceeded(
                    f"this daemon holds {len(self.pools)} functions, its max_functions; delete some "
                    "or raise max_functions in the daemon config"
                )
            ref = await self._resolve_code(code)
            build_dir = await self._build(config, ref)
            record = self.registry.put(config, ref, build_dir, create=True)
            self._install(record)
            log.info("function_created", function=config.name, runtime=config.runtime)
            return record

    async def update_code(self, name: str, code: CodeSource) -> FunctionRecord:
        async with self._lock(name):
            current = self.registry.get(name)
            ref = await self._resolve_code(code)
            build_dir = await self._build(current.config, ref)
            record = self.registry.put(current.config, ref, build_dir, create=False)
            self._install(record)
            log.info("function_code_updated", function=name, code_sha256=ref.sha256)
            return record

    async def update_config(self, name: str, **changes: object) -> FunctionRecord:
        async with self._lock(name):
            current = self.registry.get(name)
            config = self.check(current.config.replace(**changes))
            build_dir = await self._build(config, current.code)
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
            self.histograms.forget(name)
            log.info("function_deleted", function=name)

    def _install(self, record: FunctionRecord) -> None:
        """Create the function's pool, or move it to the new version (old workers drain)."""
        config = record.config
        spec = self._worker_spec(record)
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
            pool.duration_metric, pool.init_metric = self.histograms.for_function(config.name)
            self.pools[config.name] = pool
            self._spawn_background(pool.ensure_warm)
        else:
            pool.reconfigure(config, spec, limit)

    def _worker_spec(self, record: FunctionRecord) -> WorkerSpec:
        config = record.config
        runtime = self.runtimes.get(config.runtime)
        code_dir = str(record.code.location)
        values = runtime.values(
            code_dir=code_dir,
            build_dir=str(record.build_dir),
            handler=config.handler,
            memory_mb=str(config.memory_mb),
        )
        argv, launch_env = runtime.launch(values)
        day = datetime.now(UTC).strftime("%Y/%m/%d")
        log_group = f"/aws/lambda/{config.name}"
        log_stream = f"{day}/[{VERSION}]{uuid.uuid4().hex}"
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "TZ": ":UTC",
            **launch_env,
            "AWS_LAMBDA_FUNCTION_NAME": config.name,
            "AWS_LAMBDA_FUNCTION_VERSION": VERSION,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": log_group,
            "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
            "AWS_EXECUTION_ENV": f"fnhost_{config.runtime}",
            "_HANDLER": config.handler,
            "LAMBDA_TASK_ROOT": code_dir,
            "LAMBDA_RUNTIME_DIR": str(runtime.directory),
            "FNHOST_BUILD_DIR": str(record.build_dir),
            **config.environment,
        }
        frame = init_frame(
            {
                "handler": config.handler,
                "code_dir": code_dir,
                "build_dir": str(record.build_dir),
                "function_name": config.name,
                "function_version": VERSION,
                "memory_mb": config.memory_mb,
                "timeout_s": config.timeout_s,
                "log_group_name": log_group,
                "log_stream_name": log_stream,
                "environment": config.environment,
            }
        )
        try:
            identity = sandbox.identity_for(record.slot, self.settings.worker_user, self.settings.worker_uid_base)
        except ValueError as exc:
            raise InvalidParameter(str(exc)) from exc
        return WorkerSpec(
            identity=identity,
            scratch_root=self.scratch_root,
            function=config.name,
            argv=argv,
            env=env,
            cwd=code_dir,
            init_frame=frame,
            memory_limit_bytes=config.memory_mb * 1024 * 1024,
            init_timeout_s=self.settings.init_timeout_s,
            kill_grace_s=self.settings.kill_grace_s,
        )

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
                    "queued": sum(1 for w in pool.waiters if not w.done()),
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
                    "queued": sum(1 for w in pool.waiters if not w.done()),
                    "pids": [w.pid for w in pool.workers if w.pid],
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
            return InvokeResult(204, b"", "", str(uuid.uuid4()), None)
        request_id = str(uuid.uuid4())
        config = pool.config
        counters = pool.counters
        counters.invocations += 1
        started = time.perf_counter()
        try:
            worker, cold = await pool.acquire()
        except FunctionError as exc:  # the cold start failed: Lambda reports it as Unhandled
            counters.errors += 1
            report = Report.failed(request_id, config.memory_mb, started,
                                   self.settings.billing_granularity_ms)
            pool.meter.add(report.billed_duration_ms, config.memory_mb)
            return self._error_result(request_id, exc, report, b"", tail, name)
        if cold:
            counters.cold_starts += 1
        try:
            outcome = await worker.invoke(request_id, payload or b"{}", config.timeout_s)
        except FunctionError as exc:
            if self._closed:
                raise ShuttingDown(
                    "fnhost shut down before the invocation finished (the drain grace ran out)"
                ) from exc
            counters.errors += 1
            if isinstance(exc, SandboxTimeout):
                counters.timeouts += 1
            elif isinstance(exc, OutOfMemory):
                counters.out_of_memory += 1
            report = Report.failed(request_id, config.memory_mb, started,
                                   self.settings.billing_granularity_ms,
                                   init_ms=worker.init_duration_ms if cold else None,
                                   peak=worker.memory.peak_bytes() if worker.memory else 0)
            pool.meter.add(report.billed_duration_ms, config.memory_mb)
            return self._error_result(request_id, exc, report, worker.invocation_log(), tail, name)
        finally:
            pool.release(worker)
        pool.duration_metric.observe(outcome.duration_ms / 1000)
        if cold:
            pool.init_metric.observe(worker.init_duration_ms / 1000)
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
            counters.errors += 1
            pool.meter.add(report.billed_duration_ms, config.memory_mb)
            return self._error_result(request_id, exc, report, outcome.log, tail, name)
        pool.meter.add(report.billed_duration_ms, config.memory_mb)
        log.info("REPORT", function=name, request_id=request_id, report=report.line())
        return InvokeResult(
            200, body, function_error, request_id, report,
            tail_log(request_id, outcome.log, report) if tail else "",
        )

    def _error_result(self, request_id: str, exc: FunctionError, report: Report,
                      log_bytes: bytes, tail: bool, name: str) -> InvokeResult:
        log.info("REPORT", function=name, request_id=request_id, report=report.line(),
                 error_type=exc.code, error=exc.message)
        return InvokeResult(
            200, exc.to_json(), "Unhandled", request_id, report,
            tail_log(request_id, log_bytes + f"{exc.code}: {exc.message}\n".encode(), report) if tail else "",
        )
