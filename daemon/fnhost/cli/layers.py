"""``fnhost layer publish|list|get|delete``: Lambda's layer versions."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import click

from .common import _client, _print_json, _run, _table


def zip_of(path: str) -> bytes:
    """A .zip file's bytes, or a directory zipped in memory (its files at the zip's root, modes kept)."""
    p = Path(path)
    if p.is_file():
        return p.read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for dirpath, dirnames, filenames in os.walk(p):
            dirnames.sort()
            for name in sorted(filenames):
                full = Path(dirpath, name)
                z.write(full, full.relative_to(p).as_posix())
    return buf.getvalue()


def _version_ref(ref: str) -> dict[str, object]:
    """A layer version as the commands take it: its ARN, or NAME:VERSION."""
    if ref.startswith("arn:"):
        return {"arn": ref}
    name, _, version = ref.rpartition(":")
    if not name or not version.isdigit():
        raise click.BadParameter(f"{ref!r} is not a layer version ARN or NAME:VERSION", param_hint="LAYER")
    return {"name": name, "version": int(version)}


@click.group()
def layer() -> None:
    """Layers: zips whose contents functions see under /opt (up to five per function, in order)."""


@layer.command("publish")
@click.argument("name")
@click.option("--content", "content", type=click.Path(exists=True), required=True,
              help="A .zip, or a directory to zip (python/, nodejs/node_modules/, bin/, lib/ … at its root).")
@click.option("--description", default="", help="The version's description.")
@click.option("--compatible-runtime", "runtimes", multiple=True, help="Repeatable; used to filter listings.")
@click.option("--license-info", default="", help="The layer's license (an SPDX identifier, a URL, or text).")
@click.pass_context
def publish(ctx: click.Context, name: str, content: str, description: str, runtimes: tuple[str, ...],
            license_info: str) -> None:
    """Publish CONTENT as the next version of layer NAME; print it as JSON (its layer_version_arn
    is what `fnhost deploy --layer` takes)."""
    with _client(ctx) as client:
        _print_json(_run(client.publish_layer_version, name, zip_of(content), description=description,
                         compatible_runtimes=list(runtimes), license_info=license_info))


@layer.command("list")
@click.argument("name", required=False)
@click.option("--compatible-runtime", default="", help="Only versions listing this runtime.")
@click.pass_context
def list_(ctx: click.Context, name: str | None, compatible_runtime: str) -> None:
    """List every layer's newest version, or (NAME) all of NAME's versions, newest first."""
    with _client(ctx) as client:
        if name:
            found = _run(client.list_layer_versions, name, compatible_runtime=compatible_runtime)
        else:
            found = _run(client.list_layers, compatible_runtime=compatible_runtime)
    rows = [("LAYER", "VERSION", "SIZE", "CREATED", "ARN", "DESCRIPTION")]
    rows += [(v.layer_name, str(v.version), f"{v.code_size} B", v.created_date, v.layer_version_arn, v.description)
             for v in found]
    _table(rows)


@layer.command("get")
@click.argument("ref", metavar="LAYER")
@click.pass_context
def get(ctx: click.Context, ref: str) -> None:
    """Show a layer version (its ARN, or NAME:VERSION) as JSON."""
    with _client(ctx) as client:
        _print_json(_run(client.get_layer_version, **_version_ref(ref)))


@layer.command("delete")
@click.argument("ref", metavar="LAYER")
@click.pass_context
def delete(ctx: click.Context, ref: str) -> None:
    """Delete a layer version (its ARN, or NAME:VERSION): gone from listings and from new
    deploys; functions that use it keep it."""
    target = _version_ref(ref)
    with _client(ctx) as client:
        if "arn" in target:
            found = _run(client.get_layer_version, arn=target["arn"])
            target = {"name": found.layer_name, "version": found.version}
        _run(client.delete_layer_version, target["name"], target["version"])
    click.echo(f"deleted {ref}")


COMMANDS = [layer]
