"""Who may call the Lambda API: the operator's access keys, and one key of its own per function.

Operator keys come from a file in the AWS shared-credentials format (the one ``~/.aws/credentials``
uses, so a client may read the very same file)::

    [alice]
    aws_access_key_id = AKIAFNHOSTEXAMPLE01
    aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY

Each section is one operator (its name is who the log says called); the file must be readable by
its owner only, as ssh insists for private keys. ``Credentials.reload`` re-reads it (SIGHUP).

A function's key is derived, never stored: ``FNH`` + a tag + the function's name in base32 for the
key id, an HMAC of the name for the secret, both keyed by a daemon secret kept in the state directory
(0600, created once). So a key is the same after a restart, names exactly one function, and the
daemon can tell whose it is without a table. A function's key may only Invoke (the front end
enforces it), and a call made with one is throttled at once at the limit rather than queued
(``Invocation.may_queue``): a chain of functions waiting on its own workers would deadlock.
"""

from __future__ import annotations

import base64
import configparser
import hashlib
import hmac
import os
import re
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from ..errors import ConfigError
from .config import NAME_RE

SECRET_FILE = "function-keys.secret"
SECRET_BYTES = 32
FUNCTION_KEY_PREFIX = "FNH"
_TAG_CHARS = 12  # 60 bits of the key id's HMAC tag: an id nobody was given is refused, not guessed at
# Lambda gives a worker a session token; fnhost's function keys are long-lived, so the token is a
# fixed placeholder that only keeps code reading AWS_SESSION_TOKEN working. The daemon ignores it.
SESSION_TOKEN = "fnhost-function-key-no-session"
# AWS's access key ids are word characters, 16 to 128 of them (botocore's model of AccessKeyId).
_KEY_ID_RE = re.compile(r"^\w{16,128}$")
_CREDENTIAL_RE = re.compile(r"Credential=([^/,\s]+)/")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who signed a request: an operator (a section of the keys file) or a function (its name)."""

    kind: Literal["operator", "function"]
    name: str

    @property
    def is_function(self) -> bool:
        return self.kind == "function"


def load_secret(state_dir: Path) -> bytes:
    """The daemon's secret for function keys: ``<state_dir>/function-keys.secret``, made once.

    Created 0600 with random bytes, fully written before it appears under its name (a crash
    never leaves a short secret behind). Raises ConfigError when the file exists but others may
    read it, it is not a regular file of the daemon's user, or it is not 32 bytes long.
    """
    path = state_dir / SECRET_FILE
    if not path.exists():
        tmp = state_dir / f".{SECRET_FILE}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, secrets.token_bytes(SECRET_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # never replaces a secret another start made meanwhile
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    _check_private(path, "the function-key secret")
    data = path.read_bytes()
    if len(data) != SECRET_BYTES:
        raise ConfigError(f"{path}: the function-key secret is {len(data)} bytes, not {SECRET_BYTES}; "
                          "remove it to make a new one (every function's key changes)")
    return data


def _check_private(path: Path, what: str, *, follow_symlinks: bool = False) -> None:
    """Refuse ``path`` unless it is a regular file of this user (or root) that nobody else may touch."""
    try:
        st = os.stat(path, follow_symlinks=follow_symlinks)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc.strerror}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path}: {what} must be a regular file")
    if st.st_uid not in (os.geteuid(), 0):
        raise ConfigError(f"{path}: {what} belongs to uid {st.st_uid}, not to the daemon's user")
    if st.st_mode & 0o077:
        raise ConfigError(f"{path}: {what} is accessible by others (mode {stat.S_IMODE(st.st_mode):04o}); "
                          f"chmod 600 {path}")


def read_access_keys(path: Path) -> dict[str, tuple[str, Principal]]:
    """The operator keys in ``path``: access key id → (secret, operator).

    Raises ConfigError naming the section and what to fix: the file is missing, readable by others,
    not in the shared-credentials format, holds no key, a section lacks a key id or secret, a key id
    is malformed or starts with fnhost's function-key prefix, or two sections share a key id.
    """
    # Followed if a symlink, as ssh does (secrets mounted by Kubernetes or systemd credentials are).
    _check_private(path, "the access keys file", follow_symlinks=True)
    parser = configparser.ConfigParser(interpolation=None, default_section="\0no-defaults")
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not an AWS shared-credentials file ([name] sections with "
                          f"aws_access_key_id and aws_secret_access_key): {exc}") from exc
    keys: dict[str, tuple[str, Principal]] = {}
    for section in parser.sections():
        key_id = parser.get(section, "aws_access_key_id", fallback="").strip()
        secret = parser.get(section, "aws_secret_access_key", fallback="").strip()
        where = f"{path}: [{section}]"
        if not key_id or not secret:
            raise ConfigError(f"{where}: give both aws_access_key_id and aws_secret_access_key")
        if not _KEY_ID_RE.match(key_id):
            raise ConfigError(f"{where}: aws_access_key_id must be 16-128 letters, digits or '_'")
        if key_id.startswith(FUNCTION_KEY_PREFIX):
            raise ConfigError(f"{where}: access key ids starting with {FUNCTION_KEY_PREFIX} are fnhost's "
                              "function keys; choose another")
        if key_id in keys:
            raise ConfigError(f"{where}: access key id {key_id} is also in [{keys[key_id][1].name}]")
        keys[key_id] = (secret, Principal("operator", section))
    if not keys:
        raise ConfigError(f"{path}: no access keys; add a [name] section with aws_access_key_id and "
                          "aws_secret_access_key, or run without an access keys file")
    return keys


class Credentials:
    """The keys the Lambda API accepts: the operator's (from ``path``) and every function's.

    ``enabled``: an access keys file is configured, so every request must be signed with a known
    key. Without one the front end accepts any request (on a loopback or unix listener only) and
    uses ``principal`` merely to learn whether a function made the call.
    """

    def __init__(self, path: Path | None, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the function-key secret must be at least 16 bytes")
        self.path = path
        self._secret = secret
        self._operators: dict[str, tuple[str, Principal]] = {}
        if path is not None:
            self._operators = read_access_keys(path)

    @classmethod
    def open(cls, state_dir: Path, path: Path | str | None) -> Credentials:
        """The daemon's credentials: its secret from ``state_dir``, operator keys from ``path`` (or none).

        Raises ConfigError as ``load_secret`` and ``read_access_keys`` do.
        """
        return cls(Path(path) if path else None, load_secret(state_dir))

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def reload(self) -> int:
        """Re-read the access keys file; returns how many keys it holds.

        Raises ConfigError (see ``read_access_keys``) and keeps the keys in force until then.
        """
        if self.path is None:
            return 0
        keys = read_access_keys(self.path)
        self._operators = keys  # one assignment: a request sees the old set or the new one
        return len(keys)

    def lookup(self, access_key_id: str) -> tuple[str, Principal] | None:
        """The secret to verify a signature made with ``access_key_id``, and whose it is; None if unknown."""
        found = self._operators.get(access_key_id)
        if found is not None:
            return found
        name = self.function_of(access_key_id)
        if name is None:
            return None
        return self._function_secret(name), Principal("function", name)

    def principal(self, access_key_id: str | None) -> Principal | None:
        """Who ``access_key_id`` names, without any signature (None: nobody known)."""
        if not access_key_id:
            return None
        found = self.lookup(access_key_id)
        return found[1] if found is not None else None

    def for_function(self, name: str) -> tuple[str, str]:
        """The access key id and secret of function ``name``'s workers (the same after a restart)."""
        encoded = base64.b32encode(name.encode()).decode().rstrip("=")
        return f"{FUNCTION_KEY_PREFIX}{self._tag(name)}{encoded}", self._function_secret(name)

    def function_of(self, access_key_id: str) -> str | None:
        """The function whose key ``access_key_id`` is, or None (not a function key this daemon made)."""
        if not access_key_id.startswith(FUNCTION_KEY_PREFIX) or len(access_key_id) > 128:
            return None
        body = access_key_id[len(FUNCTION_KEY_PREFIX):]
        tag, encoded = body[:_TAG_CHARS], body[_TAG_CHARS:]
        try:
            name = base64.b32decode(encoded + "=" * (-len(encoded) % 8)).decode("ascii")
        except (ValueError, UnicodeDecodeError):
            return None
        if not NAME_RE.match(name):
            return None
        # Constant-time: the tag is what proves this daemon made the id.
        return name if hmac.compare_digest(tag, self._tag(name)) else None

    def _tag(self, name: str) -> str:
        digest = hmac.new(self._secret, b"fnhost key id\0" + name.encode(), hashlib.sha256).digest()
        return base64.b32encode(digest).decode()[:_TAG_CHARS]

    def _function_secret(self, name: str) -> str:
        digest = hmac.new(self._secret, b"fnhost secret\0" + name.encode(), hashlib.sha256).digest()
        return base64.b64encode(digest[:30]).decode()  # 40 characters, as AWS's secret keys


