"""The Go module's own unit tests (runtimes/go: package fnhost, the worker-protocol framing and the
Runtime API adapter's error normalisation, socket-owner lookup and bootstrap lookup), run with the
go command as part of the suite, offline."""

from __future__ import annotations

import os
import subprocess

from fnhost.control.runtimes import RuntimeRegistry
from tests.conftest import ROOT


def test_go_module_unit_tests_pass() -> None:
    go = RuntimeRegistry().get("provided").select()[1]["go"]  # ToolchainMissing fails the test
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOPROXY": "off", "GOTOOLCHAIN": "local", "GOWORK": "off",
           "CGO_ENABLED": "0"}
    done = subprocess.run([go, "test", "-count=1", "./..."], cwd=ROOT / "runtimes" / "go", env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "ok  \tfnhost/cmd/fnhost-runtime-api" in done.stdout, done.stdout
