"""Asynchronous invocation from the command line: ``fnhost event-invoke-config put|update|get|delete|list``,
``fnhost dlq list|show|replay|purge``, ``fnhost queue list|receive|delete`` (queue destinations),
and what ``fnhost invoke --async`` and ``fnhost stats`` print for it.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click

from ..execution.invocation import Outcome
from .common import _client, _print_json, _run, _table, qualified

_MAX_ERROR_SHOWN = 60  # characters of last_error in `dlq list`; `dlq show` has all of it


def print_accepted(result: Outcome) -> None:
    """``invoke --async``: the daemon stored the event; its request id names it in logs and the DLQ."""
    click.echo(json.dumps({"status_code": result.status_code, "request_id": result.request_id}))


def print_async_stats(snapshot: Any) -> None:
    """``fnhost stats``' second table: each function's asynchronous queue (when any has been used)."""
    if not snapshot.async_queues:
        return
    click.echo("")
    rows = [("ASYNC QUEUE", "DEPTH", "OLDEST AGE", "RECEIVED", "RETRIES", "DROPPED (AGE)", "DEAD-LETTERED",
             "TO ON-SUCCESS", "TO ON-FAILURE", "THROTTLED")]
    for q in snapshot.async_queues:
        rows.append((q.function_name, str(q.depth), f"{q.oldest_age_s:.1f} s", str(q.received), str(q.retries),
                     str(q.dropped_age), str(q.dead_lettered), str(q.delivered_success),
                     str(q.delivered_failure), str(q.throttled)))
    _table(rows)


def print_mapping_stats(snapshot: Any) -> None:
    """``fnhost stats``' third table: each running event source mapping's poller."""
    if not snapshot.event_source_mappings:
        return
    click.echo("")
    rows = [("EVENT SOURCE MAPPING", "FUNCTION", "BATCHES", "RECORDS", "FAILED", "EXHAUSTED", "TO ON-FAILURE",
             "RUNNING", "BACKLOG")]
    for m in snapshot.event_source_mappings:
        rows.append((m.uuid, m.function_name, str(m.batches), str(m.records), str(m.failed_records),
                     str(m.exhausted_records), str(m.sent_to_destination), str(m.concurrent_batches),
                     str(m.backlog)))
    _table(rows)


def _age(since: float) -> str:
    seconds = max(0, int(time.time() - since))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


def _text(data: bytes) -> Any:
    """A payload or record as JSON when it is JSON, else as text."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return data.decode(errors="replace")


# --- event-invoke-config ----------------------------------------------------------------------


@click.group("event-invoke-config")
def event_invoke_config() -> None:
    """Retries, maximum event age and destinations of asynchronous invocations (per function,
    version or alias: NAME or NAME:QUALIFIER)."""


def _config_options(fn: Any) -> Any:
    for option in reversed([
        click.option("--maximum-retry-attempts", type=int, default=None, help="0-2 (default 2)."),
        click.option("--maximum-event-age-s", type=int, default=None, help="60-21600 (default 21600)."),
        click.option("--on-success", default=None, metavar="ARN",
                     help="A function ARN or a queue ARN (arn:aws:sqs:REGION:ACCOUNT:NAME); '' for none."),
        click.option("--on-failure", default=None, metavar="ARN",
                     help="Where events that exhaust retries or age go instead of the dead-letter queue."),
    ]):
        fn = option(fn)
    return fn


@event_invoke_config.command("put")
@click.argument("name", metavar="NAME[:QUALIFIER]")
@_config_options
@click.pass_context
def put(ctx: click.Context, name: str, **fields: Any) -> None:
    """Set NAME's configuration; what is not given takes Lambda's default."""
    with _client(ctx) as client:
        _print_json(_run(client.put_function_event_invoke_config, *qualified(name), **fields))


@event_invoke_config.command("update")
@click.argument("name", metavar="NAME[:QUALIFIER]")
@_config_options
@click.pass_context
def update(ctx: click.Context, name: str, **fields: Any) -> None:
    """Change only the options given."""
    with _client(ctx) as client:
        _print_json(_run(client.update_function_event_invoke_config, *qualified(name), **fields))


@event_invoke_config.command("get")
@click.argument("name", metavar="NAME[:QUALIFIER]")
@click.pass_context
def get(ctx: click.Context, name: str) -> None:
    """Show NAME's configuration as JSON."""
    with _client(ctx) as client:
        _print_json(_run(client.get_function_event_invoke_config, *qualified(name)))


@event_invoke_config.command("delete")
@click.argument("name", metavar="NAME[:QUALIFIER]")
@click.pass_context
def delete(ctx: click.Context, name: str) -> None:
    """Remove NAME's configuration (Lambda's defaults apply again)."""
    with _client(ctx) as client:
        _run(client.delete_function_event_invoke_config, *qualified(name))
    click.echo(f"deleted the event invoke config of {name}")


