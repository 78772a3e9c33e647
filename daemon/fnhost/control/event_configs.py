"""Event invoke configs (Lambda's FunctionEventInvokeConfig): their rules and their table.

Kept in the registry's database (functions.sqlite3) beside the functions they configure::

    event_invoke_configs  (function, qualifier) → retry attempts, maximum age, destinations

The qualifier is "" for the unqualified function ($LATEST), a version number or an alias. The
dispatcher reads ``effective`` for every event; it answers from a dict, never the database.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import replace

from ..errors import InvalidParameter, ResourceNotFound
from ..execution.invocation import LATEST, function_arn
from .async_model import (EVENT_AGE_DEFAULT_S, EVENT_AGE_MAX_S, EVENT_AGE_MIN_S, RETRY_ATTEMPTS_DEFAULT,
                          RETRY_ATTEMPTS_MAX, EventInvokeConfig)

# Lambda's destination ARNs fnhost delivers to: a function (optionally qualified) or a queue.
FUNCTION_ARN_RE = re.compile(
    r"^arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:\d{12}:function:([a-zA-Z0-9_-]{1,64})(?::(\$LATEST|[a-zA-Z0-9_-]{1,128}))?$")
QUEUE_ARN_RE = re.compile(r"^arn:aws[a-zA-Z-]*:sqs:[a-z0-9-]+:\d{12}:([a-zA-Z0-9_-]{1,80})$")
ARN_MAX = 350  # DestinationArn's length limit in Lambda's model

Checker = Callable[[str, str], None]  # (function, qualifier): raises ResourceNotFound


def _constraint(value: object, field: str, rule: str) -> InvalidParameter:
    """Lambda's wording for a value outside a member's bounds."""
    return InvalidParameter(f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy "
                            f"constraint: Member must have {rule}")


def validate_destination(arn: str, which: str) -> str:
    """``arn`` if fnhost can deliver to it ("" = none). Raises InvalidParameter."""
    if not arn:
        return ""
    if len(arn) > ARN_MAX:
        raise _constraint(arn, f"destinationConfig.{which}.destination",
                          f"length less than or equal to {ARN_MAX}")
    if FUNCTION_ARN_RE.match(arn) or QUEUE_ARN_RE.match(arn):
        return arn
    raise InvalidParameter(
        f"The provided destination config DestinationConfig({which}=({arn})) is invalid: fnhost delivers to "
        "a function (arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]) or a queue "
        "(arn:aws:sqs:REGION:ACCOUNT:NAME)")


def validate(config: EventInvokeConfig) -> EventInvokeConfig:
    """Raises InvalidParameter, with Lambda's messages, unless every field is within Lambda's bounds."""
    retries = config.maximum_retry_attempts
    if isinstance(retries, bool) or not isinstance(retries, int):
        raise InvalidParameter(f"MaximumRetryAttempts must be an integer, not {retries!r}")
    if retries < 0:
        raise _constraint(retries, "maximumRetryAttempts", "value greater than or equal to 0")
    if retries > RETRY_ATTEMPTS_MAX:
        raise _constraint(retries, "maximumRetryAttempts", f"value less than or equal to {RETRY_ATTEMPTS_MAX}")
    age = config.maximum_event_age_s
    if isinstance(age, bool) or not isinstance(age, int):
        raise InvalidParameter(f"MaximumEventAgeInSeconds must be an integer, not {age!r}")
    if age < EVENT_AGE_MIN_S:
        raise _constraint(age, "maximumEventAgeInSeconds", f"value greater than or equal to {EVENT_AGE_MIN_S}")
    if age > EVENT_AGE_MAX_S:
        raise _constraint(age, "maximumEventAgeInSeconds", f"value less than or equal to {EVENT_AGE_MAX_S}")
    validate_destination(config.on_success, "onSuccess")
    validate_destination(config.on_failure, "onFailure")
    return config


class EventConfigs:
    """The event invoke configs of every function, in the registry's database."""

    def __init__(self, db: sqlite3.Connection, check: Checker, *, region: str, account_id: str) -> None:
        self._db = db
        self._check = check  # does the function (and qualifier) exist
        self.region = region
        self.account_id = account_id
        db.execute(
            """CREATE TABLE IF NOT EXISTS event_invoke_configs (
                function TEXT NOT NULL,
                qualifier TEXT NOT NULL,
                maximum_retry_attempts INTEGER NOT NULL,
                maximum_event_age_s INTEGER NOT NULL,
                on_success TEXT NOT NULL,
                on_failure TEXT NOT NULL,
                last_modified REAL NOT NULL,
                PRIMARY KEY (function, qualifier))"""
        )
        self._cache: dict[tuple[str, str], EventInvokeConfig] = {
            (row[0], row[1]): EventInvokeConfig(*row) for row in db.execute("SELECT * FROM event_invoke_configs")
        }

    @staticmethod
    def _key(qualifier: str) -> str:
        return "" if qualifier == LATEST else qualifier

    def _arn(self, name: str, qualifier: str) -> str:
        return function_arn(name, qualifier or LATEST, region=self.region, account_id=self.account_id)

    def put(self, name: str, qualifier: str = "", *, maximum_retry_attempts: int | None = None,
            maximum_event_age_s: int | None = None, on_success: str | None = None,
            on_failure: str | None = None, merge: bool = False) -> EventInvokeConfig:
        """Replace (``merge=False``, Put) or merge into (Update) the config; unset fields keep the
        current value (Update) or take Lambda's default (Put). Raises ResourceNotFound,
        InvalidParameter."""
        qualifier = self._key(qualifier)
        self._check(name, qualifier)
        base = self._cache.get((name, qualifier)) if merge else None
        if base is None:
            base = EventInvokeConfig(name, qualifier, RETRY_ATTEMPTS_DEFAULT, EVENT_AGE_DEFAULT_S)
        changes = {k: v for k, v in (("maximum_retry_attempts", maximum_retry_attempts),
                                     ("maximum_event_age_s", maximum_event_age_s),
                                     ("on_success", on_success), ("on_failure", on_failure)) if v is not None}
        config = validate(replace(base, **changes, last_modified=time.time()))
        self._db.execute("INSERT OR REPLACE INTO event_invoke_configs VALUES (?,?,?,?,?,?,?)",
                         (config.function, config.qualifier, config.maximum_retry_attempts,
                          config.maximum_event_age_s, config.on_success, config.on_failure, config.last_modified))
        self._cache[(name, qualifier)] = config
        return config

    def get(self, name: str, qualifier: str = "") -> EventInvokeConfig:
        """Raises ResourceNotFound (no function, or no config for it)."""
        qualifier = self._key(qualifier)
        config = self._cache.get((name, qualifier))
        if config is None:
            self._check(name, qualifier)
            raise ResourceNotFound(f"The function {self._arn(name, qualifier)} doesn't have an EventInvokeConfig")
        return config

    def delete(self, name: str, qualifier: str = "") -> None:
        """Raises ResourceNotFound when there is none."""
        self.get(name, qualifier)
        qualifier = self._key(qualifier)
        self._db.execute("DELETE FROM event_invoke_configs WHERE function = ? AND qualifier = ?", (name, qualifier))
        self._cache.pop((name, qualifier), None)

    def list(self, name: str) -> list[EventInvokeConfig]:
        """The function's configs, unqualified first. Raises ResourceNotFound (no function)."""
        self._check(name, "")
        return sorted((c for (f, _), c in self._cache.items() if f == name), key=lambda c: c.qualifier)

    def effective(self, name: str, qualifier: str) -> EventInvokeConfig:
        """What applies to an event: its qualifier's config, else the function's, else Lambda's defaults."""
        qualifier = self._key(qualifier)
        config = self._cache.get((name, qualifier))
        if config is None and qualifier:
            config = self._cache.get((name, ""))
        return config or EventInvokeConfig(name, qualifier)

    def forget(self, name: str, qualifier: str | None = None) -> None:
        """The function (or one version or alias of it) was deleted."""
        if qualifier is None:
            self._db.execute("DELETE FROM event_invoke_configs WHERE function = ?", (name,))
            for key in [k for k in self._cache if k[0] == name]:
                del self._cache[key]
        else:
            self._db.execute("DELETE FROM event_invoke_configs WHERE function = ? AND qualifier = ?",
                             (name, qualifier))
            self._cache.pop((name, qualifier), None)
