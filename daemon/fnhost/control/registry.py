"""The function registry: configurations in SQLite, code in a content-addressed store.

Layout under the state directory::

    functions.sqlite3          one row per function
    code/<sha256>/             an extracted zip (never modified once written)
    code/<sha256>.ok           the hash of that tree, written once it is on disk
    builds/<key>/              a runtime's build output for one function, code version and handler

Everything here is blocking file and database work; the service calls it from a worker thread
when it may take long (hashing, unzipping, building) and directly when it is one small query.
How entries are put in place, checked and collected is ``codestore``'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import io
import itertools
import json
import os
import shutil
import sqlite3
import stat
import tempfile
import threading
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from ..errors import CodeStorageExceeded, InvalidParameter, ResourceConflict, ResourceNotFound
from ..execution.invocation import LATEST
from ..execution.sandbox import make_readable
from ..execution.uids import UidClaims
from . import codestore
from .codestore import MARKER_SUFFIX, ZIP_MAX_ENTRIES
from .config import FunctionConfig

ZIP_MAX = 50 * 1024 * 1024  # Lambda: 50 MB zipped, for a direct upload
UNZIPPED_MAX = 250 * 1024 * 1024  # Lambda: 250 MB unzipped

log = structlog.get_logger("fnhost.registry")


@dataclass(frozen=True, slots=True)
class CodeRef:
    """Where a function's code lives and what it is."""

    location: Path  # the directory the workers run from
    sha256: str
    size: int
    stored: bool  # True: an extracted zip in the store; False: a host directory read in place


