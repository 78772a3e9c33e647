"""Warm invoke latency, one request at a time: fnhost per runtime against both floors.

Runs are interleaved — each repetition measures the gRPC floor, every worker hop and every
runtime through fnhost back to back — so a burst of outside load lands on all of them alike
instead of skewing whichever happened to run during it. Derived figures (fnhost's own cost) are
computed per repetition as well as from the pooled percentiles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .floors import WorkerHop
from .load import ClientPool
from .stats import latency_summary
from .targets import Aim


@dataclass(slots=True)
class SeqPlan:
    reps: int
    calls: dict[str, int]  # per payload label: calls per run
    warmup: int
    hop_calls: dict[str, int]


@dataclass
class SeqRuns:
    """Raw latencies (ns) per series and payload, one list per repetition."""

    runs: dict[tuple[str, str], list[list[int]]] = field(default_factory=dict)

    def add(self, series: str, payload: str, latencies: list[int]) -> None:
        self.runs.setdefault((series, payload), []).append(latencies)

    def summary(self, series: str, payload: str) -> dict[str, object]:
        return latency_summary(self.runs.get((series, payload), []))


def run_sequential(
    pool: ClientPool,
    plan: SeqPlan,
    payloads: dict[str, bytes],
    floor: Callable[[bytes], Aim],
    fnhost: dict[str, Callable[[bytes], Aim]],
    hops: dict[str, WorkerHop],
    note: Callable[[str], None],
    deadline_ok: Callable[[], bool],
) -> SeqRuns:
    """Measure every series for every payload, ``plan.reps`` times, interleaved."""
    out = SeqRuns()
    failed: set[str] = set()
    for rep in range(plan.reps):
        if rep and not deadline_ok():
            note(f"sequential: stopped after {rep} repetitions (time budget)")
            break
        for label, payload in payloads.items():
            count = plan.calls[label]
            aim = floor(payload)
            lat, sample = pool.sequential(aim.target, count, plan.warmup)
            aim.check(sample)
            out.add("grpc_floor", label, lat)
            for runtime, hop in hops.items():
                if f"hop:{runtime}" in failed:
                    continue
                try:
                    lat, _ = hop.roundtrips(payload, plan.hop_calls[label], plan.warmup)
                    out.add(f"hop:{runtime}", label, lat)
                except Exception as exc:  # one runtime's shim failing must not end the run
                    failed.add(f"hop:{runtime}")
                    note(f"worker-hop floor {runtime}: {exc}")
            for runtime, make in fnhost.items():
                if f"fnhost:{runtime}" in failed:
                    continue
                aim = make(payload)
                try:
                    lat, sample = pool.sequential(aim.target, count, plan.warmup)
                    aim.check(sample)
                    out.add(f"fnhost:{runtime}", label, lat)
                except Exception as exc:
                    failed.add(f"fnhost:{runtime}")
                    note(f"sequential {runtime} {label}: {exc}")
    return out
