"""RateLimiter: a token bucket with FIFO waiters and at-once rejection.

The bucket itself is the pure `TokenBucket` in `_core`: this driver reads the backend's
monotonic clock, calls the bucket under the lock, and waits when the bucket says so. A caller
that cannot be served within `max_wait` (or before the effective deadline) is rejected at
once, with the time it would have had to wait as `retry_after`, rather than after waiting in
vain. A waiter that is cancelled gives its reservation back, and the waiters behind it move up.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeVar

from .._core.bucket import Reservation, TokenBucket
from .._core.checks import check_hooks, check_name, check_period, check_positive, check_seconds
from .._core.deadlines import effective_deadline
from .._core.signals import is_catchable
from ..context import PreparedFields, attach_context
from ..errors import RateLimitedError
from ..instrumentation import Hook, emit_to
from ..stores.base import StateStore
from . import _backend
from .keyed import Keyed
from .policy import MUST_WAIT, Guard
from .ports import LimiterConfig, LimiterPort, MemoryLimiterPort

if TYPE_CHECKING:
    from .shared_ratelimit import SharedLimiter

__all__ = ["KeyedRateLimiter", "RateLimiter"]

_FLAVOUR: Final = "async" if _backend.IS_ASYNC else "sync"

K = TypeVar("K", bound=Hashable)


class RateLimiter(Guard):
    """Let calls through at `rate` per `per` seconds, in bursts of up to `burst`.

    A token bucket: it holds up to `burst` tokens (idle time never saves more) and refills
    `rate` tokens every `per` seconds on the event loop's monotonic clock, so a change of the
    wall clock changes nothing. Each call takes one token (`acquire` may take more). A caller
    that finds too few tokens waits its turn, in FIFO order, if its wait fits in `max_wait`
    and ends before the effective deadline; otherwise it gets `RateLimitedError` at once,
    whose `retry_after` says how long it would have had to wait. A waiter that is cancelled
    gives its tokens back to the callers behind it.

    Use `acquire`, `try_acquire` (never waits), `call`, the limiter as a decorator, or as a
    context manager (one token on entry). For one limiter per tenant or host, see
    `RateLimiter.per_key`.

    Args:
        rate: Tokens added every `per` seconds, a finite number > 0.
        per: The period of `rate` in seconds, a finite number > 0.
        burst: The bucket's size, a number >= 1; defaults to `rate` (at least 1).
        max_wait: The longest a caller may wait for its tokens, in seconds >= 0 (0: never
            wait; `math.inf` or None: up to the effective deadline).
        name: A name for events, errors and error context; with `store`, the shared name.
        store: A store through which limiters of the same name (and settings) share one
            bucket: `stores.MemoryStore` in this process, `stores.RedisStore` across
            processes; None gives this limiter its own.
        hooks: Hooks (callables taking one event) for this limiter's events only.

    `per` and `max_wait` accept a `datetime.timedelta` too. The configuration is read-only.

    Raises:
        ValueError: An argument is out of range, or `store` holds a limiter of that name
            with other settings.
        TypeError: An argument has the wrong type, or `store` is given without a `name`.

    Example:
        >>> api = RateLimiter(100, per=60, burst=10, max_wait=5.0, name="partner-api")
        >>> fetch = api(fetch)  # 100 calls a minute, 10 at once after a pause
    """

    _tokenless = True  # its token is None: `async with` keeps none
    __slots__ = (
        "__weakref__",  # a per-key registry finds a limiter still in use through one
        "_burst",
        "_context",
        "_hooks",
        "_max_wait",
        "_name",
        "_per",
        "_rate",
        "_remote",
        "_state",
        "_try_take",
        "_wait_limit",
    )

    def __init__(
        self,
        rate: float,
        per: float | timedelta = 1.0,
        *,
        burst: float | None = None,
        max_wait: float | timedelta | None = 0.0,
        name: str | None = None,
        store: StateStore | None = None,
        hooks: Iterable[Hook] = (),
    ) -> None:
        self._rate = check_positive(rate, "rate")
        self._per = check_period(per, "per")
        if burst is None:
            burst = max(self._rate, 1.0)
        elif isinstance(burst, bool) or not isinstance(burst, int | float):
            raise TypeError(f"burst must be a number >= 1 (tokens), got {burst!r}")
        else:
            burst = check_positive(burst, "burst")
            if burst < 1:
                raise ValueError(f"burst must be a finite number >= 1, got {burst!r}")
        self._burst = float(burst)
        self._max_wait = None if max_wait is None else check_seconds(max_wait, "max_wait")
        self._wait_limit = math.inf if self._max_wait is None else self._max_wait
        self._name = name = check_name(name)
        self._hooks: tuple[Hook, ...] = check_hooks(hooks)
        # Merged into the error context of errors raised here or passing through.
        self._context = PreparedFields({"policy": name or "RateLimiter"})
        per_second = self._rate / self._per
        if not per_second < math.inf:
            raise ValueError(
                f"rate / per must be a finite number of tokens per second, got {rate!r} per "
                f"{self._per:g} s"
            )
        burst_tokens = self._burst

        def new_port() -> LimiterPort:
            return MemoryLimiterPort(TokenBucket(per_second, burst_tokens))

        if store is None:
            port = new_port()
        elif not isinstance(store, StateStore):
            raise TypeError(f"store must be a MemoryStore, a RedisStore or None, got {store!r}")
        elif name is None:
            raise TypeError("a RateLimiter given a store= needs a name= to share it under")
        else:
            config = LimiterConfig(per_second, self._burst)
            port = store.shared("limiter", name, config, new_port, flavour=_FLAVOUR)
        self._remote: SharedLimiter | None = None
        if not isinstance(port, MemoryLimiterPort):
            # Tokens behind a server: every take is awaited, so a driver of its own takes
            # them. The limiter holds a bucket that never has a token, so `enter_nowait`
            # always says MUST_WAIT and `enter` hands the take over.
            from .shared_ratelimit import NoTokens, SharedLimiter

            self._remote = SharedLimiter(port, wait_limit=self._wait_limit, reject=self._reject)
            port = MemoryLimiterPort(NoTokens(per_second, burst_tokens))
        self._state = port
        # The hot step, bound once: the bucket's own method in async code (no other task
        # runs between a read and a write), wrapped in the thread lock in the sync twin.
        self._try_take = _backend.locking(port.lock, port.bucket.try_take)

    def __repr__(self) -> str:
        return (
            f"RateLimiter({self.rate!r}, per={self.per!r}, burst={self.burst!r}, "
            f"max_wait={self.max_wait!r}, name={self.name!r})"
        )

    @property
    def rate(self) -> float:
        """Tokens added every `per` seconds."""
        return self._rate

    @property
    def per(self) -> float:
        """The period of `rate`, in seconds."""
        return self._per

    @property
    def burst(self) -> float:
        """The bucket's size."""
        return self._burst

    @property
    def max_wait(self) -> float | None:
        """The longest a caller may wait for its tokens, in seconds, or None."""
        return self._max_wait

    @property
    def queued(self) -> int:
        """How many callers wait for tokens now (0 with a shared store: none queue here)."""
        return self._state.bucket.waiting

    async def acquire(self, tokens: float = 1) -> None:
        """Take `tokens` tokens, waiting in FIFO order for them if `max_wait` allows.

        Returns at once (no checkpoint) when the tokens are there. A caller whose wait would
        exceed `max_wait` or reach the effective deadline is rejected at once. Cancelled while
        waiting, it gives its tokens back.

        Raises:
            RateLimitedError: The tokens cannot be had within `max_wait` or before the
                deadline; `retry_after` says when they could.
            ValueError: `tokens` is not > 0, or exceeds `burst` (it could never be served).
            TypeError: `tokens` is not a number (a bool is not accepted).
        """
        if type(tokens) is not int or tokens != 1:
            self._check_tokens(tokens)  # before touching the bucket: bad input changes nothing
        if self.enter_nowait(tokens) is MUST_WAIT:
            await self.enter(tokens)

    def try_acquire(self, tokens: float = 1) -> bool:
        """Take `tokens` tokens if they are there now; never wait, never raise when short.

        Unlike `acquire` with `max_wait=0`, a shortage gives False, not an error, and
        nothing is emitted. It does not jump the queue: while callers wait, it gives False.

        Raises:
            ValueError: `tokens` is not > 0, or exceeds `burst`.
            TypeError: `tokens` is not a number (a bool is not accepted), or the limiter
                has a shared store (its bucket cannot be read without I/O).
        """
        if type(tokens) is not int or tokens != 1:
            self._check_tokens(tokens)  # before touching the bucket: bad input changes nothing
        state = self._state
        if _backend.locked(state.lock, state.bucket.try_take, tokens, _backend.current_time()):
            return True
        if self._remote is not None:
            raise TypeError(
                "try_acquire never waits and does no I/O, so it cannot take tokens from a "
                "RateLimiter with a shared store; use `acquire` on a limiter with max_wait=0"
            )
        return False

    # --- the guard's admission: `call`, `async with`, pipelines and `acquire` use these ----

    def enter_nowait(self, tokens: float = 1) -> object:
        """Take `tokens` (one for a call) if they are there: None, or `MUST_WAIT`.

        With a shared store this always gives `MUST_WAIT`: every take is an awaited step of
        the store, made by `enter`.

        Raises:
            DeadlineExceeded: In sync code, the effective deadline has passed.
        """
        # unasync: sync-only: _backend.check_deadline()
        return None if self._try_take(tokens, _backend.current_time()) else MUST_WAIT

    async def enter(self, tokens: float = 1) -> None:
        """Wait in FIFO order for `tokens` (one for a call), or reject at once.

        Raises:
            RateLimitedError: The tokens cannot be had within `max_wait` or before the
                deadline.
        """
        await self._wait_for_tokens(tokens)

    def exit(self, token: Any, error: BaseException | None) -> None:
        """Attach the limiter's context to the call's error: the token stays spent."""
        if error is not None and is_catchable(error):  # no call on the success path
            attach_context(error, self._context)

    @staticmethod
    def per_key(
        rate: float,
        per: float = 1.0,
        *,
        burst: float | None = None,
        max_wait: float | None = 0.0,
        name: str | None = None,
        max_keys: int = 10_000,
        idle_ttl: float = 60.0,
    ) -> KeyedRateLimiter[Hashable]:
        """Build a `KeyedRateLimiter`: one limiter per key (tenant, host...), bounded in memory.

        The arguments before `max_keys` apply to each key's limiter; see `KeyedRateLimiter`
        for `max_keys` and `idle_ttl`.

        Raises:
            ValueError: An argument is out of range.
            TypeError: An argument has the wrong type.

        Example:
            >>> per_host = RateLimiter.per_key(5, per=1.0, max_wait=2.0)
            >>> per_host["example.org"].call(fetch, "example.org", "/")  # 5/s per host
        """
        return KeyedRateLimiter(
            rate,
            per,
            burst=burst,
            max_wait=max_wait,
            name=name,
            max_keys=max_keys,
            idle_ttl=idle_ttl,
        )

    # --- the waiting path -----------------------------------------------------------------

    async def _wait_for_tokens(self, tokens: float) -> None:
        """Reserve `tokens` and wait for them, or reject at once."""
        self._check_tokens(tokens)
        if self._remote is not None:
            await self._remote.take(tokens)
            return
        state = self._state
        bucket = state.bucket
        with state.lock:
            now = _backend.current_time()
            wait = bucket.wait_time(tokens, now)
            if wait == 0.0 and bucket.try_take(tokens, now):
                return  # sync code: another thread's reservation was given back meanwhile
            # Waiting up to the deadline itself is useless: the call would start expired.
            if wait > self._wait_limit or now + wait >= effective_deadline():
                reservation = None
            else:
                reservation = bucket.reserve(tokens, now)
        if reservation is None:
            self._reject(tokens, wait)
        # Only the head of the queue is on a timer; the others wait for their turn at the
        # head (the one before them wakes them as it leaves), so a give-up costs O(1).
        try:
            while True:
                with state.lock:
                    if bucket.head is reservation:
                        delay = reservation.ready_at - _backend.current_time()
                        if delay <= 0.0:
                            successor = bucket.admit(reservation)
                            break
                    else:
                        delay = math.inf
                    # A fresh event each round: the waiter ahead sets it when it leaves.
                    event = _backend.Event()
                    reservation.handle = event
                await _backend.wait_event(event, delay)
        except BaseException:
            with state.lock:
                successor = bucket.withdraw(reservation, _backend.current_time())
            _wake(successor)
            raise
        _wake(successor)

    def _check_tokens(self, tokens: float) -> None:
        if isinstance(tokens, bool) or not isinstance(tokens, int | float):
            raise TypeError(
                f"tokens must be a number > 0 and <= burst ({self._burst:g}), got {tokens!r}"
            )
        if not tokens > 0:  # also rejects NaN
            raise ValueError(f"tokens must be > 0, got {tokens!r}")
        if not tokens <= self._burst:
            raise ValueError(
                f"tokens must be <= burst ({self._burst:g}), got {tokens!r}: "
                "a request larger than the bucket could never be served"
            )

    def _reject(self, tokens: float, retry_after: float) -> NoReturn:
        error = RateLimitedError(self.name, retry_after)
        attach_context(error, self._context)
        emit_to(
            self._hooks,
            "limiter.rejected",
            self._name,
            tokens=tokens,
            retry_after=retry_after,
            exception=error,
        )
        raise error


