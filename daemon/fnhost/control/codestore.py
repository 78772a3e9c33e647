"""Disk hygiene for the code store (``code/``) and build outputs (``builds/``).

What the registry's store needs beyond SQLite: counting a zip's entries before unpacking it,
putting an entry in place durably (fsync, then rename, then fsync the directory), proving an
existing entry is what was stored, making a build readable by its own function only, and
removing what no function references any more — at start-up, after deletes and updates — plus
the leftovers of a daemon killed mid-deploy.

Names in ``code/`` and ``builds/`` that start with ``.`` are work in progress (``.incoming-*``,
``.building-*``, ``.trash-*``): only this daemon, holding the state directory's lock, makes
them, so at start-up every one is a leftover.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import stat
import struct
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import structlog

log = structlog.get_logger("fnhost.codestore")

# Lambda publishes no limit on the number of files in a deployment package (only 50 MB zipped
# and 250 MB unzipped); without one, a 50 MB zip of empty files makes a million inodes here.
ZIP_MAX_ENTRIES = 20_000
MARKER_SUFFIX = ".ok"  # code/<sha>.ok: the hash of the tree extracted as code/<sha>/
TRASH_PREFIX = ".trash-"
# Build scratch of an older fnhost, under the system's temporary directory. Another daemon (on
# another state directory) may be building in one right now, and a build started by a killed
# daemon may still run: one is left alone while a process works in it, or while it is this new.
OLD_BUILD_SCRATCH = "fnhost-build-*"
OLD_BUILD_SCRATCH_AGE_S = 60.0
IN_USE_RETRY_S = 5.0
FSYNC_EACH_MAX = 64  # files; a larger tree is flushed with one syncfs(2)
_LIBC = ctypes.CDLL(None, use_errno=True)


# --- zips -------------------------------------------------------------------------------------


def zip_entry_count(data: bytes, limit: int) -> int:
    """The entries in a zip's central directory, counted up to ``limit + 1``.

    zipfile builds an object per entry before anyone can count them (half a kilobyte each, so a
    50 MB zip of a million entries costs half a gigabyte), and walks the directory rather than
    trust its count fields; this walks the same records without building anything. Returns 0 for
    what is not a zip (zipfile then says what is wrong with it).
    """
    eocd = data.rfind(b"PK\x05\x06", max(0, len(data) - 22 - 65535))
    if eocd < 0 or eocd + 22 > len(data):
        return 0
    (size_cd,) = struct.unpack_from("<I", data, eocd + 12)
    end = eocd
    locator = eocd - 20
    if locator >= 56 and data[locator:locator + 4] == b"PK\x06\x07":  # ZIP64: its record precedes
        end = locator - 56
        if data[end:end + 4] == b"PK\x06\x06":
            (size_cd,) = struct.unpack_from("<Q", data, end + 40)
    pos, count = end - size_cd, 0
    while 0 <= pos and pos + 46 <= end and data[pos:pos + 4] == b"PK\x01\x02":
        count += 1
        if count > limit:
            break
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, pos + 28)
        pos += 46 + name_len + extra_len + comment_len
    return count


# --- putting entries in place -----------------------------------------------------------------


def _walk(root: Path) -> Iterator[tuple[str, list[str]]]:
    """Each directory (deepest first) and its non-directory entries, symlinks included."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        yield dirpath, filenames + links


def _fsync(path: str, flags: int = 0) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs(path: Path) -> bool:
    """syncfs(2) on ``path``'s filesystem; False where the C library lacks it."""
    syncfs = getattr(_LIBC, "syncfs", None)
    if syncfs is None:
        return False
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)
    return True


def install(staging: Path, target: Path) -> bool:
    """Rename a complete ``staging`` tree to ``target``, durably; False if ``target`` exists.

    Every file and directory is on disk before the rename, and the rename before returning: a
    crash leaves either no entry or a whole one, never a named entry with missing contents.
    A large tree is flushed with one syncfs rather than a fsync per file: 0.3 s instead of 11 s
    for 20,000 small files here (it also flushes whatever else is pending on that filesystem).
    """
    walked = list(_walk(staging))
    if sum(len(names) for _, names in walked) <= FSYNC_EACH_MAX or not _syncfs(staging):
        for dirpath, names in walked:
            for name in names:
                path = os.path.join(dirpath, name)
                if not os.path.islink(path):
                    _fsync(path)
            _fsync(dirpath, os.O_DIRECTORY)
    try:
        os.rename(staging, target)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False
        raise
    _fsync(str(target.parent), os.O_DIRECTORY)
    return True


