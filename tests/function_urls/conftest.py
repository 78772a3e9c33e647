"""A daemon serving function URLs (with access keys, so AWS_IAM URLs can be signed), boto3 on its
Lambda API, and handlers: Powertools (installed once into /tmp with pip --target), Node, plain Python."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from tests.conftest import Daemon, short_tempdir, unique, zipped
from tests.lambda_api.test_chains import _install, _zip

KEY, SECRET = "AKIDFNHOSTURLTESTS01", "url-tests-secret-key"
ROLE = "arn:aws:iam::000000000000:role/fnhost-tests"
POWERTOOLS_CACHE = Path("/tmp/fnhost-powertools-cache/python")  # reused across runs: PyPI once

POWERTOOLS_HTTP = '''\
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

app = APIGatewayHttpResolver()

@app.get("/hello/<name>")
def hello(name):
    return {"hello": name, "q": app.current_event.query_string_parameters,
            "path": app.current_event.path, "v": app.current_event.get("version")}

@app.post("/items")
def create_item():
    body = app.current_event.json_body
    return {"created": body, "n": len(body.get("tags", []))}, 201

def handler(event, context):
    return app.resolve(event, context)
'''

POWERTOOLS_REST = '''\
from aws_lambda_powertools.event_handler import APIGatewayRestResolver

app = APIGatewayRestResolver()

@app.get("/users/<uid>")
def user(uid):
    ev = app.current_event
    return {"user": uid, "multi": ev.multi_value_query_string_parameters, "method": ev.http_method,
            "version": ev.get("version")}

def handler(event, context):
    return app.resolve(event, context)
'''

NODE = '''\
exports.handler = async (event) => ({
  statusCode: 201,
  headers: {"content-type": "image/png", "x-path": event.rawPath},
  cookies: ["a=1; Path=/", "b=2; HttpOnly"],
  body: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x00, 0xff, 0x10]).toString("base64"),
  isBase64Encoded: true,
});
'''

PLAIN = '''\
import json, time

def handler(event, context):
    q = event.get("queryStringParameters") or {}
    mode = q.get("mode", "object")
    if mode == "fail":
        raise RuntimeError("boom")
    if mode == "sleep":
        time.sleep(float(q.get("s", "3")))
    if mode == "string":
        return "just text"
    if mode == "event":
        return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(event)}
    return {"plain": True, "list": [1, 2]}
'''


@pytest.fixture(scope="session")
def powertools_dir() -> Path:
    """aws-lambda-powertools laid out by ``pip install --target``, once (cached in /tmp)."""
    if not (POWERTOOLS_CACHE / "aws_lambda_powertools").is_dir():
        shutil.rmtree(POWERTOOLS_CACHE, ignore_errors=True)
        _install([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                  "--target", str(POWERTOOLS_CACHE), "aws-lambda-powertools"])
    return POWERTOOLS_CACHE


@pytest.fixture(scope="package")
def daemon() -> Iterator[Daemon]:
    state = short_tempdir()
    keys = state / "keys"
    keys.write_text(f"[ops]\naws_access_key_id = {KEY}\naws_secret_access_key = {SECRET}\n")
    keys.chmod(0o600)
    d = Daemon(state / "state", config=f'[daemon]\nhttp_credentials_file = "{keys}"\nqueue_timeout_s = 0.5\n')
    d.start()
    try:
        yield d
    finally:
        code = d.stop()
        shutil.rmtree(state, ignore_errors=True)
    assert code == 0, d.log_tail()
    assert d.leftovers == [], "workers outlived their daemon"


@pytest.fixture(scope="package")
def lam(daemon: Daemon):  # noqa: ANN201
    return boto3.client("lambda", endpoint_url=daemon.http_url, region_name="us-east-1",
                        aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                        config=Config(retries={"total_max_attempts": 1}, read_timeout=60))


@pytest.fixture(scope="package")
def make(lam) -> Callable[..., str]:  # noqa: ANN001
    """Create a function (and, unless ``url=None``, its URL); returns its name."""

    def create(code: bytes, *, runtime: str = "python3.12", handler: str = "app.handler",
               url: dict | None = {"AuthType": "NONE"}, **extra: object) -> str:  # noqa: B006
        name = unique("url")
        lam.create_function(FunctionName=name, Runtime=runtime, Role=ROLE, Handler=handler,
                            Code={"ZipFile": code}, **{"Timeout": 10, "MemorySize": 256, **extra})
        if url is not None:
            lam.create_function_url_config(FunctionName=name, **url)
        return name

    return create


@pytest.fixture(scope="package")
def plain(make) -> str:  # noqa: ANN001
    return make(zipped({"app.py": PLAIN}))


def powertools_zip(root: Path, app: str) -> bytes:
    return _zip(root, {"app.py": app})


def node_zip() -> bytes:
    return zipped({"index.js": NODE})


def loads(data: bytes) -> object:
    return json.loads(data)
