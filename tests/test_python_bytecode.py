"""A Python function's modules are compiled to bytecode at deploy (runtimes/python/build.py) and
its workers, forked and spawned, import them from there instead of compiling them at every cold
start. The bytecode is checked against its source's hash, so a module changed in place after the
deploy runs as changed; a module that does not compile still fails at INIT as on Lambda. Real
daemons, real builds and workers."""

from __future__ import annotations

import importlib.util
import marshal
import shutil
import sys

import pytest

from tests.conftest import Daemon, payload, public_code

APP = """
import json
import pkg.mod


def handler(event, context):
    return {"loader": type(__loader__).__name__, "package": type(pkg.mod.__loader__).__name__,
            "stdlib": type(json.__loader__).__name__, "value": pkg.mod.VALUE}
"""


@pytest.mark.parametrize("zygote", [True, False], ids=["forked", "spawned"])
def test_a_functions_modules_come_from_the_bytecode_its_deploy_built(fresh_daemon: Daemon, zygote: bool) -> None:
    code = public_code({"app.py": APP, "broken.py": "def handler(event, context):\n    return (\n"})
    (code / "pkg").mkdir(mode=0o755)
    for name, text in (("__init__.py", ""), ("mod.py", "VALUE = 41\n")):
        (code / "pkg" / name).write_text(text)
        (code / "pkg" / name).chmod(0o644)
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
                "loader": "BuiltLoader", "package": "BuiltLoader", "stdlib": "SourceFileLoader", "value": 99}

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
