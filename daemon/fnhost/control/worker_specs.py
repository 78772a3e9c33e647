"""What a function's workers start with: argv, environment, the INIT frame, and which zygote
or stem cell may start them, composed once per function version (``Deployer.worker_spec``), so
that starting a worker is only a spawn.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

from ..errors import ToolchainMissing
from ..execution import isolation, protocol, sandbox
from ..execution.cellkey import CellKey
from ..execution.invocation import LATEST
from ..execution.logcapture import LOG_MAX_BYTES
from ..execution.spawn import WorkerSpec
from ..execution.zygote import ZygoteKey, startup_env
from .build_caches import worker_cache_dir
from .config import RESERVED_ENV
from .runtimes import Runtime


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
