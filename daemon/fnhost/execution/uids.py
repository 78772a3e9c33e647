"""Functions' uids: which one a new function gets, so that no two functions alive at once share one.

A root daemon runs each function as its own uid, ``worker_uid_base + slot`` (sandbox.identity_for).
``UidClaims`` hands a slot out only when no process on the host runs as its uid and this daemon
holds the uid's host-wide lock, a ``flock`` on ``/run/fnhost-uids/<uid>`` kept until the daemon
exits — also after the function is deleted — so neither a process that outlived a deleted
function nor a second daemon on the host (another state directory) ever shares a uid with a new
function. At start-up ``uid_range_problem`` checks the range against passwd and group entries,
useradd's range (/etc/login.defs), systemd's DynamicUser range, ``nobody``, and the
subordinate ids of /etc/subuid and /etc/subgid, and says which base would do.
"""

from __future__ import annotations

import fcntl
import grp
import os
import pwd
from collections.abc import Iterable
from pathlib import Path

from ..errors import LimitExceeded
from .sandbox import privilege_drop_enabled

DYNAMIC_USERS = (61184, 65519)  # systemd's DynamicUser= range
UID_MAX = 2**31 - 2  # larger ids are read as negative by tools that parse them as signed
UID_LOCK_DIR = Path("/run/fnhost-uids")  # not /run/fnhost: systemd empties a RuntimeDirectory= at stop
SUGGESTED_BASE = 80000


def _login_defs_max() -> int:
    """The highest uid or gid useradd and groupadd hand out (/etc/login.defs; Debian: 60000)."""
    found = {"UID_MAX": 60000, "GID_MAX": 60000}
    try:
        lines = Path("/etc/login.defs").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] in found and parts[1].isdigit():
            found[parts[0]] = int(parts[1])
    return max(found.values())


def _subid_ranges(path: Path) -> list[tuple[int, int, str]]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            start = int(parts[1])
            out.append((start, start + int(parts[2]) - 1, f"the subordinate ids of {parts[0]} in {path}"))
    return out


def reserved_ids() -> list[tuple[int, int, str]]:
    """Id ranges (first, last, whose) that functions' uids and gids must stay out of."""
    ranges = [
        (0, _login_defs_max(), "the ids useradd and groupadd hand out (/etc/login.defs UID_MAX, GID_MAX)"),
        (*DYNAMIC_USERS, "systemd's DynamicUser= range"),
        (65534, 65535, "nobody and the 16-bit -1"),
        (UID_MAX + 1, 2**32 - 1, "ids above 2147483646"),
    ]
    ranges += [(e.pw_uid, e.pw_uid, f"user {e.pw_name} in passwd") for e in pwd.getpwall()]
    ranges += [(e.gr_gid, e.gr_gid, f"group {e.gr_name}") for e in grp.getgrall()]
    return ranges + _subid_ranges(Path("/etc/subuid")) + _subid_ranges(Path("/etc/subgid"))


