"""The README's promises about installation: the wheel carries the shims, and CI runs the README."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import psutil

from tests.conftest import ROOT, short_tempdir, wait_gone


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)\n```", readme, re.S)
    assert blocks[0] == "pip install . && fnhost serve --examples --detach"
    test_command = blocks[2]
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_wheel_carries_runtimes_and_protos(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                   check=True, timeout=300)
    wheel, = tmp_path.glob("fnhost-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for runtime_dir in (ROOT / "runtimes").iterdir():
        if (runtime_dir / "runtime.toml").exists():
            assert f"fnhost/_data/runtimes/{runtime_dir.name}/runtime.toml" in names
    assert "fnhost/_data/runtimes/python/bootstrap.py" in names
    assert "fnhost/_data/protos/fnhost/v1/fnhost.proto" in names
    assert "fnhost/_data/protos/worker-protocol.md" in names
    assert "fnhost/v1/fnhost_pb2.py" in names

    # Installed on its own (dependencies from this interpreter), it finds its shims in the wheel.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    _see_our_dependencies(venv)
    subprocess.run([venv / "bin" / "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)],
                   check=True, timeout=300)
    out = subprocess.run([venv / "bin" / "python", "-c",
                          "from fnhost.control.runtimes import data_dir; print(data_dir('runtimes'))"],
                         capture_output=True, text=True, check=True, cwd=tmp_path,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert "/site-packages/fnhost/_data/runtimes" in out.stdout

    # The README's first command, from that installation: serve the examples, invoke one.
    state = short_tempdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FNHOST_ADDRESS")}
    env["FNHOST_STATE_DIR"] = str(state)
    env["FNHOST_HTTP_LISTEN"] = "127.0.0.1:0"  # 9001 may be another daemon's on this host
    started = subprocess.run([venv / "bin" / "fnhost", "serve", "--examples", "--detach"],
                             capture_output=True, timeout=180, env=env, cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    pid = int(started.stdout.split(b"(pid ")[1].split(b",")[0])
    try:
        hello = subprocess.run([venv / "bin" / "fnhost", "invoke", "hello-python", '{"name":"Ada"}'],
                               capture_output=True, timeout=60, env=env)
        assert hello.returncode == 0, hello.stderr
        assert json.loads(hello.stdout)["message"] == "Hello, Ada!"
        node = subprocess.run([venv / "bin" / "fnhost", "invoke", "hello-node", '{"name":"Bo"}'],
                              capture_output=True, timeout=60, env=env)
        assert json.loads(node.stdout)["message"] == "Hello, Bo!"
    finally:
        workers = [p.pid for p in psutil.Process(pid).children(recursive=True)]
        os.kill(pid, signal.SIGTERM)
        assert wait_gone([pid, *workers], timeout=30) == []


def _see_our_dependencies(venv: Path) -> None:
    """Let ``venv`` import this interpreter's packages without installing them again.

    ``--system-site-packages`` is not enough: run inside a virtual environment, it exposes the
    base interpreter's packages, not this environment's. A .pth file names this interpreter's
    site directories as plain paths, so their own .pth files (this checkout's editable fnhost)
    are not read and the wheel's fnhost is the one the venv imports.
    """
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    site_dir = subprocess.run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
    (Path(site_dir) / "fnhost-test-dependencies.pth").write_text("\n".join(sorted(ours)) + "\n")
