"""The functions the bench deploys: each runtime's no-op echo fixture, and payloads for it.

Each echo handler is named in tests/fixtures/<runtime>/handlers.toml and read by the test suite's
own reader (``fnhost.testing.fixtures``), so a runtime that passes the conformance suite is
benchmarkable without any bench-specific code. Runtimes appear as engineers finish them: one
without an echo fixture, or whose toolchain is missing here, is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import fnhost
from fnhost.control.runtimes import Runtime, RuntimeRegistry
from fnhost.errors import ApiError
from fnhost.testing.fixtures import SOURCE as FIXTURES
from fnhost.testing.fixtures import fixture_case

ROOT = Path(__file__).resolve().parents[1]

PAYLOAD_SIZES = {"100B": 100, "64KiB": 64 * 1024}

# Runtimes whose conformance fixture is no measure of the runtime's hot path, with where it is
# measured instead: the provided runtime's echo is a bash script running curl and jq per call
# (~40 ms), the cost of that script, not of the Runtime API.
MEASURED_ELSEWHERE = {
    "provided": "its fixture is a bash + curl script (~40 ms a call); python -m bench.runtime_api "
                "measures the Runtime API with an aws-lambda-go bootstrap",
}


@dataclass(frozen=True, slots=True)
class EchoFunction:
    runtime: str
    handler: str
    code_dir: Path
    compiled: bool  # the runtime has a deploy-time build step


def child_env() -> dict[str, str]:
    """The environment for every Python process the bench starts: the same fnhost as ours."""
    paths = [str(Path(fnhost.__file__).resolve().parents[1]), str(ROOT)]
    old = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths + ([old] if old else []))}


def discover(registry: RuntimeRegistry, only: list[str] | None = None, *,
             fixtures: Path = FIXTURES) -> tuple[list[EchoFunction], dict[str, str]]:
    """Echo functions for every runtime that can run here; and {runtime: why skipped}.

    ``fixtures``: where to deploy them from (the runner passes a copy its daemon's workers can read).
    """
    found: list[EchoFunction] = []
    skipped: dict[str, str] = {}
    for runtime in registry:
        name = runtime.name
        if only is not None and name not in only:
            continue
        if name in MEASURED_ELSEWHERE:
            skipped[name] = MEASURED_ELSEWHERE[name]
            continue
        if not (fixtures / name / "handlers.toml").is_file():
            skipped[name] = f"no tests/fixtures/{name}/handlers.toml yet"
            continue
        try:
            handler, code = fixture_case(fixtures, name, "echo")
        except KeyError:
            skipped[name] = f"tests/fixtures/{name}/handlers.toml has no echo case"
            continue
        try:
            compiled = _compiled(runtime)
        except ApiError as exc:
            skipped[name] = exc.message
            continue
        found.append(EchoFunction(name, handler, code.resolve(), compiled))
    if only is not None:
        for name in only:
            if name not in {f.runtime for f in found} and name not in skipped:
                known = ", ".join(sorted(runtime.name for runtime in registry))
                skipped[name] = f"no runtime named {name} (runtimes/ has {known})"
    return found, skipped


def _compiled(runtime: Runtime) -> bool:
    return runtime.builds  # select() inside: raises ToolchainMissing naming what to install


def json_payload(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes (``{"data":"xxx…"}``), which every echo returns as is."""
    overhead = len(json.dumps({"data": ""}, separators=(",", ":")))
    if size < overhead:
        raise ValueError(f"payload size {size} is below the {overhead} bytes of the JSON wrapper")
    body = json.dumps({"data": "x" * (size - overhead)}, separators=(",", ":")).encode()
    assert len(body) == size
    return body


def fresh_copy(code_dir: Path, into: Path) -> Path:
    """A copy of the code with a nonce file, so its hash (and so its build) is new: a real deploy."""
    dest = into / f"code-{uuid.uuid4().hex[:12]}"
    shutil.copytree(code_dir, dest, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.class"))
    (dest / ".bench-nonce").write_text(uuid.uuid4().hex)
    return dest
