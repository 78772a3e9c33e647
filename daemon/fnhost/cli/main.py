"""The ``fnhost`` command: ``serve`` runs the daemon; every other command is a gRPC client.

Exit status: 0 success; 1 the function returned an error (its error JSON on stdout); 2 a
platform or usage error (a message on stderr).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .. import errors
from ..client import default_address
from ..stdin_stream import (
    CLIENT_EVENT_LOOP,
    EXIT_FUNCTION_ERROR,
    StdinError,
    stream_stdin,
)
from . import async_cmds, esm, layers, serve, urls, versions
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
        if run_async or invocation_type != "RequestResponse":
            raise click.UsageError("--stream runs RequestResponse invocations; send events one per "
                                   "`fnhost invoke --async` instead")
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
    _print_zygotes(snapshot)
    _print_stem_cells(snapshot)
    async_cmds.print_async_stats(snapshot)
    async_cmds.print_mapping_stats(snapshot)


def _print_zygotes(snapshot: Any) -> None:
    """``fnhost stats``' zygotes: what each costs, what it forked, and what its live workers cost."""
    if not snapshot.zygotes:
        return
    click.echo("")
    mib = 1024 * 1024
    rows = [("ZYGOTE", "PID", "FORKS", "FAILURES", "RESTARTS", "USS", "WORKERS", "WORKERS USS", "COMMAND")]
    for z in snapshot.zygotes:
        per = f" ({z.workers_memory_uss_bytes / z.workers / mib:.1f} MiB each)" if z.workers else ""
        rows.append((z.runtime, str(z.pid) if z.pid else "stopped", str(z.forks), str(z.failures), str(z.restarts),
                     f"{z.memory_uss_bytes / mib:.1f} MiB", str(z.workers),
                     f"{z.workers_memory_uss_bytes / mib:.1f} MiB{per}", z.command))
    _table(rows)


def _print_stem_cells(snapshot: Any) -> None:
    """``fnhost stats``' stem cells: each kind, how many wait, how many became workers, their memory."""
    if not snapshot.stem_cells:
        return
    click.echo("")
    mib = 1024 * 1024
    rows = [("STEM CELLS", "MEMORY", "READY", "STARTING", "TAKEN", "FAILURES", "USS", "START-UP VARIABLES")]
    for c in snapshot.stem_cells:
        per = f" ({c.memory_uss_bytes / c.ready / mib:.1f} MiB each)" if c.ready else ""
        rows.append((c.runtime, f"{c.memory_mb} MB", str(c.ready) + (" (given up)" if c.given_up else ""),
                     str(c.starting), str(c.taken), str(c.failures), f"{c.memory_uss_bytes / mib:.1f} MiB{per}",
                     ", ".join(c.startup_env) or "-"))
    _table(rows)


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


for _command in [*serve.COMMANDS, *versions.COMMANDS, *urls.COMMANDS, *layers.COMMANDS, *async_cmds.COMMANDS, *esm.COMMANDS]:
    main.add_command(_command)

if __name__ == "__main__":
    main()
