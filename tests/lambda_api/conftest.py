"""Lambda's HTTP API against a real daemon, driven by boto3 and the AWS CLI (clients we did not write)."""

from __future__ import annotations

from collections.abc import Callable

import boto3
import pytest
from botocore.config import Config

from tests.conftest import Daemon, unique, zipped

ROLE = "arn:aws:iam::000000000000:role/fnhost-tests"  # botocore requires one; fnhost ignores it

# The handler most tests call: echoes, fails, prints, shows its context, sleeps.
APP = '''
import json, socket, time

def handler(event, context):
    print("log line from", context.function_name)
    if event.get("fail"):
        raise ValueError("asked to fail")
    if event.get("ping"):  # a sign, outside, that the call is running (its log comes at its end;
        socket.create_connection(("127.0.0.1", event["ping"]), timeout=10).close()  # its /tmp is its own)
    if event.get("sleep"):
        time.sleep(event["sleep"])
    cc = context.client_context
    return {"echo": event, "version": context.function_version,
            "arn": context.invoked_function_arn,
            "custom": getattr(cc, "custom", None) if cc else None}
'''


def lambda_client(url: str, *, key: str = "AKIDEXAMPLEFNHOST01", secret: str = "unused-secret",
                  verify: str | None = None, **config: object) -> object:
    """boto3's Lambda client at ``url``: no retries, so each error is seen as sent."""
    return boto3.client("lambda", endpoint_url=url, region_name="us-east-1", aws_access_key_id=key,
                        aws_secret_access_key=secret, verify=verify,
                        config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=30,
                                      **config))


@pytest.fixture
def lam(daemon: Daemon) -> object:
    """boto3's Lambda client on the shared daemon (tests/conftest.py), which serves the HTTP API."""
    return lambda_client(daemon.http_url)


@pytest.fixture
def make_function(lam: object) -> Callable[..., str]:
    """Create a Python function from ``APP`` (or ``files``); returns its unique name."""

    def make(prefix: str = "fn", files: dict[str, str] | None = None, **members: object) -> str:
        name = unique(prefix)
        args = {"Runtime": "python3.12", "Handler": "app.handler", "Role": ROLE, **members}
        lam.create_function(FunctionName=name, Code={"ZipFile": zipped(files or {"app.py": APP})}, **args)
        return name

    return make
