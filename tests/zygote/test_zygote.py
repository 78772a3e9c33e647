"""Python workers forked from a warm zygote (issue #13; execution/zygote.py, runtimes/python/zygote.py).

Real daemons, real zygotes and forked workers. What a forked worker is set up as (uid, groups,
capabilities, umask, rlimits, namespaces, view) is checked where the spawned one's is, by the
same tests run both ways (tests/test_security.py, tests/hostile/test_filesystem_view.py, the
conformance suite's ``python`` and ``python-spawned``); here: that workers are forked at all and
look as if exec'd, that nothing of one function reaches another through the zygote, that a bad
function does not poison it, that killing it (or its spare) at any moment loses no invocation
and leaves no process behind, the start-up environment rule, the reload switch and the stats.
"""

from __future__ import annotations

import json
import os
import random
import signal
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from fnhost.client import Client
from fnhost.execution import isolation
from tests.conftest import Daemon, public_code, short_tempdir, unique, wait_gone
from tests.worker_pids import host_pid

NAMESPACES = os.geteuid() == 0 and isolation.probe(True) is None

APP = '''\
import builtins
import json
import os
import sys
import time
import uuid

WORKER = uuid.uuid4().hex
LEAKED_BEFORE = getattr(builtins, "fnhost_test_secret", None)  # set by another function, if it could reach us
builtins.fnhost_test_secret = os.environ["AWS_LAMBDA_FUNCTION_NAME"]


def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"pid": os.getpid(), "uid": os.getuid(), "worker": WORKER, "leaked": LEAKED_BEFORE,
            "modules": sorted(m for m in sys.modules if m.startswith("app")), "sys_path": sys.path,
            "argv": sys.argv, "name": os.environ["AWS_LAMBDA_FUNCTION_NAME"], "tz": time.tzname[0],
            "rehearsal": [m for m in sys.modules if m == "stand_in"]
                         + [p for p in [*sys.path, *sys.path_importer_cache] if "stand-in" in p]}
'''

BAD = {
    "import_error.py": "import no_such_module_here\n\ndef handler(e, c):\n    return 1\n",
    "init_raise.py": "raise RuntimeError('no thanks')\n\ndef handler(e, c):\n    return 1\n",
    "hang.py": "import time\ntime.sleep(60)\n\ndef handler(e, c):\n    return 1\n",
    "hog.py": "HOG = bytearray(400 * 1024 * 1024)\n\ndef handler(e, c):\n    return 1\n",
    "exits.py": "import sys\n\ndef handler(e, c):\n    print('bye', flush=True)\n    sys.exit(7)\n",
}


@pytest.fixture(scope="module")
def code() -> Iterator[Path]:
    path = public_code({"app.py": APP, **BAD})
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    state = short_tempdir()
    d = Daemon(state / "state", config="[daemon]\ninit_timeout_s = 3\n")
    d.start()
    _wait_for_event(d, "zygote_started")  # started with the daemon, in the background
    yield d
    assert d.stop() == 0, d.log_tail()
    assert d.leftovers == [], "workers outlived their daemon"
    shutil.rmtree(state, ignore_errors=True)


def invoke(client: Client, name: str, **event: object) -> dict:
    result = client.invoke(name, json.dumps(event).encode())
    assert result.ok, result.payload
    return json.loads(result.payload)


def zygotes(client: Client) -> list:
    return [z for z in client.stats().zygotes if z.runtime == "python"]


def deploy(client: Client, code: Path, handler: str = "app.handler", **options: object) -> str:
    name = unique("zy")
    client.create_function(name, runtime="python", handler=handler, code=str(code), **options)
    return name


