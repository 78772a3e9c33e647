"""Where a cold start's time goes, step by step: ``python -m bench.spawnsteps`` (root only).

Runs the daemon's own worker start (``execution.worker.Worker`` with a real ``MemoryBackend``: a
control group per worker, the gate, bubblewrap, setpriv, prlimit) on the go runtime's echo
fixture, in this process, and times each step from the calls the daemon makes: the group's
creation, fork/exec of the gate, the move into the groups (``Group.join``), the chain from the
gate's opening to HELLO (bubblewrap, setpriv, the environment shell, prlimit, the Go runtime),
INIT to INIT_OK, and the first INVOKE. Then the chain alone, link by link (each variant started
directly, no group, time to HELLO), to split the middle step.

``--ab favordynmods``: the cgroup file system's ``favordynmods`` flag (cgroups.favordynmods) is a
host-wide setting, so two daemons side by side cannot differ in it: the flag is switched off and
on between repetitions, alternating, and each step is reported for both. Only meaningful on a
host where it was never set since boot: from Linux 6.18 its per-threadgroup locking, once on,
stays on until reboot even when the flag is cleared (the kernel warns once), so both columns
then show the cheap move. Without ``--ab`` the host's current setting is measured.
``--shared --ab setpriv``: the shared view's uid drop by Popen's ``user=`` (a fork) against
setpriv (a vfork), alternating.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from fnhost.execution import cgroups, isolation, limits, protocol, sandbox, spawn, worker
from fnhost.execution.limits import LimitSettings, choose_backend

ROOT = Path(__file__).resolve().parents[1]
GO_RUNTIME = ROOT / "runtimes" / "go"
ECHO = ROOT / "tests" / "fixtures" / "go" / "echo"
UID = 80990  # an unused uid, as the daemon's slots are

_MS_REMOUNT = 32


def _cgroup2_mount() -> tuple[str, set[str]] | None:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if rfields and rfields[0] == "cgroup2":
            return fields[4], set(rfields[2].split(","))
    return None


def set_favordynmods(on: bool) -> None:
    """Switch the flag on the cgroup2 mount (its other super options kept); raises OSError."""
    found = _cgroup2_mount()
    if found is None:
        raise OSError("no cgroup2 mount")
    mountpoint, options = found
    keep = sorted(o for o in options if o not in ("rw", "ro", "favordynmods"))
    data = ",".join(keep + (["favordynmods"] if on else []))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"none", mountpoint.encode(), None, _MS_REMOUNT, data.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"remount {mountpoint} ({data}): {os.strerror(err)}")


def build_echo(work: Path) -> Path:
    """The go echo fixture, built with the runtime's own build.sh (as the daemon's deploy does)."""
    out = work / "build"
    out.mkdir()
    subprocess.run(["sh", str(GO_RUNTIME / "build.sh"), shutil.which("go") or "/usr/local/go/bin/go",
                    str(GO_RUNTIME), str(ECHO), str(out), "echo"], check=True, capture_output=True)
    sandbox.make_readable(work)
    return out / "echo"


class Clock:
    """Timestamps of one worker start, taken by wrapping the calls the daemon makes."""

    def __init__(self) -> None:
        self.t: dict[str, float] = {}

    def mark(self, name: str) -> None:
        self.t[name] = time.perf_counter()

    def install(self) -> None:
        clock = self
        real_prepare = limits.MemoryBackend.prepare
        real_join = cgroups.Group.join
        real_popen = spawn.subprocess.Popen
        real_hello, real_ok = protocol.parse_hello, protocol.parse_init_ok

        def prepare(self: limits.MemoryBackend, *a: object, **k: object) -> limits.WorkerLimits:
            clock.mark("start")
            try:
                return real_prepare(self, *a, **k)  # type: ignore[arg-type]
            finally:
                clock.mark("group_made")

        def join(self: cgroups.Group, pid: int) -> None:
            clock.mark("join_start")
            real_join(self, pid)
            clock.mark("joined")

        class Popen(real_popen):  # type: ignore[misc, valid-type]
            def __init__(self, *a: object, **k: object) -> None:
                clock.mark("fork_start")
                super().__init__(*a, **k)
                clock.mark("forked")

        def hello(body: bytes | memoryview) -> dict[str, object]:
            clock.mark("hello")
            return real_hello(body)

        def init_ok(body: bytes | memoryview) -> None:
            clock.mark("init_ok")
            real_ok(body)

        limits.MemoryBackend.prepare = prepare  # type: ignore[method-assign]
        cgroups.Group.join = join  # type: ignore[method-assign]
        spawn.subprocess.Popen = Popen  # type: ignore[misc]
        protocol.parse_hello, protocol.parse_init_ok = hello, init_ok  # type: ignore[assignment]


STEPS = [  # (label, from, to)
    ("cgroup: mkdir + limits", "start", "group_made"),
    ("thread hop to the spawn thread", "group_made", "fork_start"),
    ("fork/exec of the gate (Popen)", "fork_start", "forked"),
    ("join: pid into each cgroup.procs", "join_start", "joined"),
    ("gate open -> HELLO (bwrap, setpriv, sh, prlimit, Go)", "joined", "hello"),
    ("HELLO -> INIT_OK (INIT written, Go's Start)", "hello", "init_ok"),
    ("first INVOKE -> RESULT", "init_ok", "result"),
    ("total: start -> RESULT", "start", "result"),
]


def spec_for(exe: Path, backend_view: bool, work: Path) -> spawn.WorkerSpec:
    view = isolation.View(hidden=(), readable=(str(exe.parent),), writable=(), tmp_mb=512) if backend_view else None
    init = protocol.encode_init({"handler": "echo", "code_dir": str(exe.parent), "build_dir": str(exe.parent),
                                 "function_name": "spawnsteps", "function_version": "$LATEST",
                                 "memory_mb": 128, "timeout_s": 30, "log_group_name": "/aws/lambda/spawnsteps",
                                 "log_stream_name": "s", "environment": {}})
    return spawn.WorkerSpec(function="spawnsteps", argv=[str(exe)], env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                            cwd=str(exe.parent), init_frame=init, memory_limit_bytes=128 * 1024 * 1024,
                            init_timeout_s=30, kill_grace_s=2, identity=sandbox.Identity(UID, UID, own=True),
                            view=view, scratch_root=None if backend_view else work / "scratch")


async def one_start(spec: spawn.WorkerSpec, backend: limits.MemoryBackend, clock: Clock) -> dict[str, float]:
    clock.t.clear()
    w = worker.Worker(spec, 1, lambda _w: None, lambda _w, _a, _b: None)
    await w.start(backend)
    w.claim()
    reply = await w.invoke("00000000-0000-0000-0000-000000000001", b'{"x":1}', 30.0)
    clock.mark("result")
    assert reply.ok, reply.body
    w.release()
    await w.stop()
    return {label: (clock.t[b] - clock.t[a]) * 1000 for label, a, b in STEPS}


def _hello_time(argv: list[str], env: dict[str, str], **popen: object) -> float:
    """ms from Popen to the HELLO frame on the control pipe."""
    child_in, to_worker = os.pipe()
    from_worker, child_out = os.pipe()
    for fd in (child_in, child_out):
        os.fchown(fd, UID, UID)
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env={**env, protocol.CONTROL_FDS_ENV: f"{child_in},{child_out}"},
                            pass_fds=(child_in, child_out), stdin=subprocess.DEVNULL, **popen)  # type: ignore[call-overload]
    os.read(from_worker, 65536)
    dt = (time.perf_counter() - t0) * 1000
    for fd in (child_in, child_out, to_worker):
        os.close(fd)
    proc.wait()
    os.close(from_worker)
    return dt


def chain_links(exe: Path, reps: int) -> dict[str, float]:
    """Time to HELLO for the worker's exec chain, one link added at a time (no cgroups)."""
    drop = {"user": UID, "group": UID, "extra_groups": []}
    prl = sandbox.limited_argv([str(exe)], True)
    restore = [spawn._SH, "-c", spawn._RESTORE, "fnhost-worker", *prl]
    shifted = spawn._shifted({"PATH": "/usr/bin:/bin"})
    view = isolation.View(hidden=(), readable=(str(exe.parent),), writable=(), tmp_mb=512)
    variants: dict[str, tuple[list[str], dict[str, str], dict[str, object]]] = {
        "Go executable alone (as the uid)": ([str(exe)], {}, drop),
        "+ prlimit": (prl, {}, drop),
        "+ the environment shell": (restore, shifted, drop),
        "+ bubblewrap and setpriv (root, namespaces)": (isolation.wrap(restore, view, UID, UID), shifted, {}),
        "+ the gate shell (bwrap's parent)": (
            [spawn._SH, "-c", 'exec "$@" </dev/null\n', "fnhost-gate", *isolation.wrap(restore, view, UID, UID)],
            shifted, {}),
    }
    out = {}
    for name, (argv, env, popen) in variants.items():
        runs = [_hello_time(argv, env, cwd=str(exe.parent), start_new_session=True, **popen) for _ in range(reps)]
        out[name] = statistics.median(runs)
    return out


