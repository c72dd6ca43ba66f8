"""Retrying: `Retry`, the `retry` decorator factory, `Retry.attempts()` and `RetryBudget`.

A `Retry` runs a call again when it fails with an error its `on` matches, waiting between
attempts as its backoff says, until it succeeds or a stop condition holds: no attempts left,
the next wait would cross the effective deadline, the shared `RetryBudget` refuses, or the
error is not retryable. Then the last real exception propagates, unwrapped, with the retry's
fields (`attempt`, `policy`, `stop_reason`) added to its error context.

Per-call state lives in a `_RetryState` made for that call, never on the policy; without a
`timeout` or a `budget` it is made only once the call has failed, so the success path is one
`try` around the call.
Cancellation, `KeyboardInterrupt` and `SystemExit` are never caught.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Iterable
from contextvars import ContextVar, Token
from datetime import timedelta
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar, cast, overload

from .._core.budget import RetryBudgetState, check_budget_config
from .._core.checks import check_hooks, check_name, check_seconds
from .._core.deadlines import effective_deadline
from .._core.no_retry import NO_RETRY
from .._core.retry_metrics import RetryMetrics
from .._core.signals import is_catchable
from ..backoff import Backoff, exponential
from ..classify import DEFAULT, DefaultType, ErrorClass, OnSpec, compile_on, retry_after
from ..context import attach_context
from ..errors import CircuitOpenError, DeadlineExceeded
from ..instrumentation import Hook, emit_to, enabled
from ..stores.base import StateStore
from ..testing import testing_settings
from . import _backend
from .policy import NamedPolicy
from .ports import BudgetConfig, BudgetPort, MemoryBudgetPort, SharedBudgetPort

if TYPE_CHECKING:
    # unasync: sync-only: from collections.abc import Callable, Iterator
    from collections.abc import AsyncIterator, Awaitable, Callable  # unasync: remove

__all__ = ["DEFAULT_ON", "Attempt", "Retry", "RetryBudget", "RetryMetrics", "retry"]

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_ON: Final = frozenset({ErrorClass.TRANSIENT, ErrorClass.THROTTLED, ErrorClass.TIMEOUT})
"""What a `Retry` retries when `on` is not given."""

# Jitter draws; `random.Random.random` is safe to call from several threads at once.
_RNG: Final = random.Random()

# The budgets of the retry loops that enclose this code, outermost first. A loop nested in
# another one's attempt withdraws from them too, so nesting cannot multiply retries beyond a
# budget; a loop whose own budget is already listed does not deposit again (its calls are
# part of the enclosing call, not new ones).
_ACTIVE_BUDGETS: ContextVar[tuple[RetryBudget, ...]] = ContextVar(
    "resilient_async.retry_budgets", default=()
)


class Retry(NamedPolicy):
    """Run a call again when it fails with a retryable error, waiting between attempts.

    Use `policy.call(fn, *args, **kwargs)`, `@policy` (or `@retry`, `@retry(...)`), or a loop
    over a block with `attempts()`. One instance may be shared by any number of concurrent
    calls: it keeps no per-call state (only the counters of `metrics()`).

    The loop stops, and the last attempt's exception propagates unchanged (never wrapped),
    for one of these reasons, recorded as `stop_reason` in the exception's error context
    next to `attempt` and `policy`: `"not_retryable"` (`on` does not match it),
    `"attempts"` (all used), `"deadline"` (the next wait would end at or past the effective
    deadline: the error propagates at once instead of after a useless wait), `"budget"` (a
    `RetryBudget` refused), `"retry_after"` (the server's hint is longer than
    `max_retry_after`, or would end past the deadline), `"circuit_open"` (a circuit
    breaker inside the retried call rejected it). If `timeout` expires during an attempt,
    the attempt is cancelled and `DeadlineExceeded` is raised (`stop_reason` `"deadline"`).
    Cancellation, `KeyboardInterrupt` and `SystemExit` are never caught, so never retried.

    A retry never waits for a circuit breaker: waiting out its `open_for` would only queue
    every caller for a probe that admits one. A `CircuitOpenError` ends the loop at once
    unless `on` names `CircuitOpenError` (or a subclass) explicitly, as a type.

    The wait before each retry comes from `backoff`. A server's hint (`retry_after(exc)`, a
    `retry_after` attribute or a Retry-After header) raises it to the hint, in full (never
    shortened to the backoff's `max`: retrying sooner only earns another refusal); the
    effective deadline (the earliest of `timeout` and every enclosing deadline) bounds
    every wait.

    With `on_result`, a result for which the predicate is true is retried like a failure
    (same backoff, budget and deadline); when the loop stops, the last result is returned.

    Events (`elapsed`: seconds since the loop's first attempt started):
    `retry.attempt_failed` (`attempt`, `exception` or `result`, `elapsed`) for each failed
    attempt; `retry.scheduled` (`attempt`: the attempt that failed, `delay`, `exception` or
    `result`, `elapsed`) before each wait; `retry.gave_up` (`attempt`, `stop_reason`,
    `exception` or `result`, `elapsed`) when the loop stops without a success. `hooks=`
    receive this policy's events only, besides the global and scoped hooks.

    Under `set_testing(True)` the waits are skipped (the loop still lets other tasks run
    between attempts, and a zero wait never crosses a deadline) and
    `set_testing(True, attempts=n)` caps every loop at n attempts.

    Args:
        attempts: How many calls to make at most, >= 1 (1 = no retry).
        on: Which errors to retry: an exception type or tuple of types, an `ErrorClass`, a
            set of them, or a predicate; default {TRANSIENT, THROTTLED, TIMEOUT}.
        backoff: The wait schedule; default `backoff.exponential()` (0.1 s doubling up to
            10 s, full jitter).
        timeout: Seconds (or a `timedelta`) for the whole loop, attempts and waits
            included, >= 0; None for no bound of its own (enclosing deadlines still apply).
        budget: A `RetryBudget` that every retry must draw on; policies may share one.
        name: A name for events and error context (a non-empty str).
        max_retry_after: The longest server hint (seconds or `timedelta`, >= 0) the loop
            waits for; a longer one gives up at once (`stop_reason` `"retry_after"`).
        on_result: A predicate on a successful result: True retries it.
        hooks: Hooks (callables taking one event) for this policy's events only.

    Raises:
        ValueError: `attempts` < 1, a negative, NaN or too large `timeout` or
            `max_retry_after`, an empty `name`, or an `on` that is empty or names
            cancellation.
        TypeError: An argument of the wrong type.

    Example:
        ```python
        fetch_policy = Retry(attempts=5, on=ConnectionError, timeout=30)
        page = await fetch_policy.call(fetch, url)  # resilient_async.sync: no await
        ```
    """

    __slots__ = (
        "_backoff",
        "_budget",
        "_budget_refusals",
        "_calls",
        "_gave_up",
        "_guarded",
        "_hooks",
        "_lock",
        "_matches",
        "_max_attempts",
        "_max_retry_after",
        "_name",
        "_on_result",
        "_retries",
        "_stops_on_open",
        "_timeout",
    )

    def __init__(
        self,
        *,
        attempts: int = 3,
        on: OnSpec | DefaultType = DEFAULT,
        backoff: Backoff | None = None,
        timeout: float | timedelta | None = None,
        budget: RetryBudget | None = None,
        name: str | None = None,
        max_retry_after: float | timedelta = 60.0,
        on_result: Callable[[Any], object] | None = None,
        hooks: Iterable[Hook] = (),
    ) -> None:
        if isinstance(attempts, bool) or not isinstance(attempts, int):
            raise TypeError(f"attempts must be an int >= 1, got {attempts!r}")
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        if backoff is None:
            backoff = exponential()
        elif not isinstance(backoff, Backoff):
            raise TypeError(
                "backoff must be a schedule from resilient_async.backoff (exponential(), "
                f"constant(), linear()) or a Backoff subclass, got {backoff!r}"
            )
        self._timeout = None if timeout is None else check_seconds(timeout, "timeout")
        if budget is not None and not isinstance(budget, RetryBudget):
            raise TypeError(f"budget must be a RetryBudget or None, got {budget!r}")
        if on_result is not None and not callable(on_result):
            raise TypeError(
                f"on_result must be a predicate (result) -> bool, or None, got {on_result!r}"
            )
        self._name = check_name(name)
        self._max_retry_after = check_seconds(max_retry_after, "max_retry_after")
        self._hooks: tuple[Hook, ...] = check_hooks(hooks)
        self._matches = compile_on(on, default=DEFAULT_ON)
        self._stops_on_open = not _names_circuit_open(on)
        self._max_attempts = attempts
        self._backoff = backoff
        self._budget = budget
        self._on_result = on_result
        # Counters for metrics(): per policy, never per call.
        self._calls = 0
        self._retries = 0
        self._budget_refusals = 0
        self._gave_up: dict[str, int] = {}
        self._lock = _backend.Lock()
        # Only a timeout, a budget, a result predicate or hooks of its own need work before
        # the first attempt; all else waits for a failure.
        self._guarded = (
            self._timeout is not None
            or budget is not None
            or on_result is not None
            or bool(self._hooks)
        )

    @property
    def max_attempts(self) -> int:
        """How many calls the loop makes at most (the `attempts` argument)."""
        return self._max_attempts

    @property
    def backoff(self) -> Backoff:
        """The wait schedule."""
        return self._backoff

    @property
    def timeout(self) -> float | None:
        """Seconds for the whole loop, or None."""
        return self._timeout

    @property
    def budget(self) -> RetryBudget | None:
        """The budget retries draw on, or None."""
        return self._budget

    @property
    def max_retry_after(self) -> float:
        """The longest server hint the loop waits for, in seconds."""
        return self._max_retry_after

    @property
    def on_result(self) -> Callable[[Any], object] | None:
        """The predicate that retries a result, or None."""
        return self._on_result

    def __repr__(self) -> str:
        return (
            f"Retry(attempts={self._max_attempts!r}, backoff={self._backoff!r}, "
            f"timeout={self._timeout!r}, budget={self._budget!r}, name={self._name!r}, "
            f"max_retry_after={self._max_retry_after!r}, on_result={self._on_result!r})"
        )

    def metrics(self) -> RetryMetrics:
        """Return a frozen snapshot of this policy's counters since it was made.

        Counts calls, attempts, retries, loops that gave up (by stop reason) and budget
        refusals, over every call through this policy (a decorated function's included).
        """
        with self._lock:
            calls = self._calls
            retries = self._retries
            gave_up = MappingProxyType(dict(self._gave_up))
            refusals = self._budget_refusals
        return RetryMetrics(
            calls=calls,
            attempts=calls + retries,
            retries=retries,
            gave_up=gave_up,
            budget_refusals=refusals,
        )

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(*args, **kwargs)`, retrying it as configured; return its first success.

        Raises:
            Exception: The last attempt's exception, unchanged, when the loop stops (see the
                class documentation for the stop reasons).
            DeadlineExceeded: `timeout` expired during an attempt.
            TypeError: `fn` is a callable of the other flavour (a sync function given to the
                async policy, or an async one to the sync policy).
        """
        # unasync: sync-only: _backend.check_deadline()
        if self._guarded:
            return await self._call_guarded(fn, args, kwargs)
        # unasync: sync-only: with self._lock:
        # unasync: sync-only:     self._calls += 1
        self._calls += 1  # unasync: remove
        start = _backend.current_time() if enabled() else None
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            _backend.check_awaited(exc, fn, "Retry")  # unasync: remove
            error = exc
        else:
            # unasync: sync-only: _backend.check_result(result, fn, "Retry")
            return result
        state = _RetryState(self, _ACTIVE_BUDGETS.get(), start=start)
        return await self._retry(state, error, None, fn, args, kwargs)

    def __call__(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        """Decorate `fn` so that every call of it runs the retry loop.

        The result keeps `fn`'s signature and metadata (`functools.wraps`).

        Raises:
            TypeError: `fn` is not a callable this flavour of `Retry` can run.
        """
        _backend.check_guarded_callable(fn)
        policy = self
        if self._guarded:

            @functools.wraps(fn)
            async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
                # unasync: sync-only: _backend.check_deadline()
                return await policy._call_guarded(fn, args, kwargs)

            return guarded

        # The same as `call`, inlined: one frame less on every call of the decorated function.
        @functools.wraps(fn)
        async def retried(*args: P.args, **kwargs: P.kwargs) -> T:
            # unasync: sync-only: _backend.check_deadline()
            # unasync: sync-only: with policy._lock:
            # unasync: sync-only:     policy._calls += 1
            policy._calls += 1  # unasync: remove
            start = _backend.current_time() if enabled() else None
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                error = exc
            else:
                # unasync: sync-only: _backend.check_result(result, fn, "Retry")
                return result
            state = _RetryState(policy, _ACTIVE_BUDGETS.get(), start=start)
            return await policy._retry(state, error, None, fn, args, kwargs)

        return retried

    def attempts(self) -> AsyncIterator[Attempt]:
        """Return an iterator over attempts, to retry a block of code instead of a function.

        Each `Attempt` is a context manager around one try of the block. When the block
        fails with an error that will be retried, the `with` block swallows it and the
        iterator waits, then yields the next attempt; when the loop stops, the error
        propagates out of the `with` block. A success ends the iteration. Stop reasons,
        deadline, budget, events and error context are those of `call`.

        Code after the `with` block in the loop body also runs after a swallowed failure:
        keep the work inside the block.

        Raises:
            TypeError: The policy has an `on_result` predicate: a block has no result.

        Example:
            ```python
            async for attempt in Retry(attempts=4).attempts():  # sync: a plain `for`
                with attempt:
                    order = await submit(payload)
            ```
        """
        if self._on_result is not None:
            raise TypeError(
                "attempts() cannot apply on_result: a block has no result; use call() or "
                "the decorator, or a Retry without on_result"
            )
        return _Attempts(self)

    async def _call_guarded(
        self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> T:
        """Run the loop when a timeout, a budget, `on_result` or own hooks need work first."""
        with self._lock:
            self._calls += 1
        budgets, token = _enter_budget(self._budget)
        try:
            start = _backend.current_time()
            state = _RetryState(self, budgets, start=start)
            timeout = self._timeout
            if timeout is None:
                return await self._run(state, fn, args, kwargs)
            scope = _backend.DeadlineScope(start + timeout, timeout)
            # unasync: sync-only: scope.report_as(self._name, self._hooks)
            try:
                with scope:
                    return await self._run(state, fn, args, kwargs)
            except DeadlineExceeded as exc:
                if scope.expired:
                    state.stop(exc, "deadline")
                raise
        finally:
            if token is not None:
                _ACTIVE_BUDGETS.reset(token)

    async def _run(
        self,
        state: _RetryState,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            _backend.check_awaited(exc, fn, "Retry")  # unasync: remove
            return await self._retry(state, exc, None, fn, args, kwargs)
        # unasync: sync-only: _backend.check_result(result, fn, "Retry")
        on_result = self._on_result
        if on_result is None or not on_result(result):
            return result
        return await self._retry(state, None, result, fn, args, kwargs)

    async def _retry(
        self,
        state: _RetryState,
        error: Exception | None,
        result: Any,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        """Go on after a failed attempt (an error, or a rejected result): retry or stop."""
        on_result = self._on_result
        try:
            while True:
                if error is not None:
                    delay = state.decide(error)
                    if delay is None or (state.owed and not await state.settle(error)):
                        raise error
                else:
                    delay = state.decide_result(result)
                    if delay is None or (state.owed and not await state.settle(None, result)):
                        return result  # type: ignore[no-any-return]
                # The wait, inlined: one coroutine less per retry.
                if delay > 0.0:
                    await _backend.sleep(delay)
                else:
                    await _backend.yield_now()  # a zero wait still lets other tasks run
                state.next_attempt()
                try:
                    result = await fn(*args, **kwargs)
                except Exception as exc:
                    error = exc
                    continue
                error = None
                # unasync: sync-only: _backend.check_result(result, fn, "Retry")
                if on_result is None or not on_result(result):
                    return result  # type: ignore[no-any-return]
        finally:
            del error  # no reference cycle between this frame and the traceback


@overload
def retry(fn: Callable[P, Awaitable[T]], /) -> Callable[P, Awaitable[T]]: ...


@overload
def retry(
    *,
    attempts: int = 3,
    on: OnSpec | DefaultType = DEFAULT,
    backoff: Backoff | None = None,
    timeout: float | timedelta | None = None,
    budget: RetryBudget | None = None,
    name: str | None = None,
    max_retry_after: float | timedelta = 60.0,
    on_result: Callable[[Any], object] | None = None,
    hooks: Iterable[Hook] = (),
) -> Retry: ...


def retry(
    fn: Callable[P, Awaitable[T]] | None = None,
    /,
    *,
    attempts: int = 3,
    on: OnSpec | DefaultType = DEFAULT,
    backoff: Backoff | None = None,
    timeout: float | timedelta | None = None,
    budget: RetryBudget | None = None,
    name: str | None = None,
    max_retry_after: float | timedelta = 60.0,
    on_result: Callable[[Any], object] | None = None,
    hooks: Iterable[Hook] = (),
) -> Retry | Callable[P, Awaitable[T]]:
    """Return a `Retry` to decorate a function with: `@retry(attempts=5)`, or bare `@retry`.

    The same as `Retry(...)` with the same arguments, documented there. Used bare (no
    parentheses), it decorates the function with the defaults. The decorated function
    keeps its signature and metadata, and every call of it runs the retry loop.

    Raises:
        ValueError: See `Retry`.
        TypeError: See `Retry`; also a positional argument that is not a function.

    Example:
        ```python
        @retry(attempts=5, on=ConnectionError, timeout=30)
        async def fetch(url: str) -> bytes:  # resilient_async.sync: a plain def
            ...
        ```
    """
    policy = Retry(
        attempts=attempts,
        on=on,
        backoff=backoff,
        timeout=timeout,
        budget=budget,
        name=name,
        max_retry_after=max_retry_after,
        on_result=on_result,
        hooks=hooks,
    )
    if fn is None:
        return policy
    return policy(fn)


def _names_circuit_open(on: object) -> bool:
    """Tell whether an `on=` argument names `CircuitOpenError` (or a subclass) as a type."""
    items = on if isinstance(on, tuple) else (on,)
    return any(isinstance(item, type) and issubclass(item, CircuitOpenError) for item in items)


class RetryBudget:
    """Bound the retries of every `Retry` that shares it to a fraction of the calls.

    Finagle-style: each call through a `Retry` that uses the budget deposits, each retry
    withdraws, and a retry is made only while the retries within the last `ttl` seconds
    stay within `ratio * calls + min_per_second * ttl`. So N failing calls make at most
    `N * (1 + ratio) + min_per_second * ttl` attempts in a window, however many policies
    share the budget. When it refuses, the loop stops and the last error propagates
    (`stop_reason` `"budget"`).

    A retry loop nested in an attempt of a loop that uses a budget withdraws from that
    budget too (and does not deposit into it again), so nested retries cannot multiply
    beyond it. Memory is O(1); counts expire in steps of `ttl / 10`.

    Args:
        ratio: Retries earned per call, >= 0 (0.2 = one retry per five calls).
        min_per_second: Retries allowed per second whatever the calls, >= 0.
        ttl: The window in seconds (or a `timedelta`), >= 1e-6.
        name: The budget's name; required with `store`.
        store: Where the state lives: None for state of this instance's own, a
            `MemoryStore` in which budgets of the same name share one state in this process,
            or a `RedisStore` that shares it across processes (retries are withdrawn in one
            step on the server; deposits are sent in batches, so the budget errs low). They
            must have the same parameters.

    Raises:
        ValueError: A parameter is out of range, `store` is given without `name`, or a
            budget of that name in `store` has other parameters.
        TypeError: A parameter has the wrong type.

    Example:
        ```python
        budget = RetryBudget(ratio=0.1)
        users = Retry(attempts=4, budget=budget)
        orders = Retry(attempts=4, budget=budget)  # both draw on the same budget
        ```
    """

    __slots__ = ("_cell", "_local", "_min_per_second", "_name", "_ratio", "_shared", "_ttl")

    def __init__(
        self,
        ratio: float = 0.2,
        min_per_second: float = 10.0,
        ttl: float | timedelta = 10.0,
        *,
        name: str | None = None,
        store: StateStore | None = None,
    ) -> None:
        ratio, min_per_second, ttl = check_budget_config(ratio, min_per_second, ttl)
        name = check_name(name)
        self._ratio = ratio
        self._min_per_second = min_per_second
        self._ttl = ttl
        self._name = name

        def create() -> BudgetPort:
            return MemoryBudgetPort(RetryBudgetState(ratio, min_per_second, ttl))

        if store is None:
            port = create()
        elif not isinstance(store, StateStore):
            raise TypeError(f"store must be a MemoryStore, a RedisStore or None, got {store!r}")
        elif name is None:
            raise ValueError("name is required with store=: budgets in a store share by name")
        else:
            config = BudgetConfig(ratio, min_per_second, ttl)
            flavour = "async" if _backend.IS_ASYNC else "sync"
            port = store.shared("retry_budget", name, config, create, flavour=flavour)
        self._cell = port
        # A budget in this process withdraws at once; a shared one in an awaited step.
        self._local = port if isinstance(port, MemoryBudgetPort) else None
        self._shared: SharedBudgetPort | None = None
        if self._local is None:
            self._shared = cast(SharedBudgetPort, port)

    @property
    def ratio(self) -> float:
        """Retries earned per call."""
        return self._ratio

    @property
    def min_per_second(self) -> float:
        """Retries allowed per second whatever the calls."""
        return self._min_per_second

    @property
    def ttl(self) -> float:
        """The window in seconds."""
        return self._ttl

    @property
    def name(self) -> str | None:
        """The budget's name, or None."""
        return self._name

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self._ratio!r}, min_per_second={self._min_per_second!r}, "
            f"ttl={self._ttl!r}, name={self._name!r})"
        )

    def available(self) -> float:
        """Return how many retries the budget would allow now (may be fractional).

        Raises:
            RuntimeError: No event loop is running (async flavour).
        """
        return self._cell.available(_backend.current_time())

    def _deposit(self) -> None:
        self._cell.deposit(_backend.current_time())

    def _try_withdraw(self, now: float) -> bool:
        """Withdraw one retry from a budget kept in this process (not a shared one)."""
        local = self._local
        assert local is not None, "a shared budget withdraws through `_withdraw`"
        return local.try_withdraw(now)

    async def _withdraw(self, now: float) -> bool:
        """Withdraw one retry: at once in this process, or in one step on the server."""
        shared = self._shared
        if shared is None:
            return self._try_withdraw(now)
        return await shared.withdraw(now)


class Attempt:
    """One try of a `Retry.attempts()` loop: a context manager around the block to retry.

    Attributes:
        number: The attempt's number, from 1.
    """

    __slots__ = ("_entered", "_loop", "_scope", "_token", "number")

    def __init__(self, loop: _Attempts, number: int) -> None:
        self._loop = loop
        self.number = number
        self._entered = False
        self._scope: _backend.DeadlineScope | None = None
        self._token: Token[tuple[RetryBudget, ...]] | None = None

    def __repr__(self) -> str:
        return f"<Attempt {self.number}>"

    def __enter__(self) -> Attempt:
        if self._entered:
            raise RuntimeError("an attempt can be entered only once")
        self._entered = True
        loop = self._loop
        if loop.own_budgets is not None:
            self._token = _ACTIVE_BUDGETS.set(loop.own_budgets)
        if loop.deadline is not None:
            scope = _backend.DeadlineScope(loop.deadline, loop.policy.timeout)
            scope.__enter__()
            self._scope = scope
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        loop = self._loop
        loop.delay = None  # the loop ends after this attempt unless it fails and goes on
        try:
            scope = self._scope
            if scope is not None:
                self._scope = None
                try:
                    scope.__exit__(exc_type, exc, tb)
                except DeadlineExceeded as expired:
                    if scope.expired:
                        loop.state().stop(expired, "deadline")
                    raise
        finally:
            token = self._token
            if token is not None:
                self._token = None
                _ACTIVE_BUDGETS.reset(token)
        if exc is None or not is_catchable(exc):
            return False  # a success, or a stop signal that must propagate untouched
        state = loop.state()
        loop.delay = state.decide(exc)
        if loop.delay is not None and state.owed:
            loop.failed = exc  # re-raised by the next step if a shared budget refuses
        return loop.delay is not None


class _Attempts:
    """The iterator behind `Retry.attempts()`: one loop over a block, and its state."""

    __slots__ = (
        "_current",
        "_state",
        "deadline",
        "delay",
        "failed",
        "own_budgets",
        "policy",
        "start",
    )

    def __init__(self, policy: Retry) -> None:
        self.policy = policy
        self._current: Attempt | None = None
        self._state: _RetryState | None = None
        self.deadline: float | None = None  # the loop's own deadline, from `timeout`
        self.own_budgets: tuple[RetryBudget, ...] | None = None  # set while attempts run
        self.delay: float | None = None  # the wait before the next attempt, if it goes on
        self.failed: Exception | None = None  # the error of an attempt owing a withdrawal
        self.start: float | None = None  # when the first attempt started

    def __aiter__(self) -> _Attempts:
        return self

    async def __anext__(self) -> Attempt:
        current = self._current
        if current is None:
            self._start()
        else:
            if not current._entered:
                raise RuntimeError(
                    f"attempt {current.number} was never entered: write `with attempt:` "
                    "in the loop body"
                )
            delay = self.delay
            if delay is None:
                raise StopAsyncIteration
            self.delay = None
            state = self.state()
            failed, self.failed = self.failed, None
            if failed is not None and not await state.settle(failed):
                raise failed
            await state.wait(delay)
        self._current = current = Attempt(self, 1 if self._state is None else self._state.attempt)
        return current

    def _start(self) -> None:
        policy = self.policy
        with policy._lock:
            policy._calls += 1
        self.start = _backend.current_time()
        own = policy.budget
        if own is not None:
            enclosing = _ACTIVE_BUDGETS.get()
            if own not in enclosing:
                own._deposit()
                self.own_budgets = (*enclosing, own)
        if policy.timeout is not None:
            self.deadline = _backend.current_time() + policy.timeout

    def state(self) -> _RetryState:
        """Return the loop's state, made on first use (the first failure)."""
        state = self._state
        if state is None:
            budgets = self.own_budgets
            if budgets is None:
                budgets = _ACTIVE_BUDGETS.get()
            deadline = math.inf if self.deadline is None else self.deadline
            state = self._state = _RetryState(self.policy, budgets, deadline, start=self.start)
        return state


_NO_RESULT: Final[Any] = object()


class _RetryState:
    """What one retry loop tracks between attempts; made when its first attempt fails."""

    __slots__ = (
        "attempt",
        "budgets",
        "deadline",
        "limit",
        "no_wait",
        "owed",
        "policy",
        "previous",
        "start",
    )

    def __init__(
        self,
        policy: Retry,
        budgets: tuple[RetryBudget, ...],
        deadline: float = math.inf,
        *,
        start: float | None = None,
    ) -> None:
        self.policy = policy
        self.budgets = budgets
        # The loop's own deadline when no scope holds it while the loop decides (the
        # `attempts()` form decides between its attempts' scopes); else inf.
        self.deadline = deadline
        # When the first attempt started, for `elapsed`; None when nobody listened then
        # (the clock is read on the success path only for hooks).
        self.start = start
        self.attempt = 1  # the attempt that runs, or that just failed
        self.previous = 0.0  # the backoff's previous delay (decorrelated jitter reads it)
        # Shared budgets a retry must still be withdrawn from (an awaited step) before its wait.
        self.owed: tuple[RetryBudget, ...] = ()
        settings = testing_settings()
        self.no_wait = settings.active
        limit = policy._max_attempts
        if settings.active and settings.attempts is not None:
            limit = min(limit, settings.attempts)
        self.limit = limit

    def elapsed(self) -> float:
        """Seconds since the first attempt started (since now, if that was not read)."""
        now = _backend.current_time()
        if self.start is None:
            self.start = now
        return now - self.start

    def next_attempt(self) -> None:
        """Count the attempt that is about to start."""
        self.attempt += 1
        policy = self.policy
        with policy._lock:
            policy._retries += 1

    def decide(self, error: Exception) -> float | None:
        """Return the wait before the next attempt, or None to stop with `error`.

        Withdraws from the budgets when it decides to retry; on a stop, attaches the loop's
        fields to the error's context and emits `retry.gave_up`.
        """
        policy = self.policy
        own = policy._hooks
        if own or enabled():  # one check, rather than building an event for no hook
            emit_to(
                own,
                "retry.attempt_failed",
                policy._name,
                attempt=self.attempt,
                exception=error,
                elapsed=self.elapsed(),
            )
        if policy._stops_on_open and isinstance(error, CircuitOpenError):
            self.stop(error, "circuit_open")
            return None
        if not policy._matches(error) or NO_RETRY.get():
            self.stop(error, "not_retryable")
            return None
        return self._next_delay(error, retry_after(error), _NO_RESULT)

    def decide_result(self, result: Any) -> float | None:
        """Like `decide`, for a result that `on_result` rejected: None to return it."""
        policy = self.policy
        own = policy._hooks
        if own or enabled():
            emit_to(
                own,
                "retry.attempt_failed",
                policy._name,
                attempt=self.attempt,
                result=result,
                elapsed=self.elapsed(),
            )
        if NO_RETRY.get():
            self.stop(None, "not_retryable", result)
            return None
        return self._next_delay(None, None, result)

    def _next_delay(self, error: Exception | None, hint: float | None, result: Any) -> float | None:
        policy = self.policy
        attempt = self.attempt
        if attempt >= self.limit:
            self.stop(error, "attempts", result)
            return None
        delay = policy._backoff.delay(attempt, self.previous, _RNG)
        self.previous = delay
        hinted = False
        if hint is not None:
            if hint > policy._max_retry_after:
                self.stop(error, "retry_after", result)
                return None
            if hint >= delay:
                delay = hint  # in full: the backoff's `max` never shortens a server's hint
                hinted = True
        if self.no_wait:
            delay = 0.0
        deadline = effective_deadline()
        deadline = min(deadline, self.deadline)
        now = _backend.current_time() if deadline != math.inf or self.budgets else 0.0
        if now + delay >= deadline:
            self.stop(error, "retry_after" if hinted and delay else "deadline", result)
            return None
        owed: tuple[RetryBudget, ...] = ()
        for budget in self.budgets:
            if budget._shared is not None:
                owed += (budget,)
            elif not budget._try_withdraw(now):
                with policy._lock:
                    policy._budget_refusals += 1
                self.stop(error, "budget", result)
                return None
        self.owed = owed
        own = policy._hooks
        if own or enabled():
            fields: dict[str, Any] = (
                {"exception": error} if result is _NO_RESULT else {"result": result}
            )
            emit_to(
                own,
                "retry.scheduled",
                policy._name,
                attempt=attempt,
                delay=delay,
                elapsed=self.elapsed(),
                **fields,
            )
        return delay

    async def settle(self, error: Exception | None, result: Any = _NO_RESULT) -> bool:
        """Withdraw from the shared budgets `decide` left owed; False (a stop) if one refuses.

        `error` is the failed attempt's exception, or None (with `result`) for a result that
        `on_result` rejected.
        """
        owed, self.owed = self.owed, ()
        now = _backend.current_time()
        for budget in owed:
            if not await budget._withdraw(now):
                policy = self.policy
                with policy._lock:
                    policy._budget_refusals += 1
                self.stop(error, "budget", result)
                return False
        return True

    async def wait(self, delay: float) -> None:
        """Wait `delay` seconds (a zero wait still lets other tasks run), then count on."""
        if delay > 0.0:
            await _backend.sleep(delay)
        else:
            await _backend.yield_now()
        self.next_attempt()

    def stop(self, error: Exception | None, reason: str, result: Any = _NO_RESULT) -> None:
        """Record that the loop stops: context fields, counters and `retry.gave_up`.

        `error` is the exception the loop stops with, or None when it stops on a result
        that `on_result` rejected (which the loop then returns).
        """
        attempt = self.attempt
        policy = self.policy
        name = policy._name
        with policy._lock:
            policy._gave_up[reason] = policy._gave_up.get(reason, 0) + 1
        own = policy._hooks
        if error is not None:
            fields = {"attempt": attempt, "policy": name or "Retry", "stop_reason": reason}
            attach_context(error, fields)
            if own or enabled():
                emit_to(
                    own,
                    "retry.gave_up",
                    name,
                    attempt=attempt,
                    stop_reason=reason,
                    exception=error,
                    elapsed=self.elapsed(),
                )
        elif own or enabled():
            emit_to(
                own,
                "retry.gave_up",
                name,
                attempt=attempt,
                stop_reason=reason,
                result=result,
                elapsed=self.elapsed(),
            )


def _enter_budget(
    own: RetryBudget | None,
) -> tuple[tuple[RetryBudget, ...], Token[tuple[RetryBudget, ...]] | None]:
    """Deposit into `own` unless an enclosing loop uses it; list it for nested loops."""
    enclosing = _ACTIVE_BUDGETS.get()
    if own is None or own in enclosing:
        return enclosing, None
    own._deposit()
    budgets = (*enclosing, own)
    return budgets, _ACTIVE_BUDGETS.set(budgets)
