"""Function URL configurations: their rules and their SQLite table.

Lives in the registry's database (functions.sqlite3), beside the versions tables::

    function_urls    one row per function and qualifier ("" for $LATEST, or an alias name):
                     the URL's id, auth type, CORS, invoke mode and payload format

The serving side (``api/url_server``) looks a URL up on every request, so the rows are also kept
in two dicts (by function and qualifier, and by id); every write goes to both, under no lock of
its own: everything here runs on the daemon's event loop, between awaits.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import string
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import InvalidParameter, ResourceConflict, ResourceNotFound
from .registry import now

AUTH_TYPES = ("NONE", "AWS_IAM")
INVOKE_MODES = ("BUFFERED", "RESPONSE_STREAM")
PAYLOAD_FORMATS = ("2.0", "1.0")
URL_ID_LENGTH = 32  # Lambda's url-id: 32 lowercase letters and digits
_ID_ALPHABET = string.ascii_lowercase + string.digits
# Cors members and their bounds (Lambda's shapes: at most 100 entries, MaxAge 0-86400).
_CORS_LISTS = ("AllowHeaders", "AllowMethods", "AllowOrigins", "ExposeHeaders")
_CORS_LIST_MAX = 100
_CORS_MAX_AGE = 86400


@dataclass(frozen=True, slots=True)
class UrlConfig:
    """One function URL: what ``GetFunctionUrlConfig`` shows, plus fnhost's payload format."""

    function: str
    qualifier: str  # "" ($LATEST) or an alias
    url_id: str
    auth_type: str = "NONE"
    cors: dict[str, Any] = field(default_factory=dict)
    invoke_mode: str = "BUFFERED"
    # Lambda's function URLs always send 2.0; 1.0 is API Gateway's REST event, for handlers
    # written for serverless' ``http`` events (fnhost's own member, not in Lambda's shapes).
    payload_format: str = "2.0"
    created: str = ""
    modified: str = ""


# --- rules (pure) ---------------------------------------------------------------------------------


def new_url_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(URL_ID_LENGTH))


def validate_auth_type(value: str) -> str:
    """Raises InvalidParameter unless ``value`` is NONE or AWS_IAM (Lambda's wording)."""
    if value not in AUTH_TYPES:
        raise InvalidParameter(f"1 validation error detected: Value '{value}' at 'authType' failed to satisfy "
                               "constraint: Member must satisfy enum value set: [NONE, AWS_IAM]")
    return value


def validate_invoke_mode(value: str) -> str:
    """Raises InvalidParameter for an unknown mode, and for RESPONSE_STREAM, which fnhost lacks."""
    if value not in INVOKE_MODES:
        raise InvalidParameter(f"1 validation error detected: Value '{value}' at 'invokeMode' failed to satisfy "
                               "constraint: Member must satisfy enum value set: [BUFFERED, RESPONSE_STREAM]")
    if value == "RESPONSE_STREAM":
        raise InvalidParameter("InvokeMode RESPONSE_STREAM is not supported by fnhost yet: use BUFFERED")
    return value


def validate_payload_format(value: str) -> str:
    if value not in PAYLOAD_FORMATS:
        raise InvalidParameter(f"payload format {value!r} is invalid: use 2.0 (Lambda's) or 1.0 (API Gateway REST)")
    return value


def validate_cors(cors: Any) -> dict[str, Any]:
    """Lambda's Cors member, checked for types and bounds. Raises InvalidParameter."""
    if cors is None:
        return {}
    if not isinstance(cors, dict):
        raise InvalidParameter("Cors must be an object (AllowOrigins, AllowMethods, AllowHeaders, …)")
    out: dict[str, Any] = {}
    for key, value in cors.items():
        if key in _CORS_LISTS:
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value) \
                    or len(value) > _CORS_LIST_MAX:
                raise InvalidParameter(f"Cors.{key} must be a list of at most {_CORS_LIST_MAX} non-empty strings")
            out[key] = list(value)
        elif key == "AllowCredentials":
            if not isinstance(value, bool):
                raise InvalidParameter("Cors.AllowCredentials must be true or false")
            out[key] = value
        elif key == "MaxAge":
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _CORS_MAX_AGE:
                raise InvalidParameter(f"Cors.MaxAge must be an integer from 0 to {_CORS_MAX_AGE}")
            out[key] = value
        else:
            raise InvalidParameter(f"Cors has no member {key!r}")
    return out


# --- the table ------------------------------------------------------------------------------------


