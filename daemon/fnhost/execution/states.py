"""A worker's states and the one table of the transitions between them.

Every transition not in the table is refused (``IllegalTransition``); ``Worker._set`` is the only
place a state changes, and each change also moves the pool's ``StateCounts``.
"""

from __future__ import annotations

import enum


class State(enum.Enum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    STOPPING = "stopping"
    DEAD = "dead"
    FAILED = "failed"  # init failed; the worker never served


# Tuples, not sets: membership in a tuple compares by identity first, where a set would call the
# enum's Python-level __hash__ (twice per transition, twice per invocation).
_ALLOWED: dict[State, tuple[State, ...]] = {
    State.STARTING: (State.IDLE, State.FAILED, State.STOPPING, State.DEAD),
    State.IDLE: (State.BUSY, State.STOPPING, State.DEAD),
    State.BUSY: (State.IDLE, State.STOPPING, State.DEAD),
    State.STOPPING: (State.DEAD,),
    State.FAILED: (State.STOPPING, State.DEAD),
    State.DEAD: (),
}
for _state, _next in _ALLOWED.items():
    _state.allowed = _next  # type: ignore[attr-defined]
for _index, _state in enumerate(State):
    _state.index = _index  # type: ignore[attr-defined]  # a list index, for StateCounts


class StateCounts:
    """How many of a pool's workers are in each state, kept by the transitions themselves.

    Every ``Worker._set`` moves one count, so a stats call, a scrape or the readiness wait reads
    numbers instead of walking the workers.
    """

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts = [0] * len(State)

    def moved(self, old: State | None, new: State) -> None:
        if old is not None:
            self.counts[old.index] -= 1  # type: ignore[attr-defined]
        self.counts[new.index] += 1  # type: ignore[attr-defined]

    def __getitem__(self, state: State) -> int:
        return self.counts[state.index]  # type: ignore[attr-defined]

    def by_name(self) -> dict[str, int]:
        """Live workers by state name, states with none left out (the dead are gone from the pool)."""
        counts = self.counts
        return {s.value: counts[s.index] for s in State if s is not State.DEAD and counts[s.index]}  # type: ignore[attr-defined]


class IllegalTransition(RuntimeError):
    """A worker was asked to move between two states the table does not connect."""
