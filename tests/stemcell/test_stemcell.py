"""Stem cells (issue #13; execution/stemcell.py, protos/worker-protocol.md "Stem cells").

Real daemons, real Node cells specialised by SPECIALISE; every behaviour of a specialised worker
is checked by the conformance suite's ``<runtime>-stemcell`` twin. Here: that a function's first
worker is a cell and ends up exactly as a spawned worker (uid, groups, capabilities, view, no
leftover of the cell's environment), that nothing of one function reaches a cell another takes,
that a bad function does not poison the cells, that killing a cell or the zygote loses no
invocation, the start-up variable rule, the reload switch, the stats and metrics; and, driven
directly over its pipes, each shim's SPECIALISE (identity, environment, working directory).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from fnhost.client import Client
from fnhost.control.runtimes import RuntimeRegistry
from fnhost.errors import ToolchainMissing
from fnhost.execution import isolation
from tests.conftest import Daemon, public_code, short_tempdir, unique, wait_gone
from tests.worker_pids import host_pid

NAMESPACES = os.geteuid() == 0 and isolation.probe(True) is None

PROBE = r"""
const fs = require('fs');
const leaked = globalThis.fnhostSecret;  // set by another function, if it could reach this one
globalThis.fnhostSecret = process.env.AWS_LAMBDA_FUNCTION_NAME;
const status = Object.fromEntries(fs.readFileSync('/proc/self/status', 'utf8').split('\n')
  .filter((l) => l.includes(':')).map((l) => [l.split(':')[0], l.split(':')[1].trim()]));
exports.handler = async (event, context) => {
  let others = null;
  try { others = fs.readdirSync(event.peek || '/nonexistent'); } catch (e) { others = e.code; }
  return { pid: process.pid, uid: process.getuid(), status, leaked: leaked ?? null, env: process.env, cwd: process.cwd(),
           name: context.functionName, title: process.title, others, tz: new Date().getTimezoneOffset() };
};
"""

BAD = {
    "import_error.js": "require('no-such-module-here');\nexports.handler = async () => 1;\n",
    "init_throw.js": "throw new Error('no thanks');\n",
    "hang.js": "for (;;) {}\n",
    "hog.js": "const held = [];\nfor (;;) held.push(Buffer.alloc(1 << 20, 1));\n",
    "exits.js": "exports.handler = async () => { process.exit(7); };\n",
}


def _node() -> None:
    try:
        RuntimeRegistry().get("node").select()
    except ToolchainMissing as exc:
        pytest.fail(f"node is needed for the stem cell tests (tests/install-deps.sh installs it): {exc.message}")


@pytest.fixture(scope="module")
def code() -> Iterator[Path]:
    _node()
    path = public_code({"probe.js": PROBE, **BAD})
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _daemon(extra: str = "") -> Daemon:
    state = short_tempdir()
    d = Daemon(state / "state", config=f"[daemon]\ninit_timeout_s = 4\nstem_cells = 1\n{extra}")
    d.start()
    return d


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    d = _daemon()
    yield d
    assert d.stop() == 0, d.log_tail()
    assert d.leftovers == [], "workers outlived their daemon"


@pytest.fixture
def fresh_daemon() -> Iterator[Daemon]:
    d = _daemon()
    yield d
    d.stop()
    assert d.leftovers == [], "workers outlived their daemon"


def deploy(client: Client, code: Path, handler: str = "probe.handler", **options: object) -> str:
    name = unique("sc")
    client.create_function(name, runtime="node", handler=handler, code=str(code), **options)
    return name


def invoke(client: Client, name: str, **event: object) -> dict:
    result = client.invoke(name, json.dumps(event).encode())
    assert result.ok, result.payload
    return json.loads(result.payload)


def cells(client: Client, **match: object) -> list:
    return [c for c in client.stats().stem_cells if c.runtime == "node"
            and all(getattr(c, k) == v for k, v in match.items())]


def taken(client: Client) -> int:
    return sum(c.taken for c in cells(client))


def wait_ready(client: Client, timeout: float = 30.0, **match: object) -> None:
    deadline = time.monotonic() + timeout
    while not any(c.ready for c in cells(client, **match)):
        assert time.monotonic() < deadline, f"no stem cell became ready: {list(client.stats().stem_cells)}"
        time.sleep(0.1)


def waiting_cells(daemon_pid: int) -> list[psutil.Process]:
    """The node processes under the daemon still root's: cells waiting for a function."""
    found = []
    for p in psutil.Process(daemon_pid).children(recursive=True):
        try:
            if p.name() == "node" and p.uids().real == 0:
                found.append(p)
        except psutil.NoSuchProcess:
            continue  # a process of some start that ended as it was listed
    return found


