"""A Python function's modules are compiled to bytecode at deploy (runtimes/python/build.py) and
its workers, forked and spawned, import them from there instead of compiling them at every cold
start. The bytecode is checked against its source's hash, so a module changed in place after the
deploy runs as changed; a module that does not compile still fails at INIT as on Lambda. Real
daemons, real builds and workers."""

from __future__ import annotations

import importlib.util
import marshal
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from fnhost.control.build_output import copy_build_output
from tests.conftest import Daemon, payload, public_code

BUILD = Path(__file__).resolve().parents[1] / "runtimes" / "python" / "build.py"

APP = """
import json
import os
import sys

import pkg.mod

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "deps.zip"))  # as some packagers ship dependencies
import zipped


def handler(event, context):
    return {"loader": type(__loader__).__name__, "package": type(pkg.mod.__loader__).__name__,
            "stdlib": type(json.__loader__).__name__, "zipped": zipped.VALUE, "value": pkg.mod.VALUE}
"""


@pytest.mark.parametrize("zygote", [True, False], ids=["forked", "spawned"])
def test_a_functions_modules_come_from_the_bytecode_its_deploy_built(fresh_daemon: Daemon, zygote: bool) -> None:
    code = public_code({"app.py": APP, "broken.py": "def handler(event, context):\n    return (\n"})
    (code / "pkg").mkdir(mode=0o755)
    for name, text in (("__init__.py", ""), ("mod.py", "VALUE = 41\n")):
        (code / "pkg" / name).write_text(text)
        (code / "pkg" / name).chmod(0o644)
    with zipfile.ZipFile(code / "deps.zip", "w") as deps:
        deps.writestr("zipped.py", "VALUE = 'from a zip'\n")
    (code / "deps.zip").chmod(0o644)
    fresh_daemon.config = f"[daemon]\nzygote = {str(zygote).lower()}\n"
    fresh_daemon.start()
    try:
        with fresh_daemon.client() as client:
            client.create_function("bytecode", runtime="python", handler="app.handler", code=str(code))
            [build] = (fresh_daemon.state_dir / "builds").glob("python-*")
            # What runs is the build's bytecode: pkg/mod's replaced by the bytecode of other source,
            # stamped with the hash of mod.py as it is, is what the function sees.
            source = code / "pkg" / "mod.py"
            pyc = build / "bytecode" / str(source.parent).lstrip("/") / f"mod.{sys.implementation.cache_tag}.pyc"
            assert pyc.is_file(), sorted(p.name for p in (build / "bytecode").rglob("*"))
            other = compile("VALUE = 99\n", str(source), "exec")
            checked = (3).to_bytes(4, "little")  # hash-based, checked against the source
            pyc.write_bytes(importlib.util.MAGIC_NUMBER + checked
                            + importlib.util.source_hash(source.read_bytes()) + marshal.dumps(other))
            assert payload(client.invoke("bytecode", b"{}")) == {
                "loader": "BuiltLoader", "package": "BuiltLoader", "stdlib": "SourceFileLoader", "zipped": "from a zip",
                "value": 99}

            # A code directory is read where it is: changed there after the deploy (the same size, the
            # same second), its module no longer matches its bytecode and is compiled from source.
            source.write_text("VALUE = 42\n")
            client.update_function_configuration("bytecode", environment={"NEXT": "worker"})  # new workers
            assert payload(client.invoke("bytecode", b"{}"))["value"] == 42

            # A module that does not compile does not fail the deploy: its worker reports it at INIT.
            client.create_function("bytecode-broken", runtime="python", handler="broken.handler", code=str(code))
            result = client.invoke("bytecode-broken", b"{}")
            assert result.function_error == "Unhandled"
            assert payload(result)["errorType"] == "Runtime.UserCodeSyntaxError", result.payload
    finally:
        shutil.rmtree(code, ignore_errors=True)


LAYERED = """
import layermod
import sitepkg


def handler(event, context):
    return {"layer": layermod.VALUE, "site": sitepkg.VALUE, "file": layermod.__file__,
            "loaders": [type(m.__loader__).__name__ for m in (layermod, sitepkg)]}
"""


def _stamped_with(pyc: Path, source_text: str, replacement: str) -> None:
    """``pyc`` made the bytecode of ``replacement``, stamped with the hash of ``source_text``."""
    checked = (3).to_bytes(4, "little")  # hash-based, checked against the source
    pyc.write_bytes(importlib.util.MAGIC_NUMBER + checked + importlib.util.source_hash(source_text.encode())
                    + marshal.dumps(compile(replacement, "replaced", "exec")))


@pytest.mark.parametrize("config", ["zygote = true", "zygote = false", "worker_namespaces = false"],
                         ids=["forked", "spawned", "host-view"])
