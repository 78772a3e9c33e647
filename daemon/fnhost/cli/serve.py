"""The daemon's own commands: ``serve`` (in the foreground, or ``--detach``ed), ``prepare``,
``systemd-unit`` and ``bench``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from .common import _fail


@click.command()
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Registry, code store and socket (default: $FNHOST_STATE_DIR, else /var/lib/fnhost "
                   "as root, else ~/.local/state/fnhost).")
@click.option("--listen", default=None, metavar="unix:PATH|HOST:PORT",
              help="Listen address (default: unix socket fnhost.sock in the state directory).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=None, help="TOML file with [daemon] settings and [functions.NAME] tables.")
@click.option("--examples", is_flag=True, help="Also deploy each runtime's bundled hello-<runtime> example.")
@click.option("--detach", is_flag=True,
              help="Start in the background, wait until it serves, print its pid and return.")
@click.option("--metrics-listen", default=None, metavar="HOST:PORT",
              help="Serve Prometheus metrics over HTTP there (e.g. 127.0.0.1:9464).")
@click.option("--tls-cert", default=None, type=click.Path(dir_okay=False), help="PEM certificate chain (TCP).")
@click.option("--tls-key", default=None, type=click.Path(dir_okay=False), help="PEM private key (TCP).")
@click.option("--tls-client-ca", default=None, type=click.Path(dir_okay=False),
              help="Require client certificates signed by this CA.")
@click.option("--token-file", default=None, type=click.Path(dir_okay=False),
              help="Require 'authorization: Bearer <token>' with the token in this file.")
@click.option("--insecure", is_flag=True,
              help="Listen on a TCP address reachable from other hosts without TLS and a token "
                   "(refused otherwise).")
@click.option("--http-listen", envvar="FNHOST_HTTP_LISTEN", default=None, metavar="HOST:PORT|unix:PATH|none",
              help="Serve Lambda's REST API (the AWS SDKs and CLI) there (default: $FNHOST_HTTP_LISTEN, else "
                   "127.0.0.1:9001; none: off).")
@click.option("--url-listen", envvar="FNHOST_URL_LISTEN", default=None, metavar="HOST:PORT|unix:PATH|none",
              help="Serve function URLs there (default: $FNHOST_URL_LISTEN, else 127.0.0.1:9002; none: off).")
@click.option("--http-credentials-file", default=None, type=click.Path(dir_okay=False),
              help="Access keys (AWS shared-credentials format) every Lambda API request must be signed with.")
@click.option("--queue", default=None, metavar="nats://HOST:PORT",
              help="Keep the asynchronous queue in NATS JetStream there (default: SQLite in the state directory).")
@click.option("--event-source-nats", default=None, metavar="nats://HOST:PORT",
              help="The JetStream server event source mappings poll (default: --queue's, when it is NATS).")
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
def serve(state_dir: Path | None, listen: str | None, config_path: Path | None, examples: bool,
          detach: bool, metrics_listen: str | None, tls_cert: str | None, tls_key: str | None,
          tls_client_ca: str | None, token_file: str | None, insecure: bool, http_listen: str | None,
          http_credentials_file: str | None, url_listen: str | None, queue: str | None, event_source_nats: str | None,
          log_level: str) -> None:
    """Run the daemon in the foreground (as systemd expects) until SIGTERM or SIGINT."""
    import anyio

    from ..api.exposure import listener_refusal
    from ..control.config import load_config_file, settings_from
    from ..daemon import EVENT_LOOP
    from ..daemon import serve as run_daemon
    from ..errors import ConfigError, DaemonError
    from ..observability import logs

    try:
        parsed = load_config_file(config_path) if config_path else None
        settings = settings_from(parsed.daemon if parsed else {}, state_dir=state_dir, listen=listen,
                                 metrics_listen=metrics_listen, tls_cert=tls_cert, tls_key=tls_key,
                                 tls_client_ca=tls_client_ca, token_file=token_file,
                                 insecure=True if insecure else None, http_listen=http_listen,
                                 http_credentials_file=http_credentials_file, url_listen=url_listen,
                                 queue=queue, event_source_nats=event_source_nats)
    except ConfigError as exc:
        _fail(f"invalid config: {exc}")
    if detach:
        refusal = listener_refusal(settings)  # here too, so it is said at once rather than in the log
        if refusal is not None:
            _fail(refusal)
        _detach(settings)
        return
    logs.configure(log_level)
    try:
        anyio.run(lambda: run_daemon(settings, config_path=config_path,
                                     functions=parsed.functions if parsed else [], examples=examples),
                  backend_options=EVENT_LOOP)
    except (DaemonError, ConfigError) as exc:
        _fail(exc.message)
    except KeyboardInterrupt:
        pass


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args: tuple[str, ...]) -> None:
    """Run the hot-path benchmark suite (python -m bench); see bench/README.md."""
    root = Path(__file__).resolve().parents[3]
    if not (root / "bench" / "cli.py").is_file():
        _fail("the benchmark suite lives in fnhost's source tree (bench/): run it from a checkout")
    sys.path.insert(0, str(root))
    from bench.cli import run

    sys.exit(run(list(args)))


@click.command()
def prepare() -> None:
    """Prepare what deploy-time builds share (Go's compiled standard library), once per host.

    Run as the user the daemon runs as (root on a build host), after installing or upgrading a
    toolchain; otherwise the first deploy of that runtime does it and waits (about a minute).
    """
    from ..control.build_caches import prepare_build_caches
    from ..control.runtimes import RuntimeRegistry
    from ..observability import logs

    logs.configure("warning")
    done = prepare_build_caches(RuntimeRegistry())
    click.echo(f"prepared: {', '.join(done)}" if done else "nothing to prepare")


@click.command("systemd-unit")
def systemd_unit() -> None:
    """Print a systemd unit file for running fnhost as a service."""
    import shutil

    from ..systemd import unit_file

    exe = shutil.which("fnhost") or f"{sys.executable} -m fnhost"
    click.echo(unit_file(os.path.realpath(exe) if os.path.isabs(exe) else exe), nl=False)


def _detach(settings: Any) -> None:
    """Re-run ``serve`` without --detach in a new session; return once it answers health checks."""
    state_dir = settings.state_dir
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
    log_path = state_dir / "fnhost.log"
    # Every function's output is logged there: readable by the daemon's user only, never by a
    # function that knows the path (the state directory is 0711). fchmod: a log an older fnhost made.
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)
    argv = [a for a in sys.argv if a != "--detach"]
    with os.fdopen(fd, "ab") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "fnhost", *argv[1:]], stdin=subprocess.DEVNULL,
                                stdout=log_file, stderr=log_file, start_new_session=True)
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    conn = _health_connection(settings)
    deadline = time.monotonic() + 120
    with conn.channel(grpc) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                _fail(f"the daemon exited with status {proc.returncode}; its log ({log_path}):\n{tail}")
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    click.echo(f"fnhost serving on {settings.address} (pid {proc.pid}, log {log_path})")
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    proc.terminate()
    hint = " (health checks over TLS trust FNHOST_TLS_CA: set it to the CA that signed --tls-cert)" \
        if conn.tls_ca else ""
    _fail(f"the daemon did not become ready within 120 s{hint}; see {log_path}")


def _health_connection(settings: Any) -> Any:
    """How ``--detach`` reaches the daemon it started: as a client would (FNHOST_TLS_CA,
    FNHOST_TLS_CERT/KEY), at a loopback address when it listens on a wildcard one.

    Without FNHOST_TLS_CA, TLS trusts the daemon's own certificate, which is its own CA when
    self-signed. No token: health checks need none, and it must not travel where a client
    would refuse to send it.
    """
    import dataclasses

    from ..client import Connection

    address = settings.address
    for wildcard, local in (("0.0.0.0:", "127.0.0.1:"), ("[::]:", "[::1]:"), (":", "127.0.0.1:")):
        if address.startswith(wildcard):
            address = local + address.removeprefix(wildcard)
            break
    tls = bool(settings.tls_cert and settings.tls_key)
    ca = None if os.environ.get("FNHOST_TLS_CA") or not tls else settings.tls_cert
    return dataclasses.replace(Connection.resolve(address, tls_ca=ca), token=None)


COMMANDS = [serve, bench, prepare, systemd_unit]
