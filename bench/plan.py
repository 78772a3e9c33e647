"""How much of everything a run measures: smoke (the test suite's case), quick, full.

Quick and smoke shrink counts (calls, repetitions, window lengths, scale), not the set of
measurements; only smoke narrows the runtimes, to Python, so the test suite does not depend on
every toolchain.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Plan:
    mode: str
    runtimes: list[str] | None = None  # None: every runtime that can run here
    reps: int = 5  # repetitions of every sequential and in-flight measurement
    other_reps: int = 3  # in-flight repetitions for runtimes other than Python
    seq_calls: dict[str, int] = field(default_factory=lambda: {"100B": 2000, "64KiB": 500})
    hop_calls: dict[str, int] = field(default_factory=lambda: {"100B": 5000, "64KiB": 1000})
    warmup: int = 50
    levels: list[int] = field(default_factory=lambda: [1, 4, 16, 32, 64])
    window_s: float = 2.0
    cold_reps: int = 5
    deploy_reps: int = 3
    scale_functions: int = 1000
    scale_warm: int = 200
    scale_reps: int = 3
    scale_calls: int = 1000
    ghz_s: float = 5.0
    ghz_reps: int = 2
    stream_calls: int = 2000
    client_procs: int = 4
    budget_s: float = 18 * 60  # phases still to come are skipped (with a note) past this


FULL = Plan(mode="full")

QUICK = Plan(
    mode="quick",
    reps=3,
    other_reps=2,
    seq_calls={"100B": 300, "64KiB": 100},
    hop_calls={"100B": 600, "64KiB": 150},
    warmup=20,
    window_s=0.5,
    cold_reps=3,
    deploy_reps=2,
    scale_functions=200,
    scale_warm=50,
    scale_reps=2,
    scale_calls=200,
    ghz_s=1.5,
    ghz_reps=2,
    stream_calls=300,
    budget_s=150,
)

SMOKE = Plan(
    mode="smoke",
    runtimes=["python"],
    reps=2,
    other_reps=2,
    seq_calls={"100B": 60, "64KiB": 20},
    hop_calls={"100B": 100, "64KiB": 20},
    warmup=5,
    levels=[1, 4],
    window_s=0.25,
    cold_reps=2,
    deploy_reps=2,
    scale_functions=12,
    scale_warm=3,
    scale_reps=2,
    scale_calls=30,
    ghz_s=0.5,
    ghz_reps=1,
    stream_calls=30,
    client_procs=2,
    budget_s=60,
)

PLANS = {"full": FULL, "quick": QUICK, "smoke": SMOKE}