def test_python_workers_are_forked_and_look_exec_d(daemon: Daemon, code: Path) -> None:
    with daemon.client() as client:
        name = deploy(client, code)
        seen = invoke(client, name)
        [zygote] = zygotes(client)
    assert zygote.pid > 0 and zygote.forks >= 1 and zygote.workers >= 1 and zygote.failures == 0
    assert zygote.memory_uss_bytes > 1024 * 1024 and zygote.workers_memory_uss_bytes > 0
    assert "zygote.py" in zygote.command
    worker = psutil.Process(host_pid(daemon.pid, seen["pid"], uid=seen["uid"]))
    init = worker.parent()
    assert init is not None and init.parent().pid == zygote.pid  # zygote → the namespace's init → worker
    # What ps and tools that look for a function's processes see: the worker, not the zygote.
    assert worker.cmdline()[-1].endswith("/bootstrap.py") and "-s" in worker.cmdline()
    assert worker.environ()["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert seen["argv"][0].endswith("/bootstrap.py")
    assert seen["tz"] == "UTC"
    assert seen["rehearsal"] == []  # the spare's rehearsal left nothing (rehearsal.py)
    if NAMESPACES:
        assert seen["pid"] == isolation.WORKER_NS_PID


def test_a_spare_rehearses_the_workers_steps_and_keeps_nothing_of_them() -> None:
    # What every spare runs while it waits (rehearsal.py), here on its own: all of its steps run
    # (the stand-in's one invocation is answered with a RESULT), and the process is left as it was.
    probe = """
import os, sys
import rehearsal
def state():
    return list(sys.path), sorted(sys.modules), dict(os.environ), sorted(sys.path_importer_cache)
before = state()
ran = rehearsal.rehearse(lambda: False)
print(ran, state() == before, rehearsal.rehearse(lambda: True))
"""
    shim = Path(__file__).resolve().parents[2] / "runtimes" / "python"
    out = subprocess.run([sys.executable, "-s", "-c", probe], cwd=shim, capture_output=True, text=True,
                         timeout=60, env={"PATH": os.environ["PATH"], "PYTHONPATH": str(shim)})
    assert out.stdout.split() == ["True", "True", "False"], out.stderr


def _memory_group(pid: int) -> str:
    """The memory cgroup ``pid`` is in (v1's memory line, or v2's single one)."""
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    return next((line.split(":", 2)[2] for line in lines if ":memory:" in line), lines[-1].split(":", 2)[2])


def _group_dir(group: str) -> Path:
    v1 = Path("/sys/fs/cgroup/memory") / group.lstrip("/")
    return v1 if v1.is_dir() else Path("/sys/fs/cgroup") / group.lstrip("/")


def _memory_limit(group: str) -> int:
    path = _group_dir(group)
    return int((path / "memory.limit_in_bytes").read_text() if (path / "memory.limit_in_bytes").exists()
               else (path / "memory.max").read_text())


def _held_spares(zygote_pid: int) -> list[psutil.Process]:
    """The zygote's spares not yet given a request: below an init, still the zygote's program."""
    return [w for init in psutil.Process(zygote_pid).children() for w in init.children()
            if any(part.endswith("zygote.py") for part in w.cmdline())]


def test_a_held_spare_waits_in_a_group_of_its_own_and_each_worker_gets_its_size(daemon: Daemon, code: Path) -> None:
    # The daemon holds the zygote's spare and gives it its worker's control group while it waits
    # (execution/spare.py): the move into the group is off the worker's path. The group's limits
    # are set when a function takes the spare, to that function's memory size.
    with daemon.client() as client:
        for memory_mb in (128, 1024, 256, 256):
            seen = invoke(client, deploy(client, code, memory_mb=memory_mb))
            worker = host_pid(daemon.pid, seen["pid"], uid=seen["uid"])
            group = _memory_group(worker)
            assert f"fnhost-{daemon.pid}/w" in group, group
            assert _memory_limit(group) == memory_mb * 1024 * 1024, (memory_mb, group)
            assert _memory_group(psutil.Process(worker).parent().pid) == group  # its init too
        [zygote] = zygotes(client)
    # Two spares wait: the one the daemon holds, in a group of its own, and the zygote's own
    # (for forks asked of the zygote), which joins its group with its request.
    deadline = time.monotonic() + 10
    while not (joined := [s for s in _held_spares(zygote.pid) if f"fnhost-{daemon.pid}/w" in _memory_group(s.pid)]):
        assert time.monotonic() < deadline, [(s.pid, _memory_group(s.pid)) for s in _held_spares(zygote.pid)]
        time.sleep(0.05)
    [spare] = joined
    group = _memory_group(spare.pid)
    members = {int(pid) for pid in (_group_dir(group) / "cgroup.procs").read_text().split()}
    assert members == {spare.pid, spare.parent().pid}  # the spare and its init, and no one else


def _bounding_set(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("CapBnd:")), 16)


