"""The daemon's life: claim the state directory and socket, serve, shut down cleanly.

``serve(..., shutdown_trigger=...)`` takes the shutdown as an injectable coroutine so tests stop
the daemon without signals; by default it waits for SIGTERM or SIGINT.
"""

from __future__ import annotations

import errno
import fcntl
import grp
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import structlog

from .api.exposure import listener_refusal, warn_about_exposure
from .api.grpc_server import start_server
from .api.http_server import HttpServer, bind
from .api.lambda_http import LambdaApi
from .api.metrics_http import serve_metrics
from .api.sigv4 import Verifier
from .api.url_server import UrlFront, UrlServer
from .control.config import (
    FunctionConfig,
    Settings,
    load_config_file,
    settings_from,
)
from .control.credentials import Credentials
from .control.deploy import CodeSource
from .control.runtimes import RuntimeRegistry
from .control.supervisor import Supervisor
from .errors import ApiError, ConfigError, DaemonError, ResourceNotFound
from .execution.cgroups import remove_stale
from .execution.sandbox import privilege_drop_enabled, readable_by_others
from .execution.uids import uid_range_problem
from .systemd import Notifier

# The event loop fnhost serves on, for ``anyio.run``: uvloop took ~60 µs of daemon CPU off every
# invocation and made its latency steadier (bench/PROFILE.md §7). The bench's gRPC floor runs on it too.
EVENT_LOOP: dict[str, Any] = {"use_uvloop": True}

log = structlog.get_logger("fnhost.daemon")

STATUS_INTERVAL_S = 5.0


