"""Versions and aliases at run time: publishing, aliases, provisioned workers, and which pool a
qualified invocation runs on.

``Supervisor`` inherits this. What ``invoke`` needs is kept in two dicts, filled at start and
changed under the function's deploy lock: ``published`` (a version's record by its pool label,
``name:N``) and ``routes`` (an alias's by ``name:alias``). Resolving a qualifier is one or two
dict lookups and, for a weighted alias, one ``random()``; SQLite is never on the invoke path.
A version's pool is made when the version is first invoked (or given provisioned workers);
each has its version's frozen limits and is reaped like any pool.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from ..errors import InvalidParameter, PreconditionFailed, ResourceNotFound
from ..execution.invocation import LATEST
from ..execution.pool import Pool
from .registry import FunctionRecord
from .versions import (AliasRecord, VersionStore, is_version, same_content, sha256_matches, validate_alias_name,
                       validate_description, validate_weights)

if TYPE_CHECKING:
    import anyio

    from ..execution.pool import PoolConfig
    from .config import FunctionConfig, Settings
    from .deploy import Deployer
    from .registry import Registry

log = structlog.get_logger("fnhost.versions")


@dataclass(frozen=True, slots=True)
class Route:
    """Where an alias sends an invocation: its version, or by ``weight`` the additional one."""

    version: str
    label: str  # the version's pool
    extra_version: str = ""
    extra_label: str = ""
    weight: float = 0.0

    @classmethod
    def of(cls, alias: AliasRecord) -> Route:
        name = alias.function
        if not alias.weights:
            return cls(alias.version, label_of(name, alias.version))
        (extra, weight), = alias.weights.items()
        return cls(alias.version, label_of(name, alias.version), extra, label_of(name, extra), weight)


def label_of(function: str, version: str) -> str:
    """A version's pool name: ``name`` for $LATEST, ``name:N`` for a published version."""
    return function if version == LATEST else f"{function}:{version}"


