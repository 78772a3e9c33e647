"""Per-runtime fixtures for the conformance suite: every runtime passes the same tests.

Every runtime passes them twice: as ``<runtime>``, on the shared daemon, whose workers come from
the zygote (the default: forked for Python, set up by a spare and exec'd for every other
runtime; execution/zygote.py), and as ``<runtime>-spawned``, on a daemon with ``zygote = false``,
whose workers are started by bubblewrap as before.

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


@pytest.fixture(params=[*RUNTIMES, *(name + SPAWNED for name in FORKING)])
def runtime(request: pytest.FixtureRequest) -> str:
    name = request.param.removesuffix(SPAWNED)
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


@pytest.fixture
def client(request: pytest.FixtureRequest) -> Iterator[Client]:
    """The shared daemon's client, or the spawned twin's for a ``-spawned`` runtime."""
    callspec = getattr(request.node, "callspec", None)
    spawned = callspec is not None and str(callspec.params.get("runtime", "")).endswith(SPAWNED)
    d = request.getfixturevalue("spawned_daemon" if spawned else "daemon")
    with d.client() as c:
        yield c
