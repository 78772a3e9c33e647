"""Functions' uids: the range check, the host-wide claims, and the registry's slots (issue #10 item 5).

The claims are exercised with real locks and, as root, real processes running as the uid in
question; only the lock directory is a temporary one, so these tests never take a uid from a
daemon running on the host.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fnhost.control.config import FunctionConfig
from fnhost.control.registry import CodeRef, Registry
from fnhost.errors import LimitExceeded
from fnhost.execution import uids
from fnhost.execution.uids import UidClaims, free_uid_base, uid_range_problem

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="only root can start a process as another uid")


def test_the_default_range_is_free_here() -> None:
    assert uid_range_problem(80000, 10000) is None


def test_the_old_default_range_is_refused_with_what_to_pick() -> None:
    problem = uid_range_problem(61000, 5000)
    assert problem is not None
    assert "DynamicUser" in problem and "61184-65519" in problem
    assert f"set worker_uid_base = {free_uid_base(5000)}" in problem
    assert uid_range_problem(free_uid_base(5000), 5000) is None  # the suggestion works


def test_ranges_over_users_nobody_and_useradds_range_are_refused() -> None:
    assert "nobody" in (uid_range_problem(65500, 100) or "")
    assert "useradd" in (uid_range_problem(1000, 10) or "")  # where new users will appear
    assert "above 2147483646" in (uid_range_problem(2**31 - 100, 1000) or "")


def test_subordinate_id_ranges_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    subuid = tmp_path / "subuid"
    subuid.write_text("builder:100000:65536\n")
    real = uids._subid_ranges
    monkeypatch.setattr(uids, "_subid_ranges", lambda path: real(subuid if path.name == "subuid" else path))
    problem = uid_range_problem(95000, 10000)
    assert problem is not None and "subordinate ids of builder" in problem and "100000-165535" in problem
    assert uid_range_problem(free_uid_base(10000), 10000) is None


@pytest.fixture
def lock_dir(tmp_path: Path) -> Path:
    return tmp_path / "uids"


@pytest.fixture
def sleeper() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes started as other uids (killed after the test)."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


def _run_as(uid: int, procs: list[subprocess.Popen[bytes]]) -> None:
    procs.append(subprocess.Popen(["sleep", "60"], user=uid, group=uid, extra_groups=[]))
    deadline = time.monotonic() + 5
    while uid not in uids.ids_in_use():  # until the child has dropped to the uid
        assert time.monotonic() < deadline
        time.sleep(0.01)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait()


def test_two_daemons_never_claim_the_same_uid(lock_dir: Path) -> None:
    first, second = UidClaims(85000, 10, lock_dir), UidClaims(85000, 10, lock_dir)
    try:
        a = first.claim([1, 2, 3])
        b = second.claim([1, 2, 3])
        assert a == 1 and b == 2, "the second daemon skips the uid the first one holds"
        assert second.keep([1]) == set(), "nor may it keep it at start-up"
        first.close()  # the first daemon exits: its locks go with it
        assert second.keep([1]) == {1}
    finally:
        first.close()
        second.close()


@root_only
def test_a_uid_with_a_live_process_is_not_handed_out(lock_dir: Path, sleeper: list) -> None:
    claims = UidClaims(86000, 10, lock_dir)
    try:
        assert claims.claim([1]) == 1  # a function that has it; deleted later, its slot free again
        _run_as(86001, sleeper)  # a process it left behind still runs as 86001
        assert claims.claim([1, 2]) == 2, "uid 86001 still has a process"
        assert claims.keep([1]) == set()
        _stop(sleeper.pop())
        assert claims.claim([1, 2]) == 1, "once the process is gone the uid comes back"
    finally:
        claims.close()


@root_only
def test_a_uid_still_held_after_a_delete_stays_held(lock_dir: Path, sleeper: list) -> None:
    """A deleted function's uid with a live process stays claimed, so no other daemon takes it."""
    mine, other = UidClaims(87000, 10, lock_dir), UidClaims(87000, 10, lock_dir)
    try:
        assert mine.claim([1]) == 1
        _run_as(87001, sleeper)
        assert mine.claim([1, 2]) == 2
        assert other.claim([1, 2, 3]) == 3
    finally:
        mine.close()
        other.close()


def test_named_ids_are_skipped_and_exhaustion_says_what_to_do(lock_dir: Path) -> None:
    claims = UidClaims(65533, 2, lock_dir)  # 65534 is nobody (and nogroup)
    try:
        assert claims.claim([1, 2]) == 2
        with pytest.raises(LimitExceeded, match="raise worker_uid_count"):
            claims.claim([1, 3])
    finally:
        claims.close()


def _put(registry: Registry, name: str) -> int:
    config = FunctionConfig(name=name, runtime="python", handler="app.handler")
    code = CodeRef(location=Path("/tmp"), sha256="0" * 64, size=0, stored=False)
    return registry.put(config, code, Path("/tmp"), create=True).slot


@root_only
def test_the_registry_never_reuses_the_slot_of_a_deleted_function_with_a_live_process(
        tmp_path: Path, lock_dir: Path, sleeper: list) -> None:
    registry = Registry(tmp_path / "state", UidClaims(88000, 100, lock_dir))
    try:
        assert _put(registry, "a") == 1 and _put(registry, "b") == 2
        registry.delete("a")
        _run_as(88001, sleeper)  # what "a" left running
        assert _put(registry, "c") == 3
        _stop(sleeper.pop())
        assert _put(registry, "d") == 1
    finally:
        registry.close()


def test_a_function_whose_uid_another_daemon_holds_moves_at_start_up(tmp_path: Path, lock_dir: Path) -> None:
    state = tmp_path / "state"
    registry = Registry(state, UidClaims(89000, 100, lock_dir))
    assert _put(registry, "a") == 1
    registry.close()
    other = UidClaims(89000, 100, lock_dir)
    try:
        assert other.claim([1]) == 1  # taken while the first daemon was down
        registry = Registry(state, UidClaims(89000, 100, lock_dir))
        try:
            assert registry.get("a").slot == 2
        finally:
            registry.close()
    finally:
        other.close()
