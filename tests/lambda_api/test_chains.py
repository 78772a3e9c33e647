"""Functions that call functions, with the AWS SDKs packaged into their code as a user would.

A real daemon with its Lambda API on a loopback port; boto3 installed with ``pip install --target``
into a Python function's zip, ``@aws-sdk/client-lambda`` with ``npm install --prefix`` into a Node
function's; neither function names an endpoint, a region or a key: the worker's environment
carries them, as Lambda's does. The SDKs are fetched once per test run (PyPI and npm).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from fnhost.execution import isolation

from tests.conftest import Daemon, short_tempdir, unique

pytestmark = pytest.mark.slow

QUEUE_TIMEOUT_S = 5.0  # a call that waited in the queue would take at least this long
ROLE = "arn:aws:iam::000000000000:role/fnhost"  # Lambda requires one; fnhost ignores it

# The caller: no endpoint, region or credentials in the code (retries off, to see each answer).
PY_CALLER = '''\
import json
import os
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

client = boto3.client("lambda", config=Config(retries={"total_max_attempts": 1}, read_timeout=30))


def handler(event, context):
    op = event["op"]
    if op == "call":
        resp = client.invoke(FunctionName=event["target"], Payload=json.dumps(event["payload"]))
        return {"status": resp["StatusCode"], "version": resp.get("ExecutedVersion"),
                "result": json.loads(resp["Payload"].read()), "sdk": boto3.__file__,
                "task_root": os.environ["LAMBDA_TASK_ROOT"]}
    if op == "self":  # this worker is the function's only one: a call to itself cannot get a worker
        started = time.monotonic()
        try:
            client.invoke(FunctionName=context.function_name, Payload=json.dumps({"op": "noop"}))
            outcome = "ran"
        except ClientError as exc:
            outcome = exc.response["Error"]["Code"]
        return {"outcome": outcome, "seconds": time.monotonic() - started}
    if op == "noop":
        return {"ok": True}
    if op == "manage":  # what the function's own key may do
        out = {"env": {k: v for k, v in os.environ.items() if k.startswith("AWS_")}}
        try:
            with open(event["secret_path"], "rb"):
                out["secret"] = "readable"
        except OSError as exc:
            out["secret"] = type(exc).__name__
        attempts = {
            "invoke": lambda: client.invoke(FunctionName=event["target"], Payload=b"{}"),
            "create": lambda: client.create_function(
                FunctionName="made-by-a-function", Runtime="python3.12", Role="%(role)s",
                Handler="app.handler", Code={"ZipFile": b"PK"}),
            "delete": lambda: client.delete_function(FunctionName=event["target"]),
            "list": lambda: client.list_functions(),
        }
        for name, attempt in attempts.items():
            try:
                attempt()
                out[name] = "allowed"
            except ClientError as exc:
                out[name] = exc.response["Error"]["Code"]
        return out
    raise ValueError(op)
''' % {"role": ROLE}

NODE_CALLER = '''\
const { LambdaClient, InvokeCommand } = require("@aws-sdk/client-lambda");

const client = new LambdaClient({});

exports.handler = async (event) => {
  const out = await client.send(new InvokeCommand({
    FunctionName: event.target,
    Payload: Buffer.from(JSON.stringify(event.payload)),
  }));
  return {
    status: out.StatusCode,
    version: out.ExecutedVersion,
    result: JSON.parse(Buffer.from(out.Payload).toString()),
    sdk: require.resolve("@aws-sdk/client-lambda"),
    taskRoot: process.env.LAMBDA_TASK_ROOT,
  };
};
'''

ECHO = '''\
def handler(event, context):
    return {"echo": event, "by": context.function_name}
'''


def _zip(root: Path | None, files: dict[str, str]) -> bytes:
    """A deployment package: the tree under ``root`` (an SDK install) plus ``files``."""
    buf = io.BytesIO()
    # Level 1: the boto3 tree is ~40 MB; the best ratio would cost seconds on every run.
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        if root is not None:
            for path in sorted(root.rglob("*")):
                if path.is_file():
                    z.write(path, path.relative_to(root))
        for name, text in files.items():
            z.writestr(name, text)
    return buf.getvalue()


def _install(argv: list[str]) -> None:
    """Run a package manager; its chatter (pip's notes on the host's own packages) only on failure."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


