"""Bulkhead bookkeeping.

`BulkheadLedger` is the whole state of a bulkhead: slots in use, the FIFO queue of waiters
(opaque tokens the driver wakes) and the counters of what became of every call. It never
waits and never reads a clock; the driver calls it under its lock and wakes the waiter it is
told to wake. The ledger balances at every step:
`submitted == running + queued + rejected + completed + failed + cancelled`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["BulkheadLedger", "BulkheadMetrics"]

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
        max_concurrent: The bulkhead's limit.
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
        self.waiters: deque[W] = deque()
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
            self.waiters.append(waiter)
            return True
        self.rejected += 1
        return False

    # A finished call frees its slot. Each returns the waiter the slot was handed to (the
    # driver must wake it), or None when the slot became free.

    def complete(self) -> W | None:
        """Count a call that returned, and free its slot."""
        self.completed += 1
        if self.waiters:
            return self.waiters.popleft()
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

    def _hand_on(self) -> W | None:
        if self.waiters:
            return self.waiters.popleft()
        self.running -= 1
        return None

    def _withdraw(self, waiter: W) -> bool:
        waiters = self.waiters
        if waiters and waiters[0] is waiter:
            waiters.popleft()
            return True
        for index, queued in enumerate(waiters):
            if queued is waiter:
                del waiters[index]
                return True
        return False
