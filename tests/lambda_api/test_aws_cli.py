"""The AWS CLI (awscli from PyPI) against fnhost, changed only by --endpoint-url."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import unique, zipped

from .conftest import APP, ROLE


def _aws(url: str, tmp: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "AKIDEXAMPLEFNHOST01", "AWS_SECRET_ACCESS_KEY": "unused",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "none"), "AWS_PAGER": "", "AWS_MAX_ATTEMPTS": "1"}
    proc = subprocess.run([shutil.which("aws") or "aws", "lambda", *args, "--endpoint-url", url, "--output", "json"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert (proc.returncode == 0) == ok, proc.stderr
    return proc


def _major_version() -> int:
    proc = subprocess.run([shutil.which("aws") or "aws", "--version"], capture_output=True, text=True, timeout=60)
    return int((proc.stdout or proc.stderr).split("/", 1)[1].split(".", 1)[0])


def test_the_aws_cli_deploys_invokes_publishes_and_deletes(daemon, tmp_path: Path) -> None:
    url = daemon.http_url
    name = unique("cli")
    code = tmp_path / "fn.zip"
    code.write_bytes(zipped({"app.py": APP}))
    created = json.loads(_aws(url, tmp_path, "create-function", "--function-name", name, "--runtime", "python3.12",
                              "--role", ROLE, "--handler", "app.handler", "--zip-file", f"fileb://{code}").stdout)
    assert created["FunctionName"] == name and created["Runtime"] == "python3.12"
    out = tmp_path / "out.json"
    # Version 2 reads --payload as base64 unless told otherwise; version 1 (PyPI's) always raw.
    raw_payload = ["--cli-binary-format", "raw-in-base64-out"] if _major_version() >= 2 else []
    meta = json.loads(_aws(url, tmp_path, "invoke", "--function-name", name, *raw_payload,
                           "--payload", '{"hello": "cli"}', "--log-type", "Tail", str(out)).stdout)
    assert meta["StatusCode"] == 200 and meta["ExecutedVersion"] == "$LATEST" and meta["LogResult"]
    assert json.loads(out.read_text())["echo"] == {"hello": "cli"}
    got = json.loads(_aws(url, tmp_path, "get-function", "--function-name", name).stdout)
    assert got["Configuration"]["CodeSha256"] == created["CodeSha256"]
    listed = json.loads(_aws(url, tmp_path, "list-functions").stdout)
    assert name in [f["FunctionName"] for f in listed["Functions"]]
    version = json.loads(_aws(url, tmp_path, "publish-version", "--function-name", name).stdout)
    assert version["Version"] == "1"
    _aws(url, tmp_path, "delete-function", "--function-name", name)
    missing = _aws(url, tmp_path, "get-function", "--function-name", name, ok=False)
    assert "ResourceNotFoundException" in missing.stderr and f"Function not found: {name}" in missing.stderr