def test_a_functions_layers_come_from_the_bytecode_its_deploy_built(fresh_daemon: Daemon, config: str) -> None:
    from tests.conftest import zipped

    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    site = f"python/lib/{version}/site-packages/sitepkg/__init__.py"
    layer_files = {"python/layermod.py": "VALUE = 'layer one'\n", site: "VALUE = 'site'\n"}
    code = public_code({"app.py": LAYERED})
    fresh_daemon.config = f"[daemon]\n{config}\n"
    fresh_daemon.start()
    try:
        with fresh_daemon.client() as client:
            one = client.publish_layer_version("deps", zipped(layer_files))
            created = client.create_function("layered", runtime="python", handler="app.handler", code=str(code),
                                             layers=[one.layer_version_arn])
            [build] = (fresh_daemon.state_dir / "builds").glob("python-*")
            tag = sys.implementation.cache_tag
            found = {p.name: p for p in (build / "bytecode").rglob(f"*.{tag}.pyc")}
            assert {f"layermod.{tag}.pyc", f"__init__.{tag}.pyc", f"app.{tag}.pyc"} <= set(found), sorted(found)
            # Compiled for where the worker imports the layer from: /opt in its own mount namespace,
            # else the merged directory in the state directory.
            seen = "/" + str(found[f"layermod.{tag}.pyc"].parent.relative_to(build / "bytecode"))
            if "at /opt in its mount namespace" in created.isolation:
                assert seen == "/opt/python" and "worker_namespaces = false" not in config
            else:
                assert seen.startswith(str(fresh_daemon.state_dir)) and seen.endswith("/python"), seen
            _stamped_with(found[f"layermod.{tag}.pyc"], layer_files["python/layermod.py"], "VALUE = 'built'\n")
            seen_by = payload(client.invoke("layered", b"{}"))
            assert seen_by["layer"] == "built" and seen_by["site"] == "site", seen_by
            assert seen_by["file"] == f"{seen}/layermod.py" and seen_by["loaders"] == ["BuiltLoader"] * 2

            # Another version of the layer is another build: its module runs as published.
            two = client.publish_layer_version("deps", zipped({**layer_files, "python/layermod.py": "VALUE = 'two'\n"}))
            client.update_function_configuration("layered", layers=[two.layer_version_arn])
            assert [b for b in (fresh_daemon.state_dir / "builds").glob("python-*") if b != build]  # the old one may be collected
            assert payload(client.invoke("layered", b"{}"))["layer"] == "two"
    finally:
        shutil.rmtree(code, ignore_errors=True)


def test_the_build_leaves_to_the_worker_what_it_must_not_spend_a_deploy_on(tmp_path: Path) -> None:
    # A source too big to compile within the build's memory, a FIFO (reading it would block the
    # build until its timeout failed the deploy), a module that does not compile, one so deep that
    # its bytecode's directories would fail the build's output: skipped, and the build still
    # succeeds; the rest is compiled, and the daemon takes it.
    code, out = tmp_path / "code", tmp_path / "out"
    (code / "pkg").mkdir(parents=True)
    (code / "ok.py").write_text("VALUE = 1\n")
    (code / "pkg" / "sub.py").write_text("VALUE = 2\n")
    (code / "big.py").write_text("#" * (3 * 1024 * 1024) + "\nVALUE = 3\n")
    (code / "broken.py").write_text("def f(:\n")
    os.mkfifo(code / "pipe.py")
    deep = code.joinpath(*(f"d{i}" for i in range(70)))  # its bytecode would nest past the daemon's limit
    deep.mkdir(parents=True)
    (deep / "deep.py").write_text("VALUE = 4\n")
    ran = subprocess.run([sys.executable, "-s", str(BUILD), str(code), str(out)], capture_output=True, text=True,
                         timeout=60)
    assert ran.returncode == 0, ran.stderr
    built = sorted(p.relative_to(out / "bytecode").as_posix() for p in (out / "bytecode").rglob("*.pyc"))
    tag = sys.implementation.cache_tag
    inside = str(code).lstrip("/")
    assert built == [f"{inside}/ok.{tag}.pyc", f"{inside}/pkg/sub.{tag}.pyc"], built
    assert "2 modules compiled to bytecode, 3 left to compile at INIT" in ran.stdout, ran.stdout  # not looked for below the depth
    (tmp_path / "taken").mkdir()
    copy_build_output(out, tmp_path / "taken")  # raises BuildFailed on what it refuses


def test_the_build_compiles_a_layers_python_tree_for_where_workers_see_it(tmp_path: Path) -> None:
    code, layers, out = tmp_path / "code", tmp_path / "merged", tmp_path / "out"
    code.mkdir()
    (code / "app.py").write_text("VALUE = 1\n")
    (layers / "python" / "pkg").mkdir(parents=True)
    (layers / "python" / "pkg" / "__init__.py").write_text("VALUE = 2\n")
    (layers / "bin").mkdir()
    (layers / "bin" / "tool.py").write_text("VALUE = 3\n")  # not importable from a layer: left alone
    ran = subprocess.run([sys.executable, "-s", str(BUILD), str(code), str(out), str(layers), "/opt"],
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    tag = sys.implementation.cache_tag
    built = sorted(p.relative_to(out / "bytecode").as_posix() for p in (out / "bytecode").rglob("*.pyc"))
    assert built == sorted([f"{str(code).lstrip('/')}/app.{tag}.pyc", f"opt/python/pkg/__init__.{tag}.pyc"]), built
    pyc = (out / "bytecode" / "opt" / "python" / "pkg" / f"__init__.{tag}.pyc").read_bytes()
    assert marshal.loads(pyc[16:]).co_filename == "/opt/python/pkg/__init__.py"
    assert pyc[8:16] == importlib.util.source_hash(b"VALUE = 2\n")  # checked against the source at import
