"""Per-runtime fixtures for the conformance suite: every runtime passes the same tests.

Every runtime passes them twice: as ``<runtime>``, on the shared daemon, whose workers come from
the zygote (forked for Python, set up by a spare and exec'd for every other runtime;
execution/zygote.py), and as ``<runtime>-spawned``, on a daemon with ``zygote = false``, whose
workers are started by bubblewrap as before. A runtime with stem cells passes them a third time,
as ``<runtime>-stemcell``, on a daemon whose every function's first worker is a stem cell given
its function by SPECIALISE (execution/stemcell.py); that daemon must log no failed cell.

A runtime whose toolchain is missing is skipped with that reason, unless it is listed in
``FNHOST_REQUIRE_RUNTIMES`` (comma-separated; CI lists every runtime it installs), in which case
the missing toolchain fails the run instead of hiding behind a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

from collections.abc import Iterator

import pytest

from fnhost.client import Client
from fnhost.control.runtimes import RuntimeRegistry
from fnhost.errors import ToolchainMissing
from tests.conftest import FIXTURES, Daemon, short_tempdir

REGISTRY = RuntimeRegistry()
RUNTIMES = [r.name for r in REGISTRY if (FIXTURES / r.name / "handlers.toml").exists()]
SPAWNED = "-spawned"  # the same runtime, its workers started afresh rather than forked
FORKING = RUNTIMES  # every runtime's workers come from the zygote by default
STEMCELL = "-stemcell"  # the same runtime, its workers specialised stem cells
CELLS = [r.name for r in REGISTRY if r.name in RUNTIMES and any(v.stem_argv for v in r.variants)]


def awscore_code_with_jar() -> Path:
    """tests/fixtures/java-awscore copied beside the fixtures with aws-lambda-java-core (from Maven
    Central, the version its handlers.toml names) in its lib/; the same directory every call."""
    spec = tomllib.loads((FIXTURES / "java-awscore" / "handlers.toml").read_text())
    group, artifact, version = spec["jar"].split(":")
    mvn = shutil.which("mvn")
    assert mvn, "Maven (mvn) is needed to fetch aws-lambda-java-core for this test"
    subprocess.run([mvn, "-q", "-B", "dependency:get", f"-Dartifact={spec['jar']}"], check=True, timeout=600,
                   capture_output=True)
    jar = (Path.home() / ".m2" / "repository" / group.replace(".", "/") / artifact / version
           / f"{artifact}-{version}.jar")
    code = FIXTURES.parent / "java-awscore-with-jar"
    shutil.copytree(FIXTURES / "java-awscore", code, dirs_exist_ok=True)
    (code / "lib").mkdir(exist_ok=True)
    shutil.copy(jar, code / "lib")
    for p in [code, *code.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return code


def required_runtimes() -> set[str]:
    return {r.strip() for r in os.environ.get("FNHOST_REQUIRE_RUNTIMES", "").split(",") if r.strip()}


@pytest.fixture(params=[*RUNTIMES, *(name + SPAWNED for name in FORKING), *(name + STEMCELL for name in CELLS)])
def runtime(request: pytest.FixtureRequest) -> str:
    name = request.param.removesuffix(SPAWNED).removesuffix(STEMCELL)
    try:
        REGISTRY.get(name).select()
    except ToolchainMissing as exc:
        if name in required_runtimes():
            pytest.fail(f"runtime {name} is required here (FNHOST_REQUIRE_RUNTIMES) but: {exc.message}")
        pytest.skip(f"{name}: toolchain not installed on this host ({exc.message})")
    return name


@pytest.fixture(scope="session")
def spawned_daemon() -> Iterator[Daemon]:
    """The shared daemon's twin with ``zygote = false``: every worker spawned."""
    state = short_tempdir()
    d = Daemon(state / "state", config="[daemon]\ninit_timeout_s = 5\nqueue_timeout_s = 1.0\nzygote = false\n")
    d.start()
    yield d
    assert d.stop() == 0, d.log_tail()
    assert d.leftovers == [], "workers outlived their daemon"
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def stemcell_daemon() -> Iterator[Daemon]:
    """The shared daemon's twin with a stem cell of every kind: each function's first worker is one."""
    state = short_tempdir()
    d = Daemon(state / "state", config="[daemon]\ninit_timeout_s = 5\nqueue_timeout_s = 1.0\nstem_cells = 1\n")
    d.start()
    yield d
    with d.client() as c:
        stats = c.stats()
        taken = {cell.runtime: cell.taken for cell in stats.stem_cells if cell.taken}
        deployed = len(stats.functions)  # none when every test of it was skipped (no pwsh)
    failed = [e for e in d.log_events() if str(e.get("event", "")).startswith(("stem_cell", "forked_worker_lost"))
              and e.get("event") != "stem_cells_evicted"]
    assert d.stop() == 0, d.log_tail()
    assert d.leftovers == [], "workers outlived their daemon"
    assert failed == [], f"stem cells failed: {failed}"
    assert taken or not deployed, "no function's worker was a stem cell"
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def client(request: pytest.FixtureRequest) -> Iterator[Client]:
    """The shared daemon's client, or its spawned or stem cell twin's for ``-spawned`` and ``-stemcell``."""
    callspec = getattr(request.node, "callspec", None)
    param = str(callspec.params.get("runtime", "")) if callspec is not None else ""
    d = request.getfixturevalue("spawned_daemon" if param.endswith(SPAWNED) else
                                "stemcell_daemon" if param.endswith(STEMCELL) else "daemon")
    with d.client() as c:
        yield c
