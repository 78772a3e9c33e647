"""What the CLI's commands share: how a failure ends the command, and how results are printed."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click
from google.protobuf.json_format import MessageToDict

from .. import errors
from ..client import Client
from ..stdin_stream import EXIT_PLATFORM_ERROR


def _fail(message: str) -> NoReturn:
    click.echo(f"fnhost: {message}", err=True)
    sys.exit(EXIT_PLATFORM_ERROR)


def _client(ctx: click.Context) -> Client:
    try:
        return Client(ctx.obj["address"])
    except errors.FnhostError as exc:  # e.g. a token that would travel in clear
        _fail(f"{exc.code}: {exc.message}")


def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except errors.FnhostError as exc:
        _fail(f"{exc.code}: {exc.message}")


def _print_json(message: Any) -> None:
    click.echo(json.dumps(MessageToDict(message, preserving_proto_field_name=True), indent=2))


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def qualified(name: str) -> tuple[str, str]:
    """``NAME[:QUALIFIER]`` as a command takes a function: its name and qualifier ("" if none)."""
    function, _, qualifier = name.partition(":")
    if not function or (_ and not qualifier):
        raise click.BadParameter(f"{name!r} is not NAME or NAME:QUALIFIER (a version or an alias)",
                                 param_hint="NAME")
    return function, qualifier
