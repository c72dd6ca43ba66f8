"""The supervisor's pure restart core: unit cases and a Hypothesis model over exit sequences."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from resilient_async._core.supervision import (
    ChildState,
    GiveUp,
    Restart,
    RestartType,
    Strategy,
    SupervisorCore,
)

from ..supervision_model import Model

_MODEL_STATE = {
    ChildState.RUNNING: "running",
    ChildState.STOPPING: "stopping",
    ChildState.RESTARTING: "pending",
    ChildState.DONE: "dead",
    ChildState.FAILED: "dead",
    ChildState.CANCELLED: "dead",
}


def _core(
    strategy: str, *restarts: str, max_restarts: int = 3, within: float = 5.0
) -> SupervisorCore:
    core = SupervisorCore(Strategy(strategy), max_restarts, within)
    for i, restart in enumerate(restarts):
        core.add(f"c{i}", RestartType(restart))
    return core


def _settle(core: SupervisorCore, now: float) -> tuple[int, ...]:
    while (index := core.next_to_stop()) is not None:
        core.exited(index, now, None)
    return core.take_starts()


@pytest.mark.parametrize(
    ("strategy", "restarted", "stopped"),
    [
        ("one_for_one", (1,), ()),
        ("one_for_all", (0, 1, 2, 3), (3, 2, 0)),
        ("rest_for_one", (1, 2, 3), (3, 2)),
    ],
)
def test_strategies_pick_the_otp_siblings(
    strategy: str, restarted: tuple[int, ...], stopped: tuple[int, ...]
) -> None:
    core = _core(strategy, "permanent", "permanent", "transient", "permanent")
    decision = core.exited(1, 0.0, ConnectionError())
    assert isinstance(decision, Restart)
    assert decision.children == restarted
    # Stopped last-started first, then started again in start order.
    order = []
    while (index := core.next_to_stop()) is not None:
        order.append(index)
        core.exited(index, 0.0, None)
    assert tuple(order) == stopped
    assert core.take_starts() == restarted


def test_temporary_siblings_are_stopped_and_dropped() -> None:
    core = _core("one_for_all", "permanent", "temporary", "permanent")
    decision = core.exited(0, 0.0, ConnectionError())
    assert isinstance(decision, Restart)
    assert decision.children == (0, 2)
    assert _settle(core, 0.0) == (0, 2)
    assert core.state(1) is ChildState.CANCELLED


@pytest.mark.parametrize(
    ("restart", "crashed", "state"),
    [
        ("temporary", True, ChildState.FAILED),
        ("temporary", False, ChildState.DONE),
        ("transient", False, ChildState.DONE),
    ],
)
def test_exits_that_restart_nothing(restart: str, crashed: bool, state: ChildState) -> None:
    core = _core("one_for_all", restart, "permanent")
    assert core.exited(0, 0.0, ValueError() if crashed else None) is None
    assert core.state(0) is state
    assert core.state(1) is ChildState.RUNNING
    assert core.crashes_within(0.0) == 0


def test_a_permanent_return_restarts_without_counting() -> None:
    core = _core("one_for_one", "permanent", max_restarts=0)
    for _ in range(5):
        decision = core.exited(0, 0.0, None)
        assert isinstance(decision, Restart)
        assert decision.crashes == 0
        assert _settle(core, 0.0) == (0,)
    assert core.info()[0].restarts == 5


def test_intensity_counts_crashes_in_the_window_and_success_resets_nothing() -> None:
    core = _core("one_for_one", "permanent", max_restarts=2, within=10.0)
    crashes = [ConnectionError(i) for i in range(4)]
    assert isinstance(core.exited(0, 0.0, crashes[0]), Restart)
    _settle(core, 0.0)
    assert isinstance(core.exited(0, 4.0, crashes[1]), Restart)
    _settle(core, 4.0)
    # A success in between: the child returns normally, is restarted, and nothing resets.
    assert isinstance(core.exited(0, 6.0, None), Restart)
    _settle(core, 6.0)
    decision = core.exited(0, 8.0, crashes[2])
    assert decision == GiveUp((crashes[0], crashes[1], crashes[2]))
    assert core.gave_up
    assert all(info.state is ChildState.CANCELLED for info in core.info())


def test_crashes_leave_the_window_with_time_only() -> None:
    core = _core("one_for_one", "permanent", max_restarts=1, within=10.0)
    core.exited(0, 0.0, ConnectionError())
    _settle(core, 0.0)
    assert core.crashes_within(10.0) == 1  # inclusive bound, as OTP's
    assert core.crashes_within(10.001) == 0
    assert isinstance(core.exited(0, 10.5, ConnectionError()), Restart)


def test_a_crash_while_stopping_is_not_counted() -> None:
    core = _core("one_for_all", "permanent", "permanent", max_restarts=1)
    core.exited(0, 0.0, ConnectionError())
    assert core.next_to_stop() == 1
    assert core.exited(1, 0.0, RuntimeError("cleanup failed")) is None
    assert core.crashes_within(0.0) == 1
    assert _settle(core, 0.0) == (0, 1)


def test_starts_never_overtake_stops() -> None:
    core = _core("rest_for_one", "permanent", "permanent")
    core.exited(0, 0.0, ConnectionError())
    with pytest.raises(RuntimeError, match="stopping"):
        core.take_starts()


def test_exits_after_giving_up_decide_nothing() -> None:
    core = _core("one_for_one", "permanent", "permanent", max_restarts=0)
    assert isinstance(core.exited(0, 0.0, ConnectionError()), GiveUp)
    assert core.exited(1, 0.0, ConnectionError()) is None
    assert not core.has_pending_starts()


class SupervisionMachine(RuleBasedStateMachine):
    """The core against the plain model, over any interleaving of exits, stops and starts."""

    @initialize(
        strategy=st.sampled_from([s.value for s in Strategy]),
        max_restarts=st.integers(0, 4),
        within=st.sampled_from([1.0, 5.0, 30.0]),
        restarts=st.lists(st.sampled_from([r.value for r in RestartType]), min_size=1, max_size=5),
    )
    def setup(self, strategy: str, max_restarts: int, within: float, restarts: list[str]) -> None:
        self.now = 0.0
        self.core = SupervisorCore(Strategy(strategy), max_restarts, within)
        self.model = Model(strategy, max_restarts, within)
        for i, restart in enumerate(restarts):
            self.core.add(f"c{i}", RestartType(restart))
            self.model.add(restart)

    def _running(self) -> list[int]:
        return [i for i, c in enumerate(self.model.children) if c.state == "running"]

    @precondition(lambda self: not self.model.gave_up)
    @rule(data=st.data(), crashed=st.booleans())
    def exit(self, data: st.DataObject, crashed: bool) -> None:
        running = self._running()
        if not running:
            return
        index = data.draw(st.sampled_from(running))
        error = ConnectionError(index) if crashed else None
        decision = self.core.exited(index, self.now, error)
        self.model.exit(index, crashed, self.now)
        if self.model.gave_up:
            assert isinstance(decision, GiveUp)
            assert len(decision.crashes) == self.model.max_restarts + 1
        elif isinstance(decision, Restart):
            assert index in decision.children
            assert list(decision.children) == sorted(decision.children)

    @precondition(lambda self: not self.model.gave_up)
    @rule()
    def stop_one(self) -> None:
        index = self.core.next_to_stop()
        if index is None:
            return
        later = [
            i for i, c in enumerate(self.model.children) if c.state == "stopping" and i > index
        ]
        assert not later, "the last-started child stops first"
        assert self.core.exited(index, self.now, RuntimeError("while stopping")) is None
        self.model.stopped(index)

    @precondition(lambda self: not self.model.gave_up)
    @rule()
    def settle(self) -> None:
        assert _settle(self.core, self.now) == tuple(self.model.settle())

    @rule(seconds=st.sampled_from([0.0, 0.5, 1.0, 3.0, 10.0]))
    def advance(self, seconds: float) -> None:
        self.now += seconds

    @precondition(lambda self: not self.model.gave_up)
    @rule(restart=st.sampled_from([r.value for r in RestartType]))
    def add(self, restart: str) -> None:
        if len(self.model.children) < 7:
            self.core.add(f"c{len(self.model.children)}", RestartType(restart))
            self.model.add(restart)

    @invariant()
    def matches_the_model(self) -> None:
        info = self.core.info()
        assert [_MODEL_STATE[c.state] for c in info] == [c.state for c in self.model.children]
        assert [c.restarts for c in info] == [c.restarts for c in self.model.children]
        assert self.core.gave_up == self.model.gave_up
        if not self.model.gave_up:
            assert self.core.crashes_within(self.now) == self.model.crashes_within(self.now)
            assert self.core.crashes_within(self.now) <= self.model.max_restarts


SupervisionMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=30)
test_supervision_machine = SupervisionMachine.TestCase


@given(max_restarts=st.integers(0, 5), gaps=st.lists(st.floats(0.0, 3.0), max_size=12))
def test_gives_up_exactly_when_the_window_overflows(max_restarts: int, gaps: list[float]) -> None:
    within = 5.0
    core = _core("one_for_one", "permanent", max_restarts=max_restarts, within=within)
    now, times = 0.0, []
    for gap in gaps:
        now += gap
        times.append(now)
        decision = core.exited(0, now, ConnectionError())
        in_window = [t for t in times if now - t <= within]
        if len(in_window) > max_restarts:
            assert isinstance(decision, GiveUp)
            assert len(decision.crashes) == len(in_window)
            return
        assert isinstance(decision, Restart)
        _settle(core, now)
