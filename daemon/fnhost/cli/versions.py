"""``fnhost publish``, ``fnhost versions``, ``fnhost alias …`` and ``fnhost min-warm``: published
versions, aliases and their provisioned workers."""

from __future__ import annotations

import click

from .common import _client, _print_json, _run, _table, qualified


def parse_weights(text: str | None) -> dict[str, float] | None:
    """``--weights 2=0.1`` as Lambda's AdditionalVersionWeights; "" is no routing, None unchanged."""
    if text is None:
        return None
    weights: dict[str, float] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        version, sep, weight = pair.partition("=")
        try:
            if not sep:
                raise ValueError
            weights[version.strip()] = float(weight)
        except ValueError:
            raise click.BadParameter(f"{pair!r} is not VERSION=WEIGHT (e.g. 2=0.1)", param_hint="--weights") from None
    return weights


@click.command()
@click.argument("name")
@click.option("--description", default="", help="The version's description (default: the function's).")
@click.option("--revision-id", default="", help="Only if $LATEST's revision is still this one.")
@click.option("--code-sha256", default="", help="Only if $LATEST's code still has this hash.")
@click.pass_context
def publish(ctx: click.Context, name: str, description: str, revision_id: str, code_sha256: str) -> None:
    """Freeze NAME's current code and configuration as its next version; print it as JSON.

    When nothing changed since the last version, that version is printed.
    """
    with _client(ctx) as client:
        _print_json(_run(client.publish_version, name, description=description, revision_id=revision_id,
                         code_sha256=code_sha256))


@click.command()
@click.argument("name")
@click.pass_context
def versions(ctx: click.Context, name: str) -> None:
    """List NAME's versions: $LATEST, then each published one."""
    with _client(ctx) as client:
        found = _run(client.list_versions, name)
    rows = [("VERSION", "CODE SHA256", "MEMORY", "TIMEOUT", "MIN WARM", "LAST MODIFIED", "DESCRIPTION")]
    rows += [(v.version, v.code_sha256[:12], f"{v.memory_mb} MB", f"{v.timeout_s} s", str(v.min_warm),
              v.last_modified, v.description) for v in found]
    _table(rows)


@click.command("min-warm")
@click.argument("name", metavar="NAME[:QUALIFIER]")
@click.argument("count", type=click.IntRange(min=0))
@click.pass_context
def min_warm(ctx: click.Context, name: str, count: int) -> None:
    """Keep COUNT workers warm for a version or alias (Lambda's provisioned concurrency).

    Without a qualifier, $LATEST's min_warm. 0 removes them.
    """
    function, qualifier = qualified(name)
    with _client(ctx) as client:
        _run(client.set_min_warm, function, qualifier, count)
    click.echo(f"{name}: min_warm {count}")


@click.group()
def alias() -> None:
    """Aliases: a name for a version, optionally sending a share of calls to a second version."""


_WEIGHTS_HELP = "Route a share of calls to another version: VERSION=WEIGHT, e.g. 2=0.1 ('' removes it)."


@alias.command("create")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.option("--version", "version", required=True, help="The version it invokes: a number or $LATEST.")
@click.option("--description", default="")
@click.option("--weights", default=None, help=_WEIGHTS_HELP)
@click.option("--min-warm", type=click.IntRange(min=0), default=None,
              help="Workers of its version kept warm for it (provisioned concurrency).")
@click.pass_context
def create(ctx: click.Context, name: str, alias_name: str, version: str, description: str, weights: str | None,
           min_warm: int | None) -> None:
    """Create ALIAS of NAME pointing at --version; print it as JSON."""
    with _client(ctx) as client:
        result = _run(client.create_alias, name, alias_name, version, description=description,
                      weights=parse_weights(weights))
        if min_warm:
            _run(client.set_min_warm, name, alias_name, min_warm)
            result = _run(client.get_alias, name, alias_name)
    _print_json(result)


@alias.command("get")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.pass_context
def get(ctx: click.Context, name: str, alias_name: str) -> None:
    """Print ALIAS of NAME as JSON."""
    with _client(ctx) as client:
        _print_json(_run(client.get_alias, name, alias_name))


@alias.command("update")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.option("--version", "version", default=None, help="The version it invokes from now on.")
@click.option("--description", default=None)
@click.option("--weights", default=None, help=_WEIGHTS_HELP)
@click.option("--revision-id", default="", help="Only if the alias's revision is still this one.")
@click.option("--min-warm", type=click.IntRange(min=0), default=None, help="Workers kept warm for it.")
@click.pass_context
def update(ctx: click.Context, name: str, alias_name: str, version: str | None, description: str | None,
           weights: str | None, revision_id: str, min_warm: int | None) -> None:
    """Change what is given of ALIAS; print it as JSON."""
    with _client(ctx) as client:
        result = _run(client.update_alias, name, alias_name, version=version, description=description,
                      weights=parse_weights(weights), revision_id=revision_id)
        if min_warm is not None:
            _run(client.set_min_warm, name, alias_name, min_warm)
            result = _run(client.get_alias, name, alias_name)
    _print_json(result)


@alias.command("delete")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.pass_context
def delete(ctx: click.Context, name: str, alias_name: str) -> None:
    """Delete ALIAS of NAME (its versions stay)."""
    with _client(ctx) as client:
        _run(client.delete_alias, name, alias_name)
    click.echo(f"deleted alias {name}:{alias_name}")


@alias.command("list")
@click.argument("name")
@click.option("--version", "version", default="", help="Only the aliases pointing at this version.")
@click.pass_context
def list_(ctx: click.Context, name: str, version: str) -> None:
    """List NAME's aliases."""
    with _client(ctx) as client:
        found = _run(client.list_aliases, name, version)
    rows = [("ALIAS", "VERSION", "ROUTING", "MIN WARM", "DESCRIPTION")]
    for a in found:
        routing = ", ".join(f"{v}={w:g}" for v, w in sorted(a.routing_config.additional_version_weights.items()))
        rows.append((a.name, a.function_version, routing or "-", str(a.min_warm), a.description))
    _table(rows)


COMMANDS = (publish, versions, min_warm, alias)
