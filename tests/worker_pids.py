"""From the pid a function reports to the process on the host, for tests that signal or wait on it.

Workers run in pid namespaces of their own by default (execution/isolation.py), where
``os.getpid()`` says 2 for every worker. A test that waits for a function's process to die, or
kills it, must find the host's pid: the daemon's descendant whose innermost pid (the last field
of ``NSpid`` in /proc/PID/status) is the one reported. Without namespaces it is the same number.
A test that only asks "the same worker or another one?" should compare a token the worker made
at start-up (``WORKER_TOKEN`` below) rather than pids: every namespaced worker is pid 2.
"""

from __future__ import annotations

import time

import psutil

# Python source for a function module: a value unique to each worker process.
WORKER_TOKEN = "import uuid as _uuid\nWORKER = _uuid.uuid4().hex\n"


def _ns_pid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        pass
    return None


def host_pids(root: int, reported: int, *, uid: int | None = None, name: str | None = None) -> list[int]:
    """The descendants of ``root`` (the daemon) that call themselves ``reported`` in their pid
    namespace, optionally only those running as ``uid`` or whose process name is ``name``."""
    try:
        tree = psutil.Process(root).children(recursive=True)
    except psutil.Error:
        return []
    found = []
    for p in tree:
        try:
            if uid is not None and p.uids().real != uid:
                continue
            if name is not None and p.name() != name:
                continue
        except psutil.Error:
            continue
        if _ns_pid(p.pid) == reported:
            found.append(p.pid)
    return found


def host_pid(root: int, reported: int, *, uid: int | None = None, name: str | None = None,
             timeout: float = 5.0) -> int:
    """The one such process (see host_pids); raises AssertionError when there is not exactly one."""
    deadline = time.monotonic() + timeout
    while True:
        found = host_pids(root, reported, uid=uid, name=name)
        if len(found) == 1 or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    assert len(found) == 1, f"pid {reported} (uid {uid}, {name}) is {found} on the host"
    return found[0]
