"""What a build leaves, taken in: copied as files and directories the daemon owns, never
following a link, within limits (runtimes/README.md, "Builds").
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import BuildFailed

MiB = 1024 * 1024
# What a build may leave: Lambda takes 250 MB of unzipped code, so four times that is a runaway
# (or an attack on the daemon's disk), not a function.
MAX_BUILD_BYTES = 1024 * MiB
MAX_BUILD_ENTRIES = 100_000
MAX_BUILD_DEPTH = 64


def copy_build_output(src: Path, dst: Path) -> None:
    """Copy a build's output tree into the existing directory ``dst``, owned by this process.

    Directories become 0755 and files 0644, or 0755 when their owner could execute them. Every
    name is opened relative to its already-open directory with O_NOFOLLOW, so no link is ever
    followed and a tree changed meanwhile cannot send the copy elsewhere. Raises BuildFailed on a
    link or special file (builds write plain files) and on a tree over MAX_BUILD_BYTES,
    MAX_BUILD_ENTRIES or MAX_BUILD_DEPTH.
    """
    budget = [MAX_BUILD_BYTES, MAX_BUILD_ENTRIES]
    fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        _copy_dir(fd, dst, Path(), budget)
    finally:
        os.close(fd)


def _copy_dir(dir_fd: int, dst: Path, rel: Path, budget: list[int]) -> None:
    if len(rel.parts) >= MAX_BUILD_DEPTH:
        raise BuildFailed(f"the build's output nests deeper than {MAX_BUILD_DEPTH} directories at {rel}")
    with os.scandir(dir_fd) as entries:  # lazily: a directory of millions stops at the budget
        names = []
        for entry in entries:
            budget[1] -= 1
            if budget[1] < 0:
                raise BuildFailed(f"the build left more than {MAX_BUILD_ENTRIES} files and directories")
            names.append(entry.name)
    for name in names:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
        if stat.S_ISDIR(mode):
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
            try:
                os.mkdir(dst / name, 0o700)
                _copy_dir(sub, dst / name, rel / name, budget)
                os.chmod(dst / name, 0o755)
            finally:
                os.close(sub)
        elif stat.S_ISREG(mode):
            _copy_file(dir_fd, name, dst / name, rel / name, budget)
        else:
            kind = "a symbolic link" if stat.S_ISLNK(mode) else "a special file"
            raise BuildFailed(
                f"the build left {kind} at {rel / name}: a build's output must be plain files and "
                "directories, and links are never followed"
            )


def _copy_file(dir_fd: int, name: str, target: Path, rel: Path, budget: list[int]) -> None:
    # O_NONBLOCK: a FIFO swapped in after the stat must not block the open.
    src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    try:
        st = os.fstat(src)
        if not stat.S_ISREG(st.st_mode):
            raise BuildFailed(f"the build's output {rel} changed while it was copied")
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            while n := os.sendfile(out, src, None, 1 << 20):
                budget[0] -= n
                if budget[0] < 0:
                    raise BuildFailed(f"the build's output is larger than {MAX_BUILD_BYTES // MiB} MB")
            os.fchmod(out, 0o755 if st.st_mode & stat.S_IXUSR else 0o644)
        finally:
            os.close(out)
    finally:
        os.close(src)
