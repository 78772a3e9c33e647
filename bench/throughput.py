"""Throughput and latency with N requests in flight (closed loop), from the multi-process client.

Besides requests per second and latency percentiles, each window records CPU time per call: the
server's (the daemon's own, its workers' separately; the floor server's) and the client
processes'. On a 2-core machine, throughput is about 2 CPU-seconds divided by their sum, so these
say where the capacity goes without a profiler.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .load import ClientPool
from .memory import RssSampler
from .stats import latency_summary, value_summary
from .targets import Aim, cpu_seconds


@dataclass(slots=True)
class LevelRuns:
    throughput: list[float] = field(default_factory=list)
    latencies: list[list[int]] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None
    server_cpu_us: list[float] = field(default_factory=list)
    worker_cpu_us: list[float] = field(default_factory=list)
    client_cpu_us: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        out: dict[str, object] = {
            "throughput": value_summary(self.throughput, "rps", 1),
            "latency": latency_summary(self.latencies, cdf=False),
            "errors": self.errors,
            "server_cpu_per_call": value_summary(self.server_cpu_us, "us", 1),
        }
        if self.worker_cpu_us:
            out["worker_cpu_per_call"] = value_summary(self.worker_cpu_us, "us", 1)
        out["client_cpu_per_call"] = value_summary(self.client_cpu_us, "us", 1)
        if self.first_error:
            out["first_error"] = self.first_error
        if self.rss:
            out["server_rss_mib"] = value_summary([r / 2**20 for r in self.rss], "mib", 1)
        return out


def one_window(pool: ClientPool, aim: Aim, level: int, window_s: float, runs: LevelRuns,
               sample_rss: bool = False) -> None:
    own0, kids0 = cpu_seconds(aim.server_pid, aim.count_workers)
    client0 = sum(cpu_seconds(pid, False)[0] for pid in pool.pids())
    sampler = RssSampler(aim.server_pid) if sample_rss else None
    if sampler:
        sampler.start()
    try:
        result = pool.window(aim.target, level, window_s)
    finally:
        if sampler:
            runs.rss.extend(sampler.stop())
    own1, kids1 = cpu_seconds(aim.server_pid, aim.count_workers)
    client1 = sum(cpu_seconds(pid, False)[0] for pid in pool.pids())
    if result.sample_response is not None:
        aim.check(result.sample_response)
    runs.throughput.append(result.throughput)
    runs.latencies.append(result.latencies_ns)
    runs.errors += result.errors
    runs.first_error = runs.first_error or result.first_error
    # CPU is read around the whole job (ramp and tail included), so divide by every call made then;
    # completed-in-window undercounts them by the ramp, which makes this slightly pessimistic.
    calls = max(result.completed, 1)
    runs.server_cpu_us.append((own1 - own0) / calls * 1e6)
    if aim.count_workers:
        runs.worker_cpu_us.append((kids1 - kids0) / calls * 1e6)
    # The client's share matters on 2 cores: it runs on the same CPUs as the server.
    runs.client_cpu_us.append((client1 - client0) / calls * 1e6)


def run_levels(
    pool: ClientPool,
    aims: dict[str, Aim],
    levels: list[int],
    reps: int,
    window_s: float,
    note: Callable[[str], None],
    deadline_ok: Callable[[], bool],
    rss_series: str | None = None,
) -> dict[str, dict[str, dict[str, object]]]:
    """{series: {level: summary}}; the series in ``aims`` alternate within every repetition."""
    out: dict[str, dict[str, dict[str, object]]] = {name: {} for name in aims}
    dead: set[str] = set()
    for level in levels:
        if not deadline_ok():
            note(f"throughput {'/'.join(aims)}: stopped before {level} in flight (time budget)")
            break
        runs = {name: LevelRuns() for name in aims}
        for name, aim in aims.items():
            if name in dead:
                continue
            errors, first = pool.warm(aim.target, level)
            if errors:
                note(f"throughput {name} @{level}: {errors} errors while warming: {first}")
        for _ in range(reps):
            for name, aim in aims.items():
                if name in dead:
                    continue
                try:
                    one_window(pool, aim, level, window_s, runs[name], sample_rss=(name == rss_series))
                except Exception as exc:
                    dead.add(name)
                    note(f"throughput {name} @{level}: {exc}")
        for name in aims:
            if runs[name].throughput:
                out[name][str(level)] = runs[name].summary()
    return out
