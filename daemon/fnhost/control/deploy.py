"""Deploy-time work: validating a configuration, taking in code, building it, and composing
the argv, environment and INIT frame its workers start with — all done once per function
version, so that starting a worker is only a spawn.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import anyio
import structlog

from ..errors import InvalidParameter
from ..execution import protocol, sandbox
from ..execution.invocation import LATEST
from ..execution.logcapture import LOG_MAX_BYTES
from ..execution.spawn import WorkerSpec
from .config import FunctionConfig, Settings, validate_config
from .registry import CodeRef, FunctionRecord, Registry, code_from_directory
from .runtimes import Runtime, RuntimeRegistry

log = structlog.get_logger("fnhost.deploy")

@dataclass(slots=True)
class CodeSource:
    """Code as a request gives it: a host directory or zip bytes (exactly one)."""

    directory: str | None = None
    zip_file: bytes | None = None


class Deployer:
    def __init__(self, settings: Settings, runtimes: RuntimeRegistry, registry: Registry,
                 scratch_root: Path, public: bool) -> None:
        self.settings = settings
        self.runtimes = runtimes
        self.registry = registry
        self.scratch_root = scratch_root
        self.public = public  # workers run as other users: code must be readable by them

    def check(self, config: FunctionConfig, *, cap: int | None = None) -> FunctionConfig:
        """Validate a configuration fully (runtime, handler, toolchain included) without applying it."""
        validate_config(config, max_concurrency_cap=cap or self.settings.max_concurrency_cap)
        runtime = self.runtimes.get(config.runtime)
        runtime.check_handler(config.handler)
        runtime.select()  # raises ToolchainMissing, naming what to install
        return config

    async def resolve_code(self, code: CodeSource) -> CodeRef:
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

    async def build(self, config: FunctionConfig, code: CodeRef) -> Path:
        runtime = self.runtimes.get(config.runtime)
        if not runtime.builds:
            return code.location
        build_dir = self.registry.build_dir_for(config.runtime, code, config.handler)
        if (build_dir / ".fnhost-built").exists():
            return build_dir

        def build() -> Path:
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

    def worker_spec(self, record: FunctionRecord) -> WorkerSpec:
        config = record.config
        runtime = self.runtimes.get(config.runtime)
        try:
            identity = sandbox.identity_for(record.slot, self.settings.worker_user, self.settings.worker_uid_base)
        except ValueError as exc:
            raise InvalidParameter(str(exc)) from exc
        return compose_worker_spec(
            runtime,
            name=config.name,
            handler=config.handler,
            code_dir=record.code.location,
            build_dir=record.build_dir,
            memory_mb=config.memory_mb,
            timeout_s=config.timeout_s,
            environment=config.environment,
            identity=identity,
            scratch_root=self.scratch_root,
            init_timeout_s=self.settings.init_timeout_s,
            kill_grace_s=self.settings.kill_grace_s,
            log_max_bytes=self.settings.function_log_max_bytes,
        )


def compose_worker_spec(
    runtime: Runtime,
    *,
    name: str,
    handler: str,
    code_dir: Path | str,
    build_dir: Path | str,
    memory_mb: int,
    timeout_s: float,
    environment: dict[str, str],
    identity: sandbox.Identity | None,
    scratch_root: Path | None,
    init_timeout_s: float,
    kill_grace_s: float,
    log_max_bytes: int = LOG_MAX_BYTES,
) -> WorkerSpec:
    """The argv, environment and INIT frame a worker of one function version starts with.

    The one composition of them: ``Deployer.worker_spec`` uses it for every function, and the
    benchmark's worker-hop floor (bench/floors.py) for the shim it speaks to directly. Raises what
    ``Runtime.launch`` raises (ToolchainMissing when the runtime cannot run here).
    """
    code_dir = str(code_dir)
    values = runtime.values(
        code_dir=code_dir,
        build_dir=str(build_dir),
        handler=handler,
        memory_mb=str(memory_mb),
    )
    argv, launch_env = runtime.launch(values)
    day = datetime.now(UTC).strftime("%Y/%m/%d")
    log_group = f"/aws/lambda/{name}"
    log_stream = f"{day}/[{LATEST}]{uuid.uuid4().hex}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
        **launch_env,
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_VERSION": LATEST,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": log_group,
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
        "AWS_EXECUTION_ENV": f"fnhost_{runtime.name}",
        "_HANDLER": handler,
        "LAMBDA_TASK_ROOT": code_dir,
        "LAMBDA_RUNTIME_DIR": str(runtime.directory),
        "FNHOST_BUILD_DIR": str(build_dir),
        **environment,
    }
    frame = protocol.encode_init(
        {
            "handler": handler,
            "code_dir": code_dir,
            "build_dir": str(build_dir),
            "function_name": name,
            "function_version": LATEST,
            "memory_mb": memory_mb,
            "timeout_s": timeout_s,
            "log_group_name": log_group,
            "log_stream_name": log_stream,
            "environment": environment,
        }
    )
    return WorkerSpec(
        identity=identity,
        scratch_root=scratch_root,
        function=name,
        argv=argv,
        env=env,
        cwd=code_dir,
        init_frame=frame,
        memory_limit_bytes=memory_mb * 1024 * 1024,
        init_timeout_s=init_timeout_s,
        kill_grace_s=kill_grace_s,
        log_max_bytes=log_max_bytes,
    )