@dataclass(frozen=True, slots=True)
class FunctionRecord:
    config: FunctionConfig
    code: CodeRef
    build_dir: Path  # equals code.location for runtimes without a build step
    revision_id: str
    last_modified: str
    slot: int  # stable per function; a root daemon runs the function as uid worker_uid_base + slot
    version: str = LATEST  # "$LATEST", or a published version's number: "1", "2", …
    description: str = ""  # $LATEST: the configuration's; a version: the one it was published with

    @property
    def label(self) -> str:
        """Its pool's name in stats and metrics: ``name`` for $LATEST, ``name:N`` for a version."""
        return self.config.name if self.version == LATEST else f"{self.config.name}:{self.version}"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """All or nothing on a connection in autocommit mode (``isolation_level=None``)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def hash_directory(root: Path) -> tuple[str, int]:
    """SHA-256 over relative paths, modes and contents, so any change to the code changes it."""
    digest = hashlib.sha256()
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath, name)
            st = path.lstat()
            rel = path.relative_to(root).as_posix()
            digest.update(f"{rel}\0{stat.S_IMODE(st.st_mode) & 0o111}\0".encode())
            if stat.S_ISLNK(st.st_mode):
                digest.update(os.readlink(path).encode())
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            total += st.st_size
            if total > UNZIPPED_MAX:
                raise CodeStorageExceeded(
                    f"code directory {root} holds more than {UNZIPPED_MAX // 2**20} MB; Lambda's limit is 250 MB"
                )
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest(), total


def code_from_directory(directory: str) -> CodeRef:
    path = Path(directory)
    if not path.is_absolute():
        raise InvalidParameter(
            f"code directory {directory!r} is not an absolute path; the daemon resolves no relative paths"
        )
    if not path.is_dir():
        raise InvalidParameter(f"code directory {directory} does not exist or is not a directory")
    if not os.access(path, os.R_OK | os.X_OK):
        raise InvalidParameter(f"code directory {directory} is not readable by the daemon")
    sha, size = hash_directory(path)
    return CodeRef(location=path.resolve(), sha256=sha, size=size, stored=False)


class Registry:
    def __init__(self, state_dir: Path, uids: UidClaims | None = None) -> None:
        """``uids``: when each function runs as its own uid, the host-wide claims on them."""
        self.state_dir = state_dir
        self.code_root = state_dir / "code"
        self.build_root = state_dir / "builds"
        for d in (self.code_root, self.build_root):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o711)  # workers may enter a directory they know the name of, never list
        db_path = state_dir / "functions.sqlite3"
        # Created private before SQLite opens it: its WAL and shared-memory files take its mode.
        os.close(os.open(db_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        os.chmod(db_path, 0o600)
        self._db = sqlite3.connect(db_path, isolation_level=None)
        self._store_lock = threading.Lock()  # one thread at a time checks or installs an entry
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            """CREATE TABLE IF NOT EXISTS functions (
                name TEXT PRIMARY KEY,
                config TEXT NOT NULL,
                code_location TEXT NOT NULL,
                code_sha256 TEXT NOT NULL,
                code_size INTEGER NOT NULL,
                code_stored INTEGER NOT NULL,
                build_dir TEXT NOT NULL,
                revision_id TEXT NOT NULL,
                last_modified TEXT NOT NULL,
                slot INTEGER NOT NULL UNIQUE
            )"""
        )
        self._uids = uids
        self._pending: set[int] = set()  # slots reserved for functions being created (built)
        if uids is not None:
            self._keep_slots(uids)

    @property
    def db(self) -> sqlite3.Connection:
        """The state directory's database, for the tables of other modules (versions, aliases)."""
        return self._db

    def close(self) -> None:
        self._db.close()
        if self._uids is not None:
            self._uids.close()

    # --- slots: a root daemon runs each function as uid worker_uid_base + slot -----------------

    def _free_slots(self) -> Iterator[int]:
        """Slots no function of this registry has (nor a create in progress), smallest first."""
        used = {row[0] for row in self._db.execute("SELECT slot FROM functions")} | self._pending
        return (slot for slot in itertools.count(1) if slot not in used)

    def _new_slot(self) -> int:
        if self._uids is None:
            return next(self._free_slots())
        return self._uids.claim(self._free_slots())

    def reserve_slot(self) -> int:
        """A slot (its uid claimed) for a function about to be created: its build runs as that uid
        before ``put(..., slot=)`` records it. Hand it back with ``release_slot`` either way."""
        slot = self._new_slot()
        self._pending.add(slot)
        return slot

    def release_slot(self, slot: int) -> None:
        self._pending.discard(slot)

    def _keep_slots(self, uids: UidClaims) -> None:
        """Claim the uids of the functions persisted here; move a function whose uid is taken.

        Taken means another daemon on the host claimed it while this one was down, or a process
        still runs as it (one no daemon killed, as after a SIGKILL without cgroups). A function
        owns nothing by uid that outlives its workers, so it may change uid between two runs.
        """
        rows = self._db.execute("SELECT name, slot FROM functions ORDER BY slot").fetchall()
        kept = uids.keep(slot for _, slot in rows)
        for name, slot in rows:
            if slot not in kept:
                new = uids.claim(self._free_slots())
                self._db.execute("UPDATE functions SET slot = ? WHERE name = ?", (new, name))
                log.warning("function_uid_changed", function=name, old_uid=uids.uid(slot), uid=uids.uid(new),
                            reason="its uid is claimed by another fnhost daemon, named, or still has processes")

    # --- code store ---------------------------------------------------------------------------

    def store_zip(self, data: bytes) -> CodeRef:
        """Validate a zip and extract it under code/<sha256>/ (once per distinct content).

        An entry already there is used only if its tree still hashes to what its marker says;
        otherwise (a crash before the marker, damage on disk) it is replaced.
        """
        if len(data) > ZIP_MAX:
            raise CodeStorageExceeded(
                f"zip is {len(data)} bytes; the limit for a direct upload is {ZIP_MAX} bytes (50 MB)"
            )
        if codestore.zip_entry_count(data, ZIP_MAX_ENTRIES) > ZIP_MAX_ENTRIES:
            raise CodeStorageExceeded(
                f"code zip holds more than {ZIP_MAX_ENTRIES:,} files and directories, fnhost's limit (Lambda "
                "publishes none beyond 250 MB unzipped): bundle dependencies into fewer files (a jar, "
                "an archive the function opens) or leave out what it does not need"
            )
        sha = hashlib.sha256(data).hexdigest()
        target = self.code_root / sha
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
            members = archive.infolist()
        except zipfile.BadZipFile as exc:
            raise InvalidParameter(f"code zip is not a valid zip archive: {exc}") from exc
        size = 0
        for info in members:
            parts = Path(info.filename).parts
            if info.filename.startswith(("/", "\\")) or ".." in parts:
                raise InvalidParameter(
                    f"code zip entry {info.filename!r} would extract outside the code directory"
                )
            size += info.file_size
        if size > UNZIPPED_MAX:
            raise CodeStorageExceeded(
                f"code zip unpacks to {size} bytes; Lambda's limit is {UNZIPPED_MAX} bytes (250 MB)"
            )
        with self._store_lock:
            if self._stored_intact(target):
                return CodeRef(location=target, sha256=sha, size=len(data), stored=True)
        tmp = Path(tempfile.mkdtemp(dir=self.code_root, prefix=".incoming-"))
        damaged = self.code_root / f"{codestore.TRASH_PREFIX}{uuid.uuid4().hex}"
        try:
            for info in members:
                archive.extract(info, tmp)
                mode = (info.external_attr >> 16) & 0o777
                if mode and not info.is_dir():
                    # zipfile drops permissions; executables (Go binaries, scripts) need them.
                    os.chmod(tmp / info.filename, mode | 0o400)
            make_readable(tmp)  # workers run as other users; the hash in the path is the secret
            tree, _ = hash_directory(tmp)
            with self._store_lock:
                if not self._stored_intact(target):
                    if target.exists():  # damaged: out of the way, then removed
                        os.rename(target, damaged)
                    codestore.install(tmp, target)
                    codestore.write_marker(self._marker(target), tree)
        except zipfile.BadZipFile as exc:
            raise InvalidParameter(f"code zip is corrupt: {exc}") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(damaged, ignore_errors=True)
        return CodeRef(location=target, sha256=sha, size=len(data), stored=True)

    @staticmethod
    def _marker(entry: Path) -> Path:
        return entry.with_name(entry.name + MARKER_SUFFIX)

    def _stored_intact(self, target: Path) -> bool:
        """Whether code/<sha>/ exists and still hashes to its marker (a missing marker: no)."""
        expected = codestore.read_marker(self._marker(target))
        if expected is None or not target.is_dir():
            return False
        try:
            intact = hash_directory(target)[0] == expected
        except (OSError, CodeStorageExceeded):
            intact = False
        if not intact:
            log.warning("code_entry_damaged", entry=str(target), note="extracted again from the upload")
        return intact

    def install_build(self, staging: Path, build_dir: Path) -> None:
        """Put a finished build in place, durably and readable by the daemon only (``seal_build``
        then opens it to its function). Raises FileExistsError if ``build_dir`` exists already."""
        codestore.seal(staging, None)
        if not codestore.install(staging, build_dir):
            raise FileExistsError(errno.EEXIST, "build output exists already", str(build_dir))

    def seal_build(self, record: FunctionRecord, gid: int | None) -> None:
        """Make a function's build output readable by its own group only (no build step: nothing)."""
        if record.build_dir.parent == self.build_root and record.build_dir.is_dir():
            codestore.seal(record.build_dir, gid)

    def referenced(self) -> set[str]:
        """The names of every code/ and builds/ entry some function uses."""
        rows = self._db.execute("SELECT code_location, code_stored, build_dir FROM functions").fetchall()
        names = {Path(build).name for _, _, build in rows}
        names.update(Path(location).name for location, stored, _ in rows if stored)
        return names

    def stored_code_bytes(self, *, besides: str = "", sha256: str = "") -> int:
        """Zip bytes every function's stored code takes, each distinct zip once, not counting
        function ``besides`` nor the zip ``sha256`` (Lambda counts code storage the same way)."""
        row = self._db.execute(
            """SELECT COALESCE(SUM(code_size), 0) FROM (SELECT DISTINCT code_sha256, code_size FROM functions
               WHERE code_stored = 1 AND name != ? AND code_sha256 != ?)""", (besides, sha256)).fetchone()
        return int(row[0])

    def build_dir_for(self, runtime: str, code: CodeRef, handler: str, function: str = "", layers: str = "") -> Path:
        # One per function: a build is readable by its own function's group only (seal_build).
        # ``layers``: what of the function's layers its build reads, for a runtime whose build does.
        keyed = f"{runtime}\0{code.sha256}\0{handler}\0{function}" + (f"\0{layers}" if layers else "")
        key = hashlib.sha256(keyed.encode()).hexdigest()[:32]
        return self.build_root / f"{runtime}-{key}"

    # --- functions ----------------------------------------------------------------------------

    def get(self, name: str) -> FunctionRecord:
        row = self._db.execute("SELECT * FROM functions WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise ResourceNotFound(f"Function not found: {name}")
        return self._record(row)

    def all(self) -> list[FunctionRecord]:
        rows = self._db.execute("SELECT * FROM functions ORDER BY name").fetchall()
        return [self._record(r) for r in rows]

    def exists(self, name: str) -> bool:
        return self._db.execute("SELECT 1 FROM functions WHERE name = ?", (name,)).fetchone() is not None

    def put(self, config: FunctionConfig, code: CodeRef, build_dir: Path, *, create: bool,
            slot: int | None = None) -> FunctionRecord:
        """Record a function; ``slot``: with ``create``, the one ``reserve_slot`` gave it."""
        try:
            if create:
                # The smallest free slot whose uid no process and no other daemon holds: a uid
                # comes back only once everything of the deleted function that had it is gone.
                slot = self._new_slot() if slot is None else slot
            else:
                row = self._db.execute("SELECT slot FROM functions WHERE name = ?", (config.name,)).fetchone()
                if row is None:
                    raise ResourceNotFound(f"Function not found: {config.name}")
                slot = row[0]
            record = FunctionRecord(
                config=config,
                code=code,
                build_dir=build_dir,
                revision_id=str(uuid.uuid4()),
                last_modified=now(),
                slot=slot,
                description=config.description,
            )
            values = (
                config.name,
                json.dumps(dataclasses.asdict(config)),
                str(code.location),
                code.sha256,
                code.size,
                int(code.stored),
                str(build_dir),
                record.revision_id,
                record.last_modified,
                slot,
            )
            if create:
                self._db.execute("INSERT INTO functions VALUES (?,?,?,?,?,?,?,?,?,?)", values)
            else:
                self._db.execute(
                    """UPDATE functions SET config=?, code_location=?, code_sha256=?, code_size=?,
                       code_stored=?, build_dir=?, revision_id=?, last_modified=? WHERE name=?""",
                    values[1:9] + values[:1],
                )
        except sqlite3.IntegrityError:
            raise ResourceConflict(f"Function already exist: {config.name}") from None
        return record

    def delete(self, name: str) -> None:
        cur = self._db.execute("DELETE FROM functions WHERE name = ?", (name,))
        if cur.rowcount == 0:
            raise ResourceNotFound(f"Function not found: {name}")

    @staticmethod
    def _record(row: tuple) -> FunctionRecord:  # type: ignore[type-arg]
        name, config, location, sha, size, stored, build_dir, revision, modified, slot = row
        cfg = FunctionConfig(**json.loads(config))
        return FunctionRecord(
            config=cfg,
            code=CodeRef(location=Path(location), sha256=sha, size=size, stored=bool(stored)),
            build_dir=Path(build_dir),
            revision_id=revision,
            last_modified=modified,
            slot=slot,
            description=cfg.description,
        )
