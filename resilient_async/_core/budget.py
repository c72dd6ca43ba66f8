"""The state of a retry budget: how many retries the recent calls have earned.

Finagle-style: every call (a first attempt) deposits, every retry withdraws, and a retry is
allowed while the retries counted over the last `ttl` seconds stay within
`ratio * calls + min_per_second * ttl`. The floor (`min_per_second * ttl`) lets a quiet
service still retry; the ratio bounds the extra load a failing dependency sees to
`1 + ratio` times the calls, however many retry loops share the budget.

Counts live in a ring of buckets, so memory is O(1) whatever the call rate. An event is
forgotten only once it is older than `ttl` (it may be kept up to one bucket, `ttl / buckets`,
longer), so the bound holds over every window of `ttl` seconds.

Pure: no clock reads, no locks, no I/O; the caller passes `now` (on any monotonic clock) and
serialises access.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Final

from .checks import check_period

__all__ = ["RetryBudgetState", "check_budget_config"]

DEFAULT_BUCKETS: Final = 10


def check_budget_config(
    ratio: float, min_per_second: float, ttl: float | timedelta
) -> tuple[float, float, float]:
    """Validate a budget's parameters; return them as floats.

    Raises:
        TypeError: A parameter is not a number.
        ValueError: `ratio` or `min_per_second` is negative, NaN or infinite, or `ttl` is
            not a finite number > 0.
    """
    ratio = _finite(ratio, "ratio")
    min_per_second = _finite(min_per_second, "min_per_second")
    return ratio, min_per_second, check_period(ttl, "ttl")


class RetryBudgetState:
    """Counts of calls and retries over a sliding window of `ttl` seconds.

    Args:
        ratio: Retries earned per call, >= 0 (0.2 = one retry per five calls).
        min_per_second: Retries allowed per second whatever the calls, >= 0.
        ttl: The window in seconds, > 0.
        buckets: How many steps the window slides in, >= 1.

    Raises:
        TypeError: A parameter is not a number.
        ValueError: A parameter is out of range.
    """

    __slots__ = (
        "_calls",
        "_epoch",
        "_index",
        "_retries",
        "_total_calls",
        "_total_retries",
        "_width",
        "floor",
        "ratio",
        "ttl",
    )

    def __init__(
        self,
        ratio: float,
        min_per_second: float,
        ttl: float,
        *,
        buckets: int = DEFAULT_BUCKETS,
    ) -> None:
        self.ratio, min_per_second, self.ttl = check_budget_config(ratio, min_per_second, ttl)
        if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 1:
            raise ValueError(f"buckets must be an int >= 1, got {buckets!r}")
        self.floor = min_per_second * self.ttl
        self._width = self.ttl / buckets
        # One bucket more than the window spans: the oldest one still holds events younger
        # than `ttl` until the current bucket's start passes their bucket's end plus `ttl`.
        self._calls = [0] * (buckets + 1)
        self._retries = [0] * (buckets + 1)
        self._index = 0
        self._epoch: int | None = None
        self._total_calls = 0
        self._total_retries = 0

    def deposit(self, now: float) -> None:
        """Count one call (a first attempt) at `now`."""
        self._advance(now)
        self._calls[self._index] += 1
        self._total_calls += 1

    def try_withdraw(self, now: float) -> bool:
        """Count one retry at `now` if the budget allows it; tell whether it did."""
        self._advance(now)
        if self._total_retries + 1 > self.ratio * self._total_calls + self.floor:
            return False
        self._retries[self._index] += 1
        self._total_retries += 1
        return True

    def available(self, now: float) -> float:
        """Return how many retries the budget would allow at `now` (may be fractional)."""
        self._advance(now)
        return max(0.0, self.ratio * self._total_calls + self.floor - self._total_retries)

    def counts(self, now: float) -> tuple[int, int]:
        """Return the (calls, retries) counted in the window at `now`."""
        self._advance(now)
        return self._total_calls, self._total_retries

    def _advance(self, now: float) -> None:
        epoch = math.floor(now / self._width) if math.isfinite(now) else None
        if epoch is None:
            return  # a broken clock reading: keep counting in the current bucket
        if self._epoch is None:
            self._epoch = epoch
            return
        steps = epoch - self._epoch
        if steps <= 0:
            return  # same bucket (or a clock that went back): nothing expires
        self._epoch = epoch
        calls, retries = self._calls, self._retries
        size = len(calls)
        if steps >= size:
            for index in range(size):
                calls[index] = retries[index] = 0
            self._total_calls = self._total_retries = 0
            return
        index = self._index
        for _ in range(steps):
            index = (index + 1) % size
            self._total_calls -= calls[index]
            self._total_retries -= retries[index]
            calls[index] = retries[index] = 0
        self._index = index


def _finite(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    try:
        result = float(value)
    except OverflowError:
        raise ValueError(f"{name} is too large: {name} must be a finite number >= 0") from None
    if not 0.0 <= result < math.inf:  # also rejects NaN
        raise ValueError(f"{name} must be a finite number >= 0, got {result}")
    return result