def test_a_spare_waits_with_no_capability_its_worker_could_not_be_given(daemon: Daemon, code: Path) -> None:
    # A namespaced spare empties its bounding set while it waits, but for CAP_SETUID and
    # CAP_SETGID (a stem cell's exec keeps them to take its function's uid): 41 drops, each a
    # new set of credentials, are off the worker's path, and a spare never holds more than a
    # worker could be given. Without namespaces its worker keeps the daemon's identity, and so
    # does the spare.
    with daemon.client() as client:
        invoke(client, deploy(client, code))
        [zygote] = zygotes(client)
    full = _bounding_set(zygote.pid)
    expected = (1 << 6) | (1 << 7) if NAMESPACES else full
    deadline = time.monotonic() + 10
    while True:
        spares = {s.pid: _bounding_set(s.pid) for s in _held_spares(zygote.pid)}
        if len(spares) == 2 and set(spares.values()) == {expected}:
            break  # the daemon's held spare and the zygote's own, both prepared
        assert time.monotonic() < deadline, {pid: hex(b) for pid, b in spares.items()}
        time.sleep(0.05)
    assert full.bit_count() > 30  # the zygote itself keeps its own (it forks every later spare)


def test_nothing_of_one_function_reaches_another(daemon: Daemon, code: Path) -> None:
    with daemon.client() as client:
        a, b = deploy(client, code), deploy(client, code)
        seen_a, seen_b = invoke(client, a), invoke(client, b)
        again = [invoke(client, b, sleep=0.2) for _ in range(1)]
    # Each imported its module itself: the zygote holds the shim only, so no function's globals,
    # modules or identity carry over, and no worker is handed out twice.
    assert seen_a["leaked"] is None and seen_b["leaked"] is None
    assert seen_a["modules"] == seen_b["modules"] == ["app"]
    assert seen_a["worker"] != seen_b["worker"] and again[0]["worker"] == seen_b["worker"]
    assert seen_a["uid"] != seen_b["uid"]
    assert seen_a["name"] == a and seen_b["name"] == b


