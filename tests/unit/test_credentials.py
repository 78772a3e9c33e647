"""Access keys: the operator's file, function keys derived from the daemon's secret, and the
environment a worker calls Lambda with."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from fnhost.control.config import RESERVED_ENV, FunctionConfig, validate_config
from fnhost.control.credentials import (
    SECRET_FILE,
    SESSION_TOKEN,
    Credentials,
    Principal,
    access_key_id_of,
    lambda_environment,
    load_secret,
    principal_of_request,
    worker_endpoint,
)
from fnhost.errors import ConfigError, InvalidParameter

KEYS = """\
[alice]
aws_access_key_id = AKIAALICE0000000001
aws_secret_access_key = alice-secret/with+chars

[ci]
aws_access_key_id = AKIACI00000000000002
aws_secret_access_key = ci-secret
"""


def keys_file(tmp_path: Path, text: str = KEYS, mode: int = 0o600) -> Path:
    path = tmp_path / "keys"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_secret_is_made_once_private_and_kept(tmp_path: Path) -> None:
    first = load_secret(tmp_path)
    path = tmp_path / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 32
    assert load_secret(tmp_path) == first  # a restart finds the same secret
    assert [p.name for p in tmp_path.iterdir()] == [SECRET_FILE]  # no temporary left behind


def test_secret_readable_by_others_or_truncated_is_refused(tmp_path: Path) -> None:
    load_secret(tmp_path)
    path = tmp_path / SECRET_FILE
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_secret(tmp_path)
    path.chmod(0o600)
    path.write_bytes(b"short")
    with pytest.raises(ConfigError, match="5 bytes"):
        load_secret(tmp_path)


def test_function_keys_are_stable_distinct_and_recognised(tmp_path: Path) -> None:
    secret = load_secret(tmp_path)
    creds = Credentials(None, secret)
    key_id, key_secret = creds.for_function("orders-api_2")
    assert key_id.startswith("FNH") and key_id.isalnum() and 16 <= len(key_id) <= 128
    assert len(key_secret) == 40
    assert Credentials(None, load_secret(tmp_path)).for_function("orders-api_2") == (key_id, key_secret)
    assert creds.lookup(key_id) == (key_secret, Principal("function", "orders-api_2"))
    assert creds.principal(key_id) == Principal("function", "orders-api_2")
    other_id, other_secret = creds.for_function("orders-api_3")
    assert other_id != key_id and other_secret != key_secret
    longest = creds.for_function("x" * 64)[0]
    assert len(longest) <= 128 and creds.function_of(longest) == "x" * 64
    assert not creds.enabled


def test_a_key_id_this_daemon_did_not_make_names_nobody(tmp_path: Path) -> None:
    creds = Credentials(None, load_secret(tmp_path))
    key_id, _ = creds.for_function("victim")
    # Another daemon's key for the same name: same layout, other secret, other tag.
    foreign, _ = Credentials(None, b"x" * 32).for_function("victim")
    assert foreign != key_id and creds.lookup(foreign) is None
    tampered = key_id[:3] + ("A" if key_id[3] != "A" else "B") + key_id[4:]
    assert creds.lookup(tampered) is None
    for bogus in ("", "FNH", "FNH" + "A" * 12 + "!!!!", "FNH" + "A" * 12 + "a", "AKIAUNKNOWN000000000"):
        assert creds.lookup(bogus) is None
    assert creds.principal(None) is None


def test_operator_keys_from_a_private_file(tmp_path: Path) -> None:
    creds = Credentials(keys_file(tmp_path), load_secret(tmp_path))
    assert creds.enabled
    assert creds.lookup("AKIAALICE0000000001") == ("alice-secret/with+chars", Principal("operator", "alice"))
    assert creds.lookup("AKIACI00000000000002") == ("ci-secret", Principal("operator", "ci"))
    assert not Principal("operator", "ci").is_function
    fn_id, fn_secret = creds.for_function("f")
    assert creds.lookup(fn_id) == (fn_secret, Principal("function", "f"))  # still, beside the operators'


@pytest.mark.parametrize(("text", "mode", "message"), [
    (KEYS, 0o640, "accessible by others"),
    (KEYS, 0o604, "accessible by others"),
    ("not ini at all", 0o600, "shared-credentials"),
    ("[a]\naws_access_key_id = AKIAALICE0000000001\n", 0o600, r"\[a\]: give both"),
    ("[a]\naws_access_key_id = short\naws_secret_access_key = s\n", 0o600, "16-128"),
    ("[a]\naws_access_key_id = FNHOSTLOOKALIKE0001\naws_secret_access_key = s\n", 0o600, "function keys"),
    (KEYS + "[dup]\naws_access_key_id = AKIACI00000000000002\naws_secret_access_key = x\n", 0o600,
     r"also in \[ci\]"),
    ("# nothing\n", 0o600, "no access keys"),
])
def test_bad_keys_files_are_refused(tmp_path: Path, text: str, mode: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Credentials(keys_file(tmp_path, text, mode), b"s" * 32)


def test_missing_keys_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        Credentials.open(tmp_path, tmp_path / "absent")


def test_reload_swaps_keys_and_keeps_them_on_error(tmp_path: Path) -> None:
    path = keys_file(tmp_path)
    creds = Credentials.open(tmp_path, path)
    path.write_text("[bob]\naws_access_key_id = AKIABOB000000000003\naws_secret_access_key = b\n")
    assert creds.reload() == 1
    assert creds.lookup("AKIAALICE0000000001") is None
    assert creds.principal("AKIABOB000000000003") == Principal("operator", "bob")
    path.write_text("[broken]\naws_access_key_id = AKIABROKEN000000004\n")
    with pytest.raises(ConfigError):
        creds.reload()
    assert creds.principal("AKIABOB000000000003") == Principal("operator", "bob")  # still in force
    assert Credentials(None, b"s" * 32).reload() == 0


def test_principal_of_a_request_from_its_sigv4_credential(tmp_path: Path) -> None:
    creds = Credentials(None, load_secret(tmp_path))
    key_id, _ = creds.for_function("caller")
    header = (f"AWS4-HMAC-SHA256 Credential={key_id}/20261207/us-east-1/lambda/aws4_request, "
              "SignedHeaders=host;x-amz-date, Signature=abc")
    assert access_key_id_of(header) == key_id
    assert principal_of_request(creds, header) == Principal("function", "caller")
    query = {"X-Amz-Credential": f"{key_id}/20261207/us-east-1/lambda/aws4_request"}
    assert principal_of_request(creds, None, query) == Principal("function", "caller")
    assert principal_of_request(creds, None) is None
    assert principal_of_request(creds, "Bearer token") is None


def test_worker_environment_has_the_functions_own_key_and_nothing_else(tmp_path: Path) -> None:
    keys = keys_file(tmp_path)
    creds = Credentials.open(tmp_path, keys)
    env = lambda_environment(creds, "fn", region="eu-west-1", endpoint="http://0.0.0.0:9001")
    assert env == {
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL_LAMBDA": "http://127.0.0.1:9001",
        "AWS_ACCESS_KEY_ID": creds.for_function("fn")[0],
        "AWS_SECRET_ACCESS_KEY": creds.for_function("fn")[1],
        "AWS_SESSION_TOKEN": SESSION_TOKEN,
    }
    secret = (tmp_path / SECRET_FILE).read_bytes()
    text = repr(env)
    assert "alice-secret" not in text and "ci-secret" not in text and secret.hex() not in text
    bare = lambda_environment(None, "fn", region="us-east-1", endpoint=None)
    assert bare == {"AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.mark.parametrize(("url", "reachable"), [
    ("http://127.0.0.1:9001", "http://127.0.0.1:9001"),
    ("http://0.0.0.0:9001", "http://127.0.0.1:9001"),
    ("http://[::]:9001", "http://[::1]:9001"),
    ("https://fnhost.internal:8443", "https://fnhost.internal:8443"),
    ("unix:/run/fnhost/lambda.sock", None),
    ("", None),
])
def test_worker_endpoint(url: str, reachable: str | None) -> None:
    assert worker_endpoint(url) == reachable


@pytest.mark.parametrize("name", ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                                  "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_LAMBDA_RUNTIME_API"])
def test_a_function_cannot_set_the_platforms_variables(name: str) -> None:
    config = FunctionConfig(name="f", runtime="python", handler="app.handler", environment={name: "mine"})
    with pytest.raises(InvalidParameter) as caught:
        validate_config(config, max_concurrency_cap=4)
    assert f"{name} is reserved" in caught.value.message
    assert all(reserved in caught.value.message for reserved in RESERVED_ENV)  # it lists them all
    assert caught.value.code == "InvalidParameterValueException"


def test_endpoint_override_stays_the_users() -> None:
    # Lambda does not reserve AWS_ENDPOINT_URL_LAMBDA: a function may point its SDK elsewhere.
    config = FunctionConfig(name="f", runtime="python", handler="app.handler",
                            environment={"AWS_ENDPOINT_URL_LAMBDA": "http://elsewhere:1"})
    assert validate_config(config, max_concurrency_cap=4) is config
    assert os.environ.get("FNHOST_NEVER_SET") is None


def test_worker_spec_puts_the_platforms_variables_beyond_the_functions_reach(tmp_path: Path) -> None:
    from fnhost.control.worker_specs import compose_worker_spec
    from fnhost.control.runtimes import RuntimeRegistry
    from fnhost.execution import protocol

    creds = Credentials(None, load_secret(tmp_path))
    platform = lambda_environment(creds, "fn", region="us-east-1", endpoint="http://127.0.0.1:9001")
    # A record stored before these names were reserved still carries them; they must not win.
    stored = {"AWS_ACCESS_KEY_ID": "AKIASTOLEN000000000", "AWS_REGION": "xx-fake-1", "MINE": "1",
              "AWS_ENDPOINT_URL_LAMBDA": "http://127.0.0.1:1"}
    spec = compose_worker_spec(
        RuntimeRegistry().get("python"), name="fn", handler="app.handler", code_dir=tmp_path,
        build_dir=tmp_path, memory_mb=128, timeout_s=3, environment=stored, identity=None,
        scratch_root=None, init_timeout_s=5, kill_grace_s=0.5, platform_env=platform)
    assert spec.env["AWS_ACCESS_KEY_ID"] == creds.for_function("fn")[0]
    assert spec.env["AWS_SECRET_ACCESS_KEY"] == creds.for_function("fn")[1]
    assert spec.env["AWS_REGION"] == spec.env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert spec.env["MINE"] == "1"
    assert spec.env["AWS_ENDPOINT_URL_LAMBDA"] == "http://127.0.0.1:1"  # the user's choice, as on Lambda
    init = protocol.decode_json(spec.init_frame[5:])  # after the length and kind
    assert init["environment"] == {"MINE": "1", "AWS_ENDPOINT_URL_LAMBDA": "http://127.0.0.1:1"}


def test_a_symlinked_keys_file_is_followed_but_a_symlinked_secret_is_not(tmp_path: Path) -> None:
    real = keys_file(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(real)
    assert Credentials(link, b"s" * 32).principal("AKIACI00000000000002") == Principal("operator", "ci")
    state = tmp_path / "state"
    state.mkdir()
    (state / SECRET_FILE).symlink_to(real)
    with pytest.raises(ConfigError, match="regular file"):
        load_secret(state)
