"""Function configuration and daemon settings: the values, their defaults and their validation.

Every check here raises ``InvalidParameter`` with a message that names the field and says what
to fix, because these messages are what a user sees from ``fnhost deploy`` or the API.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InvalidParameter
from ..execution.logcapture import LOG_MAX_BYTES

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ENV_KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
REGION_RE = re.compile(r"^[a-z]{2}(-[a-z0-9]+)+-[0-9]+$")
ACCOUNT_RE = re.compile(r"^[0-9]{12}$")

MEMORY_MB = (128, 10240)
EPHEMERAL_STORAGE_MB = (512, 10240)  # Lambda's /tmp: 512 MB by default
TIMEOUT_S = (1, 900)
ENV_MAX_BYTES = 4096  # Lambda: all variables together, keys and values
HANDLER_MAX = 128
DESCRIPTION_MAX = 256  # Lambda's, for functions, versions and aliases
CODE_STORAGE_MAX = 75 * 1024**3  # Lambda: 75 GB of deployment packages per region

# Variables the platform sets; a function may not set them. Lambda's reserved names (CreateFunction
# refuses them too), fnhost's own, and the region and access keys a worker calls Lambda with
# (control/credentials.py): a function's code must not be able to pose as another's.
RESERVED_ENV = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_LAMBDA_RUNTIME_API",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "FNHOST_CONTROL_FDS",
        "FNHOST_BUILD_DIR",
        "FNHOST_LAYERS_DIR",
    }
)


@dataclass(frozen=True, slots=True)
class FunctionConfig:
    """Everything that decides how a function's workers run, except its code."""

    name: str
    runtime: str
    handler: str
    memory_mb: int = 128
    timeout_s: int = 3
    environment: dict[str, str] = field(default_factory=dict)
    min_warm: int = 0
    max_concurrency: int = 0  # 0: the daemon's cap
    idle_ttl_s: int = 300
    ephemeral_storage_mb: int = 512
    description: str = ""  # Lambda's Description, at most 256 characters
    # The Lambda runtime identifier it was created with over Lambda's API (python3.12, nodejs20.x,
    # …), echoed back as its Runtime; "" when deployed by fnhost's own runtime name.
    lambda_runtime: str = ""
    # Lambda's Layers: up to five layer-version ARNs, in order (later layers over earlier ones);
    # a list, as JSON gives it back, so that a stored record equals a fresh one.
    layers: list[str] = field(default_factory=list)

    def replace(self, **changes: Any) -> FunctionConfig:
        return dataclasses.replace(self, **changes)


def validate_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise InvalidParameter(
            f"function name {name!r} is invalid: use 1-64 letters, digits, '-' or '_'"
        )
    return name


def _in_range(field_name: str, value: int, bounds: tuple[int, int], unit: str) -> None:
    lo, hi = bounds
    if not lo <= value <= hi:
        raise InvalidParameter(f"{field_name} {value} is out of range: use {lo}-{hi} {unit}")


def validate_config(cfg: FunctionConfig, *, max_concurrency_cap: int) -> FunctionConfig:
    """Check every field of ``cfg`` except runtime and handler (the runtime registry owns those)."""
    validate_name(cfg.name)
    _in_range("memory_mb", cfg.memory_mb, MEMORY_MB, "MB")
    _in_range("ephemeral_storage_mb", cfg.ephemeral_storage_mb, EPHEMERAL_STORAGE_MB, "MB")
    _in_range("timeout_s", cfg.timeout_s, TIMEOUT_S, "seconds")
    if cfg.max_concurrency > max_concurrency_cap:
        raise InvalidParameter(
            f"max_concurrency {cfg.max_concurrency} is above this daemon's cap of "
            f"{max_concurrency_cap}: lower it, or raise max_concurrency_cap in the daemon config"
        )
    limit = cfg.max_concurrency or max_concurrency_cap
    if cfg.min_warm > limit:
        raise InvalidParameter(
            f"min_warm {cfg.min_warm} is above the function's concurrency limit of {limit}"
        )
    if cfg.idle_ttl_s < 1:
        raise InvalidParameter("idle_ttl_s must be at least 1 second")
    if len(cfg.description) > DESCRIPTION_MAX:
        raise InvalidParameter(f"description is longer than {DESCRIPTION_MAX} characters")
    if len(cfg.handler) > HANDLER_MAX:
        raise InvalidParameter(f"handler is longer than {HANDLER_MAX} characters")
    size = 0
    for key, value in cfg.environment.items():
        if key in RESERVED_ENV:
            raise InvalidParameter(f"environment variable {key} is reserved by the platform; the reserved "
                                   f"names are {', '.join(sorted(RESERVED_ENV))}")
        if not ENV_KEY_RE.match(key):
            raise InvalidParameter(
                f"environment variable name {key!r} is invalid: start with a letter, "
                "then letters, digits or '_'"
            )
        if "\0" in value:
            raise InvalidParameter(f"environment variable {key} contains a NUL byte")
        size += len(key.encode()) + len(value.encode())
    if size > ENV_MAX_BYTES:
        raise InvalidParameter(
            f"environment variables take {size} bytes; Lambda's limit is {ENV_MAX_BYTES}"
        )
    return cfg


