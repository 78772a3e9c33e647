"""Where a fixture case lives: the one reading of tests/fixtures/<runtime>/handlers.toml.

Used by the tests and by the benchmark suite, which deploys the same ``echo`` cases.
"""

from __future__ import annotations

import tomllib
from pathlib import Path


def fixture_case(fixtures: Path, runtime: str, case: str) -> tuple[str, Path]:
    """(handler, code directory) of one case; see tests/fixtures/README.md."""
    data = tomllib.loads((fixtures / runtime / "handlers.toml").read_text())
    entry = data[case] if isinstance(data.get(case), (str, dict)) and case not in ("extra", "expect") \
        else data.get("extra", {}).get(case)
    if entry is None:
        raise KeyError(f"{runtime} has no fixture case {case!r}")
    if isinstance(entry, dict):
        return entry["handler"], fixtures / runtime / entry.get("code", ".")
    return entry, fixtures / runtime