async def steps(exe: Path, work: Path, reps: int, namespaces: bool, ab: str) -> dict[str, dict[str, list[float]]]:
    backend = choose_backend("auto", LimitSettings(cpu_mb_per_vcpu=0))
    clock = Clock()
    clock.install()
    spec = spec_for(exe, namespaces, work)
    (work / "scratch").mkdir(exist_ok=True)
    os.chmod(work / "scratch", 0o711)
    setpriv = spawn._SETPRIV
    if ab == "favordynmods":
        modes: tuple[str, ...] = ("favordynmods off", "favordynmods on")
    elif ab == "setpriv":
        modes = ("uid by Popen user=", "uid by setpriv")
    else:
        modes = ("favordynmods " + ("on" if flag_on() else "off"),)

    def switch(mode: str) -> None:
        if ab == "favordynmods":
            set_favordynmods(mode.endswith(" on"))
        elif ab == "setpriv":
            spawn._SETPRIV = setpriv if mode.endswith("setpriv") else None
    runs: dict[str, dict[str, list[float]]] = {m: {} for m in modes}
    discarded = dict.fromkeys(modes, 0)
    try:
        for mode in modes:  # one unmeasured start each: page cache
            switch(mode)
            await one_start(spec, backend, clock)
        for _ in range(reps):
            for mode in modes:
                switch(mode)
                await asyncio.sleep(0.05)  # the previous start's RCU state settles, as between cold starts
                times = await one_start(spec, backend, clock)
                if mode.startswith("favordynmods") and flag_on() != mode.endswith(" on"):
                    discarded[mode] += 1  # another daemon starting on this host set it meanwhile
                    continue
                for label, ms in times.items():
                    runs[mode].setdefault(label, []).append(ms)
    finally:
        spawn._SETPRIV = setpriv
        backend.close()
    if any(discarded.values()):
        print(f"discarded (the flag changed under the run): {discarded}")
    return runs


