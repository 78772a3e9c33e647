"""What Lambda's API answers requests no SDK would send: unknown paths and methods, malformed and
mistyped bodies, bodies past Lambda's limits. Each gets Lambda's error; the daemon keeps serving."""

from __future__ import annotations

import http.client
import io
import json
import os
import zipfile
from urllib.parse import urlsplit

import pytest



def _raw(url: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
         **kwargs: object) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {}, **kwargs)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def _error(status: int, headers: dict[str, str], body: bytes) -> tuple[int, str, str]:
    """(status, Lambda's error name, message), checking the shape every error has."""
    decoded = json.loads(body)
    assert headers["content-type"] == "application/json" and len(headers["x-amzn-requestid"]) == 36
    assert decoded["Type"] in ("User", "Service")
    return status, headers["x-amzn-errortype"], decoded.get("message") or decoded.get("Message")


@pytest.mark.parametrize("method, path, status, code", [
    ("GET", "/", 404, "UnknownOperationException"),
    ("GET", "/2015-03-31/nothing-here", 404, "UnknownOperationException"),
    ("POST", "/2015-03-31/functions/x/invocations/extra", 404, "UnknownOperationException"),
    ("PATCH", "/2015-03-31/functions/some-fn", 405, "MethodNotAllowedException"),
    ("GET", "/2015-03-31/functions/some-fn/invocations", 405, "MethodNotAllowedException"),
])
def test_unknown_paths_and_methods(daemon, method: str, path: str, status: int, code: str) -> None:
    got = _error(*_raw(daemon.http_url, method, path))
    assert got[:2] == (status, code) and path in got[2]


@pytest.mark.parametrize("body, words", [
    (b"{not json", "Could not parse request body into json"),
    (b"[1, 2]", "expected an object"),
    (b'{"FunctionName": 5, "Runtime": "python3.12", "Handler": "a.b", "Code": {"ZipFile": ""}}', "'FunctionName'"),
    (b'{"Runtime": "python3.12", "Handler": "a.b", "Code": {"ZipFile": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}}',
     "'FunctionName'"),
    (b'{"FunctionName": "f", "Runtime": "python3.12", "Handler": "a.b", "Code": {"ZipFile": "***"}}', "base64"),
    (b'{"FunctionName": "f", "Runtime": "python3.12", "Handler": "a.b", "MemorySize": "big", "Code": {}}',
     "'MemorySize'"),
    (b'{"FunctionName": "f", "Runtime": "python3.12", "Handler": "a.b", "Environment": {"Variables": {"A": 1}},'
     b' "Code": {"ZipFile": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}}', "Environment.Variables"),
])
def test_malformed_and_mistyped_bodies_name_the_problem(daemon, body: bytes, words: str) -> None:
    got = _error(*_raw(daemon.http_url, "POST", "/2015-03-31/functions", body))
    assert got[:2] == (400, "InvalidParameterValueException") and words in got[2], got


def test_bad_invoke_headers(daemon, make_function) -> None:
    name = make_function("hdr")
    path = f"/2015-03-31/functions/{name}/invocations"
    for header, value, code, words in (
            ("X-Amz-Invocation-Type", "Sometimes", "InvalidParameterValueException", "invocationType"),
            ("X-Amz-Log-Type", "Everything", "InvalidParameterValueException", "logType"),
            ("X-Amz-Client-Context", "not base64!", "InvalidRequestContentException", "Base64")):
        got = _error(*_raw(daemon.http_url, "POST", path, b"{}", {header: value}))
        assert got[:2] == (400, code) and words in got[2]
    got = _error(*_raw(daemon.http_url, "POST", "/2015-03-31/functions/bad%20name!/invocations", b"{}"))
    assert got[:2] == (400, "InvalidParameterValueException") and "functionName" in got[2]


def test_bodies_past_the_limits_are_refused_before_they_are_read(daemon, lam, make_function) -> None:
    name = make_function("limits")
    path = f"/2015-03-31/functions/{name}/invocations"
    # Declared far past any limit and never sent: answered at once, and the connection closed.
    status, headers, body = _raw(daemon.http_url, "POST", path, headers={"Content-Length": "900000000"})
    assert _error(status, headers, body)[:2] == (413, "RequestTooLargeException")
    assert headers.get("connection") == "close"
    # A client that waits for "100 Continue" is answered without sending its body.
    parts = urlsplit(daemon.http_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.putrequest("POST", path)
    conn.putheader("Content-Length", str(7 * 1024 * 1024))
    conn.putheader("Expect", "100-continue")
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413 and response.getheader("x-amzn-ErrorType") == "RequestTooLargeException"
    conn.close()
    # Chunked, no Content-Length: refused once it grows past 6 MB.
    chunks = (b"z" * (1024 * 1024) for _ in range(7))
    got = _error(*_raw(daemon.http_url, "POST", path, chunks, encode_chunked=True))
    assert got[:2] == (413, "RequestTooLargeException") and "6291456" in got[2]
    # A zip past Lambda's 50 MB (incompressible, so the zip is that large too).
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("app.py", "def handler(e, c):\n    return 1\n")
        z.writestr("blob.bin", os.urandom(51 * 1024 * 1024))
    with pytest.raises(lam.exceptions.RequestTooLargeException) as caught:
        lam.update_function_code(FunctionName=name, ZipFile=buf.getvalue())
    assert "UpdateFunctionCode" in caught.value.response["Error"]["Message"]
    assert lam.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200  # still serving
