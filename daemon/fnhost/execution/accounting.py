"""One function's books: what its invocations did, counted, timed, billed and logged in one place.

``Pool.invoke`` hands every finished invocation here, a success or a failure, and gets back the
``Outcome`` its caller sees; the REPORT line, the counters, the duration histograms and the
billing meter are written by the same two methods, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import FunctionError, OutOfMemory, SandboxTimeout
from ..observability.billing import Meter
from ..observability.logs import ReportLog
from ..observability.metrics import DURATION_BUCKETS, INIT_BUCKETS, Durations
from ..observability.report import Report
from .invocation import LATEST, Outcome

TAIL_BYTES = 4096  # what LogType=Tail returns of an invocation's log, as Lambda does


@dataclass(slots=True)
class Counters:
    invocations: int = 0  # every call that reached the pool, throttled ones included
    errors: int = 0  # function errors and platform failures
    throttles: int = 0
    cold_starts: int = 0
    timeouts: int = 0
    out_of_memory: int = 0

    def outcomes(self) -> dict[str, int]:
        """Invocations by outcome, as ``fnhost_invocations_total`` labels them."""
        return {
            "success": self.invocations - self.errors - self.throttles,
            "function_error": self.errors - self.timeouts - self.out_of_memory,
            "timeout": self.timeouts,
            "out_of_memory": self.out_of_memory,
            "throttled": self.throttles,
        }


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    """One pool at one instant: what stats, metrics, the systemd status and readiness read."""

    function: str
    workers: dict[str, int]  # live workers by state name
    counters: Counters
    queued: int  # calls waiting for a worker now
    warming: bool  # min_warm not reached yet (and not failing), or a worker is starting
    durations: tuple[list[tuple[str, float]], float] = field(default=([], 0.0))
    inits: tuple[list[tuple[str, float]], float] = field(default=([], 0.0))
    pids: tuple[int, ...] = ()


class Accounts:
    """Counters, histograms, the billing meter and the REPORT line of one function."""

    __slots__ = ("function", "counters", "durations", "inits", "meter", "_report_log")

    def __init__(self, function: str, report_log: ReportLog) -> None:
        self.function = function
        self.counters = Counters()
        self.durations = Durations(DURATION_BUCKETS)
        self.inits = Durations(INIT_BUCKETS)
        self.meter = Meter()  # usage for the cost report, flushed by the supervisor
        self._report_log = report_log

    def succeeded(self, report: Report, body: bytes, handled: bool, log: bytes, tail: bool) -> Outcome:
        """The worker answered (RESULT, or ERROR when ``handled`` is False: the handler raised)."""
        self.durations.observe(report.duration_ms / 1000)
        if report.init_duration_ms is not None:
            self.inits.observe(report.init_duration_ms / 1000)
        function_error = ""
        if not handled:
            function_error = "Unhandled"
            self.counters.errors += 1
        self.meter.add(report.billed_duration_ms, report.memory_size_mb)
        self._report_log.emit(self.function, report)
        return Outcome(200, body, function_error, report.request_id, report,
                       tail_log(report.request_id, log, report) if tail else "")

    def failed(self, report: Report, error: FunctionError, log: bytes, tail: bool) -> Outcome:
        """The platform failed the invocation (timeout, OOM, crash, init failure, oversize reply)."""
        counters = self.counters
        counters.errors += 1
        if isinstance(error, SandboxTimeout):
            counters.timeouts += 1
        elif isinstance(error, OutOfMemory):
            counters.out_of_memory += 1
        self.meter.add(report.billed_duration_ms, report.memory_size_mb)
        self._report_log.emit(self.function, report, error)
        log_result = ""
        if tail:
            log_result = tail_log(report.request_id, log + f"{error.code}: {error.message}\n".encode(), report)
        return Outcome(200, error.to_json(), "Unhandled", report.request_id, report, log_result)


def tail_log(request_id: str, log: bytes, report: Report) -> str:
    """What LogType=Tail returns: the last 4 KB of START, the function's lines, END and REPORT."""
    text = (
        f"START RequestId: {request_id} Version: {LATEST}\n".encode()
        + log
        + f"END RequestId: {request_id}\n{report.line()}\n".encode()
    )
    return text[-TAIL_BYTES:].decode(errors="ignore")
