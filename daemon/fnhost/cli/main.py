"""The ``fnhost`` command: ``serve`` runs the daemon; every other command is a gRPC client.

Exit status: 0 success; 1 the function returned an error (its error JSON on stdout); 2 a
platform or usage error (a message on stderr).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from .. import errors
from ..client import default_address
from ..stdin_stream import CLIENT_EVENT_LOOP, EXIT_FUNCTION_ERROR, StdinError, stream_stdin
from . import async_cmds, esm, layers, urls, versions
from .common import _client, _fail, _print_json, _run, _table, qualified


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--address", envvar="FNHOST_ADDRESS", default=None, metavar="unix:PATH|HOST:PORT",
              help="Where the daemon listens (default: the default state directory's socket).")
@click.version_option(package_name="fnhost")
@click.pass_context
def main(ctx: click.Context, address: str | None) -> None:
    """fnhost: run AWS Lambda functions on hosts you own."""
    ctx.obj = {"address": address or default_address()}


# --- serve ------------------------------------------------------------------------------------


@main.command()
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
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
def serve(state_dir: Path | None, listen: str | None, config_path: Path | None, examples: bool,
          detach: bool, metrics_listen: str | None, tls_cert: str | None, tls_key: str | None,
          tls_client_ca: str | None, token_file: str | None, insecure: bool, http_listen: str | None,
          http_credentials_file: str | None, url_listen: str | None, queue: str | None, log_level: str) -> None:
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
                                 queue=queue)
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


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
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


@main.command()
def prepare() -> None:
    """Prepare what deploy-time builds share (Go's compiled standard library), once per host.

    Run as the user the daemon runs as (root on a build host), after installing or upgrading a
    toolchain; otherwise the first deploy of that runtime does it and waits (about a minute).
    """
    from ..control.deploy import prepare_build_caches
    from ..control.runtimes import RuntimeRegistry
    from ..observability import logs

    logs.configure("warning")
    done = prepare_build_caches(RuntimeRegistry())
    click.echo(f"prepared: {', '.join(done)}" if done else "nothing to prepare")


@main.command("systemd-unit")
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


# --- functions --------------------------------------------------------------------------------


def _parse_env(pairs: tuple[str, ...]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--env")
        env[key] = value
    return env


def _code(path: str) -> str | bytes:
    p = Path(path)
    if p.is_file():
        return p.read_bytes()  # a zip; the daemon validates it
    return str(p.resolve())


@main.command()
@click.argument("name")
@click.option("--runtime", help="python, node, … (required when creating).")
@click.option("--handler", help="The runtime's handler string, e.g. app.handler (required when creating).")
@click.option("--code", "code_path", type=click.Path(exists=True), help="A directory (read in place) or a .zip.")
@click.option("--memory-mb", type=int, help="128-10240, default 128.")
@click.option("--timeout-s", type=int, help="1-900, default 3.")
@click.option("--env", "env_pairs", multiple=True, metavar="KEY=VALUE", help="Repeatable; replaces all variables.")
@click.option("--min-warm", type=int, help="Workers kept warm (provisioned concurrency).")
@click.option("--max-concurrency", type=int, help="Most workers at once (reserved concurrency).")
@click.option("--idle-ttl-s", type=int, help="Stop idle workers after this many seconds.")
@click.option("--ephemeral-storage-mb", type=int, help="Size of the function's private /tmp: 512-10240, default 512.")
@click.option("--description", default=None, help="The function's description (at most 256 characters).")
@click.option("--layer", "layer_arns", multiple=True, metavar="ARN",
              help="A layer version ARN; repeatable, in order (later over earlier), at most 5; replaces the "
                   "list ('--layer \'\'' removes every layer).")
@click.pass_context
def deploy(ctx: click.Context, name: str, runtime: str | None, handler: str | None, code_path: str | None,
           memory_mb: int | None, timeout_s: int | None, env_pairs: tuple[str, ...], min_warm: int | None,
           max_concurrency: int | None, idle_ttl_s: int | None, ephemeral_storage_mb: int | None,
           description: str | None, layer_arns: tuple[str, ...]) -> None:
    """Create function NAME, or update its code and the options given."""
    options = {k: v for k, v in dict(memory_mb=memory_mb, timeout_s=timeout_s, min_warm=min_warm,
                                      max_concurrency=max_concurrency, idle_ttl_s=idle_ttl_s,
                                      ephemeral_storage_mb=ephemeral_storage_mb, description=description,
                                      layers=[a for a in layer_arns if a] if layer_arns else None).items()
               if v is not None}
    env = _parse_env(env_pairs) if env_pairs else None
    with _client(ctx) as client:
        try:
            client.get_function(name)
            exists = True
        except errors.ResourceNotFound:
            exists = False
        except errors.FnhostError as exc:
            _fail(f"{exc.code}: {exc.message}")
        if not exists:
            missing = [f"--{o}" for o, v in (("runtime", runtime), ("handler", handler), ("code", code_path)) if not v]
            if missing:
                raise click.UsageError(f"creating {name} needs {', '.join(missing)}")
            result = _run(client.create_function, name, runtime=runtime, handler=handler,
                          code=_code(code_path), environment=env, **options)  # type: ignore[arg-type]
        else:
            changes = dict(options)
            if runtime:
                changes["runtime"] = runtime
            if handler:
                changes["handler"] = handler
            result = None
            if changes or env is not None:
                result = _run(client.update_function_configuration, name, environment=env, **changes)
            if code_path:
                result = _run(client.update_function_code, name, _code(code_path))
            if result is None:
                result = _run(client.get_function, name)
        _print_json(result)


@main.command()
@click.argument("name", metavar="NAME[:QUALIFIER]")
@click.argument("payload", required=False)
@click.option("--payload-file", type=click.File("rb"), help="Read the payload from a file ('-' for stdin).")
@click.option("--log-type", type=click.Choice(["none", "tail"], case_sensitive=False), default="none",
              help="tail: print the invocation's last 4 KB of log on stderr.")
@click.option("--invocation-type", type=click.Choice(["RequestResponse", "Event", "DryRun"]),
              default="RequestResponse")
@click.option("--async", "run_async", is_flag=True,
              help="Invoke asynchronously (Event): print the request id once the event is stored.")
@click.option("--report", is_flag=True, help="Print the REPORT line on stderr.")
@click.option("--stream", is_flag=True,
              help="Read one JSON payload per line on stdin, invoke each over one InvokeStream "
                   "(concurrently), and print one result per line, in input order.")
@click.pass_context
def invoke(ctx: click.Context, name: str, payload: str | None, payload_file: Any, log_type: str,
           invocation_type: str, run_async: bool, report: bool, stream: bool) -> None:
    """Invoke NAME (a version or alias with NAME:QUALIFIER) with PAYLOAD (JSON); print the result on stdout."""
    if stream:
        if payload is not None or payload_file is not None:
            raise click.UsageError("--stream reads its payloads from stdin, one per line")
        _invoke_stream(ctx, name, log_type, report)  # a qualified name travels as Lambda's name:qualifier
        return
    if payload is not None and payload_file is not None:
        raise click.UsageError("give PAYLOAD or --payload-file, not both")
    data = payload_file.read() if payload_file is not None else (payload or "").encode()
    function, qualifier = qualified(name)
    with _client(ctx) as client:
        result = _run(client.invoke, function, data, invocation_type="Event" if run_async else invocation_type,
                      log_type=log_type, qualifier=qualifier)
    if result.status_code == 202:
        async_cmds.print_accepted(result)
        return
    if result.log_result:
        click.echo(result.log_result, err=True, nl=False)
    if report and result.report is not None:
        click.echo(result.report.line(), err=True)
    out = sys.stdout.buffer
    out.write(result.payload)
    if result.payload and not result.payload.endswith(b"\n"):
        out.write(b"\n")
    out.flush()
    if result.function_error:
        sys.exit(EXIT_FUNCTION_ERROR)


# How many results ``invoke --stream`` lets be outstanding (sent, or held back behind a slower
# earlier one) before it stops reading stdin: above the daemon's per-stream window
# (max_stream_in_flight, 256 by default) so the stream stays full, and a bound on memory. Once
# full, reading resumes only when STREAM_REFILL results have been printed, so the lines sent
# then leave together in one message rather than one per freed slot.
def _invoke_stream(ctx: click.Context, name: str, log_type: str, report: bool) -> None:
    """Results leave in input order: one waiting for a slower earlier one is held back.

    Every line is handed to one ``AsyncClient.stream()`` as soon as it is read (stdin is read in
    a thread), so lines read together leave together in one message, and up to STREAM_WINDOW
    invocations are outstanding at once.
    """
    import anyio

    try:
        worst = anyio.run(stream_stdin, ctx.obj["address"], name, log_type, report,
                          backend="asyncio", backend_options=CLIENT_EVENT_LOOP)
    except errors.FnhostError as exc:
        _fail(f"{exc.code}: {exc.message}")
    except StdinError as exc:
        _fail(f"reading stdin: {exc.__cause__}")
    sys.exit(worst)


@main.command("list")
@click.pass_context
def list_(ctx: click.Context) -> None:
    """List functions."""
    with _client(ctx) as client:
        functions = _run(client.list_functions)
    rows = [("NAME", "RUNTIME", "HANDLER", "MEMORY", "TIMEOUT", "LAST MODIFIED")]
    rows += [(f.function_name, f.runtime, f.handler, f"{f.memory_mb} MB", f"{f.timeout_s} s", f.last_modified)
             for f in functions]
    _table(rows)


@main.command()
@click.argument("name", metavar="NAME[:QUALIFIER]")
@click.pass_context
def get(ctx: click.Context, name: str) -> None:
    """Show NAME's configuration (that of a version or alias with NAME:QUALIFIER) as JSON."""
    with _client(ctx) as client:
        _print_json(_run(client.get_function, *qualified(name)))


@main.command()
@click.argument("name", metavar="NAME[:VERSION]")
@click.pass_context
def delete(ctx: click.Context, name: str) -> None:
    """Delete NAME with its versions and aliases, and stop its workers; NAME:VERSION deletes one version."""
    with _client(ctx) as client:
        _run(client.delete_function, *qualified(name))
    click.echo(f"deleted {name}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the GetStats response as JSON.")
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """Pools, workers by state and invocation counts."""
    with _client(ctx) as client:
        snapshot = _run(client.stats)
    if as_json:
        _print_json(snapshot)
        return
    click.echo(f"uptime {snapshot.uptime_s} s, memory limits by {snapshot.memory_backend}")
    rows = [("FUNCTION", "WORKERS", "INVOCATIONS", "ERRORS", "THROTTLES", "COLD STARTS", "TIMEOUTS", "QUEUED")]
    for f in snapshot.functions:
        workers = ", ".join(f"{n} {s}" for s, n in sorted(f.workers.items())) or "none"
        rows.append((f.function_name, workers, str(f.invocations), str(f.errors), str(f.throttles),
                     str(f.cold_starts), str(f.timeouts), str(f.queued)))
    _table(rows)
    async_cmds.print_async_stats(snapshot)


def _since(text: str | None) -> int:
    """``24h``, ``7d``, ``90m``, a date (``2026-11-01``) or nothing (the start of this month, UTC)."""
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    if not text:
        return int(now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp())
    units = {"m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].isdigit():
        return int(now.timestamp()) - int(text[:-1]) * units[text[-1]]
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r}: use 24h, 7d, 90m or a date like 2026-11-01",
                                 param_hint="--since") from None
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp())


