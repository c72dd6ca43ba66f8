"""Backoff schedules: formulas, bounds for any attempt number, reproducibility, bad input."""

from __future__ import annotations

import math
import random
from itertools import islice

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient_async import backoff
from resilient_async.backoff import JITTERS, Backoff, Exponential

HUGE_ATTEMPTS = [1, 2, 3, 10, 64, 1_000, 1_025, 10_000, 2**31 - 1, 2**31, 2**53, 2**64, 10**100]


def take(schedule: Backoff, n: int, seed: int = 0) -> list[float]:
    return list(islice(schedule.delays(rng=random.Random(seed)), n))


# --- the formulas ---------------------------------------------------------------------------


def test_exponential_without_jitter_doubles_up_to_max() -> None:
    delays = take(backoff.exponential(0.5, max=5, jitter="none"), 7)
    assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_exponential_multiplier() -> None:
    delays = take(backoff.exponential(1, multiplier=3, max=100, jitter="none"), 6)
    assert delays == [1.0, 3.0, 9.0, 27.0, 81.0, 100.0]


def test_exponential_multiplier_one_is_constant() -> None:
    assert take(backoff.exponential(0.3, multiplier=1, jitter="none"), 4) == [0.3] * 4


def test_full_jitter_draws_below_the_ceiling() -> None:
    schedule = backoff.exponential(1, max=8, jitter="full")
    rng = random.Random(1)
    for attempt in range(1, 50):
        ceiling = min(8.0, 2.0 ** (attempt - 1))
        for _ in range(20):
            assert 0.0 <= schedule.delay(attempt, 0.0, rng) <= ceiling


def test_equal_jitter_never_below_half_the_ceiling() -> None:
    schedule = backoff.exponential(1, max=8, jitter="equal")
    rng = random.Random(2)
    for attempt in range(1, 50):
        ceiling = min(8.0, 2.0 ** (attempt - 1))
        for _ in range(20):
            assert ceiling / 2 <= schedule.delay(attempt, 0.0, rng) <= ceiling


def test_decorrelated_jitter_grows_from_the_previous_delay() -> None:
    schedule = backoff.exponential(0.5, max=30, jitter="decorrelated")
    previous = 0.0
    for delay in take(schedule, 200, seed=3):
        assert 0.5 <= delay <= min(30.0, max(previous, 0.5) * 3)
        previous = delay


def test_decorrelated_copes_with_a_nonsense_previous_delay() -> None:
    schedule = backoff.exponential(0.5, max=30, jitter="decorrelated")
    rng = random.Random(4)
    for previous in (math.nan, math.inf, -5.0, 1e308):
        assert 0.5 <= schedule.delay(3, previous, rng) <= 30.0


def test_jitter_spreads_delays() -> None:
    """Jitter that always returned the same value would not decorrelate clients."""
    for jitter in ("full", "equal", "decorrelated"):
        schedule = backoff.exponential(1, max=100, jitter=jitter)
        assert len({schedule.delay(5, 4.0, random.Random(seed)) for seed in range(20)}) > 10


def test_constant_and_linear() -> None:
    assert take(backoff.constant(2), 3) == [2.0, 2.0, 2.0]
    assert take(backoff.constant(0), 2) == [0.0, 0.0]
    assert take(backoff.linear(1, 2, max=6), 5) == [1.0, 3.0, 5.0, 6.0, 6.0]
    assert take(backoff.linear(0.5, 0, max=6), 3) == [0.5, 0.5, 0.5]
    assert take(backoff.linear(), 3) == pytest.approx([0.1, 0.2, 0.3])


def test_defaults_follow_the_api() -> None:
    default = backoff.exponential()
    assert (default.initial, default.multiplier, default.max, default.jitter) == (
        0.1,
        2.0,
        10.0,
        "full",
    )
    linear = backoff.linear()
    assert (linear.initial, linear.step, linear.max) == (0.1, 0.1, 10.0)


def test_max_is_exposed_and_constant_has_none() -> None:
    assert backoff.exponential(max=3).max == 3.0
    assert backoff.linear(max=4).max == 4.0
    assert backoff.constant(5).max is None
    assert backoff.constant(5).seconds == 5.0


# --- bounds for any attempt number (RELIABILITY.md invariant 3, bug class 8) -----------------