def test_a_first_worker_is_a_cell_set_up_exactly_as_a_spawned_one(daemon: Daemon, code: Path) -> None:
    with daemon.client() as client:
        warm = deploy(client, code)  # its deploy keeps a cell of its kind ready
        wait_ready(client)
        before = taken(client)
        name = deploy(client, code, environment={"GREETING": "hi", "TZ": "Asia/Tokyo"})
        seen = invoke(client, name, peek=str(daemon.state_dir))
        assert taken(client) == before + 1
        warm_seen = invoke(client, warm)
        wait_ready(client)  # the cell taken is refilled in the background; look at the new one once it waits
    status = seen["status"]
    uid = seen["uid"]
    assert uid != 0 and uid != warm_seen["uid"], "each function its own uid"
    assert status["Uid"].split() == [str(uid)] * 4 and status["Gid"].split()[0] == str(uid)
    assert status["Groups"] == ""
    # No capability left: the cell's CAP_SETUID and CAP_SETGID went with uid 0; no_new_privs
    # keeps the two the bounding set still names from ever coming back.
    for field in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert int(status[field], 16) == 0, (field, status[field])
    assert int(status["CapBnd"], 16) & ~0xC0 == 0
    assert status["NoNewPrivs"] == "1"
    # The function's environment, whole, and nothing of the cell's start.
    env = seen["env"]
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name and env["GREETING"] == "hi" and env["_HANDLER"] == "probe.handler"
    assert "FNHOST_CONTROL_FDS" not in env and env["LAMBDA_TASK_ROOT"] == str(code)
    assert seen["cwd"] == str(code) and seen["name"] == name
    assert seen["tz"] == -540, "TZ applied at SPECIALISE"
    assert seen["leaked"] is None
    if NAMESPACES:
        assert seen["pid"] == isolation.WORKER_NS_PID
        assert seen["others"] == "EACCES", "the state directory is covered (0711), as for a spawned worker"
        worker = psutil.Process(host_pid(daemon.pid, seen["pid"], uid=uid))
        assert worker.uids().real == uid
        # A cell waits at nice 10; the function's worker runs at the daemon's priority, every thread.
        assert {t.id: psutil.Process(t.id).nice() for t in worker.threads()} == {t.id: 0 for t in worker.threads()}
        waiting = waiting_cells(daemon.pid)
        assert waiting and all(p.nice() == 10 for p in waiting)


def test_nothing_of_one_function_reaches_a_cell_another_takes(daemon: Daemon, code: Path) -> None:
    with daemon.client() as client:
        names = [deploy(client, code) for _ in range(3)]  # the first deploy makes the kind
        seen = []
        for name in names:
            wait_ready(client)
            seen.append(invoke(client, name))
    assert [s["leaked"] for s in seen] == [None, None, None]
    assert len({s["uid"] for s in seen}) == 3
    assert [s["name"] for s in seen] == names


def test_bad_functions_get_lambdas_errors_and_do_not_poison_the_cells(daemon: Daemon, code: Path) -> None:
    with daemon.client() as client:
        deploy(client, code)  # its kind of cell is kept from now on
        for handler, error in (("import_error.handler", "Runtime.ImportModuleError"),
                               ("init_throw.handler", "Runtime.InitError"),
                               ("hang.handler", "Runtime.InitError"),  # past init_timeout_s (4 s here)
                               ("hog.handler", "Runtime.OutOfMemory"),  # 128 MB, the cell's group's limit
                               ("exits.handler", "Runtime.ExitError")):
            wait_ready(client)
            before = taken(client)
            name = deploy(client, code, handler=handler, memory_mb=128, timeout_s=5)
            result = client.invoke(name, b"{}")
            assert not result.ok and json.loads(result.payload)["errorType"] == error, (handler, result.payload)
            assert taken(client) == before + 1  # the function's own failure, in a cell
        wait_ready(client)
        good = deploy(client, code)
        assert invoke(client, good)["name"] == good
        assert all(c.failures == 0 and not c.given_up for c in cells(client))