@event_invoke_config.command("list")
@click.argument("name")
@click.pass_context
def list_(ctx: click.Context, name: str) -> None:
    """NAME's configurations: the function's and each version's or alias's."""
    with _client(ctx) as client:
        configs = _run(client.list_function_event_invoke_configs, name)
    rows = [("QUALIFIER", "RETRIES", "MAX AGE", "ON SUCCESS", "ON FAILURE")]
    rows += [(c.qualifier or "$LATEST", str(c.maximum_retry_attempts), f"{c.maximum_event_age_s} s",
              c.destination_config.on_success or "-", c.destination_config.on_failure or "-") for c in configs]
    _table(rows)


# --- dlq --------------------------------------------------------------------------------------


@click.group()
def dlq() -> None:
    """A function's dead-letter queue: events that exhausted their retries or their age with no
    on-failure destination."""


@dlq.command("list")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Every dead letter in full, as JSON.")
@click.pass_context
def dlq_list(ctx: click.Context, name: str, as_json: bool) -> None:
    """NAME's dead letters, oldest first: request id, attempts, last error, age."""
    with _client(ctx) as client:
        letters = _run(client.list_dead_letters, name)
    if as_json:
        click.echo(json.dumps([_letter(d) for d in letters], indent=2))
        return
    rows = [("REQUEST ID", "QUALIFIER", "ATTEMPTS", "REASON", "AGE", "LAST ERROR")]
    for d in letters:
        error = " ".join(d.last_error.split())
        if len(error) > _MAX_ERROR_SHOWN:
            error = error[:_MAX_ERROR_SHOWN - 1] + "…"
        rows.append((d.request_id, d.qualifier or "$LATEST", str(d.attempts), d.reason, _age(d.received_at), error))
    _table(rows)


def _letter(d: Any) -> dict[str, Any]:
    return {"request_id": d.request_id, "function": d.function_name, "qualifier": d.qualifier,
            "attempts": d.attempts, "reason": d.reason, "last_error": _text(d.last_error.encode()),
            "received_at": d.received_at, "dead_lettered_at": d.dead_lettered_at, "payload": _text(d.payload)}


@dlq.command("show")
@click.argument("name")
@click.argument("request_id")
@click.pass_context
def dlq_show(ctx: click.Context, name: str, request_id: str) -> None:
    """One dead letter in full (payload and last error) as JSON."""
    with _client(ctx) as client:
        letter = _run(client.get_dead_letter, name, request_id)
    click.echo(json.dumps(_letter(letter), indent=2))


@dlq.command("replay")
@click.argument("name")
@click.argument("request_ids", nargs=-1)
@click.pass_context
def dlq_replay(ctx: click.Context, name: str, request_ids: tuple[str, ...]) -> None:
    """Queue NAME's dead letters again (those named, else all), with their request ids and fresh retries."""
    with _client(ctx) as client:
        count = _run(client.replay_dead_letters, name, list(request_ids) or None)
    click.echo(f"replayed {count} event{'s' if count != 1 else ''} of {name}")


@dlq.command("purge")
@click.argument("name")
@click.argument("request_ids", nargs=-1)
@click.pass_context
def dlq_purge(ctx: click.Context, name: str, request_ids: tuple[str, ...]) -> None:
    """Delete NAME's dead letters (those named, else all)."""
    with _client(ctx) as client:
        count = _run(client.purge_dead_letters, name, list(request_ids) or None)
    click.echo(f"purged {count} dead letter{'s' if count != 1 else ''} of {name}")


# --- queue destinations -------------------------------------------------------------------------


@click.group()
def queue() -> None:
    """Queue destinations (arn:aws:sqs:REGION:ACCOUNT:NAME): the records the daemon keeps for each."""


@queue.command("list")
@click.pass_context
def queue_list(ctx: click.Context) -> None:
    """Every queue destination holding records, with its record count."""
    with _client(ctx) as client:
        queues = _run(client.list_destination_queues)
    _table([("QUEUE", "MESSAGES"), *((n, str(c)) for n, c in queues.items())])


@queue.command("receive")
@click.argument("name")
@click.option("--limit", type=click.IntRange(1, 10000), default=100, show_default=True)
@click.pass_context
def queue_receive(ctx: click.Context, name: str, limit: int) -> None:
    """Print the queue's oldest records, one JSON object per line (they stay: `queue delete` removes them)."""
    with _client(ctx) as client:
        messages = _run(client.receive_queue_messages, name, limit)
    for m in messages:
        click.echo(json.dumps({"message_id": m.message_id, "sent_at": m.sent_at, "body": _text(m.body)}))


@queue.command("delete")
@click.argument("name")
@click.argument("message_ids", nargs=-1)
@click.pass_context
def queue_delete(ctx: click.Context, name: str, message_ids: tuple[str, ...]) -> None:
    """Remove records from the queue (those named, else all)."""
    with _client(ctx) as client:
        count = _run(client.delete_queue_messages, name, list(message_ids) or None)
    click.echo(f"deleted {count} message{'s' if count != 1 else ''} from {name}")


COMMANDS = [event_invoke_config, dlq, queue]
