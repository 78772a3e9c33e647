"""``fnhost event-source create|get|update|delete|list``: event source mappings (a NATS JetStream
stream polled in batches for a function) over gRPC."""

from __future__ import annotations

from typing import Any

import click

from .common import _client, _print_json, _run, _table, qualified

_SOURCE_HELP = "arn:aws:jetstream:<region>:<account>:stream/<STREAM>[/<SUBJECT>] (region and account may be empty)"


def _options(fn: Any, *, create: bool) -> Any:
    for option in reversed([
        click.option("--batch-size", type=click.IntRange(1, 10_000), default=None,
                     help="Records per invocation (default 10; above 10 needs --batching-window-s)."),
        click.option("--batching-window-s", "maximum_batching_window_s", type=click.IntRange(0, 300), default=None,
                     help="How long to gather records before invoking (MaximumBatchingWindowInSeconds)."),
        click.option("--enabled/--disabled", default=None, help="Poll or not (default: enabled)."),
        click.option("--report-batch-item-failures/--no-report-batch-item-failures", default=None,
                     help="The handler's batchItemFailures answer redelivers only those records."),
        click.option("--maximum-concurrency", type=int, default=None,
                     help="Concurrent batches at most, 2-1000 (0 on update: the function's limit)."),
        click.option("--maximum-retry-attempts", type=click.IntRange(-1, 10_000), default=None,
                     help="Redeliveries of a failed record before the on-failure destination (default 2; -1: no end)."),
        click.option("--on-failure", default=None, help="Destination ARN for records whose deliveries ran out"
                     + (" ('' removes it)." if not create else ".")),
    ]):
        fn = option(fn)
    return fn


@click.group("event-source")
def event_source() -> None:
    """Event source mappings: a JetStream stream or subject polled in batches (Lambda's SQS event shape)."""


@event_source.command("create")
@click.argument("name")
@click.argument("source")
@lambda fn: _options(fn, create=True)
@click.pass_context
def create(ctx: click.Context, name: str, source: str, **members: Any) -> None:
    """Poll SOURCE for NAME[:QUALIFIER]; print the mapping as JSON. SOURCE: """
    function, qualifier = qualified(name)
    members["report_batch_item_failures"] = bool(members["report_batch_item_failures"])
    members["on_failure"] = members["on_failure"] or ""
    with _client(ctx) as client:
        _print_json(_run(client.create_event_source_mapping, function, source, qualifier=qualifier, **members))


create.help = (create.help or "") + _SOURCE_HELP


@event_source.command("get")
@click.argument("uuid")
@click.pass_context
def get(ctx: click.Context, uuid: str) -> None:
    """Print the mapping UUID as JSON."""
    with _client(ctx) as client:
        _print_json(_run(client.get_event_source_mapping, uuid))


@event_source.command("update")
@click.argument("uuid")
@lambda fn: _options(fn, create=False)
@click.pass_context
def update(ctx: click.Context, uuid: str, **members: Any) -> None:
    """Change what is given; the poller restarts with it (the consumer keeps its place)."""
    with _client(ctx) as client:
        _print_json(_run(client.update_event_source_mapping, uuid, **members))


@event_source.command("delete")
@click.argument("uuid")
@click.pass_context
def delete(ctx: click.Context, uuid: str) -> None:
    """Stop polling and delete the mapping (and its JetStream consumer)."""
    with _client(ctx) as client:
        _run(client.delete_event_source_mapping, uuid)
    click.echo(f"{uuid}: event source mapping deleted")


@event_source.command("list")
@click.argument("name", required=False, default="")
@click.option("--source", default="", help="Only the mappings of this source ARN.")
@click.pass_context
def list_(ctx: click.Context, name: str, source: str) -> None:
    """List the mappings (of NAME, when given)."""
    with _client(ctx) as client:
        found = _run(client.list_event_source_mappings, name, source)
    rows = [("UUID", "FUNCTION", "SOURCE", "STATE", "BATCH", "WINDOW", "MAX CONC", "LAST RESULT")]
    rows += [(m.uuid, m.function_name + (f":{m.qualifier}" if m.qualifier else ""), m.event_source_arn, m.state,
              str(m.batch_size), f"{m.maximum_batching_window_s} s", str(m.maximum_concurrency or "-"),
              m.last_processing_result) for m in found]
    _table(rows)


COMMANDS = [event_source]
