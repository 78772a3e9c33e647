import pytest

from fnhost.worker import _ALLOWED, IllegalTransition, State, Worker


class _Bare(Worker):
    def __init__(self) -> None:  # no process, no loop: only the state machine
        self.state = State.STARTING
        self.pid = 0


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