def access_key_id_of(authorization: str | None, query: Mapping[str, str] | None = None) -> str | None:
    """The access key id a SigV4 request names (``Authorization`` header, else a presigned URL's
    ``X-Amz-Credential``), unverified; None when it names none."""
    if authorization:
        match = _CREDENTIAL_RE.search(authorization)
        return match.group(1) if match else None
    credential = (query or {}).get("X-Amz-Credential", "")
    return credential.partition("/")[0] or None


def principal_of_request(credentials: Credentials, authorization: str | None,
                         query: Mapping[str, str] | None = None) -> Principal | None:
    """Who a request says it comes from, unverified: what decides ``may_queue`` when auth is off.

    With auth on, use the Principal ``lookup`` returned for the verified key instead.
    """
    return credentials.principal(access_key_id_of(authorization, query))


def lambda_environment(credentials: Credentials | None, function: str, *, region: str,
                       endpoint: str | None) -> dict[str, str]:
    """What a worker of ``function`` needs to call Lambda with an AWS SDK and no code change.

    The region always; the endpoint (``AWS_ENDPOINT_URL_LAMBDA``) when the daemon serves the
    Lambda API somewhere a worker can reach over TCP; the function's own key when there are
    credentials. Never the operator's keys nor the daemon's secret.
    """
    env = {"AWS_REGION": region, "AWS_DEFAULT_REGION": region}
    endpoint = worker_endpoint(endpoint)
    if endpoint:
        env["AWS_ENDPOINT_URL_LAMBDA"] = endpoint
    if credentials is not None:
        key_id, secret = credentials.for_function(function)
        env.update(AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret, AWS_SESSION_TOKEN=SESSION_TOKEN)
    return env


def worker_endpoint(url: str | None) -> str | None:
    """Where a worker on this host reaches the listener at ``url``: a wildcard address means this
    host's loopback; a unix socket (which the SDKs cannot use) means nowhere."""
    if not url or not url.startswith(("http://", "https://")):
        return None
    parts = urlsplit(url)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(parts.hostname or "", parts.hostname)
    if host is None:
        return None
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