def write_marker(path: Path, text: str) -> None:
    """Write a small file atomically and durably (a temporary name, fsync, rename, fsync)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".marker-")
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    _fsync(str(path.parent), os.O_DIRECTORY)


def read_marker(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def seal(root: Path, gid: int | None) -> None:
    """Make a build output readable by one function only: owned by the daemon and ``gid``, 0750
    directories, 0640 files (0750 executables); no group (None) means the daemon's alone.

    A build's paths are no secret (they are in a worker's /proc/PID/cmdline), so it is the modes
    that keep one function from copying another's binaries. The function can read and run its
    build but not change it, as /var/task on Lambda.
    """
    uid, group = os.geteuid(), os.getegid() if gid is None else gid
    shared = 0o750 if gid is not None else 0o700
    for dirpath, names in _walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            os.lchown(path, uid, group)
            if not os.path.islink(path):
                executable = os.stat(path).st_mode & stat.S_IXUSR
                os.chmod(path, shared if executable else shared & 0o640)
        os.lchown(dirpath, uid, group)
        os.chmod(dirpath, shared)


# --- removing what nothing references ---------------------------------------------------------


def _entry_name(name: str) -> str:
    return name.removesuffix(MARKER_SUFFIX)


def to_trash(roots: Iterable[Path], keep: set[str], in_use: set[str]) -> tuple[dict[str, Path], bool]:
    """Rename every entry of ``roots`` whose name is in neither set to a ``.trash-`` name.

    Returns the renamed entries (name: trash path) and whether something was kept only because a
    running worker uses it (look again later). Renaming is quick and atomic, so a deploy never
    finds half an entry; removing the trash takes as long as it takes, elsewhere.
    """
    trash: dict[str, Path] = {}
    busy = False
    for root in roots:
        try:
            names = os.listdir(root)
        except FileNotFoundError:
            continue
        # A marker before its tree: a tree is never seen without its marker gone first (and a
        # tree left without a marker is only re-verified before reuse).
        for name in sorted(names, key=lambda n: not n.endswith(MARKER_SUFFIX)):
            entry = _entry_name(name)
            if name.startswith(".") or entry in keep:
                continue
            if entry in in_use:
                busy = True
                continue
            target = root / f"{TRASH_PREFIX}{uuid.uuid4().hex}"
            try:
                os.rename(root / name, target)
            except FileNotFoundError:
                continue
            trash[name] = target
    return trash, busy


def remove(paths: Iterable[Path]) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def sweep_leftovers(roots: Iterable[Path], scratch_dirs: Iterable[Path] = ()) -> list[str]:
    """At start-up: remove every work-in-progress entry (``.*``) of ``roots``, whatever is in
    ``scratch_dirs`` (this daemon's own build scratch), and old ``fnhost-build-*`` scratch in
    the temporary directory. Returns what was removed, for the log."""
    removed: list[Path] = []
    for root in roots:
        try:
            removed += [root / n for n in os.listdir(root) if n.startswith(".")]
        except FileNotFoundError:
            pass
    for scratch in scratch_dirs:
        try:
            removed += [scratch / n for n in os.listdir(scratch)]
        except FileNotFoundError:
            pass
    cutoff = time.time() - OLD_BUILD_SCRATCH_AGE_S
    stale = []
    for old in Path(tempfile.gettempdir()).glob(OLD_BUILD_SCRATCH):
        try:
            st = old.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and st.st_mtime < cutoff:
            stale.append(old)
    if stale:
        working = _working_dirs()
        removed += [old for old in stale if not any(w == old or old in w.parents for w in working)]
    remove(removed)
    return [str(p) for p in removed]


def _working_dirs() -> list[Path]:
    """Every process's working directory (those this process may see)."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                found.append(Path(os.readlink(f"/proc/{pid}/cwd")))
            except OSError:
                pass
    return found


class Collector:
    """Removes the code and builds no function references, without racing a deploy.

    A deploy takes in code (or finds it stored), builds, then records the function; in between,
    what it is about to use is referenced by nothing. So a collection never starts while any
    deploy is in that section (``deploying()``), a deploy waits out a collection's look-and-rename
    phase (milliseconds), and removing what was renamed away happens after, in a thread. This is
    a count of deploys in progress rather than a per-entry reference count: deploys are rare, and
    a collection asked for meanwhile runs when the last one ends. An entry still used by a
    running invocation (its worker started on the previous code) is kept and looked at again
    ``IN_USE_RETRY_S`` later.

    ``referenced`` and ``in_use`` return entry names (the last part of a path).
    """

    def __init__(self, roots: list[Path], referenced: Callable[[], set[str]], in_use: Callable[[], set[str]],
                 spawn: Callable[[Callable[[], Awaitable[None]]], None]) -> None:
        self._roots = roots
        self._referenced = referenced
        self._in_use = in_use
        self._spawn = spawn
        self._deploys = 0
        self._renaming: anyio.Event | None = None
        self._wanted = self._running = self._retrying = False

    @asynccontextmanager
    async def deploying(self):  # type: ignore[no-untyped-def]
        """Hold while a deploy takes in code and builds until it has recorded the function."""
        while self._renaming is not None:
            await self._renaming.wait()
        self._deploys += 1
        try:
            yield
        finally:
            self._deploys -= 1
            if self._deploys == 0 and self._wanted:
                self.request()

    def request(self) -> None:
        """Collect soon: now if no deploy is in progress, else when the last one ends."""
        self._wanted = True
        if not self._running and self._deploys == 0:
            self._running = True
            self._spawn(self._run)

    async def _run(self) -> None:
        try:
            while self._wanted and self._deploys == 0:
                self._wanted = False
                if await self.collect() and not self._retrying:
                    self._retrying = True
                    self._spawn(self._retry)
        finally:
            self._running = False

    async def _retry(self) -> None:
        try:
            await anyio.sleep(IN_USE_RETRY_S)
        finally:
            self._retrying = False
        self.request()

    async def collect(self) -> bool:
        """One collection; True if something was kept only because it is in use."""
        keep, in_use = self._referenced(), self._in_use()
        done = self._renaming = anyio.Event()
        try:
            trash, busy = await anyio.to_thread.run_sync(to_trash, self._roots, keep, in_use)
        finally:
            self._renaming = None
            done.set()
        if trash:
            await anyio.to_thread.run_sync(remove, list(trash.values()))
            log.info("code_collected", removed=sorted(trash))
        return busy
