"""Adaptive concurrency limits: a limit that follows the dependency's measured latency.

A fixed bulkhead limit is a guess: too low and capacity is wasted, too high and callers queue
inside the dependency, where every one of them waits. These algorithms (after Netflix's
concurrency-limits) move the limit from samples of the calls themselves. Each is a plain
object: the driver passes the time, the latency of a finished call, how many calls were in
flight and whether the call was *dropped* (it failed, timed out or was refused), and reads
back the new limit. Nothing here waits or reads a clock.

- `GradientLimit` compares the no-load latency (the smallest latency seen over a sliding
  window) with the latency now: `gradient = clamp(tolerance * no_load / latency, 0.5, 1)`;
  the new estimate `limit * gradient + sqrt(limit)` (the square root is the queue allowed to
  stand) is blended into the old one. At the no-load latency the limit grows by about
  `smoothing * sqrt(limit)` a call; as queueing inflates latency it shrinks, by at most
  `smoothing / 2` of itself a call.
- `AimdLimit` adds one per call that succeeded and multiplies by `backoff` on a drop.

Neither grows while fewer than half the limit's calls are in flight: a limit no traffic uses
says nothing about what the dependency can take.
"""

from __future__ import annotations

import math
from typing import Final, Protocol

from .checks import check_int

__all__ = [
    "ALGORITHMS",
    "AimdLimit",
    "GradientLimit",
    "LimitAlgorithm",
    "WindowedMin",
    "check_limits",
    "make_limit",
]

ALGORITHMS: Final = ("aimd", "gradient")


class LimitAlgorithm(Protocol):
    """What a bulkhead needs from an adaptive limit."""

    @property
    def limit(self) -> int:
        """The limit now, an int between the bounds."""
        ...

    def update(self, now: float, latency: float, inflight: int, dropped: bool) -> int:
        """Learn from one finished call and return the new limit."""
        ...


def check_limits(initial: int, min_limit: int, max_limit: int) -> None:
    """Check an adaptive limit's bounds.

    Raises:
        TypeError: A bound is not an int.
        ValueError: `min_limit < 1`, `min_limit > max_limit`, or `initial` is outside them.
    """
    check_int(min_limit, "min_limit", 1)
    check_int(max_limit, "max_limit", 1)
    check_int(initial, "initial", 1)
    if min_limit > max_limit:
        raise ValueError(
            f"min_limit must be <= max_limit, got min_limit={min_limit} and max_limit={max_limit}"
        )
    if not min_limit <= initial <= max_limit:
        raise ValueError(
            f"initial must be between min_limit and max_limit ({min_limit}..{max_limit}), "
            f"got {initial}"
        )


def make_limit(algorithm: str, initial: int, min_limit: int, max_limit: int) -> LimitAlgorithm:
    """Build the named algorithm, checking its arguments.

    Raises:
        ValueError: An unknown algorithm, or bounds `check_limits` refuses.
        TypeError: A bound is not an int.
    """
    check_limits(initial, min_limit, max_limit)
    if algorithm == "gradient":
        return GradientLimit(initial, min_limit, max_limit)
    if algorithm == "aimd":
        return AimdLimit(initial, min_limit, max_limit)
    raise ValueError(
        f"algorithm must be one of {', '.join(map(repr, ALGORITHMS))}, got {algorithm!r}"
    )


class WindowedMin:
    """The smallest value seen over roughly the last `window` seconds, in O(1) space.

    Two buckets of `window / 2` seconds each: the minimum is over the current bucket and the
    one before it, so a value is remembered for at least `window / 2` seconds and never more
    than `window`.
    That is enough here: the no-load latency only has to be seen once in a while.

    Args:
        window: The span in seconds, > 0.
    """

    __slots__ = ("_current", "_previous", "_span", "_start")

    def __init__(self, window: float) -> None:
        self._span = window / 2
        self._start = -math.inf
        self._current = math.inf
        self._previous = math.inf

    def add(self, now: float, value: float) -> float:
        """Record `value` at time `now` and return the windowed minimum."""
        if now - self._start >= self._span:
            self._roll(now)
        current = self._current
        if value < current:
            self._current = current = value
        previous = self._previous
        return current if current < previous else previous

    def get(self, now: float) -> float:
        """The windowed minimum at `now` (`math.inf` when nothing is remembered)."""
        self._roll(now)
        return min(self._current, self._previous)

    def _roll(self, now: float) -> None:
        elapsed = now - self._start
        if elapsed < self._span:
            return
        if elapsed < 2 * self._span:
            # The next bucket: the current one becomes the previous, and the buckets stay
            # aligned, so nothing older than `window` is remembered.
            self._previous = self._current
            self._start += self._span
        else:
            self._previous = math.inf
            self._start = now
        self._current = math.inf


