from pathlib import Path

import pytest

from fnhost.control.config import FunctionConfig, load_config_file, settings_from, validate_config
from fnhost.errors import ConfigError
from fnhost.errors import InvalidParameter


def cfg(**kw: object) -> FunctionConfig:
    base: dict[str, object] = dict(name="f", runtime="python", handler="app.h")
    base.update(kw)
    return FunctionConfig(**base)  # type: ignore[arg-type]


def test_defaults_are_lambdas() -> None:
    c = cfg()
    assert (c.memory_mb, c.timeout_s, c.min_warm, c.max_concurrency) == (128, 3, 0, 0)
    assert validate_config(c, max_concurrency_cap=64) is c


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(min_warm=5, max_concurrency=2), "min_warm 5 is above the function's concurrency limit of 2"),
        (dict(idle_ttl_s=0), "idle_ttl_s must be at least 1"),
        (dict(environment={"A": "x\0y"}), "NUL"),
        (dict(handler="h" * 200), "longer than"),
    ],
)
def test_invalid_configs(changes: dict, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        validate_config(cfg(**changes), max_concurrency_cap=64)


def test_config_file_resolves_code_relative_to_itself(tmp_path: Path) -> None:
    (tmp_path / "hello").mkdir()
    path = tmp_path / "fnhost.toml"
    path.write_text('[daemon]\nqueue_timeout_s = 2\n[functions.hi]\nruntime="python"\nhandler="a.b"\ncode="hello"\n')
    parsed = load_config_file(path)
    assert parsed.daemon == {"queue_timeout_s": 2.0}
    (config, code), = parsed.functions
    assert config.name == "hi" and code == tmp_path / "hello"
    settings = settings_from(parsed.daemon, state_dir=tmp_path)
    assert settings.queue_timeout_s == 2.0 and settings.socket_path == tmp_path / "fnhost.sock"


def test_bad_function_name_in_config(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[functions."bad name"]\nruntime="python"\nhandler="a.b"\ncode="."\n')
    with pytest.raises(ConfigError, match=r"functions\.bad name: function name"):
        load_config_file(path)


def test_unknown_memory_backend(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="memory_backend"):
        settings_from({"memory_backend": "magic"})


@pytest.mark.parametrize(("key", "value", "says"), [
    ("queue", "redis://localhost", "daemon.queue: use"),
    ("event_source_nats", "http://localhost:4222", "daemon.event_source_nats: use nats://"),
    ("async_retry_base_s", -1, "daemon.async_retry_base_s"),
])
def test_asynchronous_settings_are_checked(key: str, value: object, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        settings_from({key: value})
    assert settings_from({"queue": "nats://127.0.0.1:4222"}).queue == "nats://127.0.0.1:4222"