# --- daemon settings --------------------------------------------------------------------------


def default_state_dir() -> Path:
    """``$FNHOST_STATE_DIR``; else systemd's ``$STATE_DIRECTORY``; else a per-user directory."""
    for var in ("FNHOST_STATE_DIR", "STATE_DIRECTORY"):
        if os.environ.get(var):
            return Path(os.environ[var].split(":")[0])
    if os.geteuid() == 0:
        return Path("/var/lib/fnhost")
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "fnhost"


@dataclass(slots=True)
class Settings:
    """Daemon-wide settings: from the ``[daemon]`` table of the config file and the CLI."""

    state_dir: Path = field(default_factory=default_state_dir)
    listen: str = ""  # "unix:PATH" or "HOST:PORT"; empty: unix socket in the state dir
    socket_mode: int = 0o660
    max_concurrency_cap: int = 64
    queue_timeout_s: float = 3.0  # how long a request waits for a worker at the limit
    init_timeout_s: float = 10.0  # spawn + HELLO + INIT must finish within this
    kill_grace_s: float = 0.5  # SIGTERM → SIGKILL
    billing_granularity_ms: int = 1
    memory_backend: str = "auto"  # auto | cgroup | psutil
    memory_sample_interval_s: float = 0.05
    shutdown_grace_s: float = 30.0  # SIGTERM: how long in-flight invocations may finish
    socket_group: str = ""  # group owning the unix socket (mode socket_mode)
    metrics_listen: str = ""  # HOST:PORT for Prometheus metrics; empty: off
    tls_cert: str = ""  # TCP only: PEM certificate chain
    tls_key: str = ""  # TCP only: PEM private key
    tls_client_ca: str = ""  # TCP only: require client certificates signed by this CA
    token_file: str = ""  # require "authorization: Bearer <token>" with the token in this file
    worker_user: str = ""  # as root: run workers as this user (default: a uid per function)
    # As root, without worker_user: a function runs as uid base + its slot, slot 1 to worker_uid_count.
    # 80001-90000: above useradd's 60000, systemd's DynamicUser 61184-65519 and nobody, below
    # the subordinate ids useradd hands out from 100000.
    worker_uid_base: int = 80000
    worker_uid_count: int = 10000
    worker_pids_max: int = 1024  # processes and threads per worker (Lambda: 1,024)
    cpu_mb_per_vcpu: int = 1769  # CPU in proportion to memory: one vCPU per this many MB (Lambda); 0: off
    # Each worker in mount and pid namespaces of its own (bubblewrap; execution/isolation.py)
    # where the host allows it (a root daemon, bubblewrap and setpriv); false: the host's view.
    worker_namespaces: bool = True
    # Workers of a runtime with a zygote (Python) forked from a warm interpreter rather than
    # started (execution/zygote.py); reloadable: false spawns every new worker.
    zygote: bool = True
    # Stem cells (execution/stemcell.py): workers of Node, Java, Ruby and C# started before
    # their function is known, this many per kind (runtime, memory size, start-up variables),
    # for the 8 kinds used last; a function's next worker takes one over. They are born from
    # the zygote, so ``zygote = false`` turns them off too. Reloadable; 0: none.
    stem_cells: int = 1
    max_functions: int = 5000  # a bound on what the network can make the daemon hold
    max_stream_in_flight: int = 256  # InvokeStream: invocations running per stream before reading pauses
    function_log_max_bytes: int = LOG_MAX_BYTES  # logged per invocation; the rest is discarded
    insecure: bool = False  # allow a non-loopback TCP listener without TLS and client authentication
    # Deploys naming a directory on the daemon's host: None means yes on a unix socket, no on TCP
    # (a remote client has no business choosing which of the host's files become a function).
    allow_directory_code: bool | None = None
    code_storage_max_bytes: int = CODE_STORAGE_MAX  # all stored zips together, as Lambda's 75 GB
    # Lambda's REST API (api/lambda_http.py): "HOST:PORT", "unix:PATH" or "none" (off). TLS as on gRPC.
    http_listen: str = "127.0.0.1:9001"
    http_credentials_file: str = ""  # access keys for SigV4; empty: no keys, loopback/unix only
    region: str = "us-east-1"  # in ARNs, in the SigV4 scope requests must carry, in workers' AWS_REGION
    account_id: str = "000000000000"  # in ARNs
    # Function URLs (api/url_server.py): "HOST:PORT", "unix:PATH" or "none" (off). AWS_IAM URLs are
    # checked with the http_credentials_file keys; NONE URLs are served only on loopback/unix unless insecure.
    url_listen: str = "127.0.0.1:9002"
    # Asynchronous invocation: "" keeps the queue in SQLite in the state directory; "nats://HOST:PORT"
    # in a JetStream stream that several daemons share.
    queue: str = ""
    async_retry_base_s: float = 60.0  # Lambda's spacing: the first retry after this, the second after twice it
    async_max_share: float = 0.5  # of a function's concurrency limit async events may take (at least 1 worker)
    # The embedded queue's SQLite synchronous mode: "normal" survives a killed daemon (the 202's
    # promise), "full" also a power cut, fsyncing each group commit (bench/async_invoke.py: the cost).
    async_durability: str = "normal"
    # Event source mappings (control/event_sources.py) poll this JetStream server; "": queue's, when nats://.
    event_source_nats: str = ""
    # Not a setting: the HTTP listener's actual URL once bound ("" while off), e.g. for workers' env.
    http_endpoint: str = ""
    url_endpoint: str = ""  # likewise, the function URL listener's actual URL

    @property
    def directory_code_allowed(self) -> bool:
        if self.allow_directory_code is None:
            return self.address.startswith("unix:")
        return self.allow_directory_code

    @property
    def socket_path(self) -> Path:
        return self.state_dir / "fnhost.sock"

    @property
    def address(self) -> str:
        return self.listen or f"unix:{self.socket_path}"