@pytest.mark.parametrize("jitter", JITTERS)
@pytest.mark.parametrize("attempt", HUGE_ATTEMPTS)
def test_exponential_never_overflows(jitter: str, attempt: int) -> None:
    schedule = backoff.exponential(0.1, max=10, jitter=jitter)  # type: ignore[arg-type]
    delay = schedule.delay(attempt, 10.0, random.Random(attempt % 1000))
    assert math.isfinite(delay)
    assert 0.0 <= delay <= 10.0
    if jitter == "none" and attempt >= 10:
        assert delay == 10.0


@pytest.mark.parametrize("attempt", HUGE_ATTEMPTS)
def test_linear_and_constant_never_overflow(attempt: int) -> None:
    rng = random.Random(0)
    delay = backoff.linear(0.1, 0.5, max=7).delay(attempt, 0.0, rng)
    assert delay == (min(7.0, 0.1 + 0.5 * (attempt - 1)) if attempt < 100 else 7.0)
    assert backoff.constant(3).delay(attempt, 0.0, rng) == 3.0


def test_extreme_ranges_do_not_overflow() -> None:
    tiny_to_huge = backoff.exponential(5e-324, multiplier=1.5, max=1e308, jitter="none")
    slow_growth = backoff.exponential(1e-9, multiplier=1 + 1e-15, max=1e300, jitter="none")
    tiny_step = backoff.linear(0, 5e-324, max=1e308)
    rng = random.Random(0)
    for schedule in (tiny_to_huge, slow_growth, tiny_step):
        for attempt in (*HUGE_ATTEMPTS, 2_000, 3_500):
            delay = schedule.delay(attempt, 0.0, rng)
            assert math.isfinite(delay)
            assert 0.0 <= delay <= 1e308


@settings(max_examples=300, deadline=None)
@given(
    initial=st.floats(min_value=0, max_value=1e6),
    multiplier=st.floats(min_value=1, max_value=1e3),
    spread=st.floats(min_value=0, max_value=1e6),
    jitter=st.sampled_from(JITTERS),
    attempt=st.one_of(st.integers(1, 5_000), st.integers(1, 2**70)),
    previous=st.floats(allow_nan=True, allow_infinity=True),
    seed=st.integers(0, 2**32),
)
def test_exponential_delays_are_finite_and_within_bounds(
    initial: float,
    multiplier: float,
    spread: float,
    jitter: str,
    attempt: int,
    previous: float,
    seed: int,
) -> None:
    cap = initial + spread
    schedule = backoff.exponential(initial, multiplier=multiplier, max=cap, jitter=jitter)  # type: ignore[arg-type]
    delay = schedule.delay(attempt, previous, random.Random(seed))
    assert math.isfinite(delay)
    assert 0.0 <= delay <= cap
    if jitter == "none":
        try:
            expected = min(cap, initial * multiplier ** (attempt - 1))
        except OverflowError:
            expected = cap if initial > 0 else 0.0
        assert delay == pytest.approx(expected, rel=1e-9)


@settings(max_examples=200, deadline=None)
@given(
    initial=st.floats(min_value=0, max_value=1e6),
    step=st.floats(min_value=0, max_value=1e6),
    spread=st.floats(min_value=0, max_value=1e6),
    attempt=st.one_of(st.integers(1, 5_000), st.integers(1, 2**70)),
)
def test_linear_delays_are_finite_and_within_bounds(
    initial: float, step: float, spread: float, attempt: int
) -> None:
    cap = initial + spread
    delay = backoff.linear(initial, step, max=cap).delay(attempt, 0.0, random.Random(0))
    assert math.isfinite(delay)
    assert 0.0 <= delay <= cap
    if attempt < 2**50:
        assert delay == pytest.approx(min(cap, initial + step * (attempt - 1)), rel=1e-9)


# --- purity and reproducibility ---------------------------------------------------------------


@pytest.mark.parametrize("jitter", JITTERS)
def test_seeded_schedules_are_reproducible(jitter: str) -> None:
    schedule = backoff.exponential(0.2, max=60, jitter=jitter)  # type: ignore[arg-type]
    assert take(schedule, 30, seed=42) == take(schedule, 30, seed=42)
    if jitter != "none":
        assert take(schedule, 30, seed=42) != take(schedule, 30, seed=43)


def test_delays_iterators_are_independent_and_endless() -> None:
    schedule = backoff.exponential(1, max=4, jitter="none")
    first = schedule.delays()
    assert [next(first), next(first)] == [1.0, 2.0]
    second = schedule.delays()
    assert next(second) == 1.0  # a fresh schedule, not a continuation
    assert next(first) == 4.0
    assert len(list(islice(first, 10_000))) == 10_000