def test_a_function_that_sets_a_start_up_variable_gets_no_cell(daemon: Daemon, code: Path) -> None:
    # A cell is root until SPECIALISE: NODE_OPTIONS (--require) or LD_PRELOAD in force as it
    # starts would run what the function chose as root. Such a function's worker starts without
    # a cell, its variables read after its uid is dropped.
    with daemon.client() as client:
        deploy(client, code)
        wait_ready(client)
        before = taken(client)
        for env in ({"NODE_OPTIONS": "--title=fnhost-cell-title"}, {"LD_PRELOAD": "/nonexistent/preload.so"}):
            name = deploy(client, code, environment=env)
            seen = invoke(client, name)
            assert seen["env"].items() >= env.items() and seen["uid"] != 0
            if "NODE_OPTIONS" in env:
                assert seen["title"] == "fnhost-cell-title", "NODE_OPTIONS in force as the worker started"
        assert taken(client) == before
        assert all(not c.startup_env for c in cells(client))


def test_killing_a_cell_or_the_zygote_loses_no_invocation(fresh_daemon: Daemon, code: Path) -> None:
    d = fresh_daemon
    with d.client() as client:
        deploy(client, code)
        wait_ready(client)
        [cell] = waiting_cells(d.pid)
        cell.kill()  # while it waits: another is born in its place
        wait_gone([cell.pid])
        wait_ready(client)
        name = deploy(client, code)
        assert invoke(client, name)["name"] == name
        # The zygote binds functions into cells: without it, a cell cannot be used, and the
        # worker starts the usual way while it comes back.
        zygote = next(z for z in client.stats().zygotes if z.pid)
        os.kill(zygote.pid, signal.SIGKILL)
        wait_gone([zygote.pid])
        for _ in range(2):
            name = deploy(client, code)
            assert invoke(client, name)["name"] == name
        [kind] = cells(client)
        assert kind.failures >= 1 and not kind.given_up


def test_reloading_with_no_stem_cells_stops_them(fresh_daemon: Daemon, code: Path) -> None:
    d = fresh_daemon
    with d.client() as client:
        deploy(client, code)
        wait_ready(client)
        pids = [p.pid for p in waiting_cells(d.pid)]
        assert pids
        config = Path(str(d.state_dir) + ".toml")
        config.write_text(config.read_text().replace("stem_cells = 1", "stem_cells = 0"))
        os.kill(d.pid, signal.SIGHUP)
        assert wait_gone(pids) == []
        before = taken(client)
        name = deploy(client, code)
        assert invoke(client, name)["name"] == name
        assert taken(client) == before


