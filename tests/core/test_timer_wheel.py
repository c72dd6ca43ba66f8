"""The timer wheel's bookkeeping: one driver timer per tick, exact expiry, bounded memory."""

from __future__ import annotations

import pytest

from resilient_async._core.timer_wheel import Bucket, TimerWheel


class Scope:
    __slots__ = ("name", "wheel_bucket", "wheel_when")

    def __init__(self, name: str) -> None:
        self.name = name
        self.wheel_when = 0.0
        self.wheel_bucket: Bucket | None = None

    def __repr__(self) -> str:
        return self.name


def test_only_the_first_deadline_of_a_tick_asks_for_a_timer() -> None:
    wheel = TimerWheel(resolution=1.0)
    a, b, c = Scope("a"), Scope("b"), Scope("c")

    first = wheel.arm(a, 10.25)
    assert first is not None
    assert first.fire_at == 10.25
    assert wheel.arm(b, 10.5) is None  # the same tick, later: the timer covers it
    assert wheel.arm(c, 11.0) is not None  # the next tick
    assert len(wheel) == 2


def test_an_earlier_deadline_in_the_same_tick_moves_the_timer() -> None:
    wheel = TimerWheel(resolution=1.0)
    a, b = Scope("a"), Scope("b")
    bucket = wheel.arm(a, 10.75)
    bucket.handle = "timer for 10.75"  # type: ignore[union-attr]

    again = wheel.arm(b, 10.25)

    assert again is bucket
    assert again.fire_at == 10.25
    assert again.handle == "timer for 10.75"  # the driver cancels it before re-arming


def test_fire_expires_exactly_the_entries_due_and_rearms_for_the_rest() -> None:
    wheel = TimerWheel(resolution=1.0)
    a, b, c = Scope("a"), Scope("b"), Scope("c")
    bucket = wheel.arm(a, 10.25)
    assert bucket is not None
    wheel.arm(b, 10.5)
    wheel.arm(c, 10.25)

    due, again = wheel.fire(bucket, 10.25)

    assert due == [a, c]
    assert again is bucket
    assert bucket.fire_at == 10.5
    assert a.wheel_bucket is None
    assert c.wheel_bucket is None
    due, again = wheel.fire(bucket, 10.5)
    assert due == [b]
    assert again is None
    assert len(wheel) == 0


def test_a_timer_that_fires_a_hair_early_still_counts_as_due() -> None:
    # Event loops run a timer within their clock's resolution of its time.
    wheel = TimerWheel(resolution=1.0)
    a = Scope("a")
    bucket = wheel.arm(a, 10.25)
    assert bucket is not None

    due, again = wheel.fire(bucket, 10.25 - 1e-9)

    assert due == [a]
    assert again is None


def test_disarmed_entries_never_fire_and_are_dropped_at_once() -> None:
    wheel = TimerWheel(resolution=1.0)
    a, b = Scope("a"), Scope("b")
    bucket = wheel.arm(a, 10.25)
    assert bucket is not None
    wheel.arm(b, 10.5)

    wheel.disarm(a)
    wheel.disarm(a)  # twice is harmless
    assert bucket.live == 1
    wheel.disarm(b)
    assert bucket.entries == []  # nothing finished is kept alive until the deadline

    due, again = wheel.fire(bucket, 10.25)
    assert due == []
    assert again is None


def test_a_bucket_that_never_empties_stays_in_memory_proportional_to_its_live_entries() -> None:
    wheel = TimerWheel(resolution=1.0)
    keeper = Scope("keeper")
    bucket = wheel.arm(keeper, 10.0)
    assert bucket is not None
    for i in range(10_000):
        scope = Scope(f"s{i}")
        wheel.arm(scope, 10.5)
        wheel.disarm(scope)

    assert bucket.live == 1
    assert len(bucket.entries) <= 2 * bucket.live + 64 + 1
    due, _ = wheel.fire(bucket, 11.0)
    assert due == [keeper]


def test_an_entry_rearmed_into_its_old_bucket_fires_once() -> None:
    wheel = TimerWheel(resolution=1.0)
    a, b = Scope("a"), Scope("b")
    bucket = wheel.arm(a, 10.25)
    assert bucket is not None
    wheel.arm(b, 10.25)
    wheel.disarm(a)
    wheel.arm(a, 10.5)

    due, again = wheel.fire(bucket, 10.25)
    assert due == [b]
    assert again is bucket
    assert bucket.entries == [a]
    due, again = wheel.fire(bucket, 10.5)
    assert due == [a]
    assert again is None


@pytest.mark.parametrize("resolution", [0, -1.0, float("inf"), float("nan")])
def test_a_resolution_out_of_range_is_refused(resolution: float) -> None:
    with pytest.raises(ValueError, match="resolution must be a finite number > 0"):
        TimerWheel(resolution)
