"""A function URL's translations, independent of any HTTP server: an HTTP request into Lambda's
event (payload format 2.0, or API Gateway's REST format 1.0), and the function's result back into
an HTTP response by Lambda's rules for function URLs.

Pure functions of their arguments (no I/O, no clock of their own): ``url_server`` calls them
around the one invoke path, ``Supervisor.invoke``.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from .lambda_wire import Response

JSON = b"application/json"
# Media types whose body goes to the handler as text; anything else is base64 (as Lambda does).
_TEXT_TYPES = ("text/", "application/json", "application/javascript", "application/xml",
               "application/x-www-form-urlencoded", "application/graphql", "application/yaml")
_TEXT_SUFFIXES = ("+json", "+xml", "+yaml")


@dataclass(slots=True)
class UrlRequest:
    """One HTTP request to a function URL, its body complete. ``headers`` keep order and case."""

    method: str
    raw_path: str  # the path the function sees (after /<function>[:qualifier] when routed by path)
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str
    protocol: str = "HTTP/1.1"
    joined: dict[str, str] = field(default_factory=dict)  # lower-case name → values joined by ","

    def __post_init__(self) -> None:
        if not self.joined:
            for name, value in self.headers:
                key = name.lower()
                self.joined[key] = f"{self.joined[key]},{value}" if key in self.joined else value


@dataclass(frozen=True, slots=True)
class Context:
    """What the event says about the URL and this request besides the request itself."""

    url_id: str
    domain: str  # the host the URL is reached at, e.g. "<url-id>.lambda-url.us-east-1.localhost"
    account_id: str
    request_id: str
    epoch_ms: int
    authorizer: dict[str, Any] | None = None  # AWS_IAM: who signed


def _is_text(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media.startswith(_TEXT_TYPES) or media.endswith(_TEXT_SUFFIXES)


def _body(request: UrlRequest) -> tuple[str | None, bool]:
    """The event's body and isBase64Encoded: text stays text, anything else is base64."""
    if not request.body:
        return None, False
    if _is_text(request.joined.get("content-type", "")):
        try:
            return request.body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(request.body).decode("ascii"), True


