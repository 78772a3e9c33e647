"""What a stem cell fixes as it starts (execution/stemcell.py): the key cells are kept by, computed
for each function at deploy (control/worker_specs.py) and carried in its WorkerSpec."""

from __future__ import annotations

from dataclasses import dataclass

from . import isolation


@dataclass(frozen=True, slots=True)
class CellKey:
    """What a cell fixes as it starts: cells of one key can become any worker of that key."""

    runtime: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]  # its whole start-up environment (the runtime's, and startup_env)
    memory_mb: int
    view: isolation.View | None  # the cell's own: no function's code (None: the shared view)
    own_uid: bool  # its function runs as a uid of its own (RLIMIT_NPROC applies)
    startup: tuple[str, ...] = ()  # the names of ``env`` that came from the function (for the log)

    def describe(self) -> str:
        extra = f" with {', '.join(self.startup)}" if self.startup else ""
        return f"{self.runtime} {self.memory_mb} MB{extra}"