class UrlConfigs:
    """The function_urls table of one registry database, and its cache."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        db.executescript(
            """CREATE TABLE IF NOT EXISTS function_urls (
                   function TEXT NOT NULL,
                   qualifier TEXT NOT NULL,
                   url_id TEXT NOT NULL UNIQUE,
                   auth_type TEXT NOT NULL,
                   cors TEXT NOT NULL,
                   invoke_mode TEXT NOT NULL,
                   payload_format TEXT NOT NULL,
                   created TEXT NOT NULL,
                   modified TEXT NOT NULL,
                   PRIMARY KEY (function, qualifier));"""
        )
        self._by_key: dict[tuple[str, str], UrlConfig] = {}
        self._by_id: dict[str, UrlConfig] = {}
        for row in db.execute("SELECT function, qualifier, url_id, auth_type, cors, invoke_mode, payload_format, "
                              "created, modified FROM function_urls"):
            self._remember(UrlConfig(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5], row[6],
                                     row[7], row[8]))

    def _remember(self, config: UrlConfig) -> None:
        self._by_key[(config.function, config.qualifier)] = config
        self._by_id[config.url_id] = config

    def _write(self, c: UrlConfig) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO function_urls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (c.function, c.qualifier, c.url_id, c.auth_type, json.dumps(c.cors), c.invoke_mode, c.payload_format,
             c.created, c.modified))
        self._remember(c)

    def create(self, function: str, qualifier: str, *, auth_type: str, cors: Any = None,
               invoke_mode: str = "BUFFERED", payload_format: str = "2.0") -> UrlConfig:
        """A new URL for ``function`` (``qualifier``: "" or an alias; the caller checks it exists).

        Raises ResourceConflict when it already has one, InvalidParameter for a bad member.
        """
        if (function, qualifier) in self._by_key:
            raise ResourceConflict(f"Failed to create function url config for [functionArn = {function}"
                                   f"{':' + qualifier if qualifier else ''}]. Error message:  FunctionUrlConfig "
                                   "exists for this Lambda function")
        stamp = now()
        config = UrlConfig(function, qualifier, new_url_id(), validate_auth_type(auth_type), validate_cors(cors),
                           validate_invoke_mode(invoke_mode), validate_payload_format(payload_format), stamp, stamp)
        self._write(config)
        return config

    def get(self, function: str, qualifier: str = "") -> UrlConfig:
        """Raises ResourceNotFound when the function (or alias) has no URL."""
        config = self._by_key.get((function, qualifier))
        if config is None:
            raise ResourceNotFound(f"The resource you requested does not exist. (function URL of "
                                   f"{function}{':' + qualifier if qualifier else ''})")
        return config

    def find(self, function: str, qualifier: str = "") -> UrlConfig | None:
        """The URL serving a request, or None: a dict lookup, on every request."""
        return self._by_key.get((function, qualifier))

    def by_id(self, url_id: str) -> UrlConfig | None:
        return self._by_id.get(url_id)

    def update(self, function: str, qualifier: str = "", *, auth_type: str | None = None, cors: Any = None,
               invoke_mode: str | None = None, payload_format: str | None = None) -> UrlConfig:
        """Change the members given (None: unchanged). Raises ResourceNotFound, InvalidParameter."""
        current = self.get(function, qualifier)
        changes: dict[str, Any] = {"modified": now()}
        if auth_type is not None:
            changes["auth_type"] = validate_auth_type(auth_type)
        if cors is not None:
            changes["cors"] = validate_cors(cors)
        if invoke_mode is not None:
            changes["invoke_mode"] = validate_invoke_mode(invoke_mode)
        if payload_format is not None:
            changes["payload_format"] = validate_payload_format(payload_format)
        config = replace(current, **changes)
        self._write(config)
        return config

    def list(self, function: str) -> list[UrlConfig]:
        """The function's URLs, $LATEST's first, then by alias name."""
        return sorted((c for (f, _), c in self._by_key.items() if f == function), key=lambda c: c.qualifier)

    def delete(self, function: str, qualifier: str = "") -> None:
        """Raises ResourceNotFound when there is no such URL."""
        config = self.get(function, qualifier)
        self._db.execute("DELETE FROM function_urls WHERE function = ? AND qualifier = ?", (function, qualifier))
        self._by_key.pop((function, qualifier), None)
        self._by_id.pop(config.url_id, None)

    def forget(self, function: str, qualifier: str | None = None) -> None:
        """Drop the URLs of a deleted function (``qualifier`` None) or of a deleted alias; never raises."""
        for config in list(self._by_key.values()):
            if config.function == function and (qualifier is None or config.qualifier == qualifier):
                self.delete(config.function, config.qualifier)