def _memory_holds(pid: int, needle: bytes) -> bool:
    """Whether any readable, private mapping of ``pid`` holds ``needle`` (root reads /proc/PID/mem)."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if not fields[1].startswith("r") or (len(fields) > 5 and fields[5].startswith(("[vvar", "[vsyscall"))):
                continue
            try:
                mem.seek(start)
                if needle in mem.read(end - start):
                    return True
            except (OSError, ValueError, OverflowError):
                continue
    return False


def test_no_function_data_enters_the_zygote_or_a_later_worker(daemon: Daemon, code: Path) -> None:
    # The spec (environment, paths) goes from the daemon to the spare in a pipe the zygote passes
    # on unread: were it parsed there, freed memory would carry it into every later fork.
    secret = os.urandom(16).hex()
    with daemon.client() as client:
        a = deploy(client, code, environment={"FNHOST_TEST_SECRET": secret})
        seen_a = invoke(client, a)
        seen_b = invoke(client, deploy(client, code))
        [zygote] = zygotes(client)
    worker_a = host_pid(daemon.pid, seen_a["pid"], uid=seen_a["uid"])
    worker_b = host_pid(daemon.pid, seen_b["pid"], uid=seen_b["uid"])
    assert _memory_holds(worker_a, secret.encode()), "the scan finds the secret where it is"
    family = [zygote.pid, *(p.pid for p in psutil.Process(zygote.pid).children(recursive=True))]
    holders = [pid for pid in {*family, worker_b} - {worker_a}
               if _memory_holds(pid, secret.encode())]
    assert holders == [], f"function A's secret is in the memory of {holders}"


def test_bad_functions_get_lambdas_errors_and_do_not_poison_the_zygote(daemon: Daemon, code: Path) -> None:
    expected = {
        "import_error.handler": "Runtime.ImportModuleError",
        "init_raise.handler": "Runtime.InitError",  # an exception at import
        "hang.handler": "Runtime.InitError",  # past init_timeout_s (3 s here)
        "hog.handler": "Runtime.OutOfMemory",  # 400 MB at import, 128 MB allowed
        "exits.handler": "Runtime.ExitError",
    }
    with daemon.client() as client:
        before = zygotes(client)[0] if zygotes(client) else None
        for handler, error in expected.items():
            name = deploy(client, code, handler=handler, memory_mb=128, timeout_s=5)
            result = client.invoke(name, b"{}")
            assert not result.ok, (handler, result.payload)
            assert json.loads(result.payload)["errorType"] == error, (handler, result.payload)
            if handler == "exits.handler":
                assert "exit status 7" in json.loads(result.payload)["errorMessage"]
        healthy = invoke(client, deploy(client, code))
        [after] = zygotes(client)
    assert healthy["leaked"] is None
    assert after.failures == 0 and after.restarts == 0
    if before is not None:
        assert after.pid == before.pid and after.forks >= before.forks + len(expected) + 1


def test_a_start_up_variable_never_reaches_a_zygote(fresh_daemon: Daemon, code: Path) -> None:
    # A zygote runs as root as it starts: PYTHONPATH naming a directory with a sitecustomize.py
    # (the function's own code, say) would run it as root. Such a function's workers are set up
    # by a spare and exec'd, and the interpreter reads the variable as the function's uid.
    custom = public_code({"sitecustomize.py": "import os\nos.environ['FNHOST_SITE_UID'] = str(os.getuid())\n",
                          "app.py": APP.replace('"tz": time.tzname[0],', '"tz": time.tzname[0], '
                                                '"site_uid": os.environ.get("FNHOST_SITE_UID"),')})
    fresh_daemon.start()
    _wait_for_event(fresh_daemon, "zygote_started")
    try:
        with fresh_daemon.client() as client:
            plain = invoke(client, deploy(client, code))
            for _ in range(2):
                seen = invoke(client, deploy(client, custom, environment={"PYTHONPATH": str(custom)}))
                assert str(custom) in seen["sys_path"]  # as a spawned worker has it
                assert seen["site_uid"] == str(seen["uid"]) and seen["uid"] != 0, "sitecustomize ran as the function"
            assert not any(p == str(custom) for p in plain["sys_path"])
            [zygote] = zygotes(client)  # the plain one only
            worker = psutil.Process(host_pid(fresh_daemon.pid, seen["pid"], uid=seen["uid"]))
            assert worker.cmdline()[-1].endswith("/bootstrap.py")
            assert not _under(worker, zygote.pid) or NAMESPACES  # exec'd: a spare's, not a fork of it
    finally:
        shutil.rmtree(custom, ignore_errors=True)
    assert not [e for e in fresh_daemon.log_events() if e.get("event") == "zygote_limit"]


def _cold_invoker(client: Client, code: Path, stop: threading.Event, results: list) -> None:
    while not stop.is_set():
        name = deploy(client, code)
        result = client.invoke(name, b"{}")
        results.append(result.ok or result.payload)
        client.delete_function(name)


def test_killing_the_zygote_or_its_spare_at_any_moment_loses_no_invocation(fresh_daemon: Daemon, code: Path) -> None:
    fresh_daemon.start()
    _wait_for_event(fresh_daemon, "zygote_started")
    rng = random.Random(13)
    results: list = []
    stop = threading.Event()
    with fresh_daemon.client() as client:
        invoke(client, deploy(client, code))
        threads = [threading.Thread(target=_cold_invoker, args=(client, code, stop, results)) for _ in range(2)]
        for t in threads:
            t.start()
        kills = {"zygote": 0, "spare": 0}
        # 8 s of random kills, and on (up to 30 s) until each kind has been killed 3 times: spares
        # are made 30 ms after each start, so a busy host's moments without one are many.
        start = time.monotonic()
        while time.monotonic() < start + 8 or (min(kills.values()) < 3 and time.monotonic() < start + 30):
            time.sleep(rng.uniform(0.05, 0.4))
            [z] = zygotes(client) or [None]
            if z is None or not z.pid:
                continue
            try:
                zygote = psutil.Process(z.pid)
                if rng.random() < 0.5:
                    zygote.send_signal(signal.SIGKILL)
                    kills["zygote"] += 1
                else:  # a spare: the zygote's child whose own child waits, function-less, for a request
                    kills["spare"] += _kill_spares(zygote)
            except psutil.Error:
                pass
        stop.set()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)
        assert invoke(client, deploy(client, code))["leaked"] is None  # and it still forks
        [z] = zygotes(client)
    assert kills["zygote"] >= 3 and kills["spare"] >= 3, kills
    assert len(results) >= 10 and all(r is True for r in results), [r for r in results if r is not True][:3]
    assert z.restarts >= 1
    assert fresh_daemon.stop() == 0
    assert fresh_daemon.leftovers == []


def _kill_spares(zygote: psutil.Process) -> int:
    """SIGKILL each spare (an init whose worker has no function yet); how many there were.

    The worker is stopped before its environment is read: a spare handed out meanwhile could
    otherwise have become a worker running its function's code by the time the kill lands, and
    killing that is an ordinary worker's death, reported as one."""
    killed = 0
    for init in zygote.children():
        try:
            workers = init.children()
            if not workers:
                continue
            worker = workers[0]
            worker.suspend()
            if "AWS_LAMBDA_FUNCTION_NAME" in worker.environ():
                worker.resume()
                continue
            worker.kill()
            init.kill()
            killed += 1
        except psutil.Error:
            continue
    return killed


