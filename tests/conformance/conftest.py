"""Per-runtime fixtures for the conformance suite: every runtime passes the same tests.

A runtime whose toolchain is missing is skipped with that reason, unless it is listed in
``FNHOST_REQUIRE_RUNTIMES`` (comma-separated; CI lists every runtime it installs), in which case
the missing toolchain fails the run instead of hiding behind a skip.
"""

from __future__ import annotations

import os

import pytest

from fnhost.errors import ToolchainMissing
from fnhost.control.runtimes import RuntimeRegistry
from tests.conftest import FIXTURES

REGISTRY = RuntimeRegistry()
RUNTIMES = [r.name for r in REGISTRY if (FIXTURES / r.name / "handlers.toml").exists()]


def required_runtimes() -> set[str]:
    return {r.strip() for r in os.environ.get("FNHOST_REQUIRE_RUNTIMES", "").split(",") if r.strip()}


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    name = request.param
    try:
        REGISTRY.get(name).select()
    except ToolchainMissing as exc:
        if name in required_runtimes():
            pytest.fail(f"runtime {name} is required here (FNHOST_REQUIRE_RUNTIMES) but: {exc.message}")
        pytest.skip(f"{name}: toolchain not installed on this host ({exc.message})")
    return name