class GradientLimit:
    """A limit moved by the ratio of no-load latency to the latency now, plus a queue allowance.

    Args:
        initial: The starting limit.
        min_limit: The smallest limit.
        max_limit: The largest limit.
        tolerance: How much latency inflation counts as no load (1.0: none, 2.0: double).
        smoothing: The weight of each new estimate, in (0, 1].
        window: Seconds over which the no-load latency is the smallest one seen.
    """

    __slots__ = (
        "_estimate",
        "_limit",
        "_no_load",
        "max_limit",
        "min_limit",
        "smoothing",
        "tolerance",
    )

    def __init__(
        self,
        initial: int,
        min_limit: int,
        max_limit: int,
        *,
        tolerance: float = 1.0,
        smoothing: float = 0.1,
        window: float = 30.0,
    ) -> None:
        self.min_limit = min_limit
        self.max_limit = max_limit
        self.tolerance = tolerance
        self.smoothing = smoothing
        self._estimate = float(initial)
        self._limit = initial
        self._no_load = WindowedMin(window)

    @property
    def limit(self) -> int:
        """The limit now."""
        return self._limit

    @property
    def estimate(self) -> float:
        """The unrounded estimate the limit is taken from."""
        return self._estimate

    def update(self, now: float, latency: float, inflight: int, dropped: bool) -> int:
        """Learn from one finished call and return the new limit.

        A dropped call counts as the worst latency (the largest step down), and never as a
        no-load sample: a fast failure says nothing about how fast the dependency serves.
        """
        estimate = self._estimate
        if dropped:
            gradient = 0.5
        else:
            no_load = self._no_load.add(now, latency)
            # clamp(tolerance * no_load / latency, 0.5, 1), with plain comparisons: this
            # runs on every call.
            if latency <= 0.0 or self.tolerance * no_load >= latency:
                gradient = 1.0
            else:
                gradient = self.tolerance * no_load / latency
                if gradient < 0.5:  # noqa: PLR1730 (a call to max() costs more here)
                    gradient = 0.5
        new = estimate + self.smoothing * (estimate * (gradient - 1.0) + math.sqrt(estimate))
        if new > estimate and inflight * 2 < estimate:
            return self._limit  # too little traffic to tell whether more would fit
        if new < self.min_limit:
            new = float(self.min_limit)
        elif new > self.max_limit:
            new = float(self.max_limit)
        self._estimate = new
        self._limit = int(new)
        return self._limit


class AimdLimit:
    """Additive increase, multiplicative decrease: +1 a successful call, times `backoff` a drop.

    Args:
        initial: The starting limit.
        min_limit: The smallest limit.
        max_limit: The largest limit.
        backoff: The factor applied on a drop, in (0, 1).
    """

    __slots__ = ("_estimate", "_limit", "backoff", "max_limit", "min_limit")

    def __init__(
        self, initial: int, min_limit: int, max_limit: int, *, backoff: float = 0.9
    ) -> None:
        self.min_limit = min_limit
        self.max_limit = max_limit
        self.backoff = backoff
        self._estimate = float(initial)
        self._limit = initial

    @property
    def limit(self) -> int:
        """The limit now."""
        return self._limit

    @property
    def estimate(self) -> float:
        """The unrounded estimate the limit is taken from."""
        return self._estimate

    def update(self, now: float, latency: float, inflight: int, dropped: bool) -> int:
        """Learn from one finished call and return the new limit (`now`, `latency` unused)."""
        estimate = self._estimate
        if dropped:
            estimate *= self.backoff
        elif inflight * 2 >= estimate:
            estimate += 1.0
        estimate = max(float(self.min_limit), min(float(self.max_limit), estimate))
        self._estimate = estimate
        self._limit = int(estimate)
        return self._limit
