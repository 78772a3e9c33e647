"""The fnhost command, run as a user runs it: exit codes, output, and the README's first steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import FIXTURES, Daemon, unique


def fnhost(daemon: Daemon, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "fnhost", *args], input=stdin, capture_output=True,
                          timeout=120, env={**os.environ, "FNHOST_ADDRESS": daemon.address})


def test_deploy_invoke_exit_codes(daemon: Daemon, tmp_path: Path) -> None:
    name = unique("cli")
    out = fnhost(daemon, "deploy", name, "--runtime", "python", "--handler", "app.echo",
                 "--code", str(FIXTURES / "python"), "--memory-mb", "256", "--env", "A=1", "--env", "B=x=y")
    assert out.returncode == 0, out.stderr
    config = json.loads(out.stdout)
    assert (config["memory_mb"], config["environment"]) == (256, {"A": "1", "B": "x=y"})

    ok = fnhost(daemon, "invoke", name, '{"name": "Ada"}', "--report", "--log-type", "tail")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {"name": "Ada"}
    assert b"REPORT RequestId:" in ok.stderr and b"Init Duration:" in ok.stderr

    (tmp_path / "event.json").write_text('{"from": "file"}')
    from_file = fnhost(daemon, "invoke", name, "--payload-file", str(tmp_path / "event.json"))
    assert json.loads(from_file.stdout) == {"from": "file"}
    from_stdin = fnhost(daemon, "invoke", name, "--payload-file", "-", stdin=b"[1, 2]")
    assert json.loads(from_stdin.stdout) == [1, 2]

    # Updating: only the options given change.
    upd = fnhost(daemon, "deploy", name, "--handler", "app.fail")
    assert upd.returncode == 0 and json.loads(upd.stdout)["memory_mb"] == 256
    failed = fnhost(daemon, "invoke", name, '{"message": "nope"}')
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["errorMessage"] == "nope"

    missing = fnhost(daemon, "invoke", "no-such-fn", "{}")
    assert missing.returncode == 2
    assert b"ResourceNotFoundException: Function not found: no-such-fn" in missing.stderr
    assert missing.stdout == b""


def test_usage_errors_exit_2(daemon: Daemon) -> None:
    name = unique("cli")
    incomplete = fnhost(daemon, "deploy", name, "--runtime", "python")
    assert incomplete.returncode == 2 and b"--handler" in incomplete.stderr
    bad = fnhost(daemon, "deploy", name, "--runtime", "python", "--handler", "app.echo",
                 "--code", str(FIXTURES / "python"), "--timeout-s", "1000")
    assert bad.returncode == 2 and b"timeout_s 1000 is out of range" in bad.stderr
    unreachable = subprocess.run([sys.executable, "-m", "fnhost", "--address", "unix:/nonexistent/x.sock", "list"],
                                 capture_output=True, timeout=60)
    assert unreachable.returncode == 2 and b"no fnhost daemon answers" in unreachable.stderr
    streamed_events = fnhost(daemon, "invoke", name, "--stream", "--async")
    assert streamed_events.returncode == 2 and b"--stream runs RequestResponse" in streamed_events.stderr


def test_list_get_stats_delete(daemon: Daemon) -> None:
    name = unique("cli")
    assert fnhost(daemon, "deploy", name, "--runtime", "node", "--handler", "app.echo",
                  "--code", str(FIXTURES / "node")).returncode == 0
    assert fnhost(daemon, "invoke", name, "[]").returncode == 0
    listing = fnhost(daemon, "list").stdout.decode()
    assert name in listing and "node" in listing
    assert json.loads(fnhost(daemon, "get", name).stdout)["handler"] == "app.echo"
    stats = fnhost(daemon, "stats").stdout.decode()
    line = next(l for l in stats.splitlines() if l.startswith(name))
    assert "1 idle" in line
    as_json = json.loads(fnhost(daemon, "stats", "--json").stdout)
    assert any(f["function_name"] == name for f in as_json["functions"])
    assert fnhost(daemon, "delete", name).returncode == 0
    assert fnhost(daemon, "get", name).returncode == 2
