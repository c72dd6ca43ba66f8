"""Bulkhead: at most `max_concurrent` calls at once, a bounded FIFO queue behind them.

The state is a `BulkheadLedger` (counters and a deque of waiter events) changed under the
backend lock, never across a wait. On the uncontended path a call takes a slot and frees it
with plain arithmetic: it waits for nothing but the call itself. A freed slot is handed straight
to the longest waiter, which stays counted as running from that moment; a waiter that is then
cancelled before it resumes (CPython gh-90155, anyio #947) passes the slot on, and a waiter
whose `max_wait` passed is taken out of the queue before it is rejected, so it never holds one.

A guard: `enter_nowait` takes a free slot, `enter` queues for one, `exit` counts the outcome
and frees the slot; `call`, `async with`, the decorator and pipelines run through these.

With `queue="codel"` the ledger and the waiting path are a `CoDelQueue` (`codel.py`): which
waiter gets a freed slot depends on the time. The FIFO path is untouched by this.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeVar

from .._core.bulkhead import QUEUE_DISCIPLINES, BulkheadLedger, BulkheadMetrics
from .._core.checks import (
    check_hooks,
    check_int,
    check_name,
    check_positive,
    check_seconds,
    seconds_of,
)
from .._core.signals import is_catchable
from ..context import PreparedFields, attach_context
from ..errors import BulkheadFullError
from ..instrumentation import Hook, emit_to
from . import _backend
from .codel import CoDelQueue
from .keyed import Keyed
from .policy import MUST_WAIT, Guard

if TYPE_CHECKING:
    from .adaptive import AdaptiveBulkhead

__all__ = ["Bulkhead", "BulkheadMetrics", "KeyedBulkhead"]

K = TypeVar("K", bound=Hashable)


class Wakeable(Protocol):
    """What a ledger hands a slot to: a waiter's event, or a CoDel queue's dispatch token."""

    def set(self) -> None: ...


class Bulkhead(Guard):
    """Run at most `max_concurrent` calls at once; queue a few more, reject the rest.

    A caller that finds every slot taken waits in FIFO order if fewer than `max_queue`
    already wait, for at most `max_wait` seconds (None: until the effective deadline, whose
    scope then raises `DeadlineExceeded`); otherwise it gets `BulkheadFullError` at once.
    Use it through `call`, as a decorator, or as a context manager around a block.
    Unlike a semaphore it also rejects: its queue is bounded, so an overloaded dependency
    sheds load instead of piling up callers. For one bulkhead per tenant or host, see
    `Bulkhead.per_key`; for a limit that follows the dependency's latency,
    `Bulkhead.adaptive`.

    With `queue="codel"`, waiters are served in FIFO order only while the queue drains. When
    it stands (every waiter of the last `codel_interval` seconds waited longer than
    `codel_target`), a freed slot goes to the newest waiter and a waiter that has waited
    `codel_interval` is rejected: under overload the calls that run stay fast, at the price
    of fairness (adaptive LIFO with CoDel).

    Args:
        max_concurrent: How many calls may run at once, an int >= 1.
        max_queue: How many callers may wait for a slot, an int >= 0 (0: never wait).
        max_wait: The longest a caller waits in the queue, in seconds >= 0 (or a
            `timedelta`), or None for no limit but the effective deadline. Only with a
            queue (`max_queue` >= 1).
        name: A name for events, errors and error context.
        hooks: Hooks (callables taking one event) for this bulkhead's events only.
        queue: The queue discipline, "fifo" or "codel".
        codel_target: With "codel", the queueing delay that is acceptable, seconds > 0.
        codel_interval: With "codel", how long the delay must stay above the target before
            the queue counts as standing, and the longest wait in a standing queue,
            seconds > 0.

    The configuration is read-only (`max_concurrent`, `max_queue`, `max_wait`, `name`,
    `queue`, `codel_target`, `codel_interval`).

    Raises:
        ValueError: An argument is out of range, or `max_wait` is given without a queue.
        TypeError: An argument has the wrong type.

    Example:
        >>> db_pool = Bulkhead(10, max_queue=20, max_wait=0.5, name="db")
        >>> run_query = db_pool(run_query)  # 10 run at once, 20 more may wait 0.5 s
    """

    _tokenless = True  # its token is None: `async with` keeps none
    __slots__ = (
        "__weakref__",  # a per-key registry finds a bulkhead still in use through one
        "_codel",
        "_codel_interval",
        "_codel_target",
        "_complete",
        "_context",
        "_hooks",
        "_ledger",
        "_lock",
        "_max_concurrent",
        "_max_queue",
        "_max_wait",
        "_name",
        "_queue",
        "_try_admit",
        "_wait_limit",
    )

    def __init__(
        self,
        max_concurrent: int,
        *,
        max_queue: int = 0,
        max_wait: float | timedelta | None = None,
        name: str | None = None,
        hooks: Iterable[Hook] = (),
        queue: str = "fifo",
        codel_target: float | timedelta = 0.005,
        codel_interval: float | timedelta = 0.1,
    ) -> None:
        self._max_concurrent = check_int(max_concurrent, "max_concurrent", 1)
        self._max_queue = check_int(max_queue, "max_queue", 0)
        self._max_wait = None if max_wait is None else check_seconds(max_wait, "max_wait")
        if self._max_wait is not None and self._max_queue == 0:
            raise ValueError(
                f"max_wait={self._max_wait:g} has no effect with max_queue=0 (no caller ever "
                "waits): give max_queue >= 1, or leave max_wait None"
            )
        self._name = name = check_name(name)
        self._hooks: tuple[Hook, ...] = check_hooks(hooks)
        if queue not in QUEUE_DISCIPLINES:
            raise ValueError(f"queue must be 'fifo' or 'codel', got {queue!r}")
        self._queue = queue
        self._codel_target = check_positive(
            seconds_of(codel_target, "codel_target"), "codel_target"
        )
        self._codel_interval = check_positive(
            seconds_of(codel_interval, "codel_interval"), "codel_interval"
        )
        self._wait_limit = math.inf if self._max_wait is None else self._max_wait
        self._lock = _backend.Lock()
        self._codel: CoDelQueue | None = None
        self._ledger: BulkheadLedger[Wakeable]
        if queue == "codel":
            self._codel = CoDelQueue(
                self._max_concurrent,
                self._max_queue,
                target=self._codel_target,
                interval=self._codel_interval,
                max_wait=self._max_wait,
                lock=self._lock,
                reject=self._reject,
            )
            self._ledger = self._codel.ledger
        else:
            self._ledger = BulkheadLedger(self._max_concurrent, self._max_queue)
        # The two hot steps, bound once: the ledger's own methods in async code (no other
        # task runs between a read and a write), wrapped in the thread lock in the sync twin.
        self._try_admit = _backend.locking(self._lock, self._ledger.try_admit)
        self._complete = _backend.locking(self._lock, self._ledger.complete)
        # Merged into the error context of errors raised here or passing through.
        self._context = PreparedFields({"policy": name or "Bulkhead"})

    def __repr__(self) -> str:
        codel = (
            f", queue='codel', codel_target={self._codel_target!r}, "
            f"codel_interval={self._codel_interval!r}"
            if self._codel is not None
            else ""
        )
        return (
            f"Bulkhead({self.max_concurrent!r}, max_queue={self.max_queue!r}, "
            f"max_wait={self.max_wait!r}, name={self.name!r}{codel})"
        )

    @property
    def limit(self) -> int:
        """How many calls may run at once now (fixed here; it moves on an adaptive one)."""
        return self._ledger.limit

    @property
    def queue(self) -> str:
        """The queue discipline, "fifo" or "codel"."""
        return self._queue

    @property
    def codel_target(self) -> float:
        """With "codel", the queueing delay that is acceptable, in seconds."""
        return self._codel_target

    @property
    def codel_interval(self) -> float:
        """With "codel", how long a standing queue lasts before it counts, in seconds."""
        return self._codel_interval

    @property
    def max_concurrent(self) -> int:
        """How many calls may run at once."""
        return self._max_concurrent

    @property
    def max_queue(self) -> int:
        """How many callers may wait for a slot."""
        return self._max_queue

    @property
    def max_wait(self) -> float | None:
        """The longest a caller waits in the queue, in seconds, or None."""
        return self._max_wait

    @property
    def in_use(self) -> int:
        """How many slots are taken now (calls running, or handed to a waking waiter)."""
        return self._ledger.running

    @property
    def queued(self) -> int:
        """How many callers wait for a slot now."""
        return len(self._ledger.waiters)

    def metrics(self) -> BulkheadMetrics:
        """Return a frozen snapshot: running, queued, rejected, completed, failed, cancelled.

        `submitted` counts every caller and always equals the sum of the other six.
        """
        with self._lock:
            return self._ledger.metrics()

    # --- the guard's admission: `call`, `async with` and pipelines run through these ------

    def enter_nowait(self) -> object:
        """Take a free slot: None (the token), or `MUST_WAIT` when none is free.

        Raises:
            DeadlineExceeded: In sync code, the effective deadline has passed.
        """
        # unasync: sync-only: _backend.check_deadline()
        return None if self._try_admit() else MUST_WAIT

    async def enter(self) -> object:
        """Wait in the queue for a slot; None (the token).

        Raises:
            BulkheadFullError: No queue room, or `max_wait` passed while queued (a fresh
                instance each time).
        """
        if self._codel is not None:
            await self._codel.wait()
        else:
            await self._wait_for_slot()
        return None

    def exit(self, token: Any, error: BaseException | None) -> None:
        """Count how the call ended (a withdrawn call as cancelled) and free its slot."""
        ledger = self._ledger
        if error is None:
            waiter = self._complete()
            if waiter is not None:
                waiter.set()
        elif is_catchable(error):
            attach_context(error, self._context)
            self._free(ledger.fail)
        else:
            self._free(ledger.cancel)

    @staticmethod
    def adaptive(
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
    ) -> AdaptiveBulkhead:
        """Build a bulkhead whose limit follows the dependency's measured latency.

        See `AdaptiveBulkhead` for the algorithms ("gradient", "aimd") and what counts as a
        sample; the other arguments are those of `Bulkhead`.

        Raises:
            ValueError: `min_limit > max_limit`, `initial` outside them, an unknown
                algorithm or queue discipline, or another argument out of range.
            TypeError: An argument has the wrong type.

        Example:
            >>> search = Bulkhead.adaptive(initial=10, max_limit=200, max_queue=50)
            >>> await search.call(query, "kittens")  # search.limit moves with latency
        """
        from .adaptive import AdaptiveBulkhead

        return AdaptiveBulkhead(
            initial=initial,
            min_limit=min_limit,
            max_limit=max_limit,
            algorithm=algorithm,
            max_queue=max_queue,
            max_wait=max_wait,
            name=name,
            hooks=hooks,
            queue=queue,
            codel_target=codel_target,
            codel_interval=codel_interval,
        )

    @staticmethod
    def per_key(
        max_concurrent: int,
        *,
        max_queue: int = 0,
        max_wait: float | None = None,
        name: str | None = None,
        max_keys: int = 10_000,
        idle_ttl: float = 60.0,
    ) -> KeyedBulkhead[Hashable]:
        """Build a `KeyedBulkhead`: one bulkhead per key (tenant, host...), bounded in memory.

        The arguments before `max_keys` apply to each key's bulkhead; see `KeyedBulkhead`
        for `max_keys` and `idle_ttl`.

        Raises:
            ValueError: An argument is out of range.
            TypeError: An argument has the wrong type.

        Example:
            >>> per_tenant = Bulkhead.per_key(4, max_queue=8)
            >>> per_tenant["acme"].call(serve, "acme")  # 4 at once per tenant
        """
        return KeyedBulkhead(
            max_concurrent,
            max_queue=max_queue,
            max_wait=max_wait,
            name=name,
            max_keys=max_keys,
            idle_ttl=idle_ttl,
        )

    # --- the contended path ---------------------------------------------------------------

    async def _wait_for_slot(self) -> None:
        """Queue for a slot (FIFO), or raise; return once a slot was handed to this caller."""
        ledger = self._ledger
        with self._lock:
            # Sync code: another thread may have freed a slot since the first look.
            if ledger.try_admit():
                return
            waiter = _backend.Event()
            queued = ledger.enqueue(waiter)
        if not queued:
            self._reject("no free slot and the queue is full")
        try:
            granted = await _backend.wait_event(waiter, self._wait_limit)
        except BaseException:
            # Cancelled (or stopped by a deadline): if the slot reached us first, pass it on.
            with self._lock:
                successor = ledger.cancel_wait(waiter)
            if successor is not None:
                successor.set()
            raise
        if granted:
            return
        with self._lock:
            timed_out = ledger.time_out(waiter)
        if timed_out:
            self._reject(f"no slot within max_wait={self.max_wait}s")

    def _free(self, outcome: Callable[[], Wakeable | None]) -> None:
        """Count a finished call with `outcome` and wake the waiter its slot went to."""
        waiter = _backend.locked(self._lock, outcome)
        if waiter is not None:
            waiter.set()

    def _reject(self, reason: str) -> NoReturn:
        ledger = self._ledger
        error = BulkheadFullError(self.name, reason)
        attach_context(error, self._context)
        emit_to(
            self._hooks,
            "bulkhead.rejected",
            self._name,
            reason=reason,
            in_use=ledger.running,
            queued=len(ledger.waiters),
            max_concurrent=self.max_concurrent,
            max_queue=self.max_queue,
            exception=error,
        )
        raise error


class KeyedBulkhead(Keyed[K, Bulkhead]):
    """One `Bulkhead` per key, built on first use; idle ones are forgotten.

    `keyed[key]` returns the key's bulkhead, to use like any other (as a context manager,
    through `.call`, or inside a pipeline). Look it up for each call rather than keeping it.
    At most `max_keys` keys are held (a hard bound; each lookup costs O(1)): a new key beyond
    that evicts the least recently used one, and an idle bulkhead (nothing running or queued)
    not looked up for `idle_ttl` seconds is dropped. Eviction never splits a key's limit: a
    bulkhead still in use (a call running or queued in it) is handed back to its key's next
    caller, so its limit always holds. A key whose bulkhead nobody uses any more gets a fresh
    one (all slots free, counters at zero).

    Args:
        max_concurrent: Each key's limit, an int >= 1.
        max_queue: Each key's queue size, an int >= 0.
        max_wait: Each key's longest wait in seconds >= 0, or None (the effective deadline).
        name: A name for events and errors (each key's bulkhead is named `name[key]`).
        max_keys: How many keys to hold at most, an int >= 1.
        idle_ttl: Seconds after its last lookup at which an idle key is dropped, >= 0.

    Raises:
        ValueError: An argument is out of range.
        TypeError: An argument has the wrong type.
    """

    __slots__ = ()

    def __init__(
        self,
        max_concurrent: int,
        *,
        max_queue: int = 0,
        max_wait: float | None = None,
        name: str | None = None,
        max_keys: int = 10_000,
        idle_ttl: float = 60.0,
    ) -> None:
        # Build one bulkhead now so that bad settings fail here, not at the first key.
        Bulkhead(max_concurrent, max_queue=max_queue, max_wait=max_wait, name=name)

        def build(key: K) -> Bulkhead:
            label = None if name is None else f"{name}[{key!r}]"
            return Bulkhead(max_concurrent, max_queue=max_queue, max_wait=max_wait, name=label)

        super().__init__(build, _bulkhead_is_idle, name=name, max_keys=max_keys, idle_ttl=idle_ttl)


def _bulkhead_is_idle(bulkhead: Bulkhead, now: float) -> bool:
    return bulkhead._ledger.is_idle()
