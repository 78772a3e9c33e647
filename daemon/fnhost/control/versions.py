"""Published versions, aliases and provisioned workers: their rules and their SQLite tables.

Lives in the registry's database (functions.sqlite3), beside the functions table::

    versions         one row per published version: the code, build and configuration it froze
    version_numbers  the last number each function gave out, so a deleted version's never returns
    aliases          name → version, with an optional weighted second version
    provisioned      min_warm per version or alias (Lambda's provisioned concurrency)

A version is written once and never changed; only deleted. Everything here is a small query, run
on the event loop by the supervisor under the function's deploy lock; nothing here is on the
invoke path (the supervisor keeps what invoke needs in dicts).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import sqlite3
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidParameter, ResourceConflict, ResourceNotFound
from ..execution.invocation import LATEST
from .config import DESCRIPTION_MAX, FunctionConfig
from .registry import CodeRef, FunctionRecord, now, transaction

# Lambda's Alias shape: 1-128 of [a-zA-Z0-9-_], not all digits (that would read as a version).
ALIAS_RE = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
VERSION_RE = re.compile(r"^[1-9][0-9]{0,9}$")


@dataclass(frozen=True, slots=True)
class AliasRecord:
    """An alias of a function: the version it invokes, and optionally a second one by weight."""

    function: str
    name: str
    version: str  # "$LATEST" or a published version's number
    description: str = ""
    weights: dict[str, float] = field(default_factory=dict)  # additional version → share 0..1
    revision_id: str = ""
    min_warm: int = 0  # provisioned workers for its version, kept for as long as the alias is


# --- rules (pure) ---------------------------------------------------------------------------------


def validate_alias_name(name: str) -> str:
    """Raises InvalidParameter unless ``name`` is a valid alias name (Lambda's pattern)."""
    if not ALIAS_RE.match(name or "") or name.isdigit():
        raise InvalidParameter(
            f"alias name {name!r} is invalid: use 1-128 letters, digits, '-' or '_', not only digits"
        )
    return name


def validate_description(description: str) -> str:
    if len(description) > DESCRIPTION_MAX:
        raise InvalidParameter(f"description is longer than {DESCRIPTION_MAX} characters")
    return description


def is_version(qualifier: str) -> bool:
    """Whether a qualifier names a published version ("1", "2", …) rather than an alias."""
    return VERSION_RE.match(qualifier) is not None


def validate_weights(version: str, weights: dict[str, float] | None) -> dict[str, float]:
    """An alias's RoutingConfig.AdditionalVersionWeights, checked as Lambda checks it.

    At most one additional version, a published one (never $LATEST), other than the alias's
    own version, which must be a published version too; its weight in [0, 1]. Raises
    InvalidParameter. Whether the versions exist is the caller's to check.
    """
    if not weights:
        return {}
    if len(weights) > 1:
        raise InvalidParameter(
            f"RoutingConfig.AdditionalVersionWeights names {len(weights)} versions; an alias routes to "
            "at most one additional version")
    (extra, weight), = weights.items()
    extra = str(extra)
    if not is_version(extra):
        raise InvalidParameter(
            f"additional version {extra!r} is invalid: routing goes to a published version (1, 2, …), "
            f"never to {LATEST}")
    if version == LATEST:
        raise InvalidParameter(f"an alias with a routing configuration cannot point at {LATEST}: "
                               "publish a version and point the alias at it")
    if extra == version:
        raise InvalidParameter(
            f"additional version {extra} is the alias's own version; route to a different one")
    try:
        weight = float(weight)
    except (TypeError, ValueError):
        raise InvalidParameter(f"weight {weight!r} of version {extra} is not a number") from None
    if not 0.0 <= weight <= 1.0:
        raise InvalidParameter(f"weight {weight} of version {extra} is out of range: use 0.0-1.0")
    return {extra: weight}


def next_version(last: int | None) -> int:
    """The number a new version gets: one past the last given out (deleted or not), from 1."""
    return (last or 0) + 1


def sha256_matches(expected: str, hex_digest: str) -> bool:
    """Whether ``expected`` is ``hex_digest`` as fnhost (hex) or Lambda (base64) writes it."""
    if expected.lower() == hex_digest.lower():
        return True
    try:
        return expected == base64.b64encode(bytes.fromhex(hex_digest)).decode()
    except ValueError:
        return False


def same_content(a: FunctionRecord, b: FunctionRecord) -> bool:
    """Whether two records run the same code with the same configuration (min_warm aside:
    provisioned workers are set per qualifier, not frozen in a version)."""
    return a.code.sha256 == b.code.sha256 and a.config.replace(min_warm=0) == b.config.replace(min_warm=0)


# --- storage --------------------------------------------------------------------------------------


class VersionStore:
    """The versions, aliases and provisioned tables of one registry database."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        db.executescript(
            """CREATE TABLE IF NOT EXISTS versions (
                   function TEXT NOT NULL,
                   version INTEGER NOT NULL,
                   config TEXT NOT NULL,
                   code_location TEXT NOT NULL,
                   code_sha256 TEXT NOT NULL,
                   code_size INTEGER NOT NULL,
                   code_stored INTEGER NOT NULL,
                   build_dir TEXT NOT NULL,
                   revision_id TEXT NOT NULL,
                   last_modified TEXT NOT NULL,
                   description TEXT NOT NULL,
                   PRIMARY KEY (function, version));
               CREATE TABLE IF NOT EXISTS version_numbers (
                   function TEXT PRIMARY KEY,
                   last INTEGER NOT NULL);
               CREATE TABLE IF NOT EXISTS aliases (
                   function TEXT NOT NULL,
                   name TEXT NOT NULL,
                   version TEXT NOT NULL,
                   description TEXT NOT NULL,
                   weights TEXT NOT NULL,
                   revision_id TEXT NOT NULL,
                   PRIMARY KEY (function, name));
               CREATE TABLE IF NOT EXISTS provisioned (
                   function TEXT NOT NULL,
                   qualifier TEXT NOT NULL,
                   min_warm INTEGER NOT NULL,
                   PRIMARY KEY (function, qualifier));"""
        )

    # --- versions ---------------------------------------------------------------------------

    def publish(self, latest: FunctionRecord, description: str) -> FunctionRecord:
        """Freeze ``latest`` ($LATEST's record) as the function's next version; returns it."""
        name = latest.config.name
        with transaction(self._db):  # the number and the row, or neither
            row = self._db.execute("SELECT last FROM version_numbers WHERE function = ?", (name,)).fetchone()
            number = next_version(row[0] if row else None)
            self._db.execute("INSERT OR REPLACE INTO version_numbers VALUES (?, ?)", (name, number))
            config = latest.config.replace(min_warm=0)
            record = dataclasses.replace(latest, config=config, version=str(number), description=description,
                                         revision_id=str(uuid.uuid4()), last_modified=now())
            code = latest.code
            self._db.execute(
                "INSERT INTO versions VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (name, number, json.dumps(dataclasses.asdict(config)), str(code.location), code.sha256,
                 code.size, int(code.stored), str(latest.build_dir), record.revision_id, record.last_modified,
                 description))
        return record

    _SELECT = """SELECT v.function, v.version, v.config, v.code_location, v.code_sha256, v.code_size,
                        v.code_stored, v.build_dir, v.revision_id, v.last_modified, v.description, f.slot,
                        COALESCE(p.min_warm, 0)
                 FROM versions v JOIN functions f ON f.name = v.function
                 LEFT JOIN provisioned p ON p.function = v.function AND p.qualifier = CAST(v.version AS TEXT)"""

    def get(self, function: str, version: str) -> FunctionRecord:
        """Raises ResourceNotFound for a version that does not exist (or is not a number)."""
        row = None
        if is_version(version):
            row = self._db.execute(f"{self._SELECT} WHERE v.function = ? AND v.version = ?",
                                   (function, int(version))).fetchone()
        if row is None:
            raise ResourceNotFound(f"Function not found: {function}:{version}")
        return _version_record(row)

    def versions(self, function: str) -> list[FunctionRecord]:
        rows = self._db.execute(f"{self._SELECT} WHERE v.function = ? ORDER BY v.version", (function,))
        return [_version_record(r) for r in rows.fetchall()]

    def all(self) -> list[FunctionRecord]:
        rows = self._db.execute(f"{self._SELECT} ORDER BY v.function, v.version").fetchall()
        return [_version_record(r) for r in rows]

    def delete_version(self, function: str, version: str) -> None:
        """Raises ResourceNotFound, and ResourceConflict while an alias routes to the version."""
        self.get(function, version)
        users = sorted(a.name for a in self.aliases(function)
                       if a.version == version or version in a.weights)
        if users:
            raise ResourceConflict(
                f"Unable to delete version because the following aliases reference it: {users}")
        with transaction(self._db):
            self._db.execute("DELETE FROM versions WHERE function = ? AND version = ?", (function, int(version)))
            self._db.execute("DELETE FROM provisioned WHERE function = ? AND qualifier = ?", (function, version))

    def forget_function(self, function: str) -> None:
        """Every version, alias, provisioned count and the numbering of a deleted function:
        one created again under its name starts at version 1."""
        with transaction(self._db):
            for table in ("versions", "version_numbers", "aliases", "provisioned"):
                self._db.execute(f"DELETE FROM {table} WHERE function = ?", (function,))

    # --- aliases ----------------------------------------------------------------------------

    def put_alias(self, alias: AliasRecord, *, create: bool) -> AliasRecord:
        """Record an alias with a new revision id; raises ResourceConflict when creating one
        that exists, ResourceNotFound when updating one that does not."""
        alias = dataclasses.replace(alias, revision_id=str(uuid.uuid4()))
        values = (alias.function, alias.name, alias.version, alias.description, json.dumps(alias.weights),
                  alias.revision_id)
        try:
            if create:
                self._db.execute("INSERT INTO aliases VALUES (?,?,?,?,?,?)", values)
            elif self._db.execute(
                    "UPDATE aliases SET version=?, description=?, weights=?, revision_id=? WHERE function=? AND name=?",
                    values[2:] + values[:2]).rowcount == 0:
                raise ResourceNotFound(f"Alias not found: {alias.function}:{alias.name}")
        except sqlite3.IntegrityError:
            raise ResourceConflict(f"Alias already exists: {alias.function}:{alias.name}") from None
        return dataclasses.replace(alias, min_warm=self.provisioned(alias.function).get(alias.name, 0))

    def get_alias(self, function: str, name: str) -> AliasRecord:
        row = self._db.execute(f"{_ALIAS_SELECT} WHERE a.function = ? AND a.name = ?", (function, name)).fetchone()
        if row is None:
            raise ResourceNotFound(f"Alias not found: {function}:{name}")
        return _alias_record(row)

    def aliases(self, function: str | None = None) -> list[AliasRecord]:
        """One function's aliases, or (None) every function's."""
        if function is None:
            rows = self._db.execute(f"{_ALIAS_SELECT} ORDER BY a.function, a.name")
        else:
            rows = self._db.execute(f"{_ALIAS_SELECT} WHERE a.function = ? ORDER BY a.name", (function,))
        return [_alias_record(r) for r in rows.fetchall()]

    def delete_alias(self, function: str, name: str) -> None:
        with transaction(self._db):
            self._db.execute("DELETE FROM aliases WHERE function = ? AND name = ?", (function, name))
            self._db.execute("DELETE FROM provisioned WHERE function = ? AND qualifier = ?", (function, name))

    # --- provisioned workers ----------------------------------------------------------------

    def set_provisioned(self, function: str, qualifier: str, min_warm: int) -> None:
        if min_warm:
            self._db.execute("INSERT OR REPLACE INTO provisioned VALUES (?, ?, ?)", (function, qualifier, min_warm))
        else:
            self._db.execute("DELETE FROM provisioned WHERE function = ? AND qualifier = ?", (function, qualifier))

    def provisioned(self, function: str) -> dict[str, int]:
        rows = self._db.execute("SELECT qualifier, min_warm FROM provisioned WHERE function = ?", (function,))
        return dict(rows.fetchall())

    # --- the code store's view --------------------------------------------------------------

    def referenced(self) -> set[str]:
        """The code/ and builds/ entries versions use (the collector must keep them)."""
        rows = self._db.execute("SELECT code_location, code_stored, build_dir FROM versions").fetchall()
        names = {Path(build).name for _, _, build in rows}
        names.update(Path(location).name for location, stored, _ in rows if stored)
        return names

    def stored_code_bytes(self, *, besides: str = "", sha256: str = "") -> int:
        """As ``Registry.stored_code_bytes``, counting versions' zips too (Lambda counts them):
        each distinct zip once, not ``besides``'s $LATEST nor the zip ``sha256``."""
        row = self._db.execute(
            """SELECT COALESCE(SUM(code_size), 0) FROM (
                   SELECT code_sha256, code_size FROM functions WHERE code_stored = 1 AND name != ?
                   UNION SELECT code_sha256, code_size FROM versions WHERE code_stored = 1)
               WHERE code_sha256 != ?""", (besides, sha256)).fetchone()
        return int(row[0])


_ALIAS_SELECT = """SELECT a.function, a.name, a.version, a.description, a.weights, a.revision_id,
                          COALESCE(p.min_warm, 0)
                   FROM aliases a LEFT JOIN provisioned p ON p.function = a.function AND p.qualifier = a.name"""


def _alias_record(row: tuple) -> AliasRecord:  # type: ignore[type-arg]
    function, name, version, description, weights, revision, min_warm = row
    return AliasRecord(function, name, version, description, json.loads(weights), revision, min_warm)


def _version_record(row: tuple) -> FunctionRecord:  # type: ignore[type-arg]
    (function, version, config, location, sha, size, stored, build_dir, revision, modified, description, slot,
     min_warm) = row
    return FunctionRecord(
        config=FunctionConfig(**json.loads(config)).replace(min_warm=min_warm),
        code=CodeRef(location=Path(location), sha256=sha, size=size, stored=bool(stored)),
        build_dir=Path(build_dir),
        revision_id=revision,
        last_modified=modified,
        slot=slot,
        version=str(version),
        description=description,
    )
