import pytest

from fnhost.execution.states import _ALLOWED, IllegalTransition, State, StateCounts
from fnhost.execution.worker import Worker


class _Bare(Worker):
    def __init__(self, counts: StateCounts | None = None) -> None:  # no process, no loop: only the state machine
        self.state = State.STARTING
        self.pid = 0
        self.counts = counts or StateCounts()
        self._observe = lambda worker, old, new: self.counts.moved(old, new)
        self._observe(self, None, State.STARTING)


def test_every_state_can_die_except_the_dead() -> None:
    for state, allowed in _ALLOWED.items():
        assert (State.DEAD in allowed) == (state is not State.DEAD)


@pytest.mark.parametrize(
    ("path", "refused"),
    [
        ([], State.BUSY),  # a starting worker cannot serve
        ([State.IDLE, State.BUSY, State.IDLE, State.STOPPING], State.IDLE),
        ([State.FAILED], State.IDLE),  # a failed init never serves
        ([State.DEAD], State.STARTING),
    ],
)
def test_illegal_transitions_are_refused(path: list[State], refused: State) -> None:
    w = _Bare()
    for state in path:
        w._set(state)
    with pytest.raises(IllegalTransition):
        w._set(refused)
    assert w.state is (path[-1] if path else State.STARTING)


def test_transitions_drive_the_counts() -> None:
    counts = StateCounts()
    a, b = _Bare(counts), _Bare(counts)
    assert counts.by_name() == {"starting": 2}
    for state in (State.IDLE, State.BUSY):
        a._set(state)
    b._set(State.FAILED)
    assert counts.by_name() == {"busy": 1, "failed": 1}
    with pytest.raises(IllegalTransition):
        a._set(State.STARTING)
    assert counts.by_name() == {"busy": 1, "failed": 1}  # a refused transition moves nothing
    a._set(State.DEAD)
    b._set(State.STOPPING)
    assert counts.by_name() == {"stopping": 1}
    assert counts[State.BUSY] == 0 and counts[State.DEAD] == 1