def _clashes(first: int, last: int, reserved: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    return sorted(r for r in reserved if r[0] <= last and r[1] >= first)


def free_uid_base(count: int, reserved: list[tuple[int, int, str]] | None = None) -> int | None:
    """A worker_uid_base (a multiple of 10,000) whose ``count`` uids clash with nothing; None if none."""
    reserved = reserved_ids() if reserved is None else reserved
    base = SUGGESTED_BASE
    while base + count <= UID_MAX:
        clashes = _clashes(base + 1, base + count, reserved)
        if not clashes:
            return base
        base = (max(hi for _, hi, _ in clashes) // 10000 + 1) * 10000
    return None


def uid_range_problem(base: int, count: int) -> str | None:
    """Why uids ``base + 1`` … ``base + count`` cannot be functions' uids, saying what to pick; or None."""
    if count < 1:
        return f"daemon.worker_uid_count = {count}: use at least 1 (default 10000)"
    reserved = reserved_ids()
    clashes = _clashes(base + 1, base + count, reserved)
    if not clashes:
        return None
    named = [f"{whose} ({lo if lo == hi else f'{lo}-{hi}'})" for lo, hi, whose in clashes[:4]]
    if len(clashes) > 4:
        named.append(f"{len(clashes) - 4} more")
    suggestion = free_uid_base(count, reserved)
    fix = (f"set worker_uid_base = {suggestion}" if suggestion is not None
           else "lower worker_uid_count")
    return (f"daemon.worker_uid_base = {base} gives functions the uids {base + 1}-{base + count} "
            f"(worker_uid_count = {count}), which overlap {', '.join(named)}; {fix}, "
            "or choose a range no user, group, subordinate id range or systemd uses")


def _named(uid: int) -> bool:
    """True if the uid or the gid of that number has a name (asked per id: NSS may not list all)."""
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(uid)
            return True
        except KeyError:
            pass
    return False


def ids_in_use() -> set[int]:
    """Every uid and gid (real, effective, saved, filesystem) of every live process on the host."""
    ids: set[int] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", "rb") as f:
                data = f.read()
        except OSError:
            continue  # it exited meanwhile
        if b"\nState:\tZ" in data:
            continue  # a zombie runs nothing more
        for key in (b"\nUid:", b"\nGid:"):
            i = data.find(key)
            if i >= 0:
                ids.update(int(x) for x in data[i + 5 : data.index(b"\n", i + 1)].split())
    return ids


class UidClaims:
    """This daemon's host-wide claims on functions' uids (``base + slot``, slot 1 … ``count``).

    A claim is a ``flock`` on ``/run/fnhost-uids/<uid>`` held until the daemon exits — also after
    the function is deleted, for a process it left may still run as that uid — and it is granted
    only when no process on the host runs as the uid (checked after locking, so a daemon that
    let go of the lock a moment ago cannot slip a worker in between).
    """

    def __init__(self, base: int, count: int, lock_dir: Path = UID_LOCK_DIR) -> None:
        self.base = base
        self.count = count
        self.lock_dir = lock_dir
        lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(lock_dir, 0o700)  # a worker must not take a uid's lock and so withhold it
        self._held: dict[int, int] = {}

    def uid(self, slot: int) -> int:
        return self.base + slot

    def keep(self, slots: Iterable[int]) -> set[int]:
        """Claim the uids of slots this daemon's functions already have; returns those it got."""
        locked = {s for s in slots if 1 <= s <= self.count and not _named(self.base + s) and self._lock(s)}
        busy = ids_in_use()
        kept = set()
        for slot in locked:
            if self.base + slot in busy:
                self._unlock(slot)
            else:
                kept.add(slot)
        return kept

    def claim(self, slots: Iterable[int]) -> int:
        """The first of ``slots`` whose uid is free, claimed. Raises LimitExceeded when none is."""
        for slot in slots:
            if slot > self.count:
                break
            uid = self.base + slot
            if _named(uid):
                continue
            held_before = uid in self._held
            if not self._lock(slot):
                continue  # another daemon on this host has it
            if uid not in ids_in_use():
                return slot
            if not held_before:
                self._unlock(slot)
            # else: a deleted function of ours left a process; keep its uid from everyone
        raise LimitExceeded(
            f"no free uid for a new function among {self.base + 1}-{self.base + self.count} "
            "(worker_uid_base + 1 to + worker_uid_count): each belongs to a function, is claimed by "
            "another fnhost daemon on this host, or still has processes; delete functions or raise "
            "worker_uid_count"
        )

    def _lock(self, slot: int) -> bool:
        uid = self.base + slot
        if uid in self._held:
            return True
        fd = os.open(self.lock_dir / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._held[uid] = fd
        return True

    def _unlock(self, slot: int) -> None:
        fd = self._held.pop(self.base + slot, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        for fd in self._held.values():
            os.close(fd)
        self._held.clear()


def uid_claims(worker_user: str, base: int, count: int) -> UidClaims | None:
    """The claims object a daemon needs: only when each function runs as its own uid."""
    if not privilege_drop_enabled(worker_user) or worker_user:
        return None
    return UidClaims(base, count)
