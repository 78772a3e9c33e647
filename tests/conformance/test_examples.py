"""Every runtime ships a hello example, and `fnhost serve --examples` can run it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from fnhost.client import Client
from tests.conformance.conftest import REGISTRY
from tests.conftest import unique


def test_example(client: Client, runtime: str, public_dir: Path) -> None:
    rt = REGISTRY.get(runtime)
    assert rt.example_handler, f"runtimes/{runtime}/runtime.toml has no [example]"
    code = public_dir / "example"
    shutil.copytree(rt.directory / "example", code)
    name = unique(f"hello-{runtime}")
    client.create_function(name, runtime=runtime, handler=rt.example_handler, code=str(code))
    result = client.invoke(name, b'{"name": "Ada"}')
    assert result.function_error == "", result.payload
    body = json.loads(result.payload)
    assert "Ada" in json.dumps(body)


def test_required_runtimes_are_all_here() -> None:
    """A runtime CI requires cannot pass by being absent from the tree."""
    from tests.conformance.conftest import RUNTIMES, required_runtimes

    missing = required_runtimes() - set(RUNTIMES)
    assert not missing, f"FNHOST_REQUIRE_RUNTIMES names runtimes without runtime.toml or fixtures: {missing}"