def _lock_state_dir(state_dir: Path) -> int:
    """Hold an exclusive lock on the state directory for the daemon's lifetime."""
    fd = os.open(state_dir / "fnhost.pid", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise DaemonError(
            f"another fnhost daemon (pid {other}) is using the state directory {state_dir}; "
            "stop it first or use another --state-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _claim_socket(path: Path) -> None:
    """Remove a stale socket; refuse when a live daemon answers on it."""
    if not path.exists() and not path.is_symlink():
        # One by one, as 0755: the daemon's umask (077) would hide the socket from its group.
        for parent in reversed([path.parent, *path.parent.parents]):
            if not parent.exists():
                parent.mkdir()
                os.chmod(parent, 0o755)
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTSOCK):
            raise DaemonError(f"cannot check the existing socket {path}: {exc.strerror}") from exc
        log.info("stale_socket_removed", path=str(path))
        path.unlink(missing_ok=True)
        return
    finally:
        probe.close()
    raise DaemonError(f"another daemon is already serving {path}; refusing to take its socket")


async def _deploy(sup: Supervisor, config: FunctionConfig, code_dir: Path) -> None:
    """Create or update a declared function so it matches its declaration."""
    try:
        current = sup.get_function(config.name)
    except ResourceNotFound:
        await sup.create_function(config, CodeSource(directory=str(code_dir)))
        return
    if current.config != config:
        await sup.update_config(config.name, **{
            f: getattr(config, f) for f in config.__dataclass_fields__ if f != "name"
        })
    # Unchanged code keeps its warm workers: a reload must not drain what it did not change.
    source = CodeSource(directory=str(code_dir))
    code = await sup.deployer.resolve_code(source)
    if (code.sha256, code.location) != (current.code.sha256, current.code.location):
        await sup.update_code(config.name, source)


def example_functions(runtimes: RuntimeRegistry) -> list[tuple[FunctionConfig, Path]]:
    """Each runtime's bundled example as ``hello-<runtime>``, where its toolchain is present."""
    out = []
    for runtime in runtimes:
        if runtime.example_handler is None:
            continue
        try:
            runtime.select()
        except ApiError as exc:
            log.info("example_skipped", runtime=runtime.name, reason=exc.message)
            continue
        config = FunctionConfig(name=f"hello-{runtime.name}", runtime=runtime.name,
                                handler=runtime.example_handler)
        out.append((config, runtime.directory / "example"))
    return out


async def serve(
    settings: Settings,
    *,
    config_path: Path | None = None,
    functions: list[tuple[FunctionConfig, Path]] = (),  # type: ignore[assignment]
    examples: bool = False,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Run the daemon until SIGTERM/SIGINT (or until ``shutdown_trigger`` returns), then drain.

    SIGHUP re-reads ``config_path``; a second SIGTERM/SIGINT during the drain stops at once.
    Raises DaemonError before binding anything when the listener would be exposed (see
    ``listener_refusal``).
    """
    refusal = listener_refusal(settings)
    if refusal is not None:
        raise DaemonError(refusal)
    warn_about_exposure(settings)
    settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
    os.chmod(settings.state_dir, 0o711)  # workers may pass through to their code, never list it
    # From here on everything the daemon creates is private unless it says otherwise (the
    # registry and its WAL, logs, queues); what workers must reach (code, builds, shims, scratch)
    # is chmod'ed explicitly where it is made.
    os.umask(0o077)
    if privilege_drop_enabled(settings.worker_user):
        blocked = readable_by_others(settings.state_dir, directory=False)
        if blocked is not None and blocked != str(settings.state_dir):
            raise DaemonError(
                f"the state directory {settings.state_dir} is inside {blocked}, which the workers' "
                "unprivileged users cannot enter: chmod o+x it, or choose another --state-dir"
            )
        if not settings.worker_user:
            problem = uid_range_problem(settings.worker_uid_base, settings.worker_uid_count)
            if problem is not None:
                raise ConfigError(problem)
    lock_fd = _lock_state_dir(settings.state_dir)
    address = settings.address
    socket_path = Path(address.removeprefix("unix:")) if address.startswith("unix:") else None
    notifier = Notifier()
    metrics_server = None
    http_socket: socket.socket | None = None
    http: HttpServer | None = None
    url_socket: socket.socket | None = None
    urls: UrlServer | None = None
    claimed = False
    try:
        if socket_path is not None:
            _claim_socket(socket_path)
            claimed = True
        # Before any uid is claimed: what a daemon killed by SIGKILL left in its cgroups (a
        # function's setsid'd children) dies now, and its uids are free again.
        remove_stale()
        credentials = Credentials.open(settings.state_dir, settings.http_credentials_file or None)
        if settings.http_listen != "none":
            # Bound before any function loads: its workers' environment names the real address.
            http_socket, settings.http_endpoint = bind(settings.http_listen, bool(settings.tls_cert and settings.tls_key))
        if settings.url_listen != "none":
            url_socket, settings.url_endpoint = bind(settings.url_listen, bool(settings.tls_cert and settings.tls_key))
        sup = Supervisor(settings)
        sup.deployer.credentials = credentials
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            declared = list(functions)
            if examples:
                declared += example_functions(sup.runtimes)
            for config, code_dir in declared:
                try:
                    await _deploy(sup, config, code_dir)
                except ApiError as exc:
                    raise ConfigError(f"function {config.name}: {exc.message}") from exc
            await _wait_warm(sup, settings.init_timeout_s)
            server, health = await start_server(sup, address, settings)
            if http_socket is not None:
                api = LambdaApi(sup, settings, Verifier(credentials, settings.region))
                http = HttpServer(api, http_socket, settings)
                await http.start()
                if settings.http_endpoint.startswith("unix:"):
                    _secure_socket(Path(settings.http_endpoint.removeprefix("unix:")), settings)
                log.info("http_serving", address=settings.http_endpoint,
                         authentication="sigv4" if credentials.enabled else "none")
            if url_socket is not None:
                urls = UrlServer(UrlFront(sup, settings, credentials), url_socket, settings)
                await urls.start()
                if settings.url_endpoint.startswith("unix:"):
                    _secure_socket(Path(settings.url_endpoint.removeprefix("unix:")), settings)
                log.info("urls_serving", address=settings.url_endpoint)
            if settings.metrics_listen:
                metrics_server = serve_metrics(lambda: sup.snapshot(with_histograms=True), settings.metrics_listen,
                                               sup.metrics_registry, sup.async_events.stats, sup.zygote_report,
                                               sup.cell_report)
                log.info("metrics_serving", address=f"http://{settings.metrics_listen}/metrics")
            if socket_path is not None:
                _secure_socket(socket_path, settings)
            lifecycle = _Lifecycle(sup, notifier, settings, config_path, credentials, http)
            tg.start_soon(lifecycle.report_status)
            if notifier.watchdog_interval_s:
                tg.start_soon(lifecycle.watchdog)
            log.info("serving", address=address, functions=len(sup.pools), pid=os.getpid())
            notifier.ready(lifecycle.status_line())
            if ready is not None:
                ready(address)
            tg.start_soon(lifecycle.handle_signals, tg)
            if shutdown_trigger is None:
                await lifecycle.stop.wait()
            else:
                await shutdown_trigger()
            await lifecycle.drain(health)
            if http is not None:
                await http.stop()
            if urls is not None:
                await urls.stop()
            await server.stop(1.0)  # answers to the last killed invocations still go out
            tg.cancel_scope.cancel()
        if shutdown_trigger is None:
            # Everything is stopped, and leaving the signal receiver restored the default
            # handlers: a late second signal must not turn this clean exit into death by SIGTERM.
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_IGN)
        log.info("stopped")
    finally:
        if http_socket is not None and http is None:  # failed before serving: nobody else closes it
            http_socket.close()
        if url_socket is not None and urls is None:
            url_socket.close()
        if metrics_server is not None:
            metrics_server.shutdown()
        notifier.close()
        if claimed and socket_path is not None and socket_path.is_socket():
            socket_path.unlink(missing_ok=True)
        os.close(lock_fd)


async def _wait_warm(sup: Supervisor, timeout: float) -> None:
    """READY means min_warm pools are warm (or failing to warm, which the log says)."""
    with anyio.move_on_after(timeout):
        while any(pool.warming for pool in sup.snapshot()):
            await anyio.sleep(0.02)


def _secure_socket(path: Path, settings: Settings) -> None:
    if settings.socket_group:
        try:
            gid = grp.getgrnam(settings.socket_group).gr_gid
        except KeyError:
            raise ConfigError(f"daemon.socket_group: no such group {settings.socket_group!r}") from None
        os.chown(path, -1, gid)
    os.chmod(path, settings.socket_mode)


class _Lifecycle:
    """Signals, reload, drain, watchdog and status: what runs beside the server."""

    def __init__(self, sup: Supervisor, notifier: Notifier, settings: Settings, config_path: Path | None,
                 credentials: Credentials | None = None, http: HttpServer | None = None) -> None:
        self.sup = sup
        self.credentials = credentials
        self.http = http
        self.notifier = notifier
        self.settings = settings
        self.config_path = config_path
        self.stop = anyio.Event()
        self.force = anyio.Event()

    async def handle_signals(self, tg: anyio.abc.TaskGroup) -> None:
        """For the daemon's whole life: SIGHUP reloads; SIGTERM/SIGINT asks for a drain; a second forces it.

        Handlers stay installed until the daemon exits, so a second signal never falls back to
        the default action (which would leave the workers to notice on their own).
        """
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                if signum == signal.SIGHUP:
                    log.info("signal_received", signal=name, action="reload")
                    tg.start_soon(self.reload)
                elif not self.stop.is_set():
                    log.info("signal_received", signal=name, action="drain")
                    self.stop.set()
                else:
                    log.warning("signal_received", signal=name, action="stop now")
                    self.force.set()

    async def drain(self, health: Any) -> None:
        """Refuse new work; let running invocations finish within the grace; stop every worker."""
        grace = self.settings.shutdown_grace_s
        self.notifier.stopping()
        self.sup.draining = True
        await health.enter_graceful_shutdown()
        log.info("draining", in_flight=len(self.sup.busy), grace_s=grace)
        with anyio.move_on_after(grace):
            while self.sup.busy and not self.force.is_set():
                await anyio.sleep(0.02)
        if self.sup.busy:
            log.warning("drain_grace_expired", killed=len(self.sup.busy))
        await self.sup.shutdown()

    async def reload(self) -> None:
        if self.config_path is None:
            log.warning("reload_ignored", reason="the daemon was started without --config")
            return
        self.notifier.reloading()
        try:
            parsed = load_config_file(self.config_path)
            new = settings_from(parsed.daemon, state_dir=self.settings.state_dir,
                                listen=self.settings.listen or None, http_listen=self.settings.http_listen,
                                url_listen=self.settings.url_listen)
            for config, _ in parsed.functions:
                self.sup.check(config, cap=new.max_concurrency_cap)
        except (ConfigError, ApiError) as exc:
            log.error("reload_failed", config=str(self.config_path), error=exc.message,
                      note="the previous configuration stays in force")
            self.notifier.ready(self.status_line())
            return
        for key in ("listen", "memory_backend", "socket_mode", "socket_group", "metrics_listen",
                    "tls_cert", "tls_key", "tls_client_ca", "token_file", "insecure", "worker_user",
                    "worker_uid_base", "worker_uid_count", "worker_pids_max", "cpu_mb_per_vcpu",
                    "worker_namespaces", "http_listen", "http_credentials_file", "region", "account_id",
                    "url_listen", "queue", "async_durability"):
            if getattr(new, key) != getattr(self.settings, key):
                log.warning("reload_needs_restart", setting=key)
                setattr(new, key, getattr(self.settings, key))
        new.http_endpoint = self.settings.http_endpoint
        new.url_endpoint = self.settings.url_endpoint
        if self.credentials is not None:
            try:
                self.credentials.reload()
            except ConfigError as exc:
                log.error("access_keys_reload_failed", error=exc.message, note="the previous keys stay in force")
        self.settings = new
        self.sup.apply_settings(new)
        if self.http is not None:
            self.http.api.settings = self.http.api.ops.settings = new
        for config, code_dir in parsed.functions:
            try:
                await _deploy(self.sup, config, code_dir)
            except ApiError as exc:
                log.error("reload_function_failed", function=config.name, error=exc.message)
        log.info("reloaded", config=str(self.config_path), functions=len(parsed.functions))
        self.notifier.ready(self.status_line())

    def status_line(self) -> str:
        pools = self.sup.snapshot()
        states: dict[str, int] = {}
        for pool in pools:
            for state, n in pool.workers.items():
                states[state] = states.get(state, 0) + n
        workers = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "no workers"
        invocations = sum(pool.counters.invocations for pool in pools)
        return f"{len(pools)} functions; {workers}; {invocations} invocations"

    async def report_status(self) -> None:
        if not self.notifier.enabled:
            return
        while True:
            await anyio.sleep(STATUS_INTERVAL_S)
            self.notifier.status(self.status_line())

    async def watchdog(self) -> None:
        """Ping from a task on the event loop: a ping proves the loop still runs."""
        interval = self.notifier.watchdog_interval_s or 1.0
        while True:
            self.notifier.watchdog()
            await anyio.sleep(interval)
