"""A bulkhead's CoDel queue (`queue="codel"`): which waiter gets a freed slot depends on time.

The state is a `CoDelLedger`. A freed slot is not handed to a waiter at once: the ledger
reserves it and returns this queue as its dispatch token, whose `set()` reads the clock and
hands the slot to the waiter the ledger picks then (the newest one while the queue stands).
Each waiter also wakes when it is due to be shed, and is rejected then. A bulkhead with the
default FIFO queue never touches this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from .._core.bulkhead import CoDelLedger
from . import _backend

if TYPE_CHECKING:
    from .bulkhead import Wakeable

__all__ = ["CoDelQueue"]


class CoDelQueue:
    """The ledger and the waiting path of a bulkhead with `queue="codel"`.

    Args:
        max_concurrent: The bulkhead's limit.
        max_queue: How many callers may wait.
        target: The queueing delay that is acceptable, in seconds.
        interval: How long the delay must stay above `target` before the queue stands, and
            the longest wait in a standing queue, in seconds.
        max_wait: The bulkhead's `max_wait` (None: no limit but the effective deadline).
        lock: The bulkhead's lock, under which the ledger changes.
        reject: Raises the bulkhead's `BulkheadFullError` for a reason.
    """

    __slots__ = ("_interval", "_lock", "_max_wait", "_reject", "ledger")

    def __init__(
        self,
        max_concurrent: int,
        max_queue: int,
        *,
        target: float,
        interval: float,
        max_wait: float | None,
        lock: _backend.Lock,
        reject: Callable[[str], NoReturn],
    ) -> None:
        self.ledger: CoDelLedger[Wakeable] = CoDelLedger(
            max_concurrent, max_queue, target=target, interval=interval, dispatch=self
        )
        self._interval = interval
        self._max_wait = max_wait
        self._lock = lock
        self._reject = reject

    def set(self) -> None:
        """Hand a slot the ledger reserved to the waiter it picks now (the dispatch token)."""
        now = _backend.current_time()
        with self._lock:
            waiter = self.ledger.pick(now)
        if waiter is not None:
            waiter.set()

    async def wait(self) -> None:
        """Queue for a slot, or raise; return once a slot was handed to this caller.

        Raises:
            BulkheadFullError: The queue is full, `max_wait` passed, or the caller was shed.
        """
        ledger = self.ledger
        now = _backend.current_time()
        with self._lock:
            if ledger.try_admit():
                return
            waiter = _backend.Event()
            queued = ledger.enqueue_at(waiter, now)
        if not queued:
            self._reject("no free slot and the queue is full")
        give_up_at = now + (math.inf if self._max_wait is None else self._max_wait)
        while True:
            with self._lock:
                shed_at = ledger.shed_at(waiter)
            if shed_at is None:
                return  # a slot was handed over between two waits
            wake_at = min(shed_at, give_up_at)
            try:
                granted = await _backend.wait_event(
                    waiter, max(0.0, wake_at - _backend.current_time())
                )
            except BaseException:
                with self._lock:
                    successor = ledger.cancel_wait_at(waiter, _backend.current_time())
                if successor is not None:
                    successor.set()
                raise
            if granted:
                return
            now = _backend.current_time()
            with self._lock:
                verdict = ledger.expire(waiter, now, now >= give_up_at)
            if verdict == "granted":
                return
            if verdict == "rejected":
                if now >= give_up_at:
                    self._reject(f"no slot within max_wait={self._max_wait}s")
                self._reject(f"shed after waiting {self._interval}s in a standing queue (codel)")
