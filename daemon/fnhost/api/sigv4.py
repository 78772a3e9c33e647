"""AWS Signature Version 4 on Lambda's HTTP API: who signed a request, checked with botocore's
own signer (the canonical request and string to sign are botocore's; only the comparison is ours).

With operator keys configured every request must be signed by a known key, within 15 minutes of
the daemon's clock (AWS's bound); without them a request is accepted as it is (the listener is
then loopback or a unix socket only: ``exposure.listener_refusal``), and a key id it merely
presents still says whether a function is calling.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials as SigningKey

from ..errors import InvalidSignature, MissingAuthenticationToken, UnrecognizedClient

SERVICE = "lambda"
MAX_SKEW_S = 15 * 60  # AWS refuses a signature more than 15 minutes from its clock
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/"
    r"(?P<service>[^/,\s]+)/aws4_request\s*,\s*SignedHeaders=(?P<signed>[a-z0-9;_.-]+)\s*,"
    r"\s*Signature=(?P<signature>[0-9a-f]{64})\s*$"
)
_KEY_RE = re.compile(r"Credential=([^/,\s]+)/")


class KeyStore(Protocol):
    """What SigV4 needs of ``control.credentials.Credentials``."""

    enabled: bool

    def lookup(self, access_key_id: str) -> tuple[str, Any] | None: ...


class _Signer(SigV4Auth):
    """botocore's SigV4 over exactly the headers the client signed.

    botocore picks every header but a few (user-agent, expect …) when it signs; other SDKs sign
    other sets, and SignedHeaders says which: the canonical request must use just those.
    """

    def __init__(self, key: SigningKey, region: str, signed: list[str]) -> None:
        super().__init__(key, SERVICE, region)
        self._signed = signed

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        headers = HTTPHeaders()
        for name in self._signed:
            headers[name] = request.headers.get(name, "")
        return headers


class Verifier:
    def __init__(self, keys: KeyStore | None, region: str, clock: Callable[[], float] = time.time) -> None:
        self.keys = keys
        self.region = region
        self.clock = clock

    @property
    def enabled(self) -> bool:
        return self.keys is not None and self.keys.enabled

    def caller(self, method: str, raw_path: str, query: str, headers: Mapping[str, str], body: bytes) -> Any:
        """The Principal who signed the request (None: unsigned, with authentication off).

        Raises MissingAuthenticationToken, UnrecognizedClient and InvalidSignature (AWS's wording)
        when keys are configured and the request is not signed by one, correctly and recently.
        """
        authorization = headers.get("authorization", "")
        if not self.enabled:
            presented = _KEY_RE.search(authorization)
            found = self.keys.lookup(presented[1]) if presented and self.keys is not None else None
            return found[1] if found else None
        if not authorization:
            raise MissingAuthenticationToken("Missing Authentication Token")
        auth = _AUTH_RE.match(authorization)
        if auth is None:
            raise InvalidSignature(
                "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters "
                "(AWS4-HMAC-SHA256, hex signature)")
        found = self.keys.lookup(auth["key"]) if self.keys is not None else None
        if found is None:
            raise UnrecognizedClient("The security token included in the request is invalid.")
        secret, principal = found
        amz_date = headers.get("x-amz-date", "")
        self._check_scope(auth, amz_date)
        signed = auth["signed"].split(";")
        if "host" not in signed:
            raise InvalidSignature("'Host' must be a 'SignedHeader' in the AWS Authorization.")
        claimed = headers.get("x-amz-content-sha256")
        if claimed is not None and claimed != hashlib.sha256(body).hexdigest():
            raise InvalidSignature("The provided 'x-amz-content-sha256' header does not match what was computed.")
        request = AWSRequest(method=method, url=f"http://{headers.get('host', '')}{raw_path}",
                             headers={name: headers.get(name, "") for name in signed}, data=body,
                             params=parse_qsl(query, keep_blank_values=True))
        request.context["timestamp"] = amz_date
        signer = _Signer(SigningKey(auth["key"], secret), auth["region"], signed)
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        if not hmac.compare_digest(expected, auth["signature"]):
            raise InvalidSignature(
                "The request signature we calculated does not match the signature you provided. Check your "
                "AWS Secret Access Key and signing method. Consult the service documentation for details.")
        return principal

    def _check_scope(self, auth: re.Match[str], amz_date: str) -> None:
        """Raises InvalidSignature for a missing or skewed X-Amz-Date or a scope not this daemon's."""
        try:
            signed_at = datetime.strptime(amz_date, _AMZ_DATE).replace(tzinfo=UTC).timestamp()
        except ValueError:
            raise InvalidSignature("Authorization header requires existence of either a 'X-Amz-Date' or "
                                   "a 'Date' header (X-Amz-Date as YYYYMMDDTHHMMSSZ).") from None
        now = self.clock()
        stamp = datetime.fromtimestamp(now, UTC).strftime(_AMZ_DATE)
        if signed_at < now - MAX_SKEW_S:
            bound = datetime.fromtimestamp(now - MAX_SKEW_S, UTC).strftime(_AMZ_DATE)
            raise InvalidSignature(f"Signature expired: {amz_date} is now earlier than {bound} ({stamp} - 15 min.)")
        if signed_at > now + MAX_SKEW_S:
            bound = datetime.fromtimestamp(now + MAX_SKEW_S, UTC).strftime(_AMZ_DATE)
            raise InvalidSignature(f"Signature not yet current: {amz_date} is still later than {bound} "
                                   f"({stamp} + 15 min.)")
        if auth["date"] != amz_date[:8]:
            raise InvalidSignature(f"Date in Credential scope does not match YYYYMMDD from ISO-8601 "
                                   f"version of date from HTTP: '{auth['date']}' != '{amz_date[:8]}'")
        if auth["region"] != self.region:
            raise InvalidSignature(f"Credential should be scoped to a valid region, not '{auth['region']}'; "
                                   f"this fnhost's region is '{self.region}'.")
        if auth["service"] != SERVICE:
            raise InvalidSignature(f"Credential should be scoped to correct service: '{SERVICE}'.")
