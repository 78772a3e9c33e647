"""Lambda layers: published layer versions, their SQLite table, and the merged directory that a
function's workers see as ``/opt``.

Layout under the state directory::

    functions.sqlite3   layer_versions: one row per published layer version, never reused
    code/<sha256>/      a layer version's unzipped content (the registry's content-addressed store)
    layers/<key>/       the contents of one ordered list of layer versions, later over earlier,
    layers/<key>.ok     read-only; ``key`` hashes the list, so functions with the same list share it

A deleted layer version leaves the listings at once (Lambda's DeleteLayerVersion), but its row
stays, marked, so that the functions and published versions that name it keep their content:
its ``code/`` entry and their merged directories stay referenced until nothing names it. A
version number is never given twice: the row of the highest one is never removed.

Everything here is blocking SQLite and file work, called by the supervisor under its locks; the
merging and unzipping run in a worker thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sqlite3
import stat
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import structlog

from ..errors import CodeStorageExceeded, InvalidParameter, ResourceNotFound
from . import codestore
from .codestore import MARKER_SUFFIX
from .registry import CodeRef, Registry, now, transaction

log = structlog.get_logger("fnhost.layers")

LAYERS_MAX = 5  # Lambda: a function uses at most five layers
DESCRIPTION_MAX = 256
LICENSE_MAX = 512
RUNTIMES_MAX = 15  # Lambda's CompatibleRuntimes bound
_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,140}$")
_ARN_RE = re.compile(r"^arn:[a-zA-Z0-9-]+:lambda:(?P<region>[a-zA-Z0-9-]+):(?P<account>\d{12}):layer:"
                     r"(?P<name>[a-zA-Z0-9_-]+)(?::(?P<version>[0-9]+))?$")


@dataclass(frozen=True, slots=True)
class LayerVersion:
    """One published version of a layer."""

    name: str
    version: int
    arn: str  # arn:aws:lambda:<region>:<account>:layer:<name>:<version>
    description: str
    sha256: str  # of the zip, hex
    size: int  # the zip's bytes
    location: Path  # its unzipped content: code/<sha256>/
    created: str
    compatible_runtimes: list[str] = field(default_factory=list)
    compatible_architectures: list[str] = field(default_factory=list)
    license_info: str = ""
    deleted: bool = False

    @property
    def layer_arn(self) -> str:
        """The layer's own ARN, without the version."""
        return self.arn.rpartition(":")[0]


def layer_arn(region: str, account: str, name: str, version: int | None = None) -> str:
    base = f"arn:aws:lambda:{region}:{account}:layer:{name}"
    return base if version is None else f"{base}:{version}"


def layer_name(raw: str) -> str:
    """A layer's name from a LayerName member: a name or the layer's ARN. Raises InvalidParameter."""
    match = _ARN_RE.match(raw or "")
    if match and match["version"] is None:
        return match["name"]
    if _NAME_RE.match(raw or ""):
        return raw
    raise InvalidParameter(f"1 validation error detected: Value '{raw}' at 'layerName' failed to satisfy "
                           "constraint: use a layer name ([a-zA-Z0-9-_]{1,140}) or a layer ARN")


def parse_version_arn(arn: str) -> tuple[str, str, str, int]:
    """(region, account, name, version) of a layer version's ARN. Raises InvalidParameter."""
    match = _ARN_RE.match(arn or "")
    if match is None or match["version"] is None:
        raise InvalidParameter(
            f"1 validation error detected: Value '{arn}' at 'layers' failed to satisfy constraint: a layer "
            "version ARN is arn:aws:lambda:<region>:<account>:layer:<name>:<version>")
    return match["region"], match["account"], match["name"], int(match["version"])


def merged_key(layers: Iterable[LayerVersion]) -> str:
    """The merged directory's name for an ordered list of layer versions: their contents, in order."""
    return hashlib.sha256("\0".join(v.sha256 for v in layers).encode()).hexdigest()[:40]


