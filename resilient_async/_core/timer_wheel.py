"""Deadlines grouped by tick, so that arming one is an append and disarming a counter.

Arming a loop timer per guarded call costs more than most guarded calls (a timer object, a
heap push with Python-level comparisons, a cancellation the loop sweeps later), and most calls
finish long before their deadline. The wheel instead keeps one *bucket* per tick (a slice of
`resolution` seconds of the clock) holding the entries due in it, and the driver arms one loop
timer per bucket, at the earliest deadline in it (as `Netty's HashedWheelTimer` and Kafka's
request purgatory do, without their lateness).

- Arming appends the entry to its tick's bucket; only the first entry of a tick, or one due
  earlier than the bucket's timer, asks the driver for a loop timer.
- Disarming (the guarded block finished) clears the entry's `wheel_bucket` and counts the
  bucket's live entries down; a bucket whose live entries are all gone drops its list at
  once, so finished calls are not kept alive until their deadline.
- When a bucket's timer fires, every live entry due by then is returned to be expired; the
  live entries due later (same tick, a later deadline) get a timer at the earliest of them.

Nothing fires late: a deadline expires when the driver's timer for its exact time fires,
as with one timer per call. Entries are any objects with a `wheel_when` (the absolute
deadline) and a `wheel_bucket` slot.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

__all__ = ["Bucket", "Entry", "TimerWheel"]

# Dead entries (disarmed, still listed) tolerated beyond twice the live ones before a bucket
# is compacted: a bucket whose live count never reaches zero stays in O(live) memory.
_SLACK = 64


class Entry(Protocol):
    """What the wheel needs of an entry: its deadline and the bucket holding it."""

    wheel_when: float
    wheel_bucket: Bucket | None


class Bucket:
    """The entries of one tick, and the loop timer the driver armed for it."""

    __slots__ = ("entries", "fire_at", "handle", "key", "live")

    def __init__(self, key: int, fire_at: float) -> None:
        self.key = key
        self.fire_at = fire_at  # when the driver's timer for this bucket fires
        self.entries: list[Any] = []
        self.live = 0
        self.handle: Any = None  # the driver's timer, to cancel when it is re-armed

    def __repr__(self) -> str:
        return f"Bucket(key={self.key}, fire_at={self.fire_at!r}, live={self.live})"


class TimerWheel:
    """Buckets of deadlines by tick; see the module docstring.

    Args:
        resolution: The width of a tick in seconds (> 0): deadlines within one tick share a
            bucket and, while they are armed, at most one driver timer at a time.
    """

    __slots__ = ("__weakref__", "_buckets", "_per_second")

    def __init__(self, resolution: float = 1 / 64) -> None:
        if not 0 < resolution < math.inf:
            raise ValueError(f"resolution must be a finite number > 0, got {resolution!r}")
        self._per_second = 1 / resolution
        self._buckets: dict[int, Bucket] = {}

    def __len__(self) -> int:
        """How many buckets are pending (each has, or is about to get, a driver timer)."""
        return len(self._buckets)

    def arm(self, entry: Entry, when: float) -> Bucket | None:
        """File `entry`, due at `when`.

        Returns:
            The bucket, when the driver must (re)arm its timer at `bucket.fire_at` (cancelling
            `bucket.handle` first, if set); None when the bucket's timer already covers it.
        """
        entry.wheel_when = when
        # Truncation, not floor: cheaper, and any grouping is correct (fire_at is exact).
        key = int(when * self._per_second)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = Bucket(key, when)
            bucket.entries.append(entry)
            bucket.live = 1
            entry.wheel_bucket = bucket
            return bucket
        entries = bucket.entries
        entries.append(entry)
        bucket.live += 1
        entry.wheel_bucket = bucket
        if when < bucket.fire_at:
            bucket.fire_at = when
            return bucket
        if len(entries) > 2 * bucket.live + _SLACK:
            bucket.entries = [e for e in entries if e.wheel_bucket is bucket]
        return None

    @staticmethod
    def disarm(entry: Entry) -> None:
        """Forget `entry` (its block finished); a no-op when it is not armed."""
        bucket = entry.wheel_bucket
        if bucket is not None:
            entry.wheel_bucket = None
            bucket.live -= 1
            if not bucket.live:
                bucket.entries.clear()

    def fire(self, bucket: Bucket, now: float) -> tuple[list[Any], Bucket | None]:
        """The driver's timer for `bucket` fired at `now`: take the entries due.

        Entries due by `max(now, bucket.fire_at)` are due (the driver judged the timer due).

        Returns:
            The entries to expire, now disarmed, and the bucket again when live entries due
            later remain (the driver arms a timer at its new `fire_at`), else None.
        """
        due_by = now if now > bucket.fire_at else bucket.fire_at
        due: list[Any] = []
        later: list[Any] = []
        for entry in bucket.entries:
            if entry.wheel_bucket is not bucket:
                continue  # disarmed, or listed twice
            if entry.wheel_when <= due_by:
                entry.wheel_bucket = None
                due.append(entry)
            else:
                later.append(entry)
        if later:
            # Re-armed entries may be listed twice: keep one of each.
            later = list(dict.fromkeys(later))
            bucket.entries = later
            bucket.live = len(later)
            bucket.fire_at = min(e.wheel_when for e in later)
            return due, bucket
        bucket.entries = []
        bucket.live = 0
        if self._buckets.get(bucket.key) is bucket:
            del self._buckets[bucket.key]
        return due, None
