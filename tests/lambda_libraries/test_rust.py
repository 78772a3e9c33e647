"""A Rust function written with AWS's lambda_runtime crate, unchanged: `cargo build --release` (its
crates from crates.io, Cargo.lock pinned), the executable shipped as `bootstrap` for provided.al2023.

Cost, measured on this project's 2-core machines (cargo 1.95): about 50 s for the first build
(68 crates downloaded and compiled), about 2 s to rebuild with the registry and target directory
cached under /var/cache/fnhost-tests/cargo, 0.1 s when nothing changed."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import unique

from .conftest import FIXTURES, ROLE, cache_dir, run, zip_tree


def cargo() -> str:
    """Cargo as rustup installs it (~/.cargo/bin is not always on PATH); the test fails without it."""
    found = shutil.which("cargo") or shutil.which("cargo", path=str(Path.home() / ".cargo" / "bin"))
    if found is None:
        pytest.fail("cargo is not installed: Rust's toolchain (rustup, https://rustup.rs) is needed to build "
                    "the lambda_runtime function; tests/install-deps.sh does not install it")
    return found


@pytest.fixture(scope="module")
def rust_zip() -> bytes:
    cache = cache_dir("cargo")
    env = {"CARGO_HOME": str(cache / "home"), "CARGO_TARGET_DIR": str(cache / "target"),
           "PATH": f"{Path(cargo()).parent}:{os.environ.get('PATH', '')}"}
    started = time.monotonic()
    run([cargo(), "build", "--release", "--locked", "--quiet"], cwd=FIXTURES / "rust", env=env, timeout=280)
    print(f"cargo build --release: {time.monotonic() - started:.1f} s")
    return zip_tree(None, {"bootstrap": (cache / "target" / "release" / "bootstrap").read_bytes()})


# The first build on a fresh machine (50 s alone) can take minutes while other tests load both cores.
@pytest.mark.timeout(300)
def test_lambda_runtime_crate_function(lam, rust_zip: bytes) -> None:
    name = unique("rust")
    lam.create_function(FunctionName=name, Runtime="provided.al2023", Handler="bootstrap", Role=ROLE,
                        Code={"ZipFile": rust_zip}, Timeout=5)
    before = time.time() * 1000
    out = lam.invoke(FunctionName=name, Payload=b'{"n": 1}')
    assert "FunctionError" not in out
    reply = json.loads(out["Payload"].read())
    assert reply["echo"] == {"n": 1}
    assert reply["request_id"] == out["ResponseMetadata"]["RequestId"]
    assert reply["invoked_function_arn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert reply["function_name"] == name
    assert before < reply["deadline_ms"] <= before + 5000 + 1000  # Lambda-Runtime-Deadline-Ms

    out = lam.invoke(FunctionName=name, Payload=b'{"fail": "no such order"}')
    assert out["FunctionError"] == "Unhandled"
    err = json.loads(out["Payload"].read())
    assert err["errorMessage"] == "no such order", err
    # lambda_runtime names the error's Rust type, here the boxed error that `?`/into() makes.
    assert err["errorType"] == "&alloc::boxed::Box<dyn core::error::Error + core::marker::Send + core::marker::Sync>"
    # The runtime loop goes on after an error.
    assert json.loads(lam.invoke(FunctionName=name, Payload=b"7")["Payload"].read())["echo"] == 7
    lam.delete_function(FunctionName=name)