class LayerStore:
    """The layer_versions table of the registry's database, and the merged directories."""

    def __init__(self, registry: Registry, region: str, account: str) -> None:
        self._db: sqlite3.Connection = registry.db
        self.registry = registry
        self.region = region
        self.account = account
        self.root = registry.state_dir / "layers"
        self._merge_lock = threading.Lock()  # two deploys of one list merge it once
        self.root.mkdir(exist_ok=True)
        os.chmod(self.root, 0o711)  # workers may enter a merged directory they know the name of, never list
        self._db.execute(
            """CREATE TABLE IF NOT EXISTS layer_versions (
                   name TEXT NOT NULL,
                   version INTEGER NOT NULL,
                   description TEXT NOT NULL,
                   sha256 TEXT NOT NULL,
                   size INTEGER NOT NULL,
                   location TEXT NOT NULL,
                   created TEXT NOT NULL,
                   runtimes TEXT NOT NULL,
                   architectures TEXT NOT NULL,
                   license TEXT NOT NULL,
                   deleted INTEGER NOT NULL DEFAULT 0,
                   PRIMARY KEY (name, version))""")

    # --- versions ---------------------------------------------------------------------------

    @staticmethod
    def check_publish(name: str, description: str, runtimes: list[str], license_info: str) -> str:
        """The layer's name, once PublishLayerVersion's members are valid. Raises InvalidParameter."""
        if len(description) > DESCRIPTION_MAX:
            raise InvalidParameter(f"description is longer than {DESCRIPTION_MAX} characters")
        if len(license_info) > LICENSE_MAX:
            raise InvalidParameter(f"LicenseInfo is longer than {LICENSE_MAX} characters")
        if len(runtimes) > RUNTIMES_MAX:
            raise InvalidParameter(f"CompatibleRuntimes lists {len(runtimes)} runtimes; at most {RUNTIMES_MAX}")
        return layer_name(name)

    def publish(self, name: str, ref: CodeRef, *, description: str = "", runtimes: list[str] | None = None,
                architectures: list[str] | None = None, license_info: str = "") -> LayerVersion:
        """Record stored content (``Registry.store_zip``'s) as the layer's next version (1, 2, …;
        never reused). Raises InvalidParameter (see ``check_publish``)."""
        runtimes, architectures = list(runtimes or []), list(architectures or [])
        name = self.check_publish(name, description, runtimes, license_info)
        with transaction(self._db):
            row = self._db.execute("SELECT MAX(version) FROM layer_versions WHERE name = ?", (name,)).fetchone()
            version = (row[0] or 0) + 1
            self._db.execute(
                "INSERT INTO layer_versions VALUES (?,?,?,?,?,?,?,?,?,?,0)",
                (name, version, description, ref.sha256, ref.size, str(ref.location), now(),
                 json.dumps(runtimes), json.dumps(architectures), license_info))
        published = self._get(name, version)
        assert published is not None
        log.info("layer_version_published", layer=name, version=version, sha256=ref.sha256)
        return published

    def get(self, name: str, version: int) -> LayerVersion:
        """A version that was not deleted. Raises ResourceNotFound."""
        found = self._get(layer_name(name), version)
        if found is None or found.deleted:
            raise ResourceNotFound(f"The resource you requested does not exist: layer version "
                                   f"{layer_arn(self.region, self.account, name, version)}")
        return found

    def get_by_arn(self, arn: str) -> LayerVersion:
        """Raises InvalidParameter (not a layer version ARN), ResourceNotFound."""
        region, account, name, version = parse_version_arn(arn)
        if (region, account) != (self.region, self.account):
            raise ResourceNotFound(f"Layer version {arn} does not exist: this daemon's layers are in region "
                                   f"{self.region}, account {self.account}")
        return self.get(name, version)

    def versions(self, name: str, runtime: str = "", architecture: str = "") -> list[LayerVersion]:
        """The versions not deleted, newest first (as Lambda lists them)."""
        rows = self._db.execute(f"{_SELECT} WHERE name = ? AND deleted = 0 ORDER BY version DESC",
                                (layer_name(name),)).fetchall()
        return [v for v in map(self._version, rows) if _matches(v, runtime, architecture)]

    def latest(self, runtime: str = "", architecture: str = "") -> list[LayerVersion]:
        """Each layer's newest version (matching the filters), by layer name."""
        rows = self._db.execute(f"{_SELECT} WHERE deleted = 0 ORDER BY name, version DESC").fetchall()
        newest: dict[str, LayerVersion] = {}
        for version in map(self._version, rows):
            if version.name not in newest and _matches(version, runtime, architecture):
                newest[version.name] = version
        return list(newest.values())

    def delete(self, name: str, version: int) -> None:
        """Take a version out of the listings; functions using it keep its content. Deleting a
        version that does not exist does nothing (as on Lambda)."""
        self._db.execute("UPDATE layer_versions SET deleted = 1 WHERE name = ? AND version = ?",
                         (layer_name(name), version))
        log.info("layer_version_deleted", layer=name, version=version)

    # --- a function's list ------------------------------------------------------------------

    def resolve(self, arns: Iterable[str], *, kept: Iterable[str] = ()) -> list[LayerVersion]:
        """The layer versions a function's ``Layers`` list names, in order.

        ``kept``: ARNs the function had already, which may name deleted versions (Lambda keeps
        them for it); any other must name a version not deleted. Raises InvalidParameter: more
        than five, an ARN that is not one, a version that does not exist, or two versions of one
        layer (Lambda's rules).
        """
        arns = list(arns)
        if len(arns) > LAYERS_MAX:
            raise InvalidParameter(f"Cannot reference more than {LAYERS_MAX} layers: got {len(arns)}")
        kept = set(kept)
        found: list[LayerVersion] = []
        for arn in arns:
            region, account, name, version = parse_version_arn(arn)
            record = self._get(name, version) if (region, account) == (self.region, self.account) else None
            if record is None or (record.deleted and arn not in kept):
                raise InvalidParameter(f"Layer version {arn} does not exist.")
            if any(f.name == name for f in found):
                raise InvalidParameter(f"Two different versions of the same layer are not allowed: {name}")
            found.append(record)
        return found

    def merged_dir(self, layers: list[LayerVersion]) -> Path:
        """The merged directory of ``layers`` (made now if it is not there yet); blocking.

        Later layers' files replace earlier ones' (a directory replaces a file and the reverse, as
        unzipping one archive over another would). Files are 0444 (0555 when executable) and, for
        a root daemon, directories 0555, all the daemon's: read-only to every function, in both
        isolation modes. Raises OSError when a layer's content is missing from the store.
        """
        with self._merge_lock:
            return self._merge(layers)

    def _merge(self, layers: list[LayerVersion]) -> Path:
        key = merged_key(layers)
        target = self.root / key
        marker = target.with_name(key + MARKER_SUFFIX)
        if codestore.read_marker(marker) == key and target.is_dir():
            return target
        staging = Path(tempfile.mkdtemp(dir=self.root, prefix=".merging-"))
        try:
            for layer in layers:
                _overlay(layer.location, staging)
            _seal(staging)
            if not codestore.install(staging, target) and codestore.read_marker(marker) != key:
                # A merge without its marker (a crash between the two): replaced by this one.
                codestore.remove([target])
                codestore.install(staging, target)
            codestore.write_marker(marker, key)
        finally:
            if staging.exists():
                codestore.remove([_writable(staging)])
        log.info("layers_merged", layers=[v.arn for v in layers], directory=str(target))
        return target

    def referenced(self, lists: Iterable[list[str]]) -> set[str]:
        """The code/ and layers/ entries to keep: every live version's content, and for each
        function's (or version's) list in ``lists`` its layers' content and merged directory."""
        rows = self._db.execute(f"{_SELECT} WHERE deleted = 0").fetchall()
        names = {Path(r[5]).name for r in rows}
        for arns in lists:
            if not arns:
                continue
            try:
                layers = self.resolve(arns, kept=arns)
            except InvalidParameter:
                continue  # a record from before its layer was gone; nothing of it to keep
            names.update(v.location.name for v in layers)
            names.add(merged_key(layers))
        return names

    def stored_bytes(self) -> int:
        """The zip bytes of every distinct live layer version's content (Lambda counts layers
        towards the account's code storage)."""
        row = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM (SELECT DISTINCT sha256, size "
                               "FROM layer_versions WHERE deleted = 0)").fetchone()
        return int(row[0])

    # --- rows ---------------------------------------------------------------------------------

    def _get(self, name: str, version: int) -> LayerVersion | None:
        row = self._db.execute(f"{_SELECT} WHERE name = ? AND version = ?", (name, version)).fetchone()
        return None if row is None else self._version(row)

    def _version(self, row: tuple) -> LayerVersion:  # type: ignore[type-arg]
        name, version, description, sha, size, location, created, runtimes, architectures, license_info, deleted = row
        return LayerVersion(name=name, version=version, arn=layer_arn(self.region, self.account, name, version),
                            description=description, sha256=sha, size=size, location=Path(location),
                            created=created, compatible_runtimes=json.loads(runtimes),
                            compatible_architectures=json.loads(architectures), license_info=license_info,
                            deleted=bool(deleted))


