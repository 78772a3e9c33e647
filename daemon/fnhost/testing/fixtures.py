"""Where a fixture case lives: the one reading of ``tests/fixtures/<runtime>/handlers.toml``.

Used by the tests and by the benchmark suite, which deploys the same ``echo`` cases. The fixtures
are part of a checkout, not of an installed wheel.
"""

from __future__ import annotations

import os
import shutil
import tomllib
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[3]  # daemon/fnhost/testing/fixtures.py → the checkout
SOURCE = CHECKOUT / "tests" / "fixtures"


def fixture_case(fixtures: Path, runtime: str, case: str) -> tuple[str, Path]:
    """(handler, code directory) of one case under ``fixtures`` (``tests/fixtures`` or a copy of it).

    Raises KeyError when the runtime's ``handlers.toml`` has no such case (top level or ``[extra]``),
    and OSError when the runtime has no ``handlers.toml``. See tests/fixtures/README.md.
    """
    data = tomllib.loads((fixtures / runtime / "handlers.toml").read_text())
    entry = data[case] if isinstance(data.get(case), (str, dict)) and case not in ("extra", "expect") \
        else data.get("extra", {}).get(case)
    if entry is None:
        raise KeyError(f"{runtime} has no fixture case {case!r}")
    if isinstance(entry, dict):
        return entry["handler"], fixtures / runtime / entry.get("code", ".")
    return entry, fixtures / runtime


def readable_copy(dest: Path, source: Path = SOURCE) -> Path:
    """The fixtures copied to ``dest`` (which must not exist), readable by every user; returns ``dest``.

    A root daemon runs each function as its own unprivileged user, and a checkout may sit in a
    directory those users cannot enter (``mktemp -d`` makes 0700; /root is 0700). Raises
    FileNotFoundError when ``source`` is missing (fnhost installed from a wheel, not a checkout).
    """
    if not source.is_dir():
        raise FileNotFoundError(f"no fixture functions at {source}: run from a checkout of fnhost")
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__"))
    for dirpath, _dirs, files in os.walk(dest):
        os.chmod(dirpath, 0o755)
        for name in files:
            path = os.path.join(dirpath, name)
            # Executables stay executable (a provided function's bootstrap).
            os.chmod(path, 0o755 if os.stat(path).st_mode & 0o100 else 0o644)
    return dest