@pytest.fixture(scope="session")
def sdk_dir() -> Iterator[Path]:
    path = short_tempdir(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def python_caller_zip(sdk_dir: Path) -> bytes:
    """The Python caller with boto3 beside it, as ``pip install --target`` lays it out (once per run)."""
    target = sdk_dir / "python"
    _install([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
              "--target", str(target), "boto3"])
    return _zip(target, {"app.py": PY_CALLER})


@pytest.fixture(scope="session")
def node_caller_zip(sdk_dir: Path) -> bytes:
    """The Node caller with @aws-sdk/client-lambda in its node_modules (``npm install``, once per run)."""
    target = sdk_dir / "node"
    _install(["npm", "install", "--prefix", str(target), "--no-audit", "--no-fund", "--silent",
              "@aws-sdk/client-lambda"])
    return _zip(target, {"index.js": NODE_CALLER})


def lambda_client(daemon: Daemon, key: tuple[str, str] = ("unused", "unused")):  # noqa: ANN201
    """boto3 from outside, as an operator's script: only the endpoint is fnhost's."""
    return boto3.client("lambda", endpoint_url=daemon.http_url, region_name="us-east-1",
                        aws_access_key_id=key[0], aws_secret_access_key=key[1],
                        config=Config(retries={"total_max_attempts": 1}, read_timeout=90))


def create(client, name: str, runtime: str, handler: str, code: bytes, **extra: object) -> None:  # noqa: ANN001
    client.create_function(FunctionName=name, Runtime=runtime, Role=ROLE, Handler=handler,
                           Code={"ZipFile": code}, Timeout=60, MemorySize=256, **extra)


def invoke(client, name: str, event: dict) -> dict:  # noqa: ANN001
    resp = client.invoke(FunctionName=name, Payload=json.dumps(event).encode())
    body = json.loads(resp["Payload"].read())
    assert "FunctionError" not in resp, body
    return body


def _daemon(config: str) -> Iterator[Daemon]:
    state = short_tempdir()
    d = Daemon(state / "state", config=config)
    d.start()
    try:
        yield d
    finally:
        code = d.stop()
        shutil.rmtree(state, ignore_errors=True)
    assert code == 0, d.log_tail()
    assert d.leftovers == [], "workers outlived their daemon"


@pytest.fixture(scope="module")
def open_daemon() -> Iterator[Daemon]:
    """The Lambda API on a loopback port without access keys: any caller is let in."""
    yield from _daemon(f"[daemon]\nqueue_timeout_s = {QUEUE_TIMEOUT_S}\n")


OPERATOR_KEY = ("AKIAOPERATOR00000001", "operator-secret-not-for-functions")


# Where the host allows it, the keyed daemon's workers get namespaces of their own: bubblewrap
# leaves them the host's network, so the endpoint is reachable, and hides the state directory.
NAMESPACES = os.geteuid() == 0 and isolation.probe(True) is None


def key_section(name: str, key: tuple[str, str]) -> str:
    return f"[{name}]\naws_access_key_id = {key[0]}\naws_secret_access_key = {key[1]}\n"


@pytest.fixture(scope="module")
def keys_path() -> Iterator[Path]:
    """The operator's access keys file (AWS shared-credentials format, 0600)."""
    path = short_tempdir(0o700) / "keys"
    path.write_text(key_section("ops", OPERATOR_KEY))
    path.chmod(0o600)
    yield path
    shutil.rmtree(path.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def keyed_daemon(keys_path: Path) -> Iterator[Daemon]:
    """The Lambda API with the operator's access keys: every request must be signed."""
    yield from _daemon(f'[daemon]\nqueue_timeout_s = {QUEUE_TIMEOUT_S}\nhttp_credentials_file = "{keys_path}"\n'
                       f"worker_namespaces = {str(NAMESPACES).lower()}\n")


def test_a_python_function_calls_another_with_packaged_boto3(open_daemon: Daemon,
                                                              python_caller_zip: bytes) -> None:
    client = lambda_client(open_daemon)
    caller, callee = unique("py-caller"), unique("echo")
    create(client, callee, "python3.12", "app.handler", _zip(None, {"app.py": ECHO}))
    create(client, caller, "python3.12", "app.handler", python_caller_zip)
    out = invoke(client, caller, {"op": "call", "target": callee, "payload": {"n": 1}})
    assert out["status"] == 200 and out["version"] == "$LATEST"
    assert out["result"] == {"echo": {"n": 1}, "by": callee}
    assert out["sdk"].startswith(out["task_root"] + "/boto3/")  # the packaged boto3, not the host's


def test_a_node_function_calls_another_with_packaged_js_sdk(open_daemon: Daemon, node_caller_zip: bytes) -> None:
    client = lambda_client(open_daemon)
    caller, callee = unique("node-caller"), unique("echo")
    create(client, callee, "python3.12", "app.handler", _zip(None, {"app.py": ECHO}))
    create(client, caller, "nodejs20.x", "index.handler", node_caller_zip)
    out = invoke(client, caller, {"target": callee, "payload": {"from": "node"}})
    assert out["status"] == 200 and out["version"] == "$LATEST"
    assert out["result"] == {"echo": {"from": "node"}, "by": callee}
    assert out["sdk"].startswith(out["taskRoot"] + "/node_modules/@aws-sdk/client-lambda/")


def test_a_function_calling_itself_at_its_limit_is_throttled_at_once(open_daemon: Daemon,
                                                                      python_caller_zip: bytes) -> None:
    client = lambda_client(open_daemon)
    name = unique("self-caller")
    create(client, name, "python3.12", "app.handler", python_caller_zip)
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    started = time.monotonic()
    out = invoke(client, name, {"op": "self"})
    # Throttled, not queued: a queued call would have waited QUEUE_TIMEOUT_S for the worker it holds.
    assert out["outcome"] == "TooManyRequestsException", out
    assert out["seconds"] < 1.0, out
    assert time.monotonic() - started < QUEUE_TIMEOUT_S
    # The daemon, and the function, still serve.
    assert invoke(client, name, {"op": "noop"}) == {"ok": True}
    open_daemon.check_alive()


def test_a_functions_key_may_invoke_and_nothing_else(keyed_daemon: Daemon, python_caller_zip: bytes) -> None:
    operator = lambda_client(keyed_daemon, OPERATOR_KEY)
    caller, callee = unique("manager"), unique("echo")
    create(operator, callee, "python3.12", "app.handler", _zip(None, {"app.py": ECHO}))
    create(operator, caller, "python3.12", "app.handler", python_caller_zip)
    secret_path = keyed_daemon.state_dir / "function-keys.secret"
    assert secret_path.stat().st_size == 32
    out = invoke(operator, caller, {"op": "manage", "target": callee, "secret_path": str(secret_path)})
    assert out["invoke"] == "allowed"
    if os.geteuid() == 0:  # as one user, functions can read the daemon's files (the README says so)
        assert out["secret"] in ("PermissionError", "FileNotFoundError"), out
    assert out["create"] == out["delete"] == out["list"] == "AccessDeniedException", out
    env = out["env"]
    assert env["AWS_ACCESS_KEY_ID"].startswith("FNH") and env["AWS_SESSION_TOKEN"]
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["AWS_ENDPOINT_URL_LAMBDA"] == keyed_daemon.http_url.rstrip("/")
    assert OPERATOR_KEY[0] not in json.dumps(env) and OPERATOR_KEY[1] not in json.dumps(env)
    # The operator still manages everything, the callee is still there, and a made-up key is refused.
    assert operator.get_function(FunctionName=callee)["Configuration"]["FunctionName"] == callee
    with pytest.raises(ClientError) as refused:
        lambda_client(keyed_daemon, ("AKIANOBODY0000000000", "guess")).list_functions()
    assert refused.value.response["Error"]["Code"] == "UnrecognizedClientException"
    # The function's key works from outside the function too, with the same limits.
    stolen = lambda_client(keyed_daemon, (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]))
    assert invoke(stolen, callee, {"x": 1}) == {"echo": {"x": 1}, "by": callee}
    with pytest.raises(ClientError) as denied:
        stolen.delete_function(FunctionName=callee)
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    operator.delete_function(FunctionName=caller)
    operator.delete_function(FunctionName=callee)


def _reload(daemon: Daemon) -> None:
    """SIGHUP, and wait until the daemon says it reloaded."""
    before = sum(e.get("event") == "reloaded" for e in daemon.log_events())
    daemon.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    deadline = time.monotonic() + 30
    while sum(e.get("event") == "reloaded" for e in daemon.log_events()) == before:
        assert time.monotonic() < deadline, daemon.log_tail()
        time.sleep(0.05)


def test_sighup_rereads_the_access_keys_and_keeps_them_when_broken(keyed_daemon: Daemon, keys_path: Path) -> None:
    second = ("AKIASECONDOPERATOR01", "second-secret")
    with pytest.raises(ClientError) as unknown:
        lambda_client(keyed_daemon, second).list_functions()
    assert unknown.value.response["Error"]["Code"] == "UnrecognizedClientException"
    keys_path.write_text(key_section("ops", OPERATOR_KEY) + key_section("second", second))
    _reload(keyed_daemon)
    assert isinstance(lambda_client(keyed_daemon, second).list_functions()["Functions"], list)
    keys_path.write_text("[broken]\naws_access_key_id = AKIABROKEN0000000001\n")  # no secret
    _reload(keyed_daemon)
    assert "aws_secret_access_key" in keyed_daemon.log()  # the log says what is wrong
    for key in (OPERATOR_KEY, second):  # and the keys in force stay in force
        assert isinstance(lambda_client(keyed_daemon, key).list_functions()["Functions"], list)