class Qualifiers:
    """The supervisor's versions and aliases (a mixin: it shares the supervisor's state)."""

    # What the supervisor provides.
    settings: Settings
    registry: Registry
    deployer: Deployer
    pools: dict[str, Pool]
    versions: VersionStore
    published: dict[str, FunctionRecord]
    routes: dict[str, Route]
    _aliases: dict[str, dict[str, AliasRecord]]  # by function, by alias name
    _lock: Callable[[str], anyio.Lock]
    _spawn_background: Callable[[Callable[[], Awaitable[None]]], None]
    _new_pool: Callable[[PoolConfig, FunctionRecord], Pool]
    _pool_config: Callable[[FunctionConfig, str, int], PoolConfig]
    update_config: Callable[..., Awaitable[FunctionRecord]]

    # --- the invoke path ----------------------------------------------------------------------

    def resolve(self, function: str, qualifier: str) -> tuple[Pool, str]:
        """The pool and version a qualified call runs on ("N" or an alias; not $LATEST).

        Raises ResourceNotFound with Lambda's message for an unknown function or qualifier.
        """
        key = f"{function}:{qualifier}"
        route = self.routes.get(key)
        if route is None:
            version, label = qualifier, key
        elif route.weight and random.random() < route.weight:
            version, label = route.extra_version, route.extra_label
        else:
            version, label = route.version, route.label
        pool = self.pools.get(label)
        if pool is None:
            pool = self._version_pool(label)
            if pool is None:
                raise ResourceNotFound(f"Function not found: {key}")
        return pool, version

    def _version_pool(self, label: str) -> Pool | None:
        """A published version's pool, made now (no workers yet unless it has provisioned ones);
        None for a label that names no published version."""
        record = self.published.get(label)
        if record is None:
            return None
        pool = self._new_pool(self._pool_config(record.config, label, self._min_warm(record)), record)
        self.pools[label] = pool
        return pool

    def _min_warm(self, record: FunctionRecord) -> int:
        """A version's provisioned workers: its own, and those of every alias pointing at it."""
        if record.version == LATEST:
            return record.config.min_warm
        name = record.config.name
        own = self.published[record.label].config.min_warm
        return own + sum(a.min_warm for a in self._aliases.get(name, {}).values() if a.version == record.version)

    def _refresh(self, function: str, *versions: str) -> None:
        """Give the pools of ``versions`` their current provisioned count; start the workers a
        raised one needs (making the pool if it has none yet)."""
        for version in dict.fromkeys(versions):
            label = label_of(function, version)
            record = self.published.get(label)
            if record is None:
                continue
            min_warm = self._min_warm(record)
            pool = self.pools.get(label)
            if pool is None:
                if min_warm:
                    self._version_pool(label)  # starts its workers
                continue
            pool.apply_settings(self._pool_config(record.config, label, min_warm))
            self._spawn_background(pool.ensure_warm)

    def _load_versions(self) -> None:
        """At start: every published version and alias; pools for those with provisioned workers."""
        for record in self.versions.all():
            self.published[record.label] = record
        for alias in self.versions.aliases():
            self._remember(alias)
        for record in list(self.published.values()):
            if self._min_warm(record):
                try:
                    self._refresh(record.config.name, record.version)
                except Exception as exc:  # one version's fault: the others still load
                    log.error("version_not_loaded", function=record.label,
                              error=getattr(exc, "message", None) or repr(exc))

    def _remember(self, alias: AliasRecord) -> None:
        self._aliases.setdefault(alias.function, {})[alias.name] = alias
        self.routes[f"{alias.function}:{alias.name}"] = Route.of(alias)

    def _forget_versions(self, function: str) -> list[Pool]:
        """Drop a deleted function's versions and aliases; returns its version pools, for the
        caller to close. No await: no invocation finds a part of it once this returns."""
        prefix = f"{function}:"  # a function name never holds ":"
        for key in [k for k in self.routes if k.startswith(prefix)]:
            del self.routes[key]
        self._aliases.pop(function, None)
        for label in [k for k in self.published if k.startswith(prefix)]:
            del self.published[label]
        return [self.pools.pop(label) for label in [k for k in self.pools if k.startswith(prefix)]]

    # --- versions -----------------------------------------------------------------------------

    async def publish_version(self, name: str, *, code_sha256: str = "", revision_id: str = "",
                              description: str = "") -> FunctionRecord:
        """Freeze $LATEST's code, build and configuration as the next version; when nothing changed
        since the last version, that version. Raises ResourceNotFound, PreconditionFailed
        (``revision_id`` is not $LATEST's), InvalidParameter (``code_sha256`` is not its code's)."""
        async with self._lock(name):
            latest = self.registry.get(name)
            validate_description(description)
            if revision_id and revision_id != latest.revision_id:
                raise PreconditionFailed(
                    "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/"
                    "GetAlias API to retrieve the latest Revision Id")
            if code_sha256 and not sha256_matches(code_sha256, latest.code.sha256):
                raise InvalidParameter(
                    f"CodeSHA256 ({code_sha256}) is different from current CodeSHA256 in $LATEST "
                    f"({latest.code.sha256}). Please try again with the CodeSHA256 in $LATEST.")
            versions = self.versions.versions(name)
            if versions and same_content(versions[-1], latest):
                return versions[-1]
            record = self.versions.publish(latest, description or latest.description)
            self.published[record.label] = record
            log.info("version_published", function=name, version=record.version, code_sha256=latest.code.sha256)
            return record

    def list_versions(self, name: str) -> list[FunctionRecord]:
        """$LATEST first, then each published version in order. Raises ResourceNotFound."""
        return [self.registry.get(name), *self.versions.versions(name)]

    async def _delete_version(self, name: str, qualifier: str) -> None:
        """Raises InvalidParameter for $LATEST or an alias, ResourceConflict while an alias routes
        to the version, ResourceNotFound."""
        if qualifier == LATEST:
            raise InvalidParameter("$LATEST version cannot be deleted without deleting the function.")
        if not is_version(qualifier):
            raise InvalidParameter(
                f"Deletion of aliases is not supported by DeleteFunction ({name}:{qualifier}); use DeleteAlias")
        async with self._lock(name):
            self.registry.get(name)
            self.versions.delete_version(name, qualifier)
            label = label_of(name, qualifier)
            self.published.pop(label, None)
            pool = self.pools.pop(label, None)
            if pool is not None:
                await pool.close()
            log.info("version_deleted", function=name, version=qualifier)

    # --- aliases ------------------------------------------------------------------------------

    def _check_target(self, name: str, version: str, weights: dict[str, float] | None) -> dict[str, float]:
        """The alias's routing, validated; raises InvalidParameter, ResourceNotFound."""
        if version != LATEST:
            if not is_version(version):
                raise InvalidParameter(f"function version {version!r} is invalid: use {LATEST} or a number")
            self.versions.get(name, version)
        checked = validate_weights(version, weights)
        for extra in checked:
            self.versions.get(name, extra)
        return checked

    async def create_alias(self, name: str, alias: str, version: str, *, description: str = "",
                           weights: dict[str, float] | None = None) -> AliasRecord:
        """Raises ResourceNotFound (function or version), ResourceConflict (exists), InvalidParameter."""
        async with self._lock(name):
            self.registry.get(name)
            validate_alias_name(alias)
            validate_description(description)
            routing = self._check_target(name, version, weights)
            record = self.versions.put_alias(AliasRecord(name, alias, version, description, routing), create=True)
            self._remember(record)
            log.info("alias_created", function=name, alias=alias, version=version, weights=routing)
            return record

    def get_alias(self, name: str, alias: str) -> AliasRecord:
        """Raises ResourceNotFound."""
        self.registry.get(name)
        return self.versions.get_alias(name, alias)

    def list_aliases(self, name: str, version: str = "") -> list[AliasRecord]:
        """The function's aliases, or those pointing at ``version``. Raises ResourceNotFound."""
        self.registry.get(name)
        return [a for a in self.versions.aliases(name) if not version or a.version == version]

    async def update_alias(self, name: str, alias: str, *, version: str | None = None,
                           description: str | None = None, weights: dict[str, float] | None = None,
                           revision_id: str = "") -> AliasRecord:
        """Change what is given (``weights={}`` removes the routing). Raises ResourceNotFound,
        PreconditionFailed (``revision_id`` is not the alias's), InvalidParameter."""
        async with self._lock(name):
            current = self.get_alias(name, alias)
            if revision_id and revision_id != current.revision_id:
                raise PreconditionFailed(
                    "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/"
                    "GetAlias API to retrieve the latest Revision Id")
            target = current.version if version is None else version
            routing = self._check_target(name, target, current.weights if weights is None else weights)
            changed = dataclasses.replace(
                current, version=target, weights=routing,
                description=current.description if description is None else validate_description(description))
            record = self.versions.put_alias(changed, create=False)
            self._remember(record)
            self._refresh(name, current.version, target)  # its provisioned workers move with it
            log.info("alias_updated", function=name, alias=alias, version=target, weights=routing)
            return record

    async def delete_alias(self, name: str, alias: str) -> None:
        """Deleting an alias that does not exist does nothing, as on Lambda."""
        async with self._lock(name):
            gone = self._aliases.get(name, {}).pop(alias, None)
            self.routes.pop(f"{name}:{alias}", None)
            self.versions.delete_alias(name, alias)
            self.urls.forget(name, alias)  # type: ignore[attr-defined]  # the Supervisor's
            if gone is not None:
                self._refresh(name, gone.version)
                log.info("alias_deleted", function=name, alias=alias)

    # --- provisioned workers ----------------------------------------------------------------

    async def set_min_warm(self, name: str, qualifier: str, min_warm: int) -> None:
        """Workers kept warm for a version or alias (Lambda's provisioned concurrency); for
        $LATEST (or ""), its configuration's min_warm. 0 removes them. Raises ResourceNotFound,
        InvalidParameter (negative, or past the version's concurrency limit)."""
        if not qualifier or qualifier == LATEST:
            await self.update_config(name, min_warm=min_warm)
            return
        if min_warm < 0:
            raise InvalidParameter(f"min_warm {min_warm} is negative")
        async with self._lock(name):
            self.registry.get(name)
            if is_version(qualifier):
                version = self.versions.get(name, qualifier).version
            else:
                version = self.versions.get_alias(name, qualifier).version
                if version == LATEST:
                    raise InvalidParameter(
                        f"alias {qualifier} points at {LATEST}: provisioned workers are for published versions "
                        "(set min_warm on the function itself for $LATEST)")
            record = self.published[label_of(name, version)]
            before = self._min_warm(record)
            own = record.config.min_warm if is_version(qualifier) else self._aliases[name][qualifier].min_warm
            limit = record.config.max_concurrency or self.settings.max_concurrency_cap
            if before - own + min_warm > limit:
                raise InvalidParameter(
                    f"min_warm {min_warm} would keep {before - own + min_warm} workers of {name}:{version}, "
                    f"above its concurrency limit of {limit}")
            self.versions.set_provisioned(name, qualifier, min_warm)
            if is_version(qualifier):
                self.published[record.label] = dataclasses.replace(
                    record, config=record.config.replace(min_warm=min_warm))
            else:
                self._remember(dataclasses.replace(self._aliases[name][qualifier], min_warm=min_warm))
            self._refresh(name, version)
            log.info("provisioned_workers_set", function=name, qualifier=qualifier, min_warm=min_warm)
