"""Deploy-time work: validating a configuration, taking in code, building it, and composing
what its workers start with (worker_specs.py) — all done once per function version, so that
starting a worker is only a spawn.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import anyio
import structlog

from ..errors import InvalidParameter
from ..execution import isolation, sandbox
from ..execution.limits import MemoryBackend
from ..execution.spawn import WorkerSpec
from ..execution.zygote import ZygoteKey
from .build_caches import build_cache_root
from .config import FunctionConfig, Settings, validate_config
from .credentials import Credentials, lambda_environment
from .layers import LayerStore
from .registry import CodeRef, FunctionRecord, Registry, code_from_directory
from .runtimes import Runtime, RuntimeRegistry
from .worker_specs import compose_worker_spec, plain_zygote

log = structlog.get_logger("fnhost.deploy")

@dataclass(slots=True)
class CodeSource:
    """Code as a request gives it: a host directory or zip bytes (exactly one)."""

    directory: str | None = None
    zip_file: bytes | None = None


class Deployer:
    # The daemon's memory backend: builds get a memory group of their own, as workers do. Set by
    # the supervisor once it has chosen one; None (a bare Deployer) builds without.
    backend: MemoryBackend | None = None
    # Whether workers get their own mount and pid namespaces (isolation.probe said yes). Set by
    # the supervisor; a bare Deployer composes workers without.
    isolated: bool = False
    # The Lambda API's keys: each function's workers get their own (credentials.lambda_environment).
    # Set by the daemon before any function is installed; None (a bare Deployer): workers get none.
    credentials: Credentials | None = None
    # Published layers (control/layers.py). Set by the supervisor; None (a bare Deployer): a
    # function's layers list must be empty.
    layers: LayerStore | None = None

    def __init__(self, settings: Settings, runtimes: RuntimeRegistry, registry: Registry,
                 scratch_root: Path, public: bool) -> None:
        self.settings = settings
        self.runtimes = runtimes
        self.registry = registry
        self.scratch_root = scratch_root
        self.public = public  # workers run as other users: code must be readable by them
        self._exec_zygote: ZygoteKey | None | bool = False  # False: not looked up yet

    def check(self, config: FunctionConfig, *, cap: int | None = None, kept: list[str] | None = None) -> FunctionConfig:
        """Validate a configuration fully (runtime, handler, toolchain, layers included) without
        applying it; returns it with its layers as a list. ``kept``: the layer ARNs the function
        has already (deleted versions among them stay usable to it). Raises InvalidParameter,
        ToolchainMissing."""
        config = config.replace(layers=list(config.layers))
        validate_config(config, max_concurrency_cap=cap or self.settings.max_concurrency_cap)
        if config.layers:
            if self.layers is None:
                raise InvalidParameter("this daemon has no layer store: deploy without layers")
            self.layers.resolve(config.layers, kept=kept or [])
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

    async def build(self, config: FunctionConfig, code: CodeRef, *, slot: int | None = None) -> Path:
        """The function's build directory for ``code``: built now if its runtime builds and it is not there yet.

        A build is the function's untrusted code at work. It runs as the function's own identity
        (that of ``slot``, by default the function's registered one) with its workers' limits
        (``Runtime.build``), in a scratch directory of its own under work/ (0700, the function's),
        never as the daemon. The daemon copies what it wrote into a ``.building-*`` directory it
        owns (0755/0644), then installs that under builds/. Raises BuildFailed, and
        InvalidParameter for a worker_user that does not exist.
        """
        runtime = self.runtimes.get(config.runtime)
        if not runtime.builds:
            return code.location
        if slot is None:
            slot = self.registry.get(config.name).slot
        try:
            identity = sandbox.identity_for(slot, self.settings.worker_user, self.settings.worker_uid_base)
        except ValueError as exc:
            raise InvalidParameter(str(exc)) from exc
        layers = None  # (merged directory, where workers see it), for a build that reads them
        if config.layers and self.layers is not None and runtime.build_reads_layers:
            versions = self.layers.resolve(config.layers, kept=config.layers)  # merged already: found
            merged = await anyio.to_thread.run_sync(self.layers.merged_dir, versions)
            layers = (merged, self.layers_seen_at(merged, runtime, identity))
        build_dir = self.registry.build_dir_for(config.runtime, code, config.handler, config.name,
                                                layers="\0".join(map(str, layers)) if layers else "")
        if (build_dir / ".fnhost-built").exists():
            return build_dir
        # What a runtime's prepare step leaves for its builds to read (Go's compiled standard
        # library): only where builds run as other users than the daemon, which keeps its own.
        cache_root = build_cache_root() if identity is not None and runtime.prepares else None
        cache_dir = cache_root / config.runtime if cache_root is not None else None

        def build() -> Path:
            scratch = sandbox.prepare_scratch(self.scratch_root, f"build-{uuid.uuid4().hex}", identity)
            staging = scratch  # removed below whatever happens
            try:
                staging = Path(tempfile.mkdtemp(dir=self.registry.build_root, prefix=".building-"))
                started = time.perf_counter()
                runtime.build(code.location, staging, config.handler, scratch,
                              identity=identity, cache_dir=cache_dir, backend=self.backend, layers=layers)
                sandbox.make_readable(staging)
                (staging / ".fnhost-built").write_text(f"{time.perf_counter() - started:.3f}\n")
                try:
                    self.registry.install_build(staging, build_dir)  # fsync'd, private until sealed
                except OSError:
                    if not (build_dir / ".fnhost-built").exists():
                        raise
                log.info("built", function=config.name, runtime=config.runtime,
                         uid=identity.uid if identity else os.geteuid(),
                         seconds=round(time.perf_counter() - started, 3))
                return build_dir
            finally:
                shutil.rmtree(staging, ignore_errors=True)
                shutil.rmtree(scratch, ignore_errors=True)

        return await anyio.to_thread.run_sync(build)

    def worker_spec(self, record: FunctionRecord) -> WorkerSpec:
        config = record.config
        runtime = self.runtimes.get(config.runtime)
        identity = self.identity(record)
        layers = self.layers_dir(record)
        view = self.view_for(record, runtime) if identity is not None else None
        if layers is not None:
            log.info("function_layers", function=config.name, version=record.version, layers=config.layers,
                     seen_at="/opt (its own mount namespace)" if view is not None and view.opt else
                     f"{layers} through the runtime's search paths (no mount namespace)")
        spec = compose_worker_spec(
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
            view=view,
            platform_env=self.lambda_env(config.name),
            version=record.version,
            layers_dir=self.layers_seen_at(layers, runtime, identity) if layers is not None else "",
        )
        if spec.zygote is None and (setter := self.exec_zygote()) is not None:
            # No zygote of its own: the Python zygote's spare sets the worker up and execs it.
            spec = replace(spec, zygote=setter, exec_after_fork=True)
        return spec

    def exec_zygote(self) -> ZygoteKey | None:
        """The zygote whose spares set up and exec other runtimes' workers: the first runtime's
        plain zygote (Python's: the only runtime with one); None when none can run here."""
        if self._exec_zygote is False:
            self._exec_zygote = next(filter(None, map(plain_zygote, self.runtimes)), None)
        return self._exec_zygote  # type: ignore[return-value]

    def layers_dir(self, record: FunctionRecord) -> Path | None:
        """The merged directory of the function's layers (made if missing); None without layers.
        Blocking (a merge copies files); raises InvalidParameter when a layer is unknown."""
        if not record.config.layers or self.layers is None:
            return None
        versions = self.layers.resolve(record.config.layers, kept=record.config.layers)
        return self.layers.merged_dir(versions)

    def layers_seen_at(self, layers: Path, runtime: Runtime, identity: sandbox.Identity | None) -> str:
        """Where the workers of a function with ``layers`` (its merged directory) find them:
        Lambda's /opt where each has its own mount namespace (``view_for``), else the real path."""
        own_opt = identity is not None and self.isolated and not runtime.installed_under("/opt")
        return "/opt" if own_opt else str(layers)

    def lambda_env(self, name: str) -> dict[str, str]:
        """What function ``name``'s workers call the daemon's Lambda API with: region, endpoint, key."""
        return lambda_environment(self.credentials, name, region=self.settings.region,
                                  endpoint=self.settings.http_endpoint or None)

    def identity(self, record: FunctionRecord) -> sandbox.Identity | None:
        """The uid and gid the function's workers and builds run as (None: the daemon's own)."""
        try:
            return sandbox.identity_for(record.slot, self.settings.worker_user, self.settings.worker_uid_base)
        except ValueError as exc:
            raise InvalidParameter(str(exc)) from exc

    def view_for(self, record: FunctionRecord, runtime: Runtime) -> isolation.View | None:
        """What a worker of ``record`` sees of the host, when workers get namespaces here."""
        if not self.isolated:
            return None
        readable = dict.fromkeys(str(p) for p in (record.code.location, record.build_dir, runtime.directory))
        layers = self.layers_dir(record)
        opt: str | None = str(layers) if layers is not None else ""
        if runtime.installed_under("/opt"):
            # Covering the host's /opt would hide the interpreter itself: the layers are reached
            # through the search paths instead, where the worker can read them.
            opt = None
            if layers is not None:
                readable[str(layers)] = None
        return isolation.View(hidden=(str(self.settings.state_dir.resolve()),), readable=tuple(readable),
                              writable=(), tmp_mb=record.config.ephemeral_storage_mb, opt=opt)