@main.command()
@click.option("--since", default=None, help="24h, 7d, 90m or a date (default: the start of this month, UTC).")
@click.option("--json", "as_json", is_flag=True, help="Print the GetUsage response as JSON.")
@click.pass_context
def cost(ctx: click.Context, since: str | None, as_json: bool) -> None:
    """Requests and GB-seconds per function, and what Lambda would charge for them."""
    with _client(ctx) as client:
        usage = _run(client.usage, _since(since))
    if as_json:
        _print_json(usage)
        return
    rows = [("FUNCTION", "REQUESTS", "BILLED DURATION", "GB-SECONDS", "COST (USD)")]
    for f in usage.functions:
        rows.append((f.function_name, str(f.requests), f"{f.billed_duration_ms} ms", f"{f.gb_seconds:.3f}",
                     f"{f.cost_usd:.6f}"))
    rows.append(("total", str(usage.requests), "", f"{usage.gb_seconds:.3f}", f"{usage.cost_usd_before_free_tier:.6f}"))
    _table(rows)
    click.echo(f"after the monthly free tier (1M requests, 400,000 GB-s): ${usage.cost_usd:.6f}; "
               f"prices ${usage.price_per_million_requests:.2f} per 1M requests, "
               f"${usage.price_per_gb_second:.10f} per GB-s; billed per {usage.billing_granularity_ms} ms")


for _command in [*versions.COMMANDS, *urls.COMMANDS, *layers.COMMANDS, *async_cmds.COMMANDS, *esm.COMMANDS]:
    main.add_command(_command)

if __name__ == "__main__":
    main()
