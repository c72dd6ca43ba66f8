"""The adaptive limit algorithms, without an event loop (time and samples passed in)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient_async._core.limits import (
    AimdLimit,
    GradientLimit,
    WindowedMin,
    check_limits,
    make_limit,
)

# --- bounds and construction ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("initial", "min_limit", "max_limit", "error", "message"),
    [
        (5, 10, 2, ValueError, "min_limit must be <= max_limit, got min_limit=10 and max_limit=2"),
        (1, 2, 10, ValueError, r"initial must be between min_limit and max_limit \(2\.\.10\)"),
        (11, 2, 10, ValueError, "initial must be between .* got 11"),
        (5, 0, 10, ValueError, "min_limit must be >= 1, got 0"),
        (5, 1, 0, ValueError, "max_limit must be >= 1, got 0"),
        (5.0, 1, 10, TypeError, "initial must be an int"),
        (5, 1, True, TypeError, "max_limit must be an int"),
    ],
)
def test_bad_bounds_are_refused(
    initial: int, min_limit: int, max_limit: int, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        check_limits(initial, min_limit, max_limit)


def test_unknown_algorithm_names_the_accepted_ones() -> None:
    with pytest.raises(
        ValueError, match="algorithm must be one of 'aimd', 'gradient', got 'vegas'"
    ):
        make_limit("vegas", 10, 1, 100)
    assert isinstance(make_limit("gradient", 10, 1, 100), GradientLimit)
    assert isinstance(make_limit("aimd", 10, 1, 100), AimdLimit)


# --- the windowed minimum -------------------------------------------------------------------

SAMPLES = st.lists(
    st.tuples(st.integers(0, 30), st.integers(1, 1000)),  # (time step, value)
    min_size=1,
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(samples=SAMPLES, window=st.sampled_from([4.0, 10.0, 25.0]))
def test_windowed_min_remembers_half_a_window_and_never_more_than_one(
    samples: list[tuple[int, int]], window: float
) -> None:
    tracker = WindowedMin(window)
    now = 0.0
    seen: list[tuple[float, int]] = []
    for step, value in samples:
        now += step
        seen.append((now, value))
        result = tracker.add(now, value)
        recent = min(v for t, v in seen if t >= now - window / 2)
        remembered = min(v for t, v in seen if t > now - window)
        assert remembered <= result <= recent


def test_windowed_min_forgets_after_a_window() -> None:
    tracker = WindowedMin(10.0)
    assert tracker.get(0.0) == math.inf
    tracker.add(0.0, 1.0)
    assert tracker.get(9.9) == 1.0
    assert tracker.get(10.0) == math.inf
    assert tracker.add(10.0, 5.0) == 5.0


# --- gradient ---------------------------------------------------------------------------------

LATENCIES = st.lists(
    st.tuples(
        st.floats(0.0, 0.05),  # time since the previous sample
        st.floats(0.0, 1.0),  # latency
        st.integers(0, 300),  # in flight
        st.booleans(),  # dropped
    ),
    max_size=60,
)
BOUNDS = st.tuples(st.integers(1, 50), st.integers(0, 200)).map(lambda b: (b[0], b[0] + b[1]))


@settings(max_examples=300, deadline=None)
@given(samples=LATENCIES, bounds=BOUNDS, data=st.data())
def test_gradient_stays_in_bounds_and_moves_the_right_way(
    samples: list[tuple[float, float, int, bool]], bounds: tuple[int, int], data: st.DataObject
) -> None:
    low, high = bounds
    initial = data.draw(st.integers(low, high))
    gradient = GradientLimit(initial, low, high)
    assert gradient.limit == initial
    now = 0.0
    smallest = math.inf
    for step, latency, inflight, dropped in samples:
        now += step
        before = gradient.estimate
        limit = gradient.update(now, latency, inflight, dropped)
        after = gradient.estimate
        assert isinstance(limit, int)
        assert low <= limit <= high
        assert limit == int(after)
        # One sample moves the estimate by at most half the smoothing down, sqrt(limit) up.
        assert after >= min(before, max(low, before * (1 - gradient.smoothing / 2))) - 1e-9
        assert after <= max(before, before + gradient.smoothing * math.sqrt(before)) + 1e-9
        if inflight * 2 < before:
            assert after <= before  # too little traffic to grow on
        if dropped:
            if before >= 4:
                assert after <= before  # the worst latency: never up
        else:
            if latency <= smallest and inflight * 2 >= before:
                assert after >= before  # at the no-load latency: never down
            smallest = min(smallest, latency)


def test_gradient_grows_at_no_load_latency_and_shrinks_under_queueing() -> None:
    gradient = GradientLimit(10, 1, 1000)
    now = 0.0
    for _ in range(200):
        now += 0.001
        gradient.update(now, 0.010, inflight=gradient.limit, dropped=False)
    assert gradient.limit > 100
    grown = gradient.limit
    for _ in range(200):
        now += 0.001
        gradient.update(now, 0.040, inflight=gradient.limit, dropped=False)
    assert gradient.limit < grown / 4


def test_gradient_settles_where_latency_matches_the_capacity() -> None:
    """A dependency of capacity 10: latency = 10 ms * max(1, in flight / 10).

    The first calls find it idle (as they do in the driver's simulations): that is where the
    no-load latency comes from; the gradient cannot guess it from queued calls alone.
    """
    gradient = GradientLimit(100, 1, 1000)
    now = 0.0
    gradient.update(now, 0.010, 100, dropped=False)
    for _ in range(3000):
        now += 0.001
        inflight = gradient.limit
        gradient.update(now, 0.010 * max(1.0, inflight / 10), inflight, dropped=False)
    assert 10 <= gradient.limit <= 20


# --- AIMD -------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(samples=LATENCIES, bounds=BOUNDS, data=st.data())
def test_aimd_adds_one_and_backs_off(
    samples: list[tuple[float, float, int, bool]], bounds: tuple[int, int], data: st.DataObject
) -> None:
    low, high = bounds
    aimd = AimdLimit(data.draw(st.integers(low, high)), low, high)
    for step, latency, inflight, dropped in samples:
        before = aimd.estimate
        limit = aimd.update(step, latency, inflight, dropped)
        after = aimd.estimate
        assert low <= limit <= high
        if dropped:
            assert after == pytest.approx(max(low, before * aimd.backoff))
        elif inflight * 2 >= before:
            assert after == min(high, before + 1)
        else:
            assert after == before


def test_aimd_settles_under_a_dependency_that_refuses_beyond_its_capacity() -> None:
    aimd = AimdLimit(50, 1, 1000)
    history = []
    for _ in range(2000):
        inflight = aimd.limit
        aimd.update(0.0, 0.01, inflight, dropped=inflight > 10)
        history.append(aimd.limit)
    assert min(history[-500:]) >= 8
    assert max(history[-500:]) <= 11