def loopback(address: str) -> bool | None:
    """None for a unix socket; else whether every address ``HOST:PORT`` names is a loopback one.

    A wildcard (``0.0.0.0``, ``[::]``, an empty host) and a name that does not resolve count as
    reachable from other hosts: when in doubt, the stricter rules apply.
    """
    if address.startswith(("unix:", "unix-abstract:")):
        return None
    for prefix in ("dns:///", "ipv4:", "ipv6:"):
        address = address.removeprefix(prefix)
    host = address[1:].partition("]")[0] if address.startswith("[") else address.rpartition(":")[0]
    if host == "localhost":
        return True
    try:
        candidates = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            candidates = [ipaddress.ip_address(info[4][0].partition("%")[0])
                          for info in socket.getaddrinfo(host, None) if host]
        except (OSError, UnicodeError):
            return False
    if not candidates:
        return False
    return all(ip.is_loopback or (getattr(ip, "ipv4_mapped", None) or ip).is_loopback for ip in candidates)


_SETTING_TYPES: dict[str, type] = {
    "state_dir": str,
    "listen": str,
    "socket_mode": int,
    "max_concurrency_cap": int,
    "queue_timeout_s": float,
    "init_timeout_s": float,
    "kill_grace_s": float,
    "billing_granularity_ms": int,
    "memory_backend": str,
    "memory_sample_interval_s": float,
    "shutdown_grace_s": float,
    "socket_group": str,
    "metrics_listen": str,
    "tls_cert": str,
    "tls_key": str,
    "tls_client_ca": str,
    "token_file": str,
    "worker_user": str,
    "worker_uid_base": int,
    "worker_uid_count": int,
    "worker_pids_max": int,
    "cpu_mb_per_vcpu": int,
    "worker_namespaces": bool,
    "zygote": bool,
    "stem_cells": int,
    "max_functions": int,
    "max_stream_in_flight": int,
    "function_log_max_bytes": int,
    "insecure": bool,
    "allow_directory_code": bool,
    "code_storage_max_bytes": int,
    "http_listen": str,
    "http_credentials_file": str,
    "region": str,
    "account_id": str,
    "url_listen": str,
    "queue": str,
    "async_retry_base_s": float,
    "async_max_share": float,
    "async_durability": str,
    "event_source_nats": str,
}

_FUNCTION_KEYS = {
    "runtime": str,
    "handler": str,
    "code": str,
    "memory_mb": int,
    "timeout_s": int,
    "environment": dict,
    "min_warm": int,
    "max_concurrency": int,
    "idle_ttl_s": int,
    "ephemeral_storage_mb": int,
}


@dataclass(slots=True)
class ConfigFile:
    """A parsed config file: daemon settings plus declared functions."""

    daemon: dict[str, Any]
    functions: list[tuple[FunctionConfig, Path]]


def _check_type(where: str, value: Any, typ: type) -> Any:
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {typ.__name__}, got {type(value).__name__} {value!r}")
    return value