class KeyedRateLimiter(Keyed[K, RateLimiter]):
    """One `RateLimiter` per key, built on first use; idle ones are forgotten.

    `keyed[key]` returns the key's limiter, to use like any other (as a context manager,
    through `.acquire` or `.call`, or inside a pipeline). Look it up for each call rather
    than keeping it. At most `max_keys` keys are held (a hard bound; each lookup costs O(1)):
    a new key beyond that evicts the least recently used one, refilling or not, and a limiter
    whose bucket is full again with nobody waiting is dropped once not looked up for
    `idle_ttl` seconds (it behaves exactly like a new one, so that loses nothing). A limiter
    still in use (a caller waiting or holding it) is handed back to its key's next caller.
    An evicted key that nobody uses gets a fresh limiter with a full bucket: size `max_keys`
    above the number of keys active within a refill period, or evicted keys get their burst
    again early.

    Args:
        rate: Each key's rate, a finite number > 0 of tokens every `per` seconds.
        per: The period of `rate`, in seconds > 0.
        burst: Each key's bucket size, >= 1 (default `rate`, at least 1).
        max_wait: Each key's longest wait in seconds >= 0, or None (the effective deadline).
        name: A name for events and errors (each key's limiter is named `name[key]`).
        max_keys: How many keys to hold at most, an int >= 1.
        idle_ttl: Seconds after its last lookup at which an idle key is dropped, >= 0.

    Raises:
        ValueError: An argument is out of range.
        TypeError: An argument has the wrong type.
    """

    __slots__ = ()

    def __init__(
        self,
        rate: float,
        per: float = 1.0,
        *,
        burst: float | None = None,
        max_wait: float | None = 0.0,
        name: str | None = None,
        max_keys: int = 10_000,
        idle_ttl: float = 60.0,
    ) -> None:
        # Build one limiter now so that bad settings fail here, not at the first key.
        RateLimiter(rate, per, burst=burst, max_wait=max_wait, name=name)

        def build(key: K) -> RateLimiter:
            label = None if name is None else f"{name}[{key!r}]"
            return RateLimiter(rate, per, burst=burst, max_wait=max_wait, name=label)

        super().__init__(build, _limiter_is_idle, name=name, max_keys=max_keys, idle_ttl=idle_ttl)


def _limiter_is_idle(limiter: RateLimiter, now: float) -> bool:
    state = limiter._state
    with state.lock:
        return state.bucket.is_idle(now)


def _wake(reservation: Reservation | None) -> None:
    """Wake the waiter at the new head of the queue, if any, to time its own wait."""
    if reservation is not None:
        event: Any = reservation.handle
        if event is not None:
            event.set()
