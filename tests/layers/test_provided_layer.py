"""A custom runtime (``provided``) whose ``bootstrap`` lives in a layer, as Lambda runs it from
/opt/bootstrap or a layer's bin/ (helper P's Runtime API adapter finds it through FNHOST_LAYERS_DIR)."""

from __future__ import annotations

import io
import json
import shutil
import zipfile

import pytest

from tests.conftest import unique, zipped

from .conftest import call

# AWS's custom-runtime tutorial, in sh and curl: next, then response, forever.
BOOTSTRAP = r'''#!/bin/sh
set -eu
api="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  headers=$(mktemp)
  event=$(curl -sS -D "$headers" "$api/invocation/next")
  id=$(grep -i '^Lambda-Runtime-Aws-Request-Id:' "$headers" | cut -d: -f2 | tr -d '[:space:]')
  rm -f "$headers"
  curl -sS -X POST "$api/invocation/$id/response" \
    -d "{\"bootstrap\": \"$0\", \"handler\": \"$_HANDLER\", \"event\": $event}" >/dev/null
done
'''


def _layer_zip(path: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        info = zipfile.ZipInfo(path)
        info.external_attr = 0o100755 << 16  # executable, as `zip` records it
        z.writestr(info, BOOTSTRAP)
    return buf.getvalue()


@pytest.mark.parametrize("path", ["bin/bootstrap", "bootstrap"])
def test_a_provided_function_whose_bootstrap_lives_in_a_layer(lam, path: str) -> None:
    assert shutil.which("curl"), "curl is part of the test dependencies (tests/install-deps.sh)"
    layer = lam.publish_layer_version(LayerName=unique("runtime"), Content={"ZipFile": _layer_zip(path)},
                                      CompatibleRuntimes=["provided.al2023"])
    name = unique("custom")
    lam.create_function(FunctionName=name, Runtime="provided.al2023", Handler="function.handler",
                        Role="arn:aws:iam::000000000000:role/fnhost-tests",
                        Code={"ZipFile": zipped({"README.txt": "the bootstrap is in a layer\n"})},
                        Layers=[layer["LayerVersionArn"]])
    out = call(lam, name, {"n": 1})
    assert out == {"bootstrap": f"/opt/{path}", "handler": "function.handler", "event": {"n": 1}}, json.dumps(out)
