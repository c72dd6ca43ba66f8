"""Bulkhead bookkeeping.

`BulkheadLedger` is the whole state of a bulkhead: slots in use, the FIFO queue of waiters
(opaque tokens the driver wakes) and the counters of what became of every call. It never
waits and never reads a clock; the driver calls it under its lock and wakes the waiter it is
told to wake. The ledger balances at every step:
`submitted == running + queued + rejected + completed + failed + cancelled`.

Every step costs O(1) however long the queue: the queue is an insertion-ordered map from
waiter to its enqueue time, so a waiter that gives up anywhere in it leaves in O(1), and the
oldest and the newest are taken from either end.

`CoDelLedger` is the same ledger with a CoDel queue discipline: FIFO while the queue drains,
newest first (and the oldest shed) while it stands.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Final, Generic, Literal, TypeVar

__all__ = ["QUEUE_DISCIPLINES", "BulkheadLedger", "BulkheadMetrics", "CoDelLedger"]

QUEUE_DISCIPLINES: Final = ("codel", "fifo")

W = TypeVar("W")


@dataclass(frozen=True, slots=True)
class BulkheadMetrics:
    """A snapshot of a bulkhead's ledger.

    Attributes:
        running: Calls holding a slot now (at most `max_concurrent`).
        queued: Callers waiting for a slot now (at most `max_queue`).
        rejected: Callers turned away: no slot and no queue room, or `max_wait` passed.
        completed: Calls that returned.
        failed: Calls that raised an `Exception`.
        cancelled: Calls or waiters cancelled (or stopped by a deadline or a signal).
        submitted: Every caller so far; always the sum of the six counts above.
        max_concurrent: The bulkhead's limit now (an adaptive one moves).
        max_queue: The bulkhead's queue size.
    """

    running: int
    queued: int
    rejected: int
    completed: int
    failed: int
    cancelled: int
    submitted: int
    max_concurrent: int
    max_queue: int


class BulkheadLedger(Generic[W]):
    """Slots, a FIFO queue of waiters, and a count of every caller's outcome.

    A released slot goes straight to the longest waiter (it stays counted as running), so a
    newcomer can never take it between the release and the waiter's wake-up.

    The limit may change (`set_limit`). After it shrinks, `running` may exceed it until
    enough calls finish: no slot is taken or handed on while `running >= limit`.

    Waiters are keys of `waiters` (oldest first): distinct hashable objects, equal only to
    themselves (events, tokens), each queued at most once.

    Args:
        limit: How many callers may hold a slot at once, >= 1.
        max_queue: How many callers may wait for one, >= 0.
    """

    __slots__ = (
        "cancelled",
        "completed",
        "failed",
        "limit",
        "max_queue",
        "rejected",
        "running",
        "submitted",
        "waiters",
    )

    def __init__(self, limit: int, max_queue: int) -> None:
        self.limit = limit
        self.max_queue = max_queue
        self.running = 0
        # Waiter -> enqueue time (0.0 here, where order is all that counts), oldest first.
        self.waiters: OrderedDict[W, float] = OrderedDict()
        self.submitted = 0
        self.rejected = 0
        self.completed = 0
        self.failed = 0
        self.cancelled = 0

    def try_admit(self) -> bool:
        """Take a free slot for a new caller, unless none is free or someone waits."""
        # Slots go straight from a finished call to a waiter, so while anyone waits every
        # slot is taken: checking `running` alone keeps newcomers behind the queue.
        if self.running < self.limit:
            self.running += 1
            self.submitted += 1
            return True
        return False

    def enqueue(self, waiter: W) -> bool:
        """Queue a new caller that found no slot; False (counted rejected) if the queue is full."""
        self.submitted += 1
        if len(self.waiters) < self.max_queue:
            self.waiters[waiter] = 0.0
            return True
        self.rejected += 1
        return False

    # A finished call frees its slot. Each returns the waiter the slot was handed to (the
    # driver must wake it), or None when the slot became free.

    def complete(self) -> W | None:
        """Count a call that returned, and free its slot."""
        self.completed += 1
        # `running <= limit`: a limit that just shrank takes the slot back instead.
        if self.waiters and self.running <= self.limit:
            return self.waiters.popitem(last=False)[0]
        self.running -= 1
        return None

    def fail(self) -> W | None:
        """Count a call that raised an `Exception`, and free its slot."""
        self.failed += 1
        return self._hand_on()

    def cancel(self) -> W | None:
        """Count a call that was cancelled, and free its slot."""
        self.cancelled += 1
        return self._hand_on()

    # A waiter that stops waiting.

    def cancel_wait(self, waiter: W) -> W | None:
        """Count a waiter cancelled while waiting; a slot already handed to it is passed on.

        Returns:
            The waiter that now gets the slot (wake it), or None.
        """
        if self._withdraw(waiter):
            self.cancelled += 1
            return None
        # Woken and cancelled before it could run: the slot is its to give away.
        return self.cancel()

    def time_out(self, waiter: W) -> bool:
        """Count a waiter whose `max_wait` passed; False if it was handed a slot meanwhile.

        A waiter for which this returns True holds no slot and must be rejected; one for
        which it returns False holds one and runs.
        """
        if self._withdraw(waiter):
            self.rejected += 1
            return True
        return False

    def metrics(self) -> BulkheadMetrics:
        """Return a snapshot of the counts."""
        return BulkheadMetrics(
            running=self.running,
            queued=len(self.waiters),
            rejected=self.rejected,
            completed=self.completed,
            failed=self.failed,
            cancelled=self.cancelled,
            submitted=self.submitted,
            max_concurrent=self.limit,
            max_queue=self.max_queue,
        )

    def is_idle(self) -> bool:
        """Tell whether no caller holds a slot or waits for one."""
        return self.running == 0 and not self.waiters

    def set_limit(self, limit: int) -> list[W]:
        """Change the limit; return the waiters handed the slots it freed (wake them)."""
        self.limit = limit
        woken: list[W] = []
        while self.waiters and self.running < limit:
            self.running += 1
            woken.append(self._next_waiter())
        return woken

    def _next_waiter(self) -> W:
        return self.waiters.popitem(last=False)[0]

    def _hand_on(self) -> W | None:
        if self.waiters and self.running <= self.limit:
            return self._next_waiter()
        self.running -= 1
        return None

    def _withdraw(self, waiter: W) -> bool:
        """Take `waiter` out of the queue, wherever it is; False if it is not queued."""
        return self.waiters.pop(waiter, None) is not None


class CoDelLedger(BulkheadLedger[W]):
    """A ledger whose queue follows CoDel: FIFO while it drains, newest first while it stands.

    The queue *stands* when its delay (how long its oldest waiter has waited) has stayed at or
    above `target` for the last `interval` seconds: every waiter in that interval waited
    longer than the target. Then a freed slot goes to the newest waiter, whose caller is the
    most likely to still want the answer, and a waiter that has waited `interval` is shed
    (counted rejected). Once the delay drops below the target, FIFO order is back.

    Choosing a waiter needs the time, so a freed slot is not handed over at once: `complete`,
    `fail`, `cancel`, `cancel_wait` and `set_limit` return the driver's `dispatch` token and
    keep the slot reserved (counted running); for each token the driver then calls
    `pick(now)`, which hands the slot to a waiter or frees it.

    Args:
        limit: How many callers may hold a slot at once, >= 1.
        max_queue: How many callers may wait for one, >= 0.
        target: The queue delay that is acceptable, seconds > 0.
        interval: How long the delay must stay above `target` for the queue to stand, and
            how long a waiter may wait in a standing queue, seconds > 0.
        dispatch: The token returned for a reserved slot.
    """

    __slots__ = ("_anchor", "_reserved", "dispatch", "interval", "target")

    def __init__(
        self, limit: int, max_queue: int, *, target: float, interval: float, dispatch: W
    ) -> None:
        super().__init__(limit, max_queue)
        self.target = target
        self.interval = interval
        self.dispatch = dispatch
        # Since when the queue delay has stayed >= target (it may lie ahead); None: empty.
        # The delay only drops when the oldest waiter leaves, so it is updated then.
        self._anchor: float | None = None
        self._reserved = 0  # dispatch tokens given out and not yet picked

    def standing(self, now: float) -> bool:
        """Tell whether the queue delay has stayed >= target for the last interval."""
        anchor = self._anchor
        return anchor is not None and now - anchor >= self.interval

    def enqueue(self, waiter: W) -> bool:
        """Not for this ledger: the enqueue time is needed (`enqueue_at`)."""
        raise TypeError("a CoDel queue needs the enqueue time: use enqueue_at(waiter, now)")

    def enqueue_at(self, waiter: W, now: float) -> bool:
        """Queue a new caller at `now`; False (counted rejected) if the queue is full."""
        self.submitted += 1
        if len(self.waiters) >= self.max_queue:
            self.rejected += 1
            return False
        if not self.waiters:
            self._anchor = now + self.target
        self.waiters[waiter] = now
        return True

    def complete(self) -> W | None:
        """Count a call that returned, and free its slot (reserve it for `pick`)."""
        self.completed += 1
        return self._hand_on()

    def set_limit(self, limit: int) -> list[W]:
        """Change the limit; return a `dispatch` token per slot it freed for a waiter."""
        self.limit = limit
        free = min(len(self.waiters) - self._reserved, limit - self.running)
        if free <= 0:
            return []
        self.running += free
        self._reserved += free
        return [self.dispatch] * free

    def pick(self, now: float) -> W | None:
        """Hand a reserved slot to a waiter (the newest when the queue stands), or free it.

        Returns:
            The waiter that got the slot (wake it), or None when the slot became free.
        """
        self._reserved -= 1
        waiters = self.waiters
        if not waiters or self.running > self.limit:
            self.running -= 1
            return None
        if self.standing(now) and len(waiters) > 1:
            return waiters.popitem(last=True)[0]  # the oldest stays: the delay does not drop
        waiter = waiters.popitem(last=False)[0]
        self._head_left(now)
        return waiter

    def cancel_wait_at(self, waiter: W, now: float) -> W | None:
        """Count a waiter cancelled at `now`; a slot already handed to it is passed on.

        Returns:
            `dispatch` when the slot it held is reserved for another waiter, or None.
        """
        if self._remove(waiter, now):
            self.cancelled += 1
            return None
        return self.cancel()

    def shed_at(self, waiter: W) -> float | None:
        """When `waiter` is to be shed if nothing changes; None if it holds a slot.

        A waiter is shed once it has waited `interval` in a standing queue. The answer can
        only move later (when the delay drops below the target), so check again then.
        """
        since = self.waiters.get(waiter)
        return None if since is None else self._shed_time(since)

    def expire(
        self, waiter: W, now: float, give_up: bool
    ) -> Literal["granted", "rejected", "waiting"]:
        """A waiter's timer fired: shed it if due (or if `give_up`: its `max_wait` passed).

        Returns:
            "granted" if it was handed a slot meanwhile (it runs), "rejected" if it was taken
            out of the queue and counted rejected, "waiting" if it should wait on.
        """
        since = self.waiters.get(waiter)
        if since is None:
            return "granted"
        # The same sum as `shed_at`, so a waiter woken at that time is due to the last bit.
        if give_up or now >= self._shed_time(since):
            self._remove(waiter, now)
            self.rejected += 1
            return "rejected"
        return "waiting"

    def _next_waiter(self) -> W:
        # Which waiter gets the slot is decided by `pick`, which needs the time.
        self._reserved += 1
        return self.dispatch

    def _hand_on(self) -> W | None:
        if len(self.waiters) > self._reserved and self.running <= self.limit:
            return self._next_waiter()
        self.running -= 1
        return None

    def _withdraw(self, waiter: W) -> bool:
        # Without the time, the delay is taken to stay below target until the new oldest
        # waiter reaches it: at worst the queue is seen standing a little later.
        return self._remove(waiter, None)

    def _shed_time(self, since: float) -> float:
        # Waited `interval`, and the queue stands: both hold from the later of the two.
        anchor = self._anchor
        assert anchor is not None  # the queue holds a waiter
        return max(since, anchor) + self.interval

    def _remove(self, waiter: W, now: float | None) -> bool:
        """Take `waiter` out of the queue at `now`, in O(1); False if it is not queued."""
        waiters = self.waiters
        if waiter not in waiters:
            return False
        oldest = next(iter(waiters)) is waiter
        del waiters[waiter]
        if oldest:
            self._head_left(now)
        return True

    def _head_left(self, now: float | None) -> None:
        """The oldest waiter left at `now`: the delay drops to the next one's wait."""
        if not self.waiters:
            self._anchor = None
            return
        oldest = next(iter(self.waiters.values()))
        if now is None or now - oldest < self.target:
            self._anchor = oldest + self.target
