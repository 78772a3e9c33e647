"""cgroups.remove_stale: what a daemon does with the directories dead daemons left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from fnhost.execution import cgroups


def test_a_stale_group_this_daemon_may_not_remove_is_left_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A daemon that is not root finds a root daemon's leftover directory it cannot read: it says
    # so and starts, rather than dying with a PermissionError (found by running one as nobody).
    stale = tmp_path / f"{cgroups.PREFIX}999999999"
    stale.mkdir()
    monkeypatch.setattr(cgroups, "_parents", lambda: [tmp_path])

    def refuse(root, wait_s=2.0):
        raise PermissionError(13, "Permission denied", str(root))

    monkeypatch.setattr(cgroups, "remove_tree", refuse)
    assert cgroups.remove_stale() == 0
    assert stale.is_dir()