def test_delays_without_rng_use_a_default_generator() -> None:
    delays = list(islice(backoff.exponential(1, max=4).delays(), 50))
    assert all(0.0 <= d <= 4.0 for d in delays)


def test_delays_rejects_a_bad_rng() -> None:
    with pytest.raises(TypeError, match="rng"):
        backoff.exponential().delays(rng=42)  # type: ignore[arg-type]


def test_schedules_are_values() -> None:
    assert backoff.exponential(1, max=2) == Exponential(1, max=2)
    assert hash(backoff.exponential(1, max=2)) == hash(Exponential(1, max=2))
    assert backoff.exponential(1, max=2) != backoff.exponential(1, max=3)
    assert backoff.constant(1) == backoff.constant(1.0)
    assert backoff.linear(1, 1) == backoff.linear(1, 1)
    assert backoff.constant(1) != backoff.linear(1, 0)
    assert repr(backoff.exponential()) == (
        "exponential(initial=0.1, multiplier=2.0, max=10.0, jitter='full')"
    )
    assert repr(backoff.constant(2)) == "constant(2.0)"
    assert repr(backoff.linear()) == "linear(initial=0.1, step=0.1, max=10.0)"
    with pytest.raises(AttributeError):
        backoff.exponential().max = 5  # type: ignore[misc]


def test_a_custom_schedule_is_a_backoff_subclass() -> None:
    class Fibonacci(Backoff):
        def delay(self, attempt: int, previous: float, rng: random.Random) -> float:
            a, b = 0.0, 1.0
            for _ in range(min(attempt, 20)):
                a, b = b, a + b
            return a

    assert take(Fibonacci(), 6) == [1.0, 1.0, 2.0, 3.0, 5.0, 8.0]
    assert Fibonacci().max is None
    with pytest.raises(NotImplementedError):
        Backoff().delay(1, 0.0, random.Random())


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (
            lambda: backoff.exponential(-1),
            ValueError,
            r"initial must be a finite number of seconds >= 0, got -1",
        ),
        (lambda: backoff.exponential(math.nan), ValueError, "initial .* got nan"),
        (lambda: backoff.exponential(math.inf), ValueError, "initial .* got inf"),
        (
            lambda: backoff.exponential(multiplier=0.5),
            ValueError,
            r"multiplier must be a finite number >= 1, got 0.5",
        ),
        (lambda: backoff.exponential(multiplier=math.inf), ValueError, "multiplier"),
        (
            lambda: backoff.exponential(1, max=0.5),
            ValueError,
            r"max must be >= initial \(1.0\), got 0.5",
        ),
        (lambda: backoff.exponential(max=math.inf), ValueError, "max must be a finite"),
        (lambda: backoff.exponential(max=-1), ValueError, "max"),
        (
            lambda: backoff.exponential(jitter="random"),  # type: ignore[arg-type]
            ValueError,
            r"jitter must be one of 'none', 'full', 'equal', 'decorrelated', got 'random'",
        ),
        (lambda: backoff.exponential(jitter=None), ValueError, "jitter"),  # type: ignore[arg-type]
        (lambda: backoff.exponential("1"), TypeError, "initial must be a number"),  # type: ignore[arg-type]
        (lambda: backoff.exponential(True), TypeError, "initial"),
        (lambda: backoff.exponential(multiplier="2"), TypeError, "multiplier"),  # type: ignore[arg-type]
        (
            lambda: backoff.constant(-0.1),
            ValueError,
            "delay must be a finite number of seconds >= 0",
        ),
        (lambda: backoff.constant(None), TypeError, "delay"),  # type: ignore[arg-type]
        (lambda: backoff.linear(-1), ValueError, "initial"),
        (lambda: backoff.linear(1, -1), ValueError, "step must be a finite number of seconds >= 0"),
        (
            lambda: backoff.linear(2, 1, max=1),
            ValueError,
            r"max must be >= initial \(2.0\), got 1.0",
        ),
    ],
)
def test_bad_input_is_rejected(make: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        make()  # type: ignore[operator]


def test_positional_use_follows_the_api() -> None:
    with pytest.raises(TypeError):
        backoff.exponential(0.1, 2.0)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        backoff.linear(0.1, 0.1, 5.0)  # type: ignore[call-arg]
