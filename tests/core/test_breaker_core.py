"""The pure breaker core and its windows (RELIABILITY.md invariants 5 and 6).

The state machine is checked against a simple model (Hypothesis): a list of every recorded
outcome instead of a ring or buckets, transitions applied eagerly whenever the clock moves
instead of lazily, a per-call epoch instead of tickets. The windows are checked against a
brute-force recount after every event, across bucket edges and clock jumps longer than the
window.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from resilient_async._core.breaker import (
    NEEDS_TIME,
    REJECTED,
    BreakerCore,
    BreakerState,
    Transition,
)
from resilient_async._core.window import CountWindow, TimeWindow

CLOSED = BreakerState.CLOSED
OPEN = BreakerState.OPEN
HALF_OPEN = BreakerState.HALF_OPEN
FORCED_OPEN = BreakerState.FORCED_OPEN
DISABLED = BreakerState.DISABLED


# --- windows vs brute force -------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(1, 12),
    events=st.lists(
        st.one_of(st.tuples(st.booleans(), st.booleans()), st.just("clear")), max_size=60
    ),
)
def test_count_window_equals_a_recount_of_the_last_calls(
    size: int, events: list[tuple[bool, bool] | str]
) -> None:
    window = CountWindow(size)
    recorded: list[tuple[bool, bool]] = []
    for event in events:
        if event == "clear":
            window.clear()
            recorded.clear()
        else:
            assert isinstance(event, tuple)
            window.record(0.0, *event)
            recorded.append(event)
        last = recorded[-size:]
        expected = (len(last), sum(f for f, _ in last), sum(s for _, s in last))
        assert window.totals(0.0) == expected
        assert (window.calls, window.failures, window.slow) == expected


@st.composite
def _clock_steps(draw: st.DrawFn, seconds: float) -> list[tuple[float, str, bool, bool]]:
    """Steps of (dt, action, failed, slow): small moves, bucket-sized ones, and long jumps."""
    dt = st.one_of(
        st.sampled_from([0.0, 0.25, 0.5, 1.0, seconds / 2, seconds, seconds * 3.5]),
        st.floats(0.0, seconds * 1.5, allow_nan=False),
    )
    step = st.tuples(dt, st.sampled_from(["record", "look", "clear"]), st.booleans(), st.booleans())
    return draw(st.lists(step, max_size=50))


@settings(max_examples=200, deadline=None)
@given(data=st.data(), seconds=st.sampled_from([1.0, 3.0, 10.0, 0.7]), buckets=st.integers(1, 12))
def test_time_window_equals_a_recount_of_the_live_buckets(
    data: st.DataObject, seconds: float, buckets: int
) -> None:
    window = TimeWindow(seconds, buckets)
    width = seconds / buckets
    now = data.draw(st.sampled_from([0.0, 12.34, 1e6 + 0.5]), label="start")
    recorded: list[tuple[float, bool, bool]] = []
    for dt, action, failed, slow in data.draw(_clock_steps(seconds), label="steps"):
        now += dt
        if action == "record":
            window.record(now, failed, slow)
            recorded.append((now, failed, slow))
        elif action == "clear":
            window.clear()
            recorded.clear()
        # The definition: a call counts while its bucket is one of the last `buckets`.
        live = [r for r in recorded if now // width - r[0] // width < buckets]
        expected = (len(live), sum(r[1] for r in live), sum(r[2] for r in live))
        assert window.totals(now) == expected
        if action == "record":
            assert (window.calls, window.failures, window.slow) == expected


@settings(max_examples=100, deadline=None)
@given(
    buckets=st.sampled_from([1, 2, 4, 5, 10]),
    steps=st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.75, 2.5, 9.75, 10.0, 25.0]), max_size=40),
)
def test_time_window_keeps_a_call_for_between_one_bucket_less_and_the_whole_window(
    buckets: int, steps: list[float]
) -> None:
    # Exact binary fractions, so that the bound is exact too.
    seconds = 10.0
    width = seconds / buckets
    window = TimeWindow(seconds, buckets)
    now = 0.0
    times: list[float] = []
    for dt in steps:
        now += dt
        window.record(now, True, False)
        times.append(now)
        surely_in = sum(1 for t in times if now - t < seconds - width)
        possibly_in = sum(1 for t in times if now - t < seconds)
        assert surely_in <= window.calls <= possibly_in


def test_time_window_records_a_backwards_time_into_the_newest_bucket() -> None:
    window = TimeWindow(10.0, 10)
    window.record(50.0, True, False)
    window.record(42.0, False, True)  # a clock that went backwards
    assert window.totals(50.5) == (2, 1, 1)
    assert window.totals(59.9) == (2, 1, 1)
    assert window.totals(60.0) == (0, 0, 0)


def test_time_window_jump_longer_than_the_window_empties_it() -> None:
    window = TimeWindow(2.0, 4)
    for i in range(8):
        window.record(i * 0.25, True, True)
    assert window.totals(1.9) == (8, 8, 8)
    window.record(1000.0, False, False)
    assert (window.calls, window.failures, window.slow) == (1, 0, 0)


@pytest.mark.parametrize("size", [0, -1, 1.5, True])
def test_count_window_rejects_bad_sizes(size: object) -> None:
    with pytest.raises(ValueError, match="size"):
        CountWindow(size)  # type: ignore[arg-type]


@pytest.mark.parametrize(("seconds", "buckets"), [(0, 10), (-1.0, 10), (1.0, 0), (1.0, 2.5)])
def test_time_window_rejects_bad_arguments(seconds: float, buckets: int) -> None:
    with pytest.raises(ValueError, match=r"seconds|buckets"):
        TimeWindow(seconds, buckets)


def test_count_window_memory_does_not_grow_with_calls() -> None:
    window = CountWindow(100)
    for i in range(10_000):
        window.record(0.0, i % 3 == 0, i % 5 == 0)
    assert len(window._ring) == 100
    assert window.calls == 100


# --- the core, directly ---------------------------------------------------------------


def _core(**overrides: object) -> BreakerCore:
    config: dict[str, object] = {
        "failure_rate": 0.5,
        "min_calls": 2,
        "open_for": 10.0,
        "half_open_calls": 1,
        "slow_call_rate": 1.0,
        "probe_timeout": 10.0,
    }
    window = overrides.pop("window", CountWindow(4))
    config.update(overrides)
    return BreakerCore(window, **config)  # type: ignore[arg-type]


def _open(core: BreakerCore, now: float = 0.0) -> None:
    for _ in range(2):
        assert core.fast_ticket is not None
        core.on_failure(core.fast_ticket, now)
    assert core.state is OPEN


def test_core_opens_on_failure_rate_with_min_calls() -> None:
    core = _core()
    ticket = core.fast_ticket
    assert ticket is not None
    assert core.on_failure(ticket, 1.0) == ()  # 1 call < min_calls
    assert core.on_failure(ticket, 2.0) == (Transition(CLOSED, OPEN),)
    assert core.fast_ticket is None
    assert core.retry_after(5.0) == 7.0


def test_a_success_that_completes_min_calls_may_open() -> None:
    core = _core(min_calls=3)
    ticket = core.fast_ticket
    assert ticket is not None
    core.on_failure(ticket, 0.0)
    core.on_failure(ticket, 0.0)
    # Without the time the core cannot open: it asks for it and records nothing.
    assert core.on_success(ticket, None) is NEEDS_TIME
    assert core.window.calls == 2
    assert core.on_success(ticket, 3.0) == (Transition(CLOSED, OPEN),)
    assert core.metrics(3.0).retry_after == 10.0


def test_calls_admitted_before_opening_change_nothing() -> None:
    core = _core()
    early = core.fast_ticket
    assert early is not None
    _open(core)
    assert core.on_failure(early, 1.0) == ()
    assert core.on_success(early, 1.0) == ()
    assert core.retry_after(1.0) == 9.0  # not re-opened later
    # Nor once half-open: a stale call is no probe.
    admission = core.acquire(10.0)
    assert admission.transitions == (Transition(OPEN, HALF_OPEN),)
    assert core.on_failure(early, 10.0) == ()
    assert core.peek(10.0) is HALF_OPEN
    assert core.on_success(admission.ticket, 10.0) == (Transition(HALF_OPEN, CLOSED),)


def test_half_open_admits_exactly_half_open_calls() -> None:
    core = _core(half_open_calls=3)
    _open(core)
    admissions = [core.acquire(10.0) for _ in range(10)]
    admitted = [a for a in admissions if a.ticket != REJECTED]
    assert len(admitted) == 3
    assert all(a.retry_after is not None for a in admissions if a.ticket == REJECTED)
    for a in admitted[:2]:
        assert core.on_success(a.ticket, 11.0) == ()
    assert core.acquire(11.0).ticket == REJECTED  # a permit is not freed by a success
    assert core.on_success(admitted[2].ticket, 11.0) == (Transition(HALF_OPEN, CLOSED),)
    assert core.window.calls == 0


def test_a_cancelled_probe_frees_its_permit() -> None:
    core = _core()
    _open(core)
    probe = core.acquire(10.0)
    assert core.acquire(10.0).ticket == REJECTED
    assert core.on_cancel(probe.ticket, 10.5) == ()
    assert core.peek(10.5) is HALF_OPEN
    second = core.acquire(10.5)
    assert second.ticket != REJECTED
    assert core.on_success(probe.ticket, 11.0) == ()  # the cancelled one is stale
    assert core.peek(11.0) is HALF_OPEN


def test_a_hung_probe_expires_and_reopens_at_expiry() -> None:
    core = _core(probe_timeout=3.0)
    _open(core)
    probe = core.acquire(10.0)
    assert core.peek(13.0) is HALF_OPEN
    assert core.peek(13.5) is OPEN
    assert core.retry_after(13.5) == pytest.approx(9.5)  # opened again at 13.0
    assert core.peek(23.0) is HALF_OPEN
    admission = core.acquire(23.0)
    assert admission.transitions == (
        Transition(HALF_OPEN, OPEN),
        Transition(OPEN, HALF_OPEN),
    )
    assert admission.ticket != REJECTED
    assert core.on_success(probe.ticket, 24.0) == ()  # the hung one finally returns: stale
    assert core.on_success(admission.ticket, 24.0) == (Transition(HALF_OPEN, CLOSED),)


def test_slow_probes_reopen_at_the_slow_call_rate() -> None:
    core = _core(half_open_calls=2, slow_call_rate=0.5)
    _open(core)
    first, second = core.acquire(10.0), core.acquire(10.0)
    assert core.on_success(first.ticket, 11.0, slow=True) == ()
    assert core.on_success(second.ticket, 11.0) == (Transition(HALF_OPEN, OPEN),)


def test_manual_states() -> None:
    core = _core()
    assert core.force_open(0.0) == (Transition(CLOSED, FORCED_OPEN),)
    assert core.force_open(0.0) == ()
    admission = core.acquire(1e9)
    assert (admission.ticket, admission.retry_after) == (REJECTED, None)
    assert core.disable(1.0) == (Transition(FORCED_OPEN, DISABLED),)
    ticket = core.fast_ticket
    assert ticket is not None
    for _ in range(10):
        assert core.on_failure(ticket, 1.0) == ()
    assert core.metrics(1.0).failures == 4
    assert core.peek(1.0) is DISABLED
    assert core.reset(2.0) == (Transition(DISABLED, CLOSED),)
    assert core.metrics(2.0).calls == 0


def test_reset_in_closed_makes_calls_in_flight_stale() -> None:
    core = _core()
    ticket = core.fast_ticket
    assert ticket is not None
    core.on_failure(ticket, 0.0)
    assert core.reset(0.0) == ()
    assert core.on_failure(ticket, 0.0) == ()
    assert core.metrics(0.0).calls == 0


# --- the core against a model ---------------------------------------------------------


@dataclass
class _Config:
    window_type: str
    window: float
    failure_rate: float
    min_calls: int
    open_for: float
    half_open_calls: int
    slow_call_rate: float
    probe_timeout: float


_configs = st.builds(
    _Config,
    window_type=st.sampled_from(["count", "time"]),
    window=st.sampled_from([1, 3, 5, 8]),
    failure_rate=st.sampled_from([0.2, 0.5, 0.75, 1.0]),
    min_calls=st.integers(0, 5),
    open_for=st.sampled_from([0.0, 1.0, 5.0]),
    half_open_calls=st.integers(1, 3),
    slow_call_rate=st.sampled_from([0.5, 1.0]),
    probe_timeout=st.sampled_from([1.0, 2.5]),
)


@dataclass
class _Call:
    """One call in flight, as the model sees it."""

    kind: str  # "closed" or "probe"
    epoch: int
    ticket: int  # the core's ticket, to report the outcome with


@dataclass
class _Model:
    """The breaker, written plainly: every outcome kept, time applied eagerly."""

    config: _Config
    now: float
    state: BreakerState = CLOSED
    epoch: int = 0
    outcomes: list[tuple[float, bool, bool]] = field(default_factory=list)
    opened_at: float = 0.0
    probes: dict[int, float] = field(default_factory=dict)  # probe id -> admitted at
    probe_successes: int = 0
    probe_slow: int = 0
    log: list[Transition] = field(default_factory=list)
    next_probe: int = 0

    def counts(self) -> tuple[int, int, int]:
        cfg = self.config
        if cfg.window_type == "count":
            live = self.outcomes[-int(cfg.window) :]
        else:
            width = cfg.window / 10
            live = [o for o in self.outcomes if self.now // width - o[0] // width < 10]
        return len(live), sum(o[1] for o in live), sum(o[2] for o in live)

    def go(self, state: BreakerState) -> None:
        if state is not self.state:
            self.log.append(Transition(self.state, state))
        self.state = state
        self.epoch += 1
        self.probes = {}
        self.probe_successes = self.probe_slow = 0

    def tick(self) -> None:
        """Apply every time-driven transition due by now."""
        cfg = self.config
        while True:
            if self.state is OPEN and self.now >= self.opened_at + cfg.open_for:
                self.go(HALF_OPEN)
            elif self.state is HALF_OPEN and self.probes:
                expiry = min(self.probes.values()) + cfg.probe_timeout
                if self.now <= expiry:
                    return
                self.opened_at = expiry
                self.go(OPEN)
            else:
                return

    def admit(self) -> _Call | None:
        if self.state in (CLOSED, DISABLED):
            return _Call("closed", self.epoch, -1)
        taken = len(self.probes) + self.probe_successes
        if self.state is HALF_OPEN and taken < self.config.half_open_calls:
            self.next_probe += 1
            self.probes[self.next_probe] = self.now
            return _Call("probe", self.next_probe, -1)
        return None

    def finish(self, call: _Call, failed: bool, slow: bool) -> None:
        cfg = self.config
        if call.kind == "closed":
            if call.epoch != self.epoch or self.state not in (CLOSED, DISABLED):
                return
            self.outcomes.append((self.now, failed, slow))
            calls, failures, slows = self.counts()
            needed = max(1, cfg.min_calls)
            if cfg.window_type == "count":
                needed = max(1, min(cfg.min_calls, int(cfg.window)))
            if (
                self.state is CLOSED
                and calls >= needed
                and (failures / calls >= cfg.failure_rate or slows / calls >= cfg.slow_call_rate)
            ):
                self.opened_at = self.now
                self.go(OPEN)
            return
        if call.epoch not in self.probes:
            return
        del self.probes[call.epoch]
        if failed:
            self.opened_at = self.now
            self.go(OPEN)
            return
        self.probe_successes += 1
        self.probe_slow += slow
        if self.probe_successes == cfg.half_open_calls:
            if self.probe_slow / cfg.half_open_calls >= cfg.slow_call_rate:
                self.opened_at = self.now
                self.go(OPEN)
            else:
                self.outcomes.clear()
                self.go(CLOSED)

    def cancel(self, call: _Call) -> None:
        if call.kind == "probe":
            self.probes.pop(call.epoch, None)

    def retry_after(self) -> float | None:
        cfg = self.config
        if self.state is OPEN:
            return self.opened_at + cfg.open_for - self.now
        taken = len(self.probes) + self.probe_successes
        if self.state is HALF_OPEN and taken >= cfg.half_open_calls:
            return min(self.probes.values()) + cfg.probe_timeout + cfg.open_for - self.now
        return None


class BreakerMachine(RuleBasedStateMachine):
    """Drive the core and the model with the same events; they must always agree."""

    def __init__(self) -> None:
        super().__init__()
        self.core: BreakerCore
        self.model: _Model
        self.calls: list[_Call] = []
        self.core_log: list[Transition] = []

    @initialize(config=_configs, start=st.sampled_from([0.0, 100.0, 12345.5]))
    def setup(self, config: _Config, start: float) -> None:
        window = (
            CountWindow(int(config.window))
            if config.window_type == "count"
            else TimeWindow(config.window, 10)
        )
        self.core = BreakerCore(
            window,
            failure_rate=config.failure_rate,
            min_calls=config.min_calls,
            open_for=config.open_for,
            half_open_calls=config.half_open_calls,
            slow_call_rate=config.slow_call_rate,
            probe_timeout=config.probe_timeout,
        )
        self.model = _Model(config, start)

    @property
    def now(self) -> float:
        return self.model.now

    def _got(self, transitions: tuple[Transition, ...]) -> None:
        self.core_log.extend(transitions)

    def _in_step(self) -> None:
        """After an operation that applies pending transitions, the logs are equal."""
        assert self.core_log == self.model.log

    @rule(dt=st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0]))
    def advance(self, dt: float) -> None:
        self.model.now += dt
        self.model.tick()

    @rule(count=st.integers(1, 3))
    def start_calls(self, count: int) -> None:
        for _ in range(count):
            expected = self.model.admit()
            ticket = self.core.fast_ticket
            if ticket is None:
                admission = self.core.acquire(self.now)
                self._got(admission.transitions)
                ticket = admission.ticket
                if ticket == REJECTED:
                    assert admission.retry_after == pytest.approx(self.model.retry_after())
            assert (ticket == REJECTED) == (expected is None)
            if expected is not None:
                expected.ticket = ticket
                self.calls.append(expected)
        self._in_step()

    @precondition(lambda self: self.calls)
    @rule(
        data=st.data(),
        outcome=st.sampled_from(["success", "failure", "ignored error", "cancel"]),
        slow=st.booleans(),
        without_time=st.booleans(),
    )
    def finish_call(
        self, data: st.DataObject, outcome: str, slow: bool, without_time: bool
    ) -> None:
        index = data.draw(st.integers(0, len(self.calls) - 1), label="call")
        call = self.calls.pop(index)
        core = self.core
        if outcome == "cancel":
            self._got(core.on_cancel(call.ticket, self.now))
            self.model.cancel(call)
            return
        if outcome == "failure":
            self._got(core.on_failure(call.ticket, self.now, slow))
        elif without_time and not slow:
            # The driver's closed path: no clock read unless the core asks for one.
            result = core.on_success(call.ticket, None)
            if result is NEEDS_TIME:
                result = core.on_success(call.ticket, self.now)
            self._got(result)
        else:
            # An error outside `on` is a success for the core: the driver maps it.
            self._got(core.on_success(call.ticket, self.now, slow))
        self.model.finish(call, outcome == "failure", slow)
        self.model.tick()  # with open_for=0, an opening is followed by half-open at once

    @rule()
    def force_open(self) -> None:
        self._got(self.core.force_open(self.now))
        self.model.tick()
        if self.model.state is not FORCED_OPEN:
            self.model.go(FORCED_OPEN)
        self._in_step()

    @rule()
    def disable(self) -> None:
        self._got(self.core.disable(self.now))
        if self.model.state is not DISABLED:
            self.model.go(DISABLED)
        self._in_step()

    @rule()
    def reset(self) -> None:
        self._got(self.core.reset(self.now))
        self.model.outcomes.clear()
        self.model.go(CLOSED)
        self._in_step()

    @invariant()
    def agrees_with_the_model(self) -> None:
        if not hasattr(self, "model"):
            return
        model, now = self.model, self.now
        metrics = self.core.metrics(now)
        calls, failures, slow = model.counts()
        assert metrics.state is model.state
        assert self.core.peek(now) is model.state
        assert (metrics.calls, metrics.failures, metrics.slow_calls) == (calls, failures, slow)
        assert metrics.failure_rate == (failures / calls if calls else 0.0)
        assert metrics.slow_call_rate == (slow / calls if calls else 0.0)
        in_flight = len(model.probes) if model.state is HALF_OPEN else 0
        assert metrics.probes_in_flight == in_flight
        expected_retry = model.retry_after()
        if expected_retry is None:
            assert metrics.retry_after is None
        else:
            assert metrics.retry_after == pytest.approx(expected_retry)
        # Lazily applied, the core's transitions lag the model's, never differ from them.
        assert self.core_log == model.log[: len(self.core_log)]
        assert len(self.core_log) >= len(model.log) - 2


BreakerMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
TestBreakerCoreAgainstModel = BreakerMachine.TestCase
