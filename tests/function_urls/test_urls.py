"""Function URLs end to end: a real daemon, real HTTP clients (curl, urllib3, raw sockets), real
handlers (Powertools' resolvers, Node, plain Python), configured with boto3."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

import pytest
import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.conftest import Daemon, zipped

from .conftest import KEY, NODE, POWERTOOLS_HTTP, POWERTOOLS_REST, SECRET, powertools_zip

pytestmark = pytest.mark.slow
http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(total=30))


def signed(method: str, url: str, body: bytes = b"", secret: str = SECRET,
           headers: dict[str, str] | None = None) -> dict[str, str]:
    """SigV4 headers (service lambda) for a request, made by botocore's signer."""
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    SigV4Auth(Credentials(KEY, secret), "lambda", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def get(daemon: Daemon, path: str, **kw: object) -> urllib3.BaseHTTPResponse:
    return http.request(kw.pop("method", "GET"), daemon.url_url + path, **kw)  # type: ignore[arg-type]


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--max-time", "30", *args], capture_output=True, text=True, check=True)


def test_powertools_http_resolver(daemon: Daemon, make, powertools_dir) -> None:  # noqa: ANN001
    name = make(powertools_zip(powertools_dir, POWERTOOLS_HTTP))
    resp = get(daemon, f"/{name}/hello/world?x=1&x=2&y=z")
    assert resp.status == 200, resp.data
    assert resp.json() == {"hello": "world", "q": {"x": "1,2", "y": "z"}, "path": "/hello/world", "v": "2.0"}
    done = curl("-i", "-X", "POST", "-H", "content-type: application/json", "--data", '{"tags": ["a", "b"]}',
                f"{daemon.url_url}/{name}/items")
    head, _, body = done.stdout.partition("\n\n")  # text mode: CRLF reads as LF
    assert head.startswith("HTTP/1.1 201"), done.stdout
    assert json.loads(body) == {"created": {"tags": ["a", "b"]}, "n": 2}
    missing = get(daemon, f"/{name}/nowhere")
    assert missing.status == 404  # the resolver's own 404, through the function
    assert "x-amzn-errortype" not in missing.headers and missing.json()["message"] == "Not found"


def test_host_routing_with_curl(daemon: Daemon, lam, make, powertools_dir) -> None:  # noqa: ANN001
    name = make(powertools_zip(powertools_dir, POWERTOOLS_HTTP))
    url = lam.get_function_url_config(FunctionName=name)["FunctionUrl"]
    host = urlsplit(url)
    assert host.hostname.endswith(".lambda-url.us-east-1.localhost") and host.port == urlsplit(daemon.url_url).port
    # curl resolves *.localhost to loopback itself: the FunctionUrl works as it is.
    done = curl(f"{url}hello/curl")
    assert json.loads(done.stdout)["hello"] == "curl"
    via_host = get(daemon, "/hello/h", headers={"Host": f"{host.hostname.split('.')[0]}.lambda-url.anything"})
    assert via_host.json()["hello"] == "h"


def fnhost(daemon: Daemon, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "fnhost", "--address", daemon.address, *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_rest_resolver_on_1_0_url_made_by_the_cli(daemon: Daemon, make, powertools_dir) -> None:  # noqa: ANN001
    name = make(powertools_zip(powertools_dir, POWERTOOLS_REST), url=None)
    shown = json.loads(fnhost(daemon, "url", "create", name, "--payload-format", "1.0", "--cors-origins", "*"))
    assert shown["payload_format"] == "1.0" and shown["auth_type"] == "NONE"
    assert shown["cors"]["allow_origins"] == ["*"] and shown["function_url"].startswith(f"http://{shown['url_id']}.")
    out = get(daemon, f"/{name}/users/42?tag=a&tag=b")
    assert out.status == 200, out.data
    assert out.json() == {"user": "42", "multi": {"tag": ["a", "b"]}, "method": "GET", "version": "1.0"}
    assert get(daemon, f"/{name}/nope").status == 404  # the resolver's
    assert json.loads(fnhost(daemon, "url", "get", name))["url_id"] == shown["url_id"]
    listed = fnhost(daemon, "url", "list", name)
    assert "$LATEST" in listed and shown["function_url"] in listed
    updated = json.loads(fnhost(daemon, "url", "update", name, "--auth-type", "AWS_IAM", "--cors-origins", ""))
    assert updated["auth_type"] == "AWS_IAM" and "cors" not in updated or not updated["cors"]
    assert get(daemon, f"/{name}/users/1").status == 403
    fnhost(daemon, "url", "delete", name)
    assert get(daemon, f"/{name}/users/1").status == 404


def test_1_0_result_headers_keep_alive_chunked_and_continue(daemon: Daemon, make) -> None:  # noqa: ANN001
    app = ("import json\ndef handler(e, c):\n    return {'statusCode': 202, 'headers': {'x-one': 'a'},"
           " 'multiValueHeaders': {'x-many': ['1', '2'], 'x-one': ['ignored']},"
           " 'body': json.dumps({'len': len(e['body'] or ''), 'mv': e['multiValueHeaders'].get('x-rep')})}\n")
    name = make(zipped({"app.py": app}), url=None)
    fnhost(daemon, "url", "create", name, "--payload-format", "1.0")
    resp = get(daemon, f"/{name}/", headers={"X-Rep": "1"})
    assert resp.status == 202 and resp.headers["x-one"] == "a"
    assert resp.headers.getlist("x-many") == ["1", "2"] and resp.json()["mv"] == ["1"]
    # curl: a chunked body with Expect: 100-continue, twice on one kept-alive connection.
    url = f"{daemon.url_url}/{name}/"
    done = subprocess.run(
        ["curl", "-sS", "-v", "--max-time", "30", "-H", "Transfer-Encoding: chunked", "-H", "Expect: 100-continue",
         "-H", "Content-Type: text/plain", "--data-binary", "x" * 5000, url, "--next",
         "-H", "Content-Type: text/plain", "--data-binary", "yy", url], capture_output=True, text=True, check=True)
    assert done.stdout.count('"len": 5000') == 1 and done.stdout.count('"len": 2') == 1, done.stdout
    assert "100 Continue" in done.stderr and "Re-using existing connection" in done.stderr, done.stderr


def test_node_cookies_and_binary_body(daemon: Daemon, make) -> None:  # noqa: ANN001
    name = make(zipped({"index.js": NODE}), runtime="nodejs20.x", handler="index.handler")
    resp = get(daemon, f"/{name}/img")
    assert resp.status == 201
    assert resp.data == bytes([0x89, 0x50, 0x4E, 0x47, 0x00, 0xFF, 0x10])
    assert resp.headers["content-type"] == "image/png" and resp.headers["x-path"] == "/img"
    assert resp.headers.getlist("set-cookie") == ["a=1; Path=/", "b=2; HttpOnly"]


def test_plain_object_string_and_event(daemon: Daemon, plain: str) -> None:
    obj = get(daemon, f"/{plain}/")
    assert obj.status == 200 and obj.headers["content-type"] == "application/json"
    assert obj.json() == {"plain": True, "list": [1, 2]}
    text = get(daemon, f"/{plain}/?mode=string")
    assert text.status == 200 and text.data == b"just text"
    binary = bytes(range(256))
    ev = get(daemon, f"/{plain}/a/b?mode=event&k=1", method="POST", body=binary,
             headers={"content-type": "application/octet-stream", "cookie": "c1=v1; c2=v2", "x-rep": "1"})
    event = ev.json()
    assert event["rawPath"] == "/a/b" and event["rawQueryString"] == "mode=event&k=1"
    assert event["isBase64Encoded"] is True and event["cookies"] == ["c1=v1", "c2=v2"]
    assert event["requestContext"]["http"]["method"] == "POST" and event["headers"]["x-rep"] == "1"
    assert "cookie" not in event["headers"] and event["requestContext"]["accountId"] == "anonymous"
    import base64
    assert base64.b64decode(event["body"]) == binary


def test_error_statuses(daemon: Daemon, lam, make, plain: str) -> None:  # noqa: ANN001
    failed = get(daemon, f"/{plain}/?mode=fail")
    assert failed.status == 502 and failed.headers["x-amzn-errortype"] == "RuntimeError"
    assert failed.headers["x-amzn-requestid"]
    slow = make(zipped({"app.py": "import time\ndef handler(e, c):\n    time.sleep(5)\n"}), Timeout=1)
    timed_out = get(daemon, f"/{slow}/")
    assert timed_out.status == 502 and timed_out.headers["x-amzn-requestid"]
    assert get(daemon, "/no-such-function/x").status == 404
    bare = make(zipped({"app.py": "def handler(e, c):\n    return 1\n"}), url=None)
    assert get(daemon, f"/{bare}/").status == 404  # a function without a URL
    too_big = get(daemon, f"/{plain}/", method="POST", body=b"x" * (6 * 1024 * 1024 + 1))
    assert too_big.status == 413
    # Throttling: one worker, busy; the next request waits queue_timeout_s (0.5 s) and gets 429.
    one = make(zipped({"app.py": "import time\ndef handler(e, c):\n    time.sleep(2)\n    return 1\n"}))
    lam.put_function_concurrency(FunctionName=one, ReservedConcurrentExecutions=1)
    import threading
    first = threading.Thread(target=get, args=(daemon, f"/{one}/"))
    first.start()
    time.sleep(0.7)
    throttled = get(daemon, f"/{one}/")
    first.join()
    assert throttled.status == 429 and throttled.headers["retry-after"] == "1"


def test_cors(daemon: Daemon, lam, plain: str) -> None:  # noqa: ANN001
    lam.update_function_url_config(FunctionName=plain, Cors={
        "AllowOrigins": ["https://app.example"], "AllowMethods": ["GET", "POST"], "AllowHeaders": ["X-Token"],
        "ExposeHeaders": ["x-amzn-requestid"], "MaxAge": 600})
    try:
        pre = curl("-i", "-X", "OPTIONS", "-H", "Origin: https://app.example",
                   "-H", "Access-Control-Request-Method: POST", f"{daemon.url_url}/{plain}/")
        head = pre.stdout.lower()
        assert head.startswith("http/1.1 200")
        assert "access-control-allow-origin: https://app.example" in head
        assert "access-control-allow-methods: get,post" in head and "access-control-max-age: 600" in head
        other = curl("-i", "-X", "OPTIONS", "-H", "Origin: https://evil.example",
                     "-H", "Access-Control-Request-Method: POST", f"{daemon.url_url}/{plain}/")
        assert "access-control-allow-origin" not in other.stdout.lower()
        resp = get(daemon, f"/{plain}/", headers={"Origin": "https://app.example"})
        assert resp.status == 200 and resp.headers["access-control-allow-origin"] == "https://app.example"
        assert resp.headers["access-control-expose-headers"] == "x-amzn-requestid"
    finally:
        lam.update_function_url_config(FunctionName=plain, Cors={})


def test_aws_iam(daemon: Daemon, make) -> None:  # noqa: ANN001
    name = make(zipped({"app.py": "def handler(e, c):\n    return e['requestContext'].get('authorizer')\n"}),
                url={"AuthType": "AWS_IAM"})
    url = f"{daemon.url_url}/{name}/p?a=1"
    assert get(daemon, f"/{name}/p?a=1").status == 403  # unsigned
    good = http.request("POST", url, body=b"hi", headers=signed("POST", url, b"hi"))
    assert good.status == 200, good.data
    assert good.json()["iam"]["accessKey"] == KEY
    bad = http.request("POST", url, body=b"hi", headers=signed("POST", url, b"hi", secret="wrong"))
    assert bad.status == 403 and bad.headers["x-amzn-errortype"] == "InvalidSignatureException"


def test_stalled_body_holds_no_worker(daemon: Daemon, lam, make) -> None:  # noqa: ANN001
    name = make(zipped({"app.py": "def handler(e, c):\n    return {'n': len(e.get('body') or '')}\n"}))
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    assert get(daemon, f"/{name}/").status == 200  # its one worker is warm
    port = urlsplit(daemon.url_url).port
    stalled = socket.create_connection(("127.0.0.1", port))
    started = time.monotonic()
    try:
        stalled.sendall(f"POST /{name}/ HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                        "Content-Length: 1000\r\n\r\n".encode() + b"y" * 500)
        time.sleep(0.5)
        # The stalled request holds no worker: the function's only one answers another client.
        assert get(daemon, f"/{name}/", method="POST", body=b"abc",
                   headers={"content-type": "text/plain"}).json() == {"n": 3}
        with daemon.client() as c:
            stats = {f.function_name: f for f in c.stats().functions}
        assert stats[name].workers.get("busy", 0) == 0 and stats[name].queued == 0
        stalled.settimeout(10)
        answer = stalled.recv(4096)
    finally:
        stalled.close()
    assert answer.startswith(b"HTTP/1.1 408") and b"connection: close" in answer.lower(), answer
    assert time.monotonic() - started < 8


def test_config_operations(daemon: Daemon, lam, make) -> None:  # noqa: ANN001
    name = make(zipped({"app.py": "def handler(e, c):\n    return {'arn': c.invoked_function_arn}\n"}), url=None)
    created = lam.create_function_url_config(FunctionName=name, AuthType="NONE", Cors={"AllowOrigins": ["*"]})
    assert created["AuthType"] == "NONE" and created["Cors"] == {"AllowOrigins": ["*"]}
    with pytest.raises(ClientError) as again:
        lam.create_function_url_config(FunctionName=name, AuthType="NONE")
    assert again.value.response["Error"]["Code"] == "ResourceConflictException"
    with pytest.raises(ClientError) as bad:
        lam.create_function_url_config(FunctionName=name, Qualifier="live", AuthType="NONE")
    assert bad.value.response["Error"]["Code"] == "ResourceNotFoundException"
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    aliased = lam.create_function_url_config(FunctionName=name, Qualifier="live", AuthType="NONE")
    assert aliased["FunctionArn"].endswith(f":{name}:live") and aliased["FunctionUrl"] != created["FunctionUrl"]
    assert get(daemon, f"/{name}:live/").json()["arn"].endswith(f"{name}:live")
    listed = lam.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"]
    assert [c["FunctionArn"].rsplit(":", 1)[-1] for c in listed] == [name, "live"]
    # Payload format is fnhost's own member: botocore's shapes lack it, so a signed request sets it.
    endpoint = f"{daemon.http_url}/2021-10-31/functions/{name}/url"
    body = json.dumps({"PayloadFormatVersion": "1.0"}).encode()
    raw = http.request("PUT", endpoint, body=body, headers=signed("PUT", endpoint, body))
    assert raw.status == 200 and raw.json()["PayloadFormatVersion"] == "1.0", raw.data
    assert get(daemon, f"/{name}/").status == 200
    updated = lam.update_function_url_config(FunctionName=name, AuthType="AWS_IAM")
    assert updated["AuthType"] == "AWS_IAM" and lam.get_function_url_config(FunctionName=name)["AuthType"] == "AWS_IAM"
    lam.delete_alias(FunctionName=name, Name="live")  # its URL goes with it
    assert get(daemon, f"/{name}:live/").status == 404
    lam.delete_function_url_config(FunctionName=name)
    with pytest.raises(ClientError) as gone:
        lam.get_function_url_config(FunctionName=name)
    assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"
    lam.create_function_url_config(FunctionName=name, AuthType="NONE")
    lam.delete_function(FunctionName=name)
    assert get(daemon, f"/{name}/").status == 404


def test_headers_too_large(daemon: Daemon, plain: str) -> None:
    resp = get(daemon, f"/{plain}/", headers={"x-big": "v" * 11000})
    assert resp.status == 431


def test_urls_survive_a_restart() -> None:
    from tests.conftest import short_tempdir

    state = short_tempdir()
    d = Daemon(state / "state")
    try:
        d.start()
        with d.client() as c:
            c.create_function("kept", runtime="python", handler="app.handler",
                              code=zipped({"app.py": "def handler(e, c):\n    return {'kept': True}\n"}))
            made = c.create_url("kept", payload_format="1.0")
        assert get(d, "/kept/").json() == {"kept": True}
        assert d.stop() == 0
        d.start()
        with d.client() as c:
            after = c.get_url("kept")
        assert (after.url_id, after.payload_format, after.creation_time) == \
            (made.url_id, "1.0", made.creation_time)
        assert get(d, "/x", headers={"Host": f"{made.url_id}.lambda-url.example"}).json() == {"kept": True}
    finally:
        d.stop()
        import shutil
        shutil.rmtree(state, ignore_errors=True)
