"""Sliding windows of call outcomes: the last N calls, or the calls of the last T seconds.

A breaker decides on rates over a window, so a window only keeps three running totals: calls,
failures and slow calls (a slow call that failed counts in both). Recording is O(1) and the
memory is O(window): the count window is a ring of one byte per call, the time window a fixed
number of buckets. Both are pure: the time is passed in, nothing is read from a clock.

Both classes expose the totals as the attributes `calls`, `failures` and `slow`, current as of
the last `record`; `totals(now)` reads them as of a later time without changing anything.
"""

from __future__ import annotations

from typing import Final

__all__ = ["DEFAULT_BUCKETS", "CountWindow", "TimeWindow", "Window"]

DEFAULT_BUCKETS: Final = 10
"""How many buckets a time window is cut into (its resolution is window / buckets)."""

_FAILED: Final = 1
_SLOW: Final = 2


class CountWindow:
    """Keep the outcomes of the last `size` calls.

    Once `size` calls are recorded, each new call pushes out the oldest one. `now` is accepted
    by every method so that both windows share one interface, and ignored.

    Attributes:
        size: How many calls the window holds.
        total: How many calls were ever recorded (since the last `clear`).
        failures: Failed calls in the window.
        slow: Slow calls in the window.

    While `failures` and `slow` are both 0 every slot of the ring is 0, so recording a
    success is `total += 1` alone; `BreakerCore` relies on this for its closed path.

    Example:
        >>> window = CountWindow(2)
        >>> for failed in (True, False, False):
        ...     window.record(0.0, failed, False)
        >>> window.totals(0.0)
        (2, 0, 0)
    """

    __slots__ = ("_ring", "failures", "size", "slow", "total")

    def __init__(self, size: int) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be an int >= 1, got {size!r}")
        self.size = size
        # One byte per call, call number n in slot n % size: bit 0 = failed, bit 1 = slow.
        self._ring = bytearray(size)
        self.total = 0
        self.failures = 0
        self.slow = 0

    @property
    def calls(self) -> int:
        """Calls in the window (at most `size`)."""
        return min(self.total, self.size)

    def record(self, now: float, failed: bool, slow: bool) -> None:
        """Add one call's outcome, pushing out the oldest one when the window is full."""
        total = self.total
        index = total % self.size
        if total >= self.size:
            old = self._ring[index]
            if old:
                self.failures -= old & _FAILED
                self.slow -= old >> 1
        self._ring[index] = failed | (slow << 1)
        self.failures += failed
        self.slow += slow
        self.total = total + 1

    def totals(self, now: float) -> tuple[int, int, int]:
        """Return (calls, failures, slow calls) in the window."""
        return min(self.total, self.size), self.failures, self.slow

    def clear(self) -> None:
        """Forget every call."""
        self._ring = bytearray(self.size)
        self.total = self.failures = self.slow = 0


class TimeWindow:
    """Keep the outcomes of the calls of the last `seconds`, in `buckets` fixed buckets.

    Time is cut into buckets of `seconds / buckets`; a call falls in the bucket that holds the
    time it is recorded at. At time `now` the window holds the bucket of `now` and the
    `buckets - 1` before it, so a call stays counted for between `seconds - seconds / buckets`
    and `seconds` after it was recorded. A clock jump longer than the window empties it. A
    time earlier than the newest bucket (a clock that went backwards) records into the newest
    bucket.

    Attributes:
        seconds: The window's length.
        buckets: How many buckets it is cut into.
        calls: Calls in the window as of the last `record`.
        failures: Failed calls in the window as of the last `record`.
        slow: Slow calls in the window as of the last `record`.

    Example:
        >>> window = TimeWindow(10.0, buckets=10)
        >>> window.record(0.5, True, False)
        >>> window.totals(9.9), window.totals(10.0)
        ((1, 1, 0), (0, 0, 0))
    """

    __slots__ = (
        "_bucket_calls",
        "_bucket_failures",
        "_bucket_slow",
        "_head",
        "_width",
        "buckets",
        "calls",
        "failures",
        "seconds",
        "slow",
    )

    def __init__(self, seconds: float, buckets: int = DEFAULT_BUCKETS) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
            raise ValueError(f"seconds must be a number > 0, got {seconds!r}")
        if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 1:
            raise ValueError(f"buckets must be an int >= 1, got {buckets!r}")
        self.seconds = float(seconds)
        self.buckets = buckets
        self._width = self.seconds / buckets
        self._bucket_calls = [0] * buckets
        self._bucket_failures = [0] * buckets
        self._bucket_slow = [0] * buckets
        # Absolute number (time // width) of the newest bucket; every slot holds one of the
        # `buckets` numbers up to it, slot = number % buckets.
        self._head: int | None = None
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def record(self, now: float, failed: bool, slow: bool) -> None:
        """Add one call's outcome at time `now`, first dropping the buckets that expired."""
        number = int(now // self._width)
        head = self._head
        if head is None or number > head:
            self._roll(head, number)
        else:
            number = head  # same bucket, or a clock that went backwards
        slot = number % self.buckets
        self._bucket_calls[slot] += 1
        self.calls += 1
        if failed:
            self._bucket_failures[slot] += 1
            self.failures += 1
        if slow:
            self._bucket_slow[slot] += 1
            self.slow += 1

    def totals(self, now: float) -> tuple[int, int, int]:
        """Return (calls, failures, slow calls) in the window at `now`, changing nothing."""
        head = self._head
        if head is None:
            return 0, 0, 0
        number = int(now // self._width)
        if number <= head:
            return self.calls, self.failures, self.slow
        if number - head >= self.buckets:
            return 0, 0, 0
        calls, failures, slow = self.calls, self.failures, self.slow
        for expired in range(head + 1, number + 1):
            slot = expired % self.buckets
            calls -= self._bucket_calls[slot]
            failures -= self._bucket_failures[slot]
            slow -= self._bucket_slow[slot]
        return calls, failures, slow

    def clear(self) -> None:
        """Forget every call."""
        self._head = None
        self._reset_buckets()

    def _roll(self, head: int | None, number: int) -> None:
        """Make `number` the newest bucket, emptying the ones it pushes out."""
        self._head = number
        if head is None or number - head >= self.buckets:
            self._reset_buckets()
            return
        # Bucket numbers head+1 .. number reuse the slots of the oldest ones: at most
        # `buckets` slots, so this stays O(1) per record for a fixed bucket count.
        for fresh in range(head + 1, number + 1):
            slot = fresh % self.buckets
            self.calls -= self._bucket_calls[slot]
            self.failures -= self._bucket_failures[slot]
            self.slow -= self._bucket_slow[slot]
            self._bucket_calls[slot] = self._bucket_failures[slot] = self._bucket_slow[slot] = 0

    def _reset_buckets(self) -> None:
        count = self.buckets
        self._bucket_calls = [0] * count
        self._bucket_failures = [0] * count
        self._bucket_slow = [0] * count
        self.calls = self.failures = self.slow = 0


Window = CountWindow | TimeWindow
"""Either kind of window; both have the same methods and total attributes."""