def flag_on() -> bool:
    found = _cgroup2_mount()
    return found is not None and "favordynmods" in found[1]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.spawnsteps", description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--shared", action="store_true", help="without namespaces (worker_namespaces = false)")
    parser.add_argument("--ab", choices=("favordynmods", "setpriv"),
                        help="alternate the flag off and on (see above), or (with --shared) the uid drop")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench.spawnsteps needs root (cgroups, bubblewrap, another uid)")
    found = _cgroup2_mount()
    was_on = found is not None and "favordynmods" in found[1]
    work = Path(tempfile.mkdtemp(prefix="fnhss-", dir="/tmp"))
    os.chmod(work, 0o755)
    try:
        exe = build_echo(work)
        runs = asyncio.run(steps(exe, work, args.reps, not args.shared, args.ab))
        links = chain_links(exe, args.reps)
    finally:
        if args.ab == "favordynmods":
            set_favordynmods(was_on)
        shutil.rmtree(work, ignore_errors=True)
    med = {m: {k: statistics.median(v) for k, v in r.items()} for m, r in runs.items()}
    print(f"{'step (p50 ms, ' + str(args.reps) + ' reps each)':58}" + "".join(f" {m:>20}" for m in med))
    for label, _, _ in STEPS:
        print(f"{label:58}" + "".join(f" {med[m][label]:20.2f}" for m in med))
    print("\nexec chain alone, Popen -> HELLO p50 ms (no cgroup):")
    for name, ms in links.items():
        print(f"  {name:56} {ms:7.2f}")
    if args.out:
        args.out.write_text(json.dumps({"runs": runs, "p50": med, "chain": links}, indent=1) + "\n")


if __name__ == "__main__":
    main()
