"""An adaptive bulkhead: its concurrency limit follows the dependency's measured latency.

`AdaptiveBulkhead` is a `Bulkhead` whose ledger limit is moved by a limit algorithm from
`_core/limits.py` after every call that ran: the driver times the call (from the moment it
got its slot, so time spent in the bulkhead's own queue is not the dependency's latency),
classifies its outcome, and passes both with the number of calls in flight. A limit that
grows hands the new slots to waiters at once; one that shrinks takes slots back as calls
finish. Cancelled calls are not samples.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any, Final

from .._core.limits import LimitAlgorithm, check_limits, make_limit
from .._core.signals import is_catchable
from ..classify import ErrorClass, classify
from ..context import attach_context
from ..instrumentation import Hook, emit_to
from . import _backend
from .bulkhead import Bulkhead, Wakeable
from .policy import MUST_WAIT

__all__ = ["AdaptiveBulkhead"]

# Outcomes that say the dependency is overloaded: the limit backs off.
_DROPS: Final = frozenset({ErrorClass.TRANSIENT, ErrorClass.TIMEOUT, ErrorClass.THROTTLED})


class AdaptiveBulkhead(Bulkhead):
    """A bulkhead whose limit grows while latency stays at its no-load level.

    Built by `Bulkhead.adaptive`. After every call that ran, its latency (from getting a slot
    to finishing) and outcome move the limit, between `min_limit` and `max_limit`:

    - "gradient" (the default) compares the smallest latency of the last 30 s (the no-load
      latency) with this call's: the limit grows by about `0.1 * sqrt(limit)` a call while
      they match, and shrinks as queueing inside the dependency inflates latency, settling
      where a queue of about `sqrt(limit)` calls stands.
    - "aimd" adds 1 a successful call and multiplies by 0.9 on a drop.

    A *drop* is a call that raised an error classified TRANSIENT, TIMEOUT or THROTTLED (a
    failure, a timeout, a rejection downstream): it shrinks the limit under both algorithms
    (the gradient takes it as the worst latency). A PERMANENT error is an answer: its latency
    counts like a success's. Other errors, cancelled calls and callers this bulkhead rejected
    are not samples. The limit grows only while at least half of it is in use.

    `limit` reads the limit now; `max_concurrent` is `max_limit`, the most that can ever run
    at once. The configuration is read-only. Each change of the limit emits
    `bulkhead.limit_changed` (`old_limit`, `new_limit`, `latency`, `algorithm`).

    Raises:
        ValueError: `min_limit > max_limit`, `initial` outside them, an unknown algorithm or
            queue discipline, or another argument out of range.
        TypeError: An argument has the wrong type.
    """

    _tokenless = False  # its token is the start time, kept by `async with`
    __slots__ = ("_algorithm", "_algorithm_name", "_initial", "_max_limit", "_min_limit")

    def __init__(
        self,
        *,
        initial: int = 20,
        min_limit: int = 1,
        max_limit: int = 1000,
        algorithm: str = "gradient",
        max_queue: int = 0,
        max_wait: float | timedelta | None = None,
        name: str | None = None,
        hooks: Iterable[Hook] = (),
        queue: str = "fifo",
        codel_target: float | timedelta = 0.005,
        codel_interval: float | timedelta = 0.1,
    ) -> None:
        check_limits(initial, min_limit, max_limit)
        self._algorithm: LimitAlgorithm = make_limit(algorithm, initial, min_limit, max_limit)
        super().__init__(
            max_limit,
            max_queue=max_queue,
            max_wait=max_wait,
            name=name,
            hooks=hooks,
            queue=queue,
            codel_target=codel_target,
            codel_interval=codel_interval,
        )
        self._initial = initial
        self._min_limit = min_limit
        self._max_limit = max_limit
        self._algorithm_name = algorithm
        self._ledger.limit = initial

    @property
    def initial(self) -> int:
        """The limit it started with."""
        return self._initial

    @property
    def min_limit(self) -> int:
        """The smallest the limit can be."""
        return self._min_limit

    @property
    def max_limit(self) -> int:
        """The largest the limit can be (also `max_concurrent`)."""
        return self._max_limit

    @property
    def algorithm(self) -> str:
        """The limit algorithm, "gradient" or "aimd"."""
        return self._algorithm_name

    def __repr__(self) -> str:
        return (
            f"Bulkhead.adaptive(initial={self.initial!r}, min_limit={self.min_limit!r}, "
            f"max_limit={self.max_limit!r}, algorithm={self.algorithm!r}, "
            f"max_queue={self.max_queue!r}, max_wait={self.max_wait!r}, name={self.name!r}, "
            f"queue={self.queue!r})"
        )

    # --- the guard's admission: the token is the time the call got its slot --------------

    def enter_nowait(self) -> object:
        """Take a free slot: its start time (the token), or `MUST_WAIT` when none is free."""
        if Bulkhead.enter_nowait(self) is MUST_WAIT:
            return MUST_WAIT
        return _backend.current_time()

    async def enter(self) -> float:
        """Wait in the queue for a slot; return the time it was granted.

        Raises:
            BulkheadFullError: No queue room, or the wait was too long.
        """
        await super().enter()
        return _backend.current_time()

    def exit(self, token: Any, error: BaseException | None) -> None:
        """Learn from the call's latency and outcome, then free its slot.

        A cancelled or withdrawn call is no sample: it only frees its slot.
        """
        if error is None or is_catchable(error):
            self._learn(token, error)
            if error is not None:
                attach_context(error, self._context)
        else:
            self._free(self._ledger.cancel)

    @property
    def _kind(self) -> str:
        return "Bulkhead"  # built by `Bulkhead.adaptive`: errors name the public class

    # --- learning -----------------------------------------------------------------------

    def _learn(self, start: float, error: Exception | None) -> None:
        """Feed the call's latency and outcome to the algorithm, then free its slot."""
        ledger = self._ledger
        if error is None:
            outcome, dropped = ledger.complete, False
        else:
            outcome = ledger.fail
            error_class = classify(error)
            dropped = error_class in _DROPS
            if not dropped and error_class is not ErrorClass.PERMANENT:
                self._free(outcome)  # an error that says nothing about load
                return
        now = _backend.current_time()
        latency = now - start
        woken: list[Wakeable] = []
        with self._lock:
            old = ledger.limit
            new = self._algorithm.update(now, latency, ledger.running, dropped)
            if new != old:
                woken = ledger.set_limit(new)
            waiter = outcome()
        for handed in woken:
            handed.set()
        if waiter is not None:
            waiter.set()
        if new != old:
            emit_to(
                self._hooks,
                "bulkhead.limit_changed",
                self.name,
                old_limit=old,
                new_limit=new,
                latency=latency,
                algorithm=self.algorithm,
            )