def _clock(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


def event_v2(request: UrlRequest, ctx: Context) -> dict[str, Any]:
    """Lambda's function URL event (payload format 2.0)."""
    headers = {k: v for k, v in request.joined.items() if k != "cookie"}
    body, encoded = _body(request)
    query: dict[str, str] = {}
    for key, value in parse_qsl(request.query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    http = {"method": request.method, "path": request.raw_path, "protocol": request.protocol,
            "sourceIp": request.source_ip, "userAgent": request.joined.get("user-agent", "")}
    context: dict[str, Any] = {
        "accountId": ctx.account_id if ctx.authorizer else "anonymous", "apiId": ctx.url_id,
        "domainName": ctx.domain, "domainPrefix": ctx.url_id, "http": http, "requestId": ctx.request_id,
        "routeKey": "$default", "stage": "$default", "time": _clock(ctx.epoch_ms), "timeEpoch": ctx.epoch_ms,
    }
    if ctx.authorizer:
        context["authorizer"] = ctx.authorizer
    event: dict[str, Any] = {"version": "2.0", "routeKey": "$default", "rawPath": request.raw_path,
                             "rawQueryString": request.query, "headers": headers}
    cookie = request.joined.get("cookie")
    if cookie:
        event["cookies"] = [c.strip() for c in cookie.replace(",", ";").split(";") if c.strip()]
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = context
    if body is not None:
        event["body"] = body
    event["isBase64Encoded"] = encoded
    return event


def event_v1(request: UrlRequest, ctx: Context) -> dict[str, Any]:
    """API Gateway's REST proxy event (payload format 1.0), as serverless' ``http`` events get it."""
    headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    for name, value in request.headers:
        headers[name] = value  # the last value wins, as on API Gateway
        multi_headers.setdefault(name, []).append(value)
    query: dict[str, str] = {}
    multi_query: dict[str, list[str]] = {}
    for key, value in parse_qsl(request.query, keep_blank_values=True):
        query[key] = value
        multi_query.setdefault(key, []).append(value)
    body, encoded = _body(request)
    proxy = request.raw_path.lstrip("/")
    return {
        "version": "1.0", "resource": "/{proxy+}", "path": request.raw_path, "httpMethod": request.method,
        "headers": headers, "multiValueHeaders": multi_headers,
        "queryStringParameters": query or None, "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": {"proxy": proxy} if proxy else None, "stageVariables": None,
        "requestContext": {
            "accountId": ctx.account_id, "apiId": ctx.url_id, "domainName": ctx.domain,
            "domainPrefix": ctx.url_id, "extendedRequestId": ctx.request_id, "httpMethod": request.method,
            "identity": {"sourceIp": request.source_ip, "userAgent": request.joined.get("user-agent", ""),
                         **({"accessKey": ctx.authorizer["iam"]["accessKey"]} if ctx.authorizer else {})},
            "path": request.raw_path, "protocol": request.protocol, "requestId": ctx.request_id,
            "requestTime": _clock(ctx.epoch_ms), "requestTimeEpoch": ctx.epoch_ms, "resourceId": ctx.url_id,
            "resourcePath": "/{proxy+}", "stage": "$default",
        },
        "body": body, "isBase64Encoded": encoded,
    }


# --- the result -----------------------------------------------------------------------------------


class BadResult(Exception):
    """The function answered something a URL cannot turn into a response (Lambda: 502)."""


def response(payload: bytes, request_id: str, payload_format: str) -> Response:
    """The HTTP response for a successful invocation's payload, by Lambda's rules.

    A JSON object with ``statusCode`` is taken apart; any other JSON value is the body of a 200
    (a string as its text, anything else as JSON). Raises BadResult for a malformed response object.
    """
    headers: list[tuple[bytes, bytes]] = [(b"x-amzn-requestid", request_id.encode())]
    try:
        result = json.loads(payload) if payload else None
    except ValueError:
        return Response(200, payload, [*headers, (b"content-type", JSON)])
    if isinstance(result, dict) and "statusCode" in result:
        return _taken_apart(result, headers, payload_format)
    if isinstance(result, str):
        return Response(200, result.encode(), [*headers, (b"content-type", JSON)])
    return Response(200, payload, [*headers, (b"content-type", JSON)])


def _taken_apart(result: dict[str, Any], headers: list[tuple[bytes, bytes]], payload_format: str) -> Response:
    status = result.get("statusCode")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise BadResult(f"statusCode {status!r} is not an HTTP status")
    seen: set[str] = set()
    given = result.get("headers") or {}
    if not isinstance(given, dict):
        raise BadResult("headers must be an object of names to values")
    for name, value in given.items():
        seen.add(str(name).lower())
        headers.append((str(name).encode("latin-1"), _header_value(value)))
    multi = result.get("multiValueHeaders") or {} if payload_format == "1.0" else {}
    if not isinstance(multi, dict):
        raise BadResult("multiValueHeaders must be an object of names to lists")
    for name, values in multi.items():
        if str(name).lower() in seen:
            continue  # headers wins over multiValueHeaders for the same name (API Gateway)
        seen.add(str(name).lower())
        for value in values if isinstance(values, list) else [values]:
            headers.append((str(name).encode("latin-1"), _header_value(value)))
    cookies = result.get("cookies") or []
    if not isinstance(cookies, list):
        raise BadResult("cookies must be a list of Set-Cookie values")
    for cookie in cookies:
        headers.append((b"set-cookie", _header_value(cookie)))
    body = result.get("body")
    if body is None:
        data = b""
    elif isinstance(body, str):
        data = body.encode()
        if result.get("isBase64Encoded"):
            try:
                data = base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError):
                raise BadResult("isBase64Encoded is true but body is not base64") from None
    else:
        data = json.dumps(body).encode()  # Lambda serialises a non-string body
    if "content-type" not in seen and data:
        headers.append((b"content-type", JSON))
    return Response(status, data, headers)


def _header_value(value: Any) -> bytes:
    text = value if isinstance(value, str) else json.dumps(value)
    if "\r" in text or "\n" in text:
        raise BadResult("a header value holds a line break")
    return text.encode("latin-1", "replace")
