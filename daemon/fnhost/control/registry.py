"""The function registry: configurations in SQLite, code in a content-addressed store.

Layout under the state directory::

    functions.sqlite3          one row per function
    code/<sha256>/             an extracted zip (never modified once written)
    builds/<key>/              a runtime's build output for one code version and handler

Everything here is blocking file and database work; the service calls it from a worker thread
when it may take long (hashing, unzipping, building) and directly when it is one small query.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import sqlite3
import stat
import tempfile
import uuid
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..errors import CodeStorageExceeded, InvalidParameter, ResourceConflict, ResourceNotFound
from ..execution.sandbox import make_readable
from .config import FunctionConfig

ZIP_MAX = 50 * 1024 * 1024  # Lambda: 50 MB zipped, for a direct upload
UNZIPPED_MAX = 250 * 1024 * 1024  # Lambda: 250 MB unzipped


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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.code_root = state_dir / "code"
        self.build_root = state_dir / "builds"
        for d in (self.code_root, self.build_root):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o711)  # workers may enter a directory they know the name of, never list
        db_path = state_dir / "functions.sqlite3"
        self._db = sqlite3.connect(db_path, isolation_level=None)
        os.chmod(db_path, 0o600)
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

    def close(self) -> None:
        self._db.close()

    # --- code store ---------------------------------------------------------------------------

    def store_zip(self, data: bytes) -> CodeRef:
        """Validate a zip and extract it under code/<sha256>/ (once per distinct content)."""
        if len(data) > ZIP_MAX:
            raise CodeStorageExceeded(
                f"zip is {len(data)} bytes; the limit for a direct upload is {ZIP_MAX} bytes (50 MB)"
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
        if not target.is_dir():
            tmp = Path(tempfile.mkdtemp(dir=self.code_root, prefix=".incoming-"))
            try:
                for info in members:
                    archive.extract(info, tmp)
                    mode = (info.external_attr >> 16) & 0o777
                    if mode and not info.is_dir():
                        # zipfile drops permissions; executables (Go binaries, scripts) need them.
                        os.chmod(tmp / info.filename, mode | 0o400)
                make_readable(tmp)  # workers run as other users; the hash in the path is the secret
                os.rename(tmp, target)
            except zipfile.BadZipFile as exc:
                raise InvalidParameter(f"code zip is corrupt: {exc}") from exc
            except OSError:
                if not target.is_dir():
                    raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return CodeRef(location=target, sha256=sha, size=len(data), stored=True)

    def build_dir_for(self, runtime: str, code: CodeRef, handler: str) -> Path:
        key = hashlib.sha256(f"{runtime}\0{code.sha256}\0{handler}".encode()).hexdigest()[:32]
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

    def put(self, config: FunctionConfig, code: CodeRef, build_dir: Path, *, create: bool) -> FunctionRecord:
        try:
            if create:
                # The smallest free slot: uids are reused only after a function is deleted.
                slot = self._db.execute(
                    "SELECT COALESCE(MIN(slot + 1), 1) FROM functions WHERE slot + 1 NOT IN (SELECT slot FROM functions)"
                ).fetchone()[0]
                if not self._db.execute("SELECT 1 FROM functions WHERE slot = 1").fetchone():
                    slot = 1
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
                last_modified=_now(),
                slot=slot,
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
        )
