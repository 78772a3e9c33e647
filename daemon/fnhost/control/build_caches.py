"""Where runtimes keep what their builds and workers read but never change: Go's compiled
standard library, Java's class-data archive. Made by each runtime's ``[build] prepare_argv``,
once per host, as the daemon's user (runtimes/README.md, "Builds").
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import structlog

from ..errors import ApiError
from .runtimes import RuntimeRegistry

log = structlog.get_logger("fnhost.deploy")


def prepare_build_caches(runtimes: RuntimeRegistry) -> list[str]:
    """What runtimes' builds share, prepared now rather than at the first deploy (``fnhost
    prepare``; Go's compiled standard library takes about a minute once per host). Returns the
    runtimes prepared; one whose toolchain is missing is skipped.
    """
    root = build_cache_root()
    done: list[str] = []
    if root is None:
        return done
    for runtime in runtimes:
        try:
            if runtime.prepare(root / runtime.name):
                done.append(runtime.name)
        except ApiError:
            continue  # its toolchain is not installed: nothing to prepare
    return done


def build_cache_root() -> Path | None:
    """Where runtimes' prepare steps keep what builds read and cannot change.

    ``$FNHOST_CACHE_DIR``, else systemd's ``$CACHE_DIRECTORY``, else ``/var/cache/fnhost``: shared
    by the host's root daemons, since what is there depends only on the toolchains (compiling Go's
    standard library takes close to a minute on 2 cores; once per host, not per state directory).
    None, and builds go without, unless it is a directory of this user's that nobody else may
    write: a cache another user could change would feed compiled code to every build.
    """
    path = _cache_root_path()
    try:
        path.mkdir(mode=0o755, parents=True, exist_ok=True)
        st = os.lstat(path)
    except OSError as exc:
        log.warning("build_cache_unusable", path=str(path), error=str(exc))
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        log.warning("build_cache_unsafe", path=str(path),
                    note="not a directory of the daemon's user that only it may write; builds run without it")
        return None
    os.chmod(path, 0o755)  # whatever the daemon's umask: builds must reach it
    return path


def _cache_root_path() -> Path:
    return Path(os.environ.get("FNHOST_CACHE_DIR") or os.environ.get("CACHE_DIRECTORY", "").split(":")[0]
                or "/var/cache/fnhost")


def worker_cache_dir(runtime: str) -> str:
    """``{cache_dir}`` in a runtime's [launch]: what its prepare step left for workers to read
    (Java's class-data archive), or "" when the cache root is not a directory of this user's
    that nobody else may write — what is there runs in every worker. Checked at each spawn,
    without a log line or a write: a missing cache only costs the worker speed."""
    root = _cache_root_path()
    try:
        st = os.lstat(root)
    except OSError:
        return ""
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        return ""
    return str(root / runtime)
