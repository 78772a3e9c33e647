"""cgroups.favordynmods: what the daemon reports about the cgroup file system's favordynmods.

The daemon never remounts (the option is the whole host's); it says whether each worker start
pays the kernel's grace period, and how an operator removes it. The mount table is replaced.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fnhost.execution import cgroups

V2 = cgroups.Hierarchy(2, Path("/sys/fs/cgroup/unified/fnhost-1"), frozenset(), kill_file=True)
V1 = cgroups.Hierarchy(1, Path("/sys/fs/cgroup/memory/a/fnhost-1"), frozenset({"memory"}), kill_file=False)
MOUNTS = [
    ("/sys/fs/cgroup", "tmpfs", {"rw"}),
    ("/sys/fs/cgroup/memory", "cgroup", {"rw", "relatime", "memory"}),
    ("/sys/fs/cgroup/unified", "cgroup2", {"rw", "relatime"}),
]


def test_off_names_the_mount_to_remount(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cgroups, "_mounts", lambda: MOUNTS)
    said = cgroups.favordynmods([V2])
    assert said.startswith("off:") and "mount -o remount,favordynmods /sys/fs/cgroup/unified" in said


def test_on_when_a_mount_in_use_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    mounts = [*MOUNTS[:2], ("/sys/fs/cgroup/unified", "cgroup2", {"rw", "favordynmods"})]
    monkeypatch.setattr(cgroups, "_mounts", lambda: mounts)
    assert cgroups.favordynmods([V1, V2]) == "on"


def test_mounts_not_in_use_do_not_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cgroups, "_mounts", lambda: MOUNTS)
    elsewhere = cgroups.Hierarchy(1, Path("/elsewhere/fnhost-1"), frozenset({"pids"}), kill_file=False)
    assert cgroups.favordynmods([elsewhere]) == "no cgroup hierarchy in use"

