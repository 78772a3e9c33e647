"""``fnhost url create|get|update|delete|list``: function URLs (Lambda's FunctionUrlConfig) over gRPC."""

from __future__ import annotations

from typing import Any

import click

from ..v1 import fnhost_pb2 as pb
from .common import _client, _print_json, _run, _table

_AUTH = click.Choice(["NONE", "AWS_IAM"])
_FORMAT = click.Choice(["2.0", "1.0"])


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def cors_message(origins: str | None, methods: str | None, headers: str | None, expose: str | None,
                 credentials: bool | None, max_age: int | None) -> pb.Cors | None:
    """The --cors-* options as a Cors message; None when none is given (``--cors-origins ''``: no CORS)."""
    given = (origins, methods, headers, expose, credentials, max_age)
    if all(v is None for v in given):
        return None
    return pb.Cors(allow_origins=_split(origins or ""), allow_methods=_split(methods or ""),
                   allow_headers=_split(headers or ""), expose_headers=_split(expose or ""),
                   allow_credentials=bool(credentials), max_age=max_age or 0)


def _cors_options(fn: Any) -> Any:
    for option in reversed([
        click.option("--cors-origins", default=None, help="Allowed origins, comma-separated ('*': any)."),
        click.option("--cors-methods", default=None, help="Allowed methods, comma-separated ('*': any)."),
        click.option("--cors-headers", default=None, help="Allowed request headers, comma-separated."),
        click.option("--cors-expose", default=None, help="Response headers browsers may read, comma-separated."),
        click.option("--cors-credentials/--no-cors-credentials", default=None, help="Allow credentials."),
        click.option("--cors-max-age", default=None, type=click.IntRange(0, 86400), help="Preflight cache, seconds."),
    ]):
        fn = option(fn)
    return fn


@click.group()
def url() -> None:
    """Function URLs: call a function over plain HTTP on the --url-listen listener."""


@url.command("create")
@click.argument("name")
@click.option("--qualifier", default="", help="An alias (default: $LATEST).")
@click.option("--auth-type", type=_AUTH, default="NONE", show_default=True,
              help="AWS_IAM: callers sign with SigV4 (the daemon's access keys).")
@click.option("--payload-format", type=_FORMAT, default="2.0", show_default=True,
              help="2.0: Lambda's event; 1.0: API Gateway REST's (serverless 'http' events).")
@_cors_options
@click.pass_context
def create(ctx: click.Context, name: str, qualifier: str, auth_type: str, payload_format: str,
           cors_origins: str | None, cors_methods: str | None, cors_headers: str | None, cors_expose: str | None,
           cors_credentials: bool | None, cors_max_age: int | None) -> None:
    """Give NAME (or its alias) a URL; print its configuration as JSON."""
    cors = cors_message(cors_origins, cors_methods, cors_headers, cors_expose, cors_credentials, cors_max_age)
    with _client(ctx) as client:
        _print_json(_run(client.create_url, name, qualifier, auth_type=auth_type, cors=cors,
                         payload_format=payload_format))


@url.command("get")
@click.argument("name")
@click.option("--qualifier", default="", help="An alias (default: $LATEST).")
@click.pass_context
def get(ctx: click.Context, name: str, qualifier: str) -> None:
    """Print NAME's URL configuration as JSON."""
    with _client(ctx) as client:
        _print_json(_run(client.get_url, name, qualifier))


@url.command("update")
@click.argument("name")
@click.option("--qualifier", default="", help="An alias (default: $LATEST).")
@click.option("--auth-type", type=_AUTH, default=None)
@click.option("--payload-format", type=_FORMAT, default=None)
@_cors_options
@click.pass_context
def update(ctx: click.Context, name: str, qualifier: str, auth_type: str | None, payload_format: str | None,
           cors_origins: str | None, cors_methods: str | None, cors_headers: str | None, cors_expose: str | None,
           cors_credentials: bool | None, cors_max_age: int | None) -> None:
    """Change what is given (any --cors-* option replaces the whole CORS configuration)."""
    cors = cors_message(cors_origins, cors_methods, cors_headers, cors_expose, cors_credentials, cors_max_age)
    with _client(ctx) as client:
        _print_json(_run(client.update_url, name, qualifier, auth_type=auth_type, cors=cors,
                         payload_format=payload_format))


@url.command("delete")
@click.argument("name")
@click.option("--qualifier", default="", help="An alias (default: $LATEST).")
@click.pass_context
def delete(ctx: click.Context, name: str, qualifier: str) -> None:
    """Remove NAME's URL."""
    with _client(ctx) as client:
        _run(client.delete_url, name, qualifier)
    click.echo(f"{name}{':' + qualifier if qualifier else ''}: URL deleted")


@url.command("list")
@click.argument("name")
@click.pass_context
def list_(ctx: click.Context, name: str) -> None:
    """List NAME's URLs: $LATEST's, then each alias's."""
    with _client(ctx) as client:
        found = _run(client.list_urls, name)
    rows = [("QUALIFIER", "AUTH", "FORMAT", "URL")]
    rows += [(u.qualifier or "$LATEST", u.auth_type, u.payload_format, u.function_url) for u in found]
    _table(rows)


COMMANDS = [url]
