"""CORS for function URLs, as Lambda applies a URL's ``Cors`` configuration: fnhost answers the
preflight itself (the function never sees it) and adds the headers to the function's responses.
"""

from __future__ import annotations

from typing import Any

from .lambda_wire import Response


def _allowed_origin(cors: dict[str, Any], origin: str) -> str | None:
    """The Access-Control-Allow-Origin to send for ``origin``, or None when it is not allowed."""
    origins = cors.get("AllowOrigins") or []
    if "*" in origins:
        # With credentials a wildcard is not allowed by browsers: echo the origin instead.
        return origin if cors.get("AllowCredentials") else "*"
    lowered = origin.lower()
    return origin if any(o.lower() == lowered for o in origins) else None


def is_preflight(method: str, headers: dict[str, str]) -> bool:
    return method == "OPTIONS" and "origin" in headers and "access-control-request-method" in headers


def preflight(cors: dict[str, Any], headers: dict[str, str], request_id: str) -> Response:
    """The answer to an OPTIONS preflight: 200, with the CORS headers when the origin is allowed."""
    out: list[tuple[bytes, bytes]] = [(b"x-amzn-requestid", request_id.encode()), (b"vary", b"Origin")]
    origin = _allowed_origin(cors, headers["origin"])
    method = headers["access-control-request-method"].upper()
    methods = [m.upper() for m in cors.get("AllowMethods") or []]
    if origin is None or not ("*" in methods or method in methods):
        return Response(200, b"", out)
    out.append((b"access-control-allow-origin", origin.encode()))
    out.append((b"access-control-allow-methods", ",".join(methods).encode()))
    allow_headers = cors.get("AllowHeaders") or []
    if allow_headers:
        out.append((b"access-control-allow-headers", ",".join(allow_headers).lower().encode()))
    if cors.get("AllowCredentials"):
        out.append((b"access-control-allow-credentials", b"true"))
    if cors.get("MaxAge"):
        out.append((b"access-control-max-age", str(cors["MaxAge"]).encode()))
    return Response(200, b"", out)


def decorate(cors: dict[str, Any], headers: dict[str, str], response: Response) -> None:
    """Add the CORS headers to a function's response for an allowed Origin; the configuration's
    replace any the function set (Lambda's rule)."""
    origin = headers.get("origin")
    if not origin:
        return
    allowed = _allowed_origin(cors, origin)
    if allowed is None:
        return
    response.headers = [(k, v) for k, v in response.headers if not k.lower().startswith(b"access-control-")]
    response.headers.append((b"access-control-allow-origin", allowed.encode()))
    response.headers.append((b"vary", b"Origin"))
    expose = cors.get("ExposeHeaders") or []
    if expose:
        response.headers.append((b"access-control-expose-headers", ",".join(expose).encode()))
    if cors.get("AllowCredentials"):
        response.headers.append((b"access-control-allow-credentials", b"true"))
