"""The daemon's life: claim the state directory and socket, serve, shut down cleanly.

``serve(..., shutdown_trigger=...)`` takes the shutdown as an injectable coroutine so tests stop
the daemon without signals; by default it waits for SIGTERM or SIGINT.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import structlog

from .config import ConfigError, FunctionConfig, Settings
from .errors import ApiError, ResourceNotFound
from .runtimes import RuntimeRegistry
from .server import start_server
from .supervisor import CodeSource, Supervisor

log = structlog.get_logger("fnhost.daemon")

SHUTDOWN_GRACE_S = 10.0


class DaemonError(Exception):
    """The daemon cannot start; the message says why and what to do."""


def _lock_state_dir(state_dir: Path) -> int:
    """Hold an exclusive lock on the state directory for the daemon's lifetime."""
    fd = os.open(state_dir / "fnhost.pid", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
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
        path.parent.mkdir(parents=True, exist_ok=True)
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


async def _wait_for_signal() -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("signal_received", signal=signal.Signals(signum).name)
            return


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
    await sup.update_code(config.name, CodeSource(directory=str(code_dir)))


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
    functions: list[tuple[FunctionConfig, Path]] = (),  # type: ignore[assignment]
    examples: bool = False,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Run the daemon until ``shutdown_trigger`` returns (default: SIGTERM/SIGINT)."""
    settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    lock_fd = _lock_state_dir(settings.state_dir)
    address = settings.address
    socket_path = Path(address.removeprefix("unix:")) if address.startswith("unix:") else None
    claimed = False
    try:
        if socket_path is not None:
            _claim_socket(socket_path)
            claimed = True
        sup = Supervisor(settings)
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
            server, health = await start_server(sup, address)
            if socket_path is not None:
                os.chmod(socket_path, settings.socket_mode)
            log.info("serving", address=address, functions=len(sup.pools), pid=os.getpid())
            if ready is not None:
                ready(address)
            await (shutdown_trigger or _wait_for_signal)()

            log.info("draining", grace_s=SHUTDOWN_GRACE_S)
            sup.draining = True
            await health.enter_graceful_shutdown()
            await server.stop(SHUTDOWN_GRACE_S)
            await sup.shutdown()
            tg.cancel_scope.cancel()
        log.info("stopped")
    finally:
        if claimed and socket_path is not None and socket_path.is_socket():
            socket_path.unlink(missing_ok=True)
        os.close(lock_fd)

