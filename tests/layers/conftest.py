"""Layers against real daemons and workers, driven by boto3, the AWS CLI and fnhost's CLI."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import pytest

from tests.conftest import Daemon, short_tempdir, unique, zipped
from tests.lambda_api.conftest import ROLE, lambda_client

__all__ = ["PROBE", "ROLE", "call", "make_probe", "publish"]

# A Python handler that reports what a function sees of its layers.
PROBE = '''
import json, os, subprocess

def handler(event, context):
    out = {"layers_dir": os.environ.get("FNHOST_LAYERS_DIR"), "path": os.environ.get("PATH", ""),
           "ld": os.environ.get("LD_LIBRARY_PATH", "")}
    if event.get("import"):
        mod = __import__(event["import"])
        out["value"] = mod.VALUE
    if event.get("run"):
        out["ran"] = subprocess.run([event["run"]], capture_output=True, text=True, timeout=10).stdout.strip()
    if event.get("write"):
        try:
            with open(event["write"], "w") as f:
                f.write("changed")
            out["wrote"] = True
        except OSError as exc:
            out["wrote"] = False
            out["error"] = type(exc).__name__
    if event.get("listdir"):
        out["listed"] = sorted(os.listdir(event["listdir"]))
    return out
'''


@pytest.fixture
def lam(daemon: Daemon) -> object:
    return lambda_client(daemon.http_url)


def publish(lam: object, files: dict[str, str], name: str | None = None, **members: object) -> dict:
    """Publish ``files`` as a new layer version; returns PublishLayerVersion's response."""
    return lam.publish_layer_version(LayerName=name or unique("layer"), Content={"ZipFile": zipped(files)},
                                     **members)


def make_probe(lam: object, layers: list[str], *, runtime: str = "python3.12", handler: str = "app.handler",
               files: dict[str, str] | None = None, **members: object) -> str:
    name = unique("uses")
    lam.create_function(FunctionName=name, Runtime=runtime, Handler=handler, Role=ROLE,
                        Code={"ZipFile": zipped(files or {"app.py": PROBE})}, Layers=layers, **members)
    return name


def call(lam: object, name: str, event: dict | None = None, **kw: object) -> dict:
    out = lam.invoke(FunctionName=name, Payload=json.dumps(event or {}).encode(), **kw)
    body = json.loads(out["Payload"].read())
    assert "FunctionError" not in out, body
    return body


@pytest.fixture
def shared_view_daemon() -> Iterator[Daemon]:
    """A daemon whose workers get no mount namespaces: layers through search paths only."""
    state = short_tempdir()
    d = Daemon(state / "state", config="[daemon]\nworker_namespaces = false\ninit_timeout_s = 10\n")
    d.start()
    yield d
    assert d.stop() == 0, d.log_tail()
    assert d.leftovers == []
    shutil.rmtree(state, ignore_errors=True)

