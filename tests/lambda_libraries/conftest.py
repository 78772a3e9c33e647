"""Functions built with AWS's own runtime libraries, fetched from the registries a user fetches them
from (the Go module proxy, PyPI, crates.io) and run unchanged on a real daemon.

What the registries give is cached under ``/var/cache/fnhost-tests`` so reruns are quick:
``go-home`` is the home directory of the daemon these tests start (its Go module cache, which the
go runtime's builds read: worker users must be able to read it, and root's own /root is not
readable to them), ``fnhost-cache`` its FNHOST_CACHE_DIR (the go runtime's prepared standard
library, seeded from the host's when there is one), ``pip`` awslambdaric as `pip install --target`
lays it out, ``cargo`` Cargo's registry and the Rust target directory.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from tests.conftest import ROOT, Daemon, short_tempdir

CACHE = Path("/var/cache/fnhost-tests")
FIXTURES = ROOT / "tests" / "fixtures" / "lambda-libraries"
ROLE = "arn:aws:iam::000000000000:role/fnhost-tests"  # botocore requires one; fnhost ignores it


def cache_dir(name: str) -> Path:
    """``/var/cache/fnhost-tests/<name>``, made readable by every user (worker users read Go's
    module cache there)."""
    path = CACHE / name
    path.mkdir(parents=True, exist_ok=True)
    for p in (CACHE, path):
        p.chmod(0o755)
    return path


GO_HOME = CACHE / "go-home"


def run(argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 300) -> str:
    """Run a tool as a user would; its output, or the test fails with it."""
    done = subprocess.run(argv, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done.stdout + done.stderr


def go_env() -> dict[str, str]:
    """The environment of the daemon's user for the go command: its HOME (so its module cache is
    $HOME/go/pkg/mod, as for any user), the public proxy whatever the host's go env says."""
    return {"HOME": str(cache_dir("go-home")), "GOFLAGS": "-mod=mod", "GOPROXY": "https://proxy.golang.org,direct",
            "GOTOOLCHAIN": "local", "GOWORK": "off", "GOENV": "off"}


def zip_tree(root: Path | None, extra: dict[str, bytes] | None = None) -> bytes:
    """A deployment package of every file under ``root`` (modes kept, as Lambda keeps them) plus
    ``extra`` executables (name -> bytes, mode 0755)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for path in sorted(root.rglob("*")) if root is not None else []:
            if path.is_file() and "__pycache__" not in path.parts:
                z.write(path, path.relative_to(root))
        for name, data in (extra or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100755 << 16)
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return buf.getvalue()


def _seed_go_cache(target: Path) -> None:
    """Start ``target`` (our FNHOST_CACHE_DIR's go/) from a copy of the host's prepared standard
    library, if there is one (tests/install-deps.sh runs `fnhost prepare`): it is the same
    wherever it is prepared, and compiling it again costs a minute on two cores. The daemon's
    prepare step then only checks it (cache hits). Once: the copy stays for later runs."""
    host = Path(os.environ.get("FNHOST_CACHE_DIR") or "/var/cache/fnhost") / "go" / "build"
    if (target / "build" / "README").exists() or not (host / "README").exists():
        return
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", str(host), str(target / "build")], check=False, capture_output=True)


@pytest.fixture(scope="package")
def daemon() -> Iterator[Daemon]:
    """A daemon of this package's own, started as root (workers get their own uids) with HOME =
    ``go-home``: the go runtime's builds read Go modules from its user's module cache. Its own
    FNHOST_CACHE_DIR, because the go runtime's prepare step records there whose module cache
    builds read, and the host's other daemons have another HOME."""
    fnhost_cache = cache_dir("fnhost-cache")
    _seed_go_cache(fnhost_cache / "go")
    state = short_tempdir()
    d = Daemon(state / "state", config="[daemon]\ninit_timeout_s = 10\n",
               env={"HOME": str(cache_dir("go-home")), "FNHOST_CACHE_DIR": str(fnhost_cache)})
    d.start()
    yield d
    code = d.stop()
    assert code == 0, d.log_tail()
    assert d.leftovers == [], "workers outlived their daemon"
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def client(daemon: Daemon) -> Iterator[object]:
    with daemon.client() as c:
        yield c


@pytest.fixture(scope="package")
def lam(daemon: Daemon) -> object:
    """boto3's Lambda client on this package's daemon; no retries, so each error is seen as sent."""
    return boto3.client("lambda", endpoint_url=daemon.http_url, region_name="us-east-1",
                        aws_access_key_id="AKIDEXAMPLEFNHOST01", aws_secret_access_key="unused-secret",
                        config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=60))


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A scratch directory the daemon's worker users may read."""
    path = short_tempdir(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
