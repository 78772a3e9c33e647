"""Deploy-time work: validating a configuration, taking in code, building it, and composing
the argv, environment and INIT frame its workers start with — all done once per function
version, so that starting a worker is only a spawn.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import anyio
import structlog

from ..errors import ApiError, InvalidParameter, ToolchainMissing
from ..execution import isolation, protocol, sandbox
from ..execution.invocation import LATEST
from ..execution.limits import MemoryBackend
from ..execution.logcapture import LOG_MAX_BYTES
from ..execution.spawn import WorkerSpec
from ..execution.cellkey import CellKey
from ..execution.zygote import ZygoteKey, startup_env
from .config import RESERVED_ENV, FunctionConfig, Settings, validate_config
from .credentials import Credentials, lambda_environment
from .layers import LayerStore
from .registry import CodeRef, FunctionRecord, Registry, code_from_directory
from .runtimes import Runtime, RuntimeRegistry

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
        cache_root = _build_cache_root() if identity is not None and runtime.prepares else None
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


def prepare_build_caches(runtimes: RuntimeRegistry) -> list[str]:
    """What runtimes' builds share, prepared now rather than at the first deploy (``fnhost
    prepare``; Go's compiled standard library takes about a minute once per host). Returns the
    runtimes prepared; one whose toolchain is missing is skipped.
    """
    root = _build_cache_root()
    done: list[str] = []
    if root is None:
        return done
    for runtime in runtimes:
        try:
            if runtime.prepare(root / runtime.name):
                done.append(runtime.name)
        except ApiError:
            continue  # its toolchain is not installed: nothing to prepare
    return done


def _build_cache_root() -> Path | None:
    """Where runtimes' prepare steps keep what builds read and cannot change.

    ``$FNHOST_CACHE_DIR``, else systemd's ``$CACHE_DIRECTORY``, else ``/var/cache/fnhost``: shared
    by the host's root daemons, since what is there depends only on the toolchains (compiling Go's
    standard library takes close to a minute on 2 cores; once per host, not per state directory).
    None, and builds go without, unless it is a directory of this user's that nobody else may
    write: a cache another user could change would feed compiled code to every build.
    """
    path = _cache_root_path()
    try:
        path.mkdir(mode=0o755, parents=True, exist_ok=True)
        st = os.lstat(path)
    except OSError as exc:
        log.warning("build_cache_unusable", path=str(path), error=str(exc))
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        log.warning("build_cache_unsafe", path=str(path),
                    note="not a directory of the daemon's user that only it may write; builds run without it")
        return None
    os.chmod(path, 0o755)  # whatever the daemon's umask: builds must reach it
    return path


def _cache_root_path() -> Path:
    return Path(os.environ.get("FNHOST_CACHE_DIR") or os.environ.get("CACHE_DIRECTORY", "").split(":")[0]
                or "/var/cache/fnhost")


def worker_cache_dir(runtime: str) -> str:
    """``{cache_dir}`` in a runtime's [launch]: what its prepare step left for workers to read
    (Java's class-data archive), or "" when the cache root is not a directory of this user's
    that nobody else may write — what is there runs in every worker. Checked at each spawn,
    without a log line or a write: a missing cache only costs the worker speed."""
    root = _cache_root_path()
    try:
        st = os.lstat(root)
    except OSError:
        return ""
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        return ""
    return str(root / runtime)


def base_env(launch_env: dict[str, str]) -> dict[str, str]:
    """What every worker's environment starts from, before its function's names and variables."""
    return {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "LANG": "C.UTF-8", "TZ": ":UTC",
            **launch_env}


def plain_zygote(runtime: Runtime) -> ZygoteKey | None:
    """The zygote of a function of ``runtime`` that sets nothing read at start-up: started with
    the daemon, so that the first worker need not wait for it. None: none (or no toolchain).
    Only a runtime with a [zygote] has its toolchain looked up."""
    if not runtime.has_zygote:
        return None
    try:
        values = runtime.values(code_dir="", build_dir="", handler="", memory_mb="128",
                                cache_dir=worker_cache_dir(runtime.name))
        _, launch_env = runtime.launch(values)
    except ToolchainMissing:
        return None
    return runtime.zygote(values, base_env(launch_env))


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
    view: isolation.View | None = None,
    platform_env: dict[str, str] | None = None,
    version: str = LATEST,
    layers_dir: str = "",
) -> WorkerSpec:
    """The argv, environment and INIT frame a worker of one function version starts with.

    The one composition of them: ``Deployer.worker_spec`` uses it for every function, and the
    benchmark's worker-hop floor (bench/floors.py) for the shim it speaks to directly. Raises what
    ``Runtime.launch`` raises (ToolchainMissing when the runtime cannot run here).

    ``platform_env``: the region, endpoint and keys for calling Lambda. The function's own
    ``environment`` may override the endpoint (Lambda does not reserve it), never the reserved
    names: configuration refuses them, and a record stored before they were reserved loses them
    here, in the INIT frame too.

    ``layers_dir``: where the worker finds its layers ("/opt", or the merged directory's real
    path without a mount namespace), exported as ``FNHOST_LAYERS_DIR`` with Lambda's search paths
    (``bin`` on PATH, ``lib`` on LD_LIBRARY_PATH, the runtime's [layers] env); "": no layers.
    """
    platform_env = platform_env or {}
    environment = {k: v for k, v in environment.items() if k not in RESERVED_ENV}
    code_dir = str(code_dir)
    values = runtime.values(
        code_dir=code_dir,
        build_dir=str(build_dir),
        handler=handler,
        memory_mb=str(memory_mb),
        cache_dir=worker_cache_dir(runtime.name),
    )
    argv, launch_env = runtime.launch(values)
    base = base_env(launch_env)
    day = datetime.now(UTC).strftime("%Y/%m/%d")
    log_group = f"/aws/lambda/{name}"
    log_stream = f"{day}/[{version}]{uuid.uuid4().hex}"
    env = {
        **base,
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_VERSION": version,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": log_group,
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
        "AWS_EXECUTION_ENV": f"fnhost_{runtime.name}",
        "_HANDLER": handler,
        "LAMBDA_TASK_ROOT": code_dir,
        "LAMBDA_RUNTIME_DIR": str(runtime.directory),
        "FNHOST_BUILD_DIR": str(build_dir),
        **platform_env,
    }
    if layers_dir:
        # Lambda appends /opt/bin and /opt/lib: the system's own programs and libraries win.
        env["FNHOST_LAYERS_DIR"] = layers_dir
        env["PATH"] = f"{env['PATH']}:{layers_dir}/bin"
        library = env.get("LD_LIBRARY_PATH")
        env["LD_LIBRARY_PATH"] = f"{library}:{layers_dir}/lib" if library else f"{layers_dir}/lib"
        env.update(runtime.layers_env({**values, "layers_dir": layers_dir}, env))
    env.update(environment)
    frame = protocol.encode_init(
        {
            "handler": handler,
            "code_dir": code_dir,
            "build_dir": str(build_dir),
            "function_name": name,
            "function_version": version,
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
        view=view,
        # A zygote is root as it starts: never with a start-up variable the function chose.
        zygote=None if unsafe_startup(chosen_startup(env, base, runtime.select()[0].startup_env), view)
        else runtime.zygote(values, env),
        stem_cell=stem_cell_key(runtime, values, base, env, memory_mb, view, identity),
    )


# Read by the C library as a process starts (the loader's paths and preloads, the allocator):
# start-up variables of every runtime, beside its own [zygote] or [stem_cell] startup_env.
LIBC_STARTUP_ENV = ("LD_*", "MALLOC_*", "GLIBC_TUNABLES")
LAYERS_LIB = ("LD_LIBRARY_PATH", "/opt/lib")  # a layered function's, in a view of its own


def chosen_startup(env: dict[str, str], base: dict[str, str], patterns: tuple[str, ...]) -> list[tuple[str, str]]:
    """The start-up variables (``patterns`` and the C library's) that a function's ``env`` sets
    otherwise than ``base``."""
    return [(k, v) for k, v in startup_env(env, (*patterns, *LIBC_STARTUP_ENV)) if base.get(k) != v]


def unsafe_startup(chosen: list[tuple[str, str]], view: isolation.View | None) -> list[tuple[str, str]]:
    """Those of ``chosen`` that a process started before the function's uid is taken (a zygote,
    a stem cell: root) must never start with. ``PYTHONPATH`` with a sitecustomize.py in the
    function's code, ``NODE_OPTIONS=--require``, ``JAVA_TOOL_OPTIONS=-agentpath:`` or
    ``LD_PRELOAD`` would run the function's choice as root. The one exception is a layered
    function's ``LD_LIBRARY_PATH=/opt/lib`` in a view of its own: there ``/opt`` is the host's
    (root's) until the function's layers are bound over it."""
    return [kv for kv in chosen if not (kv == LAYERS_LIB and view is not None and view.opt)]


def stem_cell_key(runtime: Runtime, values: dict[str, str], base: dict[str, str], env: dict[str, str],
                  memory_mb: int, view: isolation.View | None, identity: sandbox.Identity | None) -> CellKey | None:
    """The stem cells that can become a worker of this function (execution/stemcell.py); None:
    none can. A function that sets a start-up variable gets none (``unsafe_startup``): its
    workers start as they would without cells, the variable read after the uid is dropped.
    ``base``: every worker's environment before its function's (``base_env``)."""
    stem = runtime.stem_cell(values)
    if stem is None:
        return None
    argv, patterns = stem
    startup = chosen_startup(env, base, patterns)
    if unsafe_startup(startup, view):
        return None
    cell_view = None if view is None else isolation.View(
        hidden=view.hidden, readable=(str(runtime.directory),), writable=(), tmp_mb=view.tmp_mb,
        opt="" if view.opt is not None else None)  # the layers are bound over it at SPECIALISE
    return CellKey(runtime=runtime.name, argv=tuple(argv), env=tuple(sorted({**base, **dict(startup)}.items())),
                   memory_mb=memory_mb, view=cell_view, own_uid=identity is not None and identity.own,
                   startup=tuple(k for k, _ in startup))
