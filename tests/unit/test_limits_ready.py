"""The control group made ahead for the next worker (limits.MemoryBackend.make_ready): taken by
the next start, its limits changed when that worker's memory differs — up or down, in the order
cgroup v1 accepts (memory + swap never under memory alone). Real groups: the daemon's tests run
as root on a host with writable cgroups."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from fnhost.execution import limits
from fnhost.execution.limits import MiB, MemoryBackend


@pytest.fixture
def backend() -> Iterator[MemoryBackend]:
    backend = limits.choose_backend("cgroup")
    try:
        yield backend
    finally:
        backend.close()


def memory_limits(worker: limits.WorkerLimits) -> list[int]:
    h, path = worker.group.dir_for("memory")
    names = ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"] if h.version == 1 else ["memory.max"]
    return [int((path / name).read_text()) for name in names if (path / name).exists()]


def test_the_group_made_ahead_is_taken_and_keeps_or_changes_its_limits(backend: MemoryBackend) -> None:
    assert backend._ready is not None  # the first worker's, made as the backend started
    made_ahead = backend._ready[0]
    first = backend.prepare(limits.DEFAULT_LIMIT_BYTES, None)
    assert first.group is made_ahead and backend._ready is None
    assert set(memory_limits(first)) == {limits.DEFAULT_LIMIT_BYTES}
    for size_mb in (1024, 256, 256, 64):  # raised, lowered, the same, lowered
        backend.make_ready()
        made_ahead = backend._ready[0]
        worker = backend.prepare(size_mb * MiB, None)
        assert worker.group is made_ahead
        assert set(memory_limits(worker)) == {size_mb * MiB}, size_mb
        pids = worker.group.dir_for("pids")
        if pids is not None:
            assert int((pids[1] / "pids.max").read_text()) == backend.settings.pids_max
        worker.close()
    first.close()


def test_without_a_group_made_ahead_the_worker_makes_its_own(backend: MemoryBackend) -> None:
    backend.prepare(limits.DEFAULT_LIMIT_BYTES, None).close()  # takes the one made at start
    worker = backend.prepare(512 * MiB, None)
    assert worker.group is not None and set(memory_limits(worker)) == {512 * MiB}
    worker.close()


def test_a_build_takes_neither_the_group_made_ahead_nor_the_next_workers_limit(backend: MemoryBackend) -> None:
    worker = backend.prepare(256 * MiB, None)  # the last worker: 256 MiB
    worker.close()
    backend.make_ready()
    made_ahead = backend._ready[0]
    build = subprocess.Popen(["sleep", "30"])
    try:
        attached = backend.attach(build.pid, 2048 * MiB)  # Go's build limit
        assert attached.group is not made_ahead and backend._ready[0] is made_ahead
        assert set(memory_limits(attached)) == {2048 * MiB}
        assert backend.last_limit == 256 * MiB  # the next worker's group is made at the workers' size
        nxt = backend.prepare(256 * MiB, None)
        assert nxt.group is made_ahead and set(memory_limits(nxt)) == {256 * MiB}
        nxt.close()
    finally:
        build.kill()
        build.wait()
        attached.close()