def test_fnhost_stats_and_metrics_show_the_cells(daemon: Daemon, code: Path) -> None:
    with daemon.client() as client:
        deploy(client, code)
        wait_ready(client)
    out = subprocess.run([sys.executable, "-m", "fnhost", "--address", daemon.address, "stats"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "STEM CELLS" in out.stdout and "node" in out.stdout and "MiB each" in out.stdout


# --- the shims' SPECIALISE, driven over their pipes -------------------------------------------------

HELLO, INIT_OK, INIT_ERROR, INVOKE, RESULT, SPECIALISE = 1, 3, 4, 5, 6, 8


def _frame(fd: int) -> tuple[int, bytes]:
    def exact(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = os.read(fd, n - len(data))
            assert chunk, "the shim closed its control pipe"
            data += chunk
        return data
    (length,) = struct.unpack(">I", exact(4))
    body = exact(length)
    return body[0], body[1:]


def _send(fd: int, kind: int, body: bytes) -> None:
    os.write(fd, struct.pack(">IB", len(body) + 1, kind) + body)


PYTHON_PROBE = """\
import os, time
def handler(event, context):
    return {"ids": [os.getresuid(), os.getresgid(), os.getgroups()], "cwd": os.getcwd(),
            "env": dict(os.environ), "offset": time.localtime().tm_gmtoff, "name": context.function_name}
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="a cell takes its uid as root: the test runs as root in CI")
def test_the_python_shim_specialises_as_the_protocol_says() -> None:
    code = public_code({"probe.py": PYTHON_PROBE})
    shim = Path(__file__).parents[2] / "runtimes" / "python" / "bootstrap.py"
    child_in, to_shim = os.pipe()
    from_shim, child_out = os.pipe()
    proc = subprocess.Popen(
        ["setpriv", "--inh-caps=-all", "--bounding-set=-all,+setuid,+setgid", "--no-new-privs", "--",
         "/usr/bin/python3", "-s", str(shim)], cwd="/",
        env={"PATH": "/usr/bin:/bin", "FNHOST_CONTROL_FDS": f"{child_in},{child_out}", "LEFTOVER": "cell"},
        pass_fds=(child_in, child_out), start_new_session=True)
    os.close(child_in)
    os.close(child_out)
    try:
        kind, body = _frame(from_shim)
        assert kind == HELLO and json.loads(body)["protocol"] == 3
        env = {"PATH": "/usr/bin:/bin", "TZ": "Asia/Tokyo", "AWS_LAMBDA_FUNCTION_NAME": "cellfn", "GREETING": "hi"}
        _send(to_shim, SPECIALISE, json.dumps({
            "handler": "probe.handler", "code_dir": str(code), "function_name": "cellfn",
            "function_version": "$LATEST", "memory_mb": 128, "timeout_s": 3, "log_group_name": "/aws/lambda/cellfn",
            "log_stream_name": "x", "environment": {"GREETING": "hi"}, "identity": {"uid": 65534, "gid": 65534},
            "process_environment": env, "cwd": str(code)}).encode())
        kind, body = _frame(from_shim)
        assert kind == INIT_OK, body
        deadline = int(time.time() * 1000) + 10_000
        _send(to_shim, INVOKE, b"\x01r" + struct.pack(">QI", deadline, 0) + b"{}")
        kind, body = _frame(from_shim)
        assert kind == RESULT, body
        seen = json.loads(body[2:])
    finally:
        os.close(to_shim)
        proc.wait(10)
        shutil.rmtree(code, ignore_errors=True)
    assert seen["ids"] == [[65534] * 3, [65534] * 3, []]
    assert seen["env"] == env, "exactly process_environment: nothing of the cell's start (LEFTOVER)"
    assert seen["cwd"] == str(code) and seen["offset"] == 9 * 3600 and seen["name"] == "cellfn"


def test_cells_and_forked_workers_are_pid_2_in_their_namespace_on_a_busy_host(fresh_daemon: Daemon, code: Path) -> None:
    # Spares prepare as SCHED_IDLE, so on a busy host a spare's init may not have forked its
    # worker yet when the zygote forks something else: binding a cell's code (inject) once took
    # pid 2 in the newest spare's namespace, and that spare's worker, as pid 3, was not found.
    # Both cores busy for the test's length (bounded), cells born, taken and bound meanwhile.
    assert isolation.probe(True) is None, "the stem cell tests need worker namespaces"
    python = public_code({"app.py": "import os\n\ndef handler(e, c):\n    return {'pid': os.getpid()}\n"})
    hogs = [subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 30: pass"])
            for _ in range(3)]
    try:
        with fresh_daemon.client() as client:
            for _ in range(30):
                assert invoke(client, deploy(client, code))["pid"] == isolation.WORKER_NS_PID
                name = unique("py")
                client.create_function(name, runtime="python", handler="app.handler", code=str(python))
                assert invoke(client, name)["pid"] == isolation.WORKER_NS_PID
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
        shutil.rmtree(python, ignore_errors=True)
    failed = [e for e in fresh_daemon.log_events() if e.get("event") == "stem_cell_failed"]
    assert failed == [], failed