def load_config_file(path: Path) -> ConfigFile:
    """Read and check a TOML config file::

        [daemon]
        max_concurrency_cap = 32

        [functions.hello]
        runtime = "python"
        handler = "app.handler"
        code = "./hello"          # relative to the config file
        memory_mb = 256
        environment = { GREETING = "hi" }
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    unknown = set(data) - {"daemon", "functions"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {sorted(unknown)}; use [daemon] or [functions.NAME]")
    daemon: dict[str, Any] = {}
    for key, value in data.get("daemon", {}).items():
        if key not in _SETTING_TYPES:
            raise ConfigError(f"{path}: daemon.{key}: unknown setting; known: {sorted(_SETTING_TYPES)}")
        daemon[key] = _check_type(f"{path}: daemon.{key}", value, _SETTING_TYPES[key])
    functions: list[tuple[FunctionConfig, Path]] = []
    for name, table in data.get("functions", {}).items():
        where = f"{path}: functions.{name}"
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: expected a table")
        for key, value in table.items():
            if key not in _FUNCTION_KEYS:
                raise ConfigError(f"{where}.{key}: unknown key; known: {sorted(_FUNCTION_KEYS)}")
            _check_type(f"{where}.{key}", value, _FUNCTION_KEYS[key])
        for required in ("runtime", "handler", "code"):
            if required not in table:
                raise ConfigError(f"{where}: missing required key {required!r}")
        env = {str(k): str(v) for k, v in table.get("environment", {}).items()}
        fields = {k: v for k, v in table.items() if k not in ("code", "environment")}
        try:
            cfg = FunctionConfig(name=validate_name(name), environment=env, **fields)
        except InvalidParameter as exc:
            raise ConfigError(f"{where}: {exc.message}") from exc
        functions.append((cfg, (path.parent / table["code"]).resolve()))
    return ConfigFile(daemon=daemon, functions=functions)


def settings_from(daemon: dict[str, Any], **overrides: Any) -> Settings:
    values = {**daemon, **{k: v for k, v in overrides.items() if v is not None}}
    if "state_dir" in values:
        values["state_dir"] = Path(values["state_dir"]).expanduser().resolve()
    if values.get("memory_backend", "auto") not in ("auto", "cgroup", "psutil"):
        raise ConfigError("daemon.memory_backend: use auto, cgroup or psutil")
    if values.get("code_storage_max_bytes", 1) < 1:
        raise ConfigError("daemon.code_storage_max_bytes: use a positive number of bytes (default 75 GiB)")
    if values.get("function_log_max_bytes", 1) < 1:
        raise ConfigError("daemon.function_log_max_bytes: use a positive number of bytes (default 1048576)")
    if values.get("worker_pids_max", 1024) < 16:
        raise ConfigError("daemon.worker_pids_max: use at least 16 processes and threads per worker (default 1024)")
    if not 0 <= values.get("stem_cells", 1) <= 16:
        raise ConfigError("daemon.stem_cells: use 0 (none) to 16 stem cells of each kind (default 1)")
    if values.get("cpu_mb_per_vcpu", 1769) < 0:
        raise ConfigError("daemon.cpu_mb_per_vcpu: use a number of MB per vCPU (default 1769, Lambda's), or 0 for no CPU limit")
    if values.get("worker_uid_base", 80000) < 0 or values.get("worker_uid_count", 10000) < 1:
        raise ConfigError("daemon.worker_uid_base and worker_uid_count: use a base of 0 or more and a count of at "
                          "least 1 (defaults 80000 and 10000: uids 80001-90000)")
    if not REGION_RE.match(values.get("region", "us-east-1")):
        raise ConfigError("daemon.region: use a region name such as us-east-1 (lowercase letters, digits, '-')")
    if not ACCOUNT_RE.match(values.get("account_id", "000000000000")):
        raise ConfigError("daemon.account_id: use 12 digits (default 000000000000)")
    queue = values.get("queue", "")
    if queue and not queue.startswith(("nats://", "tls://")):
        raise ConfigError("daemon.queue: use \"\" (SQLite in the state directory) or nats://HOST:PORT (JetStream)")
    event_source_nats = values.get("event_source_nats", "")
    if event_source_nats and not event_source_nats.startswith(("nats://", "tls://")):
        raise ConfigError("daemon.event_source_nats: use nats://HOST:PORT (the JetStream server event source "
                          "mappings poll), or \"\" for the queue's server")
    if values.get("async_retry_base_s", 60.0) < 0:
        raise ConfigError("daemon.async_retry_base_s: use seconds, 0 or more (default 60, Lambda's spacing)")
    if values.get("async_durability", "normal") not in ("normal", "full"):
        raise ConfigError("daemon.async_durability: use normal (survives a killed daemon) or full (also a power cut)")
    if not 0 < values.get("async_max_share", 0.5) <= 1:
        raise ConfigError("daemon.async_max_share: use a fraction above 0 and at most 1 (default 0.5)")
    return Settings(**values)
