"""What a worker sees of the host's filesystem and processes: a mount and pid namespace of its own.

On Lambda a function sees its code read-only, its layers, a private writable ``/tmp`` and
nothing of any other function. fnhost gives a worker the same view with bubblewrap (Debian's
``bubblewrap``; the daemon runs it as root, so no user namespace is needed): the host's root
read-only, a fresh ``/dev`` and ``/proc``, a private size-limited tmpfs on ``/tmp`` and
``/dev/shm``, an empty tmpfs over the daemon's state directory with only this function's code,
build output, the runtime shims and the worker's own scratch directory bound back in, and a pid
namespace: the worker cannot see, signal or ptrace any process outside it, and when its first
process dies every process in it dies too (``setsid`` or double forks do not escape).

The identity change happens inside, after the mounts: bubblewrap runs as root and execs
util-linux ``setpriv`` to become the function's uid and gid with no supplementary groups, no
capabilities and ``no_new_privs``. Where bubblewrap or setpriv is missing, or the daemon is not
root, ``probe`` says why and workers run without the namespace (the daemon logs which view its
functions get, and ``fnhost get`` shows it).

The network is not unshared, on purpose: a function calls the daemon's Lambda API on loopback
(``AWS_ENDPOINT_URL_LAMBDA``), and Lambda functions reach the network.

The process the daemon starts is bubblewrap (root), not the worker: bubblewrap forks the
namespace's init (pid 1 inside), which forks the worker, always pid 2 inside — setpriv, the
environment shell and the shim each exec in place, so that pid is the shim's for its whole life.
``worker_pid`` finds its pid on the host (what its memory high-water mark is read from); the
pid a shim reports in HELLO is the namespace's 2, and a hostile one could say anything.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

MiB = 1024 * 1024

_BWRAP = shutil.which("bwrap")
_SETPRIV = shutil.which("setpriv")
_HAS_OPT = Path("/opt").is_dir()  # a mount point needs a directory on the read-only root
WORKER_NS_PID = 2  # bubblewrap's init is 1 and forks the command first


@dataclass(frozen=True, slots=True)
class View:
    """One worker's filesystem view."""

    hidden: tuple[str, ...]  # covered by an empty tmpfs: the state directory
    readable: tuple[str, ...]  # bound back read-only: code, build output, runtime shims
    writable: tuple[str, ...]  # bound back read-write: the worker's scratch directory
    tmp_mb: int  # the private /tmp's size (Lambda's ephemeral storage; /dev/shm shares it)
    # The function's merged layers, bound read-only at /opt as on Lambda; "": an empty read-only
    # /opt; None: the host's /opt, for a runtime whose toolchain is installed there (PowerShell's
    # /opt/microsoft/powershell), whose layers then come through search paths only.
    opt: str | None = ""


def describe(view: View | None) -> str:
    """One line for the log and ``fnhost get``."""
    if view is None:
        return "shared filesystem view (no mount namespace)"
    layers = ("its layers read-only at /opt" if view.opt else "an empty read-only /opt" if view.opt == ""
              else "the host's /opt (the runtime is installed there)")
    return (f"mount and pid namespace: private /tmp of {view.tmp_mb} MB, code read-only, {layers}, "
            "no other function's files or processes")


def wrap(argv: list[str], view: View, uid: int, gid: int) -> list[str]:
    """``argv`` inside its own namespaces, as ``uid``/``gid``; to be started as root."""
    assert _BWRAP is not None and _SETPRIV is not None
    args = [
        _BWRAP,
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--perms", "1777", "--size", str(view.tmp_mb * MiB), "--tmpfs", "/tmp",
        "--perms", "1777", "--size", str(view.tmp_mb * MiB), "--tmpfs", "/dev/shm",
    ]
    if view.opt:  # Lambda's /opt: the merged layers (the source is read before the state dir is hidden)
        args += ["--ro-bind", view.opt, "/opt"]
    elif view.opt == "" and _HAS_OPT:  # nothing of the host's /opt: what a function finds there is its layers only
        args += ["--perms", "0755", "--tmpfs", "/opt", "--remount-ro", "/opt"]
    covered = ["/tmp", "/dev/shm"]  # fresh tmpfs: whatever is bound below needs its parents made
    made: set[str] = set()

    def parents(path: str) -> list[str]:
        # Directories bubblewrap would create on the way to a mount are 0700 root: make them
        # passable (0711, never listable), as the host's are.
        out: list[str] = []
        for root in covered:
            if path.startswith(root.rstrip("/") + "/"):
                parts = Path(path).relative_to(root).parts[:-1]
                for i in range(1, len(parts) + 1):
                    d = str(Path(root, *parts[:i]))
                    if d not in made:
                        made.add(d)
                        out += ["--perms", "0711", "--dir", d]
        return out

    for path in view.hidden:
        args += [*parents(path), "--perms", "0711", "--tmpfs", path]
        covered.append(path)
    for path in view.readable:
        args += [*parents(path), "--ro-bind", path, path]
    for path in view.writable:
        args += [*parents(path), "--bind", path, path]
    args += [
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        # The namespace dies with the daemon, setsid'd processes and all. The death signal fires
        # when the *thread* that forked bubblewrap ends: spawn.SPAWN_THREADS never end (anyio's
        # worker threads end after 10 s idle, and took their workers with them).
        "--die-with-parent",
        "--",
        _SETPRIV, f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
        "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs",
        "--",
        *argv,
    ]
    return args


def probe(root: bool) -> str | None:
    """None when workers can get their own namespaces here; else why not (for the log)."""
    if not root:
        return "the daemon is not root"
    if _BWRAP is None:
        return "bubblewrap (bwrap) is not installed: apt-get install bubblewrap"
    if _SETPRIV is None:
        return "util-linux setpriv is missing"
    view = View(hidden=(), readable=(), writable=(), tmp_mb=1)
    try:
        done = subprocess.run(wrap(["/bin/true"], view, 65534, 65534), capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bubblewrap could not run: {exc}"
    if done.returncode != 0:
        return f"bubblewrap could not create namespaces here: {done.stderr.decode(errors='replace').strip()}"
    return None


def _children(pid: int) -> list[int]:
    """``pid``'s children (bubblewrap is single-threaded: its main thread's list is all of them)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as f:
            return [int(c) for c in f.read().split()]
    except (OSError, ValueError):
        return []


def _ns_pid(pid: int) -> int | None:
    """``pid``'s pid in its innermost pid namespace; None when it is in ours (or gone)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            status = f.read()
    except OSError:
        return None
    i = status.find(b"\nNSpid:")
    if i < 0:
        return None
    fields = status[i + 8 : status.index(b"\n", i + 1)].split()
    return int(fields[-1]) if len(fields) > 1 else None


def worker_pid(outer: int, namespaced: bool = True) -> int | None:
    """The host pid of the worker below ``outer``: bubblewrap's (``wrap``) or a zygote-forked
    worker's init, whose worker is its child.

    Walks ``outer``'s children and theirs for the process that is pid 2 in the namespace (or,
    ``namespaced`` False, takes the init's child); a hundred microseconds of /proc reads, once per
    worker. None when it is not (or no longer) there, or /proc has no ``children`` lists (a
    kernel without CONFIG_PROC_CHILDREN).
    """
    if not namespaced:
        children = _children(outer)
        return children[0] if children else None
    for init in (outer, *_children(outer)):
        for pid in _children(init):
            if _ns_pid(pid) == WORKER_NS_PID:
                return pid
    return None