_SELECT = ("SELECT name, version, description, sha256, size, location, created, runtimes, architectures, "
           "license, deleted FROM layer_versions")


def _matches(version: LayerVersion, runtime: str, architecture: str) -> bool:
    return ((not runtime or runtime in version.compatible_runtimes)
            and (not architecture or architecture in version.compatible_architectures))


def _overlay(src: Path, dst: Path) -> None:
    """Copy the tree ``src`` over ``dst``: what ``src`` has replaces what ``dst`` had."""
    for entry in os.scandir(src):
        target = dst / entry.name
        if entry.is_dir(follow_symlinks=False):
            if target.is_symlink() or (target.exists() and not target.is_dir()):
                target.unlink()
            target.mkdir(exist_ok=True)
            _overlay(Path(entry.path), target)
            continue
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), target)
        elif entry.is_file(follow_symlinks=False):
            shutil.copyfile(entry.path, target)
            os.chmod(target, entry.stat(follow_symlinks=False).st_mode & 0o777)


def _seal(root: Path) -> None:
    """Read-only for everyone: files 0444 (0555 executable), directories 0555 for a root daemon.

    A daemon that is not root runs its functions as itself: they could chmod their way past any
    mode, so its directories stay 0755 (it must be able to remove them)."""
    directory_mode = 0o555 if os.geteuid() == 0 else 0o755
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o555 if os.stat(path).st_mode & stat.S_IXUSR else 0o444)
        os.chmod(dirpath, directory_mode)