def test_forked_workers_die_with_the_daemon_however_it_dies(fresh_daemon: Daemon, code: Path) -> None:
    fresh_daemon.start()
    _wait_for_event(fresh_daemon, "zygote_started")
    with fresh_daemon.client() as client:
        seen = [invoke(client, deploy(client, code)) for _ in range(3)]
        [z] = zygotes(client)
    workers = [host_pid(fresh_daemon.pid, s["pid"], uid=s["uid"]) for s in seen]
    family = [z.pid, *(c.pid for c in psutil.Process(z.pid).children(recursive=True))]
    os.kill(fresh_daemon.pid, signal.SIGKILL)
    # The zygote sees its socket close; each init, the lifeline only the daemon held: every
    # worker and spare goes within moments, with nothing left to the harness to kill.
    assert wait_gone([*workers, *family], timeout=10) == []


def test_reloading_with_the_zygote_off_spawns_new_workers(fresh_daemon: Daemon, code: Path) -> None:
    fresh_daemon.config = "[daemon]\nzygote = true\n"
    fresh_daemon.start()
    _wait_for_event(fresh_daemon, "zygote_started")
    config = Path(str(fresh_daemon.state_dir) + ".toml")
    assert config.read_text().startswith("[daemon]")
    with fresh_daemon.client() as client:
        invoke(client, deploy(client, code))
        [z] = zygotes(client)
        assert z.pid > 0
        config.write_text("[daemon]\nzygote = false\n")
        os.kill(fresh_daemon.pid, signal.SIGHUP)
        _wait_for_event(fresh_daemon, "reloaded")
        seen = invoke(client, deploy(client, code))
        worker = psutil.Process(host_pid(fresh_daemon.pid, seen["pid"], uid=seen["uid"]))
        assert not _under(worker, z.pid), "a worker was forked with the zygote turned off"
        assert [x.pid for x in zygotes(client)] == [0]  # stopped; its workers live on
        config.write_text("[daemon]\nzygote = true\n")
        os.kill(fresh_daemon.pid, signal.SIGHUP)
        _wait_for_event(fresh_daemon, "reloaded", count=2)
        _wait_for_event(fresh_daemon, "zygote_started", count=2)  # started again in the background
        seen = invoke(client, deploy(client, code))
        [z2] = zygotes(client)
        assert z2.pid > 0 and _under(psutil.Process(host_pid(fresh_daemon.pid, seen["pid"], uid=seen["uid"])), z2.pid)


def _under(p: psutil.Process, ancestor: int) -> bool:
    return any(a.pid == ancestor for a in p.parents())


def _wait_for_event(d: Daemon, event: str, count: int = 1, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while sum(e.get("event") == event for e in d.log_events()) < count:
        assert time.monotonic() < deadline, f"no {event!r} in the log:\n{d.log_tail()}"
        time.sleep(0.05)


def test_fnhost_stats_shows_the_zygote(daemon: Daemon, code: Path) -> None:
    with daemon.client() as client:
        invoke(client, deploy(client, code))
    out = subprocess.run([sys.executable, "-m", "fnhost", "--address", daemon.address, "stats"],
                         capture_output=True, timeout=60, check=True).stdout.decode()
    assert "ZYGOTE" in out and "FORKS" in out and "zygote.py" in out, out


def test_without_fnhost_init_the_python_init_stands_in(code: Path) -> None:
    # No cache directory (FNHOST_CACHE_DIR names none): fnhost-init cannot be built, and each
    # forked worker's init stays a fork of the zygote, doing the same job in Python.
    state = short_tempdir()
    d = Daemon(state / "state", config="[daemon]\ninit_timeout_s = 3\n",
               env={**os.environ, "FNHOST_CACHE_DIR": str(state / "no-such-cache")})
    d.start()
    _wait_for_event(d, "zygote_started")
    try:
        with d.client() as client:
            seen = invoke(client, deploy(client, code))
            exits = client.invoke(deploy(client, code, handler="exits.handler"), b"{}")
            [z] = zygotes(client)
        worker = psutil.Process(host_pid(d.pid, seen["pid"], uid=seen["uid"]))
        init = worker.parent()
        assert init.cmdline()[-1].endswith("/zygote.py") and init.parent().pid == z.pid
        # It reports how its worker ended as fnhost-init does: the status, not a kill.
        assert "exit status 7" in json.loads(exits.payload)["errorMessage"], exits.payload
        assert z.forks >= 2 and z.failures == 0
    finally:
        assert d.stop() == 0, d.log_tail()
        assert d.leftovers == []
        shutil.rmtree(state, ignore_errors=True)
