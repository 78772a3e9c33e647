"""Function URL translations (api/url_events, api/url_cors) and their configuration rules (control/function_urls)."""

from __future__ import annotations

import base64
import json
import sqlite3

import pytest
from fnhost.api import url_cors, url_events
from fnhost.control.function_urls import UrlConfigs, validate_cors
from fnhost.errors import InvalidParameter, ResourceConflict, ResourceNotFound


def _request(**kw: object) -> url_events.UrlRequest:
    args = {"method": "GET", "raw_path": "/a", "query": "x=1&x=2&y=", "body": b"", "source_ip": "127.0.0.1",
            "headers": [("Host", "h"), ("X-Rep", "1"), ("x-rep", "2"), ("Cookie", "a=1; b=2"), ("User-Agent", "t")]}
    return url_events.UrlRequest(**{**args, **kw})  # type: ignore[arg-type]


CTX = url_events.Context("u" * 32, "d.example", "000000000000", "rid", 1_700_000_000_000)


def test_event_v2_shape() -> None:
    e = url_events.event_v2(_request(), CTX)
    assert e["headers"]["x-rep"] == "1,2" and "cookie" not in e["headers"] and e["cookies"] == ["a=1", "b=2"]
    assert e["queryStringParameters"] == {"x": "1,2", "y": ""} and e["rawQueryString"] == "x=1&x=2&y="
    assert e["requestContext"]["http"] == {"method": "GET", "path": "/a", "protocol": "HTTP/1.1",
                                           "sourceIp": "127.0.0.1", "userAgent": "t"}
    assert e["requestContext"]["time"] == "14/Nov/2023:22:13:20 +0000" and "body" not in e
    binary = url_events.event_v2(_request(body=b"\xff\x00", headers=[("content-type", "image/png")]), CTX)
    assert binary["isBase64Encoded"] and base64.b64decode(binary["body"]) == b"\xff\x00"
    text = url_events.event_v2(_request(body=b'{"a": 1}', headers=[("content-type", "application/json")]), CTX)
    assert text["body"] == '{"a": 1}' and text["isBase64Encoded"] is False


def test_event_v1_shape() -> None:
    e = url_events.event_v1(_request(raw_path="/users/7"), CTX)
    assert e["multiValueHeaders"]["X-Rep"] == ["1"] and e["headers"]["x-rep"] == "2"
    assert e["multiValueQueryStringParameters"] == {"x": ["1", "2"], "y": [""]}
    assert e["queryStringParameters"] == {"x": "2", "y": ""} and e["pathParameters"] == {"proxy": "users/7"}
    assert e["httpMethod"] == "GET" and e["path"] == "/users/7" and e["body"] is None


@pytest.mark.parametrize("result, status, body, ctype", [
    ({"statusCode": 204}, 204, b"", None),
    ({"plain": 1}, 200, b'{"plain": 1}', b"application/json"),
    ("hello", 200, b"hello", b"application/json"),
    ({"statusCode": 200, "body": base64.b64encode(b"\x00\x01").decode(), "isBase64Encoded": True,
      "headers": {"content-type": "application/octet-stream"}}, 200, b"\x00\x01", b"application/octet-stream"),
])
def test_response_rules(result: object, status: int, body: bytes, ctype: bytes | None) -> None:
    r = url_events.response(json.dumps(result).encode(), "rid", "2.0")
    headers = dict(r.headers)
    assert (r.status, r.body, headers.get(b"content-type")) == (status, body, ctype)


def test_response_cookies_multivalue_and_bad_results() -> None:
    r = url_events.response(json.dumps({"statusCode": 200, "cookies": ["a=1", "b=2"],
                                        "multiValueHeaders": {"x": ["1", "2"]}}).encode(), "rid", "1.0")
    assert [v for k, v in r.headers if k == b"set-cookie"] == [b"a=1", b"b=2"]
    assert [v for k, v in r.headers if k == b"x"] == [b"1", b"2"]
    for bad in ({"statusCode": "nope"}, {"statusCode": 200, "headers": {"x": "a\r\nb"}},
                {"statusCode": 200, "body": "!!", "isBase64Encoded": True}):
        with pytest.raises(url_events.BadResult):
            url_events.response(json.dumps(bad).encode(), "rid", "2.0")


def test_cors() -> None:
    cors = {"AllowOrigins": ["https://a.example"], "AllowMethods": ["GET"], "AllowCredentials": True}
    pre = url_cors.preflight(cors, {"origin": "https://a.example", "access-control-request-method": "get"}, "r")
    assert (b"access-control-allow-origin", b"https://a.example") in pre.headers
    denied = url_cors.preflight(cors, {"origin": "https://b.example", "access-control-request-method": "GET"}, "r")
    assert not any(k.startswith(b"access-control") for k, _ in denied.headers)
    with pytest.raises(InvalidParameter):
        validate_cors({"MaxAge": 90000})
    with pytest.raises(InvalidParameter):
        validate_cors({"AllowOrigin": ["*"]})


def test_store_persists_and_forgets() -> None:
    db = sqlite3.connect(":memory:", isolation_level=None)
    store = UrlConfigs(db)
    made = store.create("f", "", auth_type="NONE", cors={"AllowOrigins": ["*"]})
    store.create("f", "live", auth_type="AWS_IAM", payload_format="1.0")
    with pytest.raises(ResourceConflict):
        store.create("f", "", auth_type="NONE")
    with pytest.raises(InvalidParameter):
        store.create("g", "", auth_type="SOMETIMES")
    again = UrlConfigs(db)  # a restart reads the table back
    assert again.by_id(made.url_id) == made and [c.qualifier for c in again.list("f")] == ["", "live"]
    again.forget("f", "live")
    assert again.find("f", "live") is None and again.find("f") is not None
    again.forget("f")
    with pytest.raises(ResourceNotFound):
        again.get("f")
    assert UrlConfigs(db).list("f") == []


def test_none_urls_only_on_loopback_unless_insecure() -> None:
    from fnhost.api.url_server import UrlFront
    from fnhost.control.config import Settings
    from fnhost.control.function_urls import UrlConfig
    from fnhost.api.exposure import listener_refusal
    from fnhost.errors import AccessDenied

    config = UrlConfig("f", "", "u" * 32, auth_type="NONE")
    exposed = Settings(url_listen="0.0.0.0:9002", http_listen="none")
    with pytest.raises(AccessDenied):
        UrlFront(None, exposed, None)._authorize(config, "GET", "/f/", "", {}, b"")
    assert UrlFront(None, Settings(url_listen="127.0.0.1:9002"), None)._authorize(
        config, "GET", "/f/", "", {}, b"") is None
    assert UrlFront(None, Settings(url_listen="0.0.0.0:9002", insecure=True), None)._authorize(
        config, "GET", "/f/", "", {}, b"") is None
    assert "function URLs" in (listener_refusal(exposed) or "")
    assert listener_refusal(Settings(url_listen="0.0.0.0:9002", http_listen="none",
                                     http_credentials_file="keys")) is None