def _writable(root: Path) -> Path:
    """``root`` with its directories writable again by the daemon, to be removed."""
    for dirpath, _dirnames, _filenames in os.walk(root):
        with contextlib.suppress(OSError):
            os.chmod(dirpath, 0o700)
    return root


class SupervisorLayers:
    """The supervisor's layer operations (``Supervisor`` inherits this): what every front end
    calls. Storing a zip and merging run in a worker thread; SQLite stays on the event loop."""

    layers: LayerStore
    registry: Registry
    versions: Any  # control/versions.py's VersionStore
    collector: codestore.Collector
    settings: Any

    async def publish_layer_version(self, name: str, data: bytes, *, description: str = "",
                                    runtimes: list[str] | None = None, architectures: list[str] | None = None,
                                    license_info: str = "") -> LayerVersion:
        """Raises InvalidParameter, CodeStorageExceeded (the zip's limits, or the daemon's
        code_storage_max_bytes with functions' code and other layers counted)."""
        self.layers.check_publish(name, description, list(runtimes or []), license_info)
        try:
            async with self.collector.deploying():  # its code/ entry is referenced only once recorded
                ref = await anyio.to_thread.run_sync(self.registry.store_zip, data)
                used = self.layers.stored_bytes() + self.versions.stored_code_bytes()
                limit = self.settings.code_storage_max_bytes
                if used + ref.size > limit:
                    raise CodeStorageExceeded(
                        f"stored code and layers take {used} bytes and this layer {ref.size}, past this "
                        f"daemon's code_storage_max_bytes of {limit}: delete layers or functions you no longer need")
                return self.layers.publish(name, ref, description=description, runtimes=runtimes,
                                           architectures=architectures, license_info=license_info)
        finally:
            self.collector.request()

    async def delete_layer_version(self, name: str, version: int) -> None:
        """Lambda's DeleteLayerVersion: gone from the listings; functions that use it keep it."""
        self.layers.delete(name, version)
        self.collector.request()

    async def merge_layers(self, arns: list[str], kept: list[str]) -> Path | None:
        """The merged directory of a function's layers list, made before the function is
        recorded with it. Raises InvalidParameter (see ``LayerStore.resolve``)."""
        if not arns:
            return None
        versions = self.layers.resolve(arns, kept=kept)
        return await anyio.to_thread.run_sync(self.layers.merged_dir, versions)
