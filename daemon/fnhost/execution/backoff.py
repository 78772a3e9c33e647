"""How long a function's pool waits before starting again a worker that failed to start."""

from __future__ import annotations

import time

from ..errors import FunctionError, InitError, WorkerProtocolError

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0
EXIT_RETRIES = 2


class InitBackoff:
    """Consecutive init failures: until ``until``, callers get ``error`` without a new spawn."""

    __slots__ = ("failures", "until", "error")

    def __init__(self) -> None:
        self.failures = 0
        self.until = 0.0
        self.error: FunctionError | None = None

    def record(self, error: FunctionError) -> None:
        self.failures += 1
        self.error = error
        # A handler that cannot load (InitError) or a runtime that breaks the protocol fails the
        # same way every time: back off at once. A process that died while starting (killed from
        # outside, a crash) is tried again at once, EXIT_RETRIES times in a row, first.
        deterministic = isinstance(error, (InitError, WorkerProtocolError))
        backing_off = self.failures - (0 if deterministic else EXIT_RETRIES)
        if backing_off > 0:
            self.until = time.monotonic() + min(BACKOFF_FIRST_S * 2 ** (backing_off - 1), BACKOFF_MAX_S)

    def active(self) -> FunctionError | None:
        """A fresh copy of the error to raise while backing off, else None."""
        if self.error is not None and time.monotonic() < self.until:
            return self.error.again()
        return None
