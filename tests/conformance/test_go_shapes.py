"""Go: aws-lambda-go's error and result conventions, and prebuilt executables."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fnhost import errors
from fnhost.client import Client
from fnhost.control.runtimes import RuntimeRegistry
from tests.conftest import FIXTURES, ROOT, deploy_case, function_stats, payload, unique

try:
    GO = RuntimeRegistry().get("go").select()[1]["go"]
except errors.ToolchainMissing as exc:
    pytest.skip(f"go: toolchain not installed on this host ({exc.message})", allow_module_level=True)


@pytest.fixture(scope="module")
def extras(daemon) -> str:  # type: ignore[no-untyped-def]
    with daemon.client() as c:
        return deploy_case(c, "go", "extras")


@pytest.mark.parametrize(
    ("event", "error_type"),
    [
        ({"do": "panic", "message": "negative"}, "string"),
        ({"do": "nil_map"}, "plainError"),
        ({"do": "typed_error"}, "quotaError"),
        ({"do": "wrapped_error"}, "wrapError"),
        ({"do": "invoke_error", "type": "Custom.Type", "message": "m"}, "Custom.Type"),
        ({"do": "nan"}, "Runtime.MarshalError"),
        ({"do": 1}, "Runtime.UnmarshalError"),
    ],
)
def test_errors_keep_the_worker(client: Client, extras: str, event: dict, error_type: str) -> None:
    result = client.invoke(extras, json.dumps(event).encode())
    assert result.function_error == "Unhandled"
    err = json.loads(result.payload)
    assert err["errorType"] == error_type
    if event["do"] == "panic":
        assert err["errorMessage"] == "negative"
        assert any("main.mustPositive" in frame for frame in err["stackTrace"])
    assert function_stats(client, extras).cold_starts == 1


def test_results(client: Client, extras: str) -> None:
    assert payload(client.invoke(extras, b'{"do": "reader"}')) == {"raw": True}
    assert payload(client.invoke(extras, b'{"do": "html"}')) == "<&>"
    assert payload(client.invoke(extras, b'{"do": "null"}')) is None
    ctx = payload(client.invoke(extras, b'{"do": "lambda_context"}'))
    assert ctx["invoked_function_arn"].endswith(f":function:{extras}")
    assert 0 < ctx["remaining_ms"] <= 3000


def test_prebuilt_executable(client: Client, public_dir: Path) -> None:
    """A binary built elsewhere (as for Lambda's go1.x) is taken as it is."""
    src = public_dir / "src"
    shutil.copytree(FIXTURES / "go" / "echo", src)
    (src / "go.mod").write_text(f"module prebuilt\n\ngo 1.21\n\nrequire fnhost v0.0.0\n\nreplace fnhost => {ROOT / 'runtimes' / 'go'}\n")
    code = public_dir / "code"
    code.mkdir()
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOPROXY": "off", "CGO_ENABLED": "0", "GOTOOLCHAIN": "local"}
    subprocess.run([GO, "build", "-o", str(code / "bootstrap"), "."], cwd=src, env=env, check=True, timeout=300)
    name = unique("go-prebuilt")
    client.create_function(name, runtime="go", handler="bootstrap", code=str(code))
    assert payload(client.invoke(name, b'{"prebuilt": true}')) == {"prebuilt": True}


def test_missing_executable_fails_the_deploy(client: Client, public_dir: Path) -> None:
    with pytest.raises(errors.BuildFailed) as info:
        client.create_function(unique("go-missing"), runtime="go", handler="nosuch", code=str(public_dir))
    assert "nosuch" in info.value.message
