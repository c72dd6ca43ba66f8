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
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar, cast

from .._core.budget import RetryBudgetState, check_budget_config
from .._core.checks import check_seconds
from .._core.deadlines import effective_deadline
from .._core.no_retry import NO_RETRY
from ..backoff import Backoff, exponential
from ..classify import DEFAULT, DefaultType, ErrorClass, OnSpec, compile_on, retry_after
from ..context import attach_context
from ..errors import DeadlineExceeded
from ..instrumentation import emit, enabled
from ..stores.base import StateStore
from ..testing import testing_settings
from . import _backend
from .policy import Policy
from .ports import BudgetConfig, BudgetPort, MemoryBudgetPort, SharedBudgetPort

if TYPE_CHECKING:
    # unasync: sync-only: from collections.abc import Callable, Iterator
    from collections.abc import AsyncIterator, Awaitable, Callable  # unasync: remove

__all__ = ["DEFAULT_ON", "Attempt", "Retry", "RetryBudget", "retry"]

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


class Retry(Policy):
    """Run a call again when it fails with a retryable error, waiting between attempts.

    Use `policy.call(fn, *args, **kwargs)`, `@policy` (or `@retry(...)`), or a loop over a
    block with `attempts()`. One instance may be shared by any number of concurrent calls:
    it keeps no per-call state.

    The loop stops, and the last attempt's exception propagates unchanged (never wrapped),
    for one of these reasons, recorded as `stop_reason` in the exception's error context
    next to `attempt` and `policy`: `"not_retryable"` (`on` does not match it),
    `"attempts"` (all used), `"deadline"` (the next wait would end at or past the effective
    deadline: the error propagates at once instead of after a useless wait), `"budget"` (a
    `RetryBudget` refused). If `timeout` expires during an attempt, the attempt is
    cancelled and `DeadlineExceeded` is raised (`stop_reason` `"deadline"`). Cancellation,
    `KeyboardInterrupt` and `SystemExit` are never caught, so never retried.

    The wait before each retry comes from `backoff`. A server's hint (`retry_after(exc)`, a
    `retry_after` attribute or a Retry-After header) raises it to at least the hint, capped
    by the backoff's `max` (`constant()` has none); the effective deadline (the earliest of
    `timeout` and every enclosing deadline) bounds every wait.

    Events: `retry.attempt_failed` (`attempt`, `exception`) for each failed attempt;
    `retry.scheduled` (`attempt`: the attempt that failed, `delay`, `exception`) before each
    wait; `retry.gave_up` (`attempt`, `stop_reason`, `exception`) when the loop stops with
    an exception.

    Under `set_testing(True)` the waits are skipped (the loop still lets other tasks run
    between attempts, and a zero wait never crosses a deadline) and
    `set_testing(True, attempts=n)` caps every loop at n attempts.

    Args:
        attempts: How many calls to make at most, >= 1 (1 = no retry).
        on: Which errors to retry: an exception type or tuple of types, an `ErrorClass`, a
            set of them, or a predicate; default {TRANSIENT, THROTTLED, TIMEOUT}.
        backoff: The wait schedule; default `backoff.exponential()` (0.1 s doubling up to
            10 s, full jitter).
        timeout: Seconds for the whole loop, attempts and waits included, >= 0; None for no
            bound of its own (enclosing deadlines still apply).
        budget: A `RetryBudget` that every retry must draw on; policies may share one.
        name: A name for events and error context.

    Raises:
        ValueError: `attempts` < 1, a negative or NaN `timeout`, or an `on` that is empty or
            names cancellation.
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
        "_guarded",
        "_hint_cap",
        "_matches",
        "_max_attempts",
        "_name",
        "_timeout",
    )

    def __init__(
        self,
        *,
        attempts: int = 3,
        on: OnSpec | DefaultType = DEFAULT,
        backoff: Backoff | None = None,
        timeout: float | None = None,
        budget: RetryBudget | None = None,
        name: str | None = None,
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
        if timeout is not None:
            timeout = check_seconds(timeout, "timeout")
        if budget is not None and not isinstance(budget, RetryBudget):
            raise TypeError(f"budget must be a RetryBudget or None, got {budget!r}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {name!r}")
        self._matches = compile_on(on, default=DEFAULT_ON)
        self._max_attempts = attempts
        self._backoff = backoff
        self._timeout = timeout
        self._budget = budget
        self._name = name
        cap = backoff.max
        self._hint_cap = math.inf if cap is None else cap
        # Only a timeout or a budget needs work before the first attempt; all else waits for
        # a failure.
        self._guarded = timeout is not None or budget is not None

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
    def name(self) -> str | None:
        """The name used in events and error context."""
        return self._name

    def __repr__(self) -> str:
        return (
            f"Retry(attempts={self._max_attempts!r}, backoff={self._backoff!r}, "
            f"timeout={self._timeout!r}, budget={self._budget!r}, name={self._name!r})"
        )

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(*args, **kwargs)`, retrying it as configured; return its first success.

        Raises:
            Exception: The last attempt's exception, unchanged, when the loop stops (see the
                class documentation for the stop reasons).
            DeadlineExceeded: `timeout` expired during an attempt.
        """
        if self._guarded:
            return await self._call_guarded(fn, args, kwargs)
        try:
            return await fn(*args, **kwargs)
        except Exception as exc:
            error = exc
        return await self._retry(_RetryState(self, _ACTIVE_BUDGETS.get()), error, fn, args, kwargs)

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
                return await policy._call_guarded(fn, args, kwargs)

            return guarded

        # The same as `call`, inlined: one frame less on every call of the decorated function.
        @functools.wraps(fn)
        async def retried(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                error = exc
            state = _RetryState(policy, _ACTIVE_BUDGETS.get())
            return await policy._retry(state, error, fn, args, kwargs)

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

        Example:
            ```python
            async for attempt in Retry(attempts=4).attempts():  # sync: a plain `for`
                with attempt:
                    order = await submit(payload)
            ```
        """
        return _Attempts(self)

    async def _call_guarded(
        self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> T:
        """Run the loop when a timeout or a budget needs work before the first attempt."""
        budgets, token = _enter_budget(self._budget)
        try:
            state = _RetryState(self, budgets)
            timeout = self._timeout
            if timeout is None:
                return await self._run(state, fn, args, kwargs)
            scope = _backend.DeadlineScope(_backend.current_time() + timeout, timeout)
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
            return await fn(*args, **kwargs)
        except Exception as exc:
            error = exc
        return await self._retry(state, error, fn, args, kwargs)

    async def _retry(
        self,
        state: _RetryState,
        error: Exception,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        """Go on after a failed attempt: wait and call again until a success or a stop."""
        try:
            while True:
                delay = state.decide(error)
                if delay is None or (state.owed and not await state.settle(error)):
                    raise error
                # The wait, inlined: one coroutine less per retry.
                if delay > 0.0:
                    await _backend.sleep(delay)
                else:
                    await _backend.yield_now()  # a zero wait still lets other tasks run
                state.attempt += 1
                try:
                    return await fn(*args, **kwargs)
                except Exception as exc:
                    error = exc
        finally:
            del error  # no reference cycle between this frame and the traceback


def retry(
    *,
    attempts: int = 3,
    on: OnSpec | DefaultType = DEFAULT,
    backoff: Backoff | None = None,
    timeout: float | None = None,
    budget: RetryBudget | None = None,
    name: str | None = None,
) -> Retry:
    """Return a `Retry` to decorate a function with: `@retry(attempts=5)`.

    The same as `Retry(...)` with the same arguments, documented there. The decorated
    function keeps its signature and metadata, and every call of it runs the retry loop.

    Raises:
        ValueError: See `Retry`.
        TypeError: See `Retry`.

    Example:
        ```python
        @retry(attempts=5, on=ConnectionError, timeout=30)
        async def fetch(url: str) -> bytes:  # resilient_async.sync: a plain def
            ...
        ```
    """
    return Retry(
        attempts=attempts, on=on, backoff=backoff, timeout=timeout, budget=budget, name=name
    )


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
        ttl: The window in seconds, > 0.
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
        ttl: float = 10.0,
        *,
        name: str | None = None,
        store: StateStore | None = None,
    ) -> None:
        ratio, min_per_second, ttl = check_budget_config(ratio, min_per_second, ttl)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {name!r}")
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
        if not isinstance(exc, Exception):
            return False  # a success, or a stop signal that must propagate untouched
        state = loop.state()
        loop.delay = state.decide(exc)
        if loop.delay is not None and state.owed:
            loop.failed = exc  # re-raised by the next step if a shared budget refuses
        return loop.delay is not None


class _Attempts:
    """The iterator behind `Retry.attempts()`: one loop over a block, and its state."""

    __slots__ = ("_current", "_state", "deadline", "delay", "failed", "own_budgets", "policy")

    def __init__(self, policy: Retry) -> None:
        self.policy = policy
        self._current: Attempt | None = None
        self._state: _RetryState | None = None
        self.deadline: float | None = None  # the loop's own deadline, from `timeout`
        self.own_budgets: tuple[RetryBudget, ...] | None = None  # set while attempts run
        self.delay: float | None = None  # the wait before the next attempt, if it goes on
        self.failed: Exception | None = None  # the error of an attempt owing a withdrawal

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
            state = self._state = _RetryState(self.policy, budgets, deadline)
        return state


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
    )

    def __init__(
        self, policy: Retry, budgets: tuple[RetryBudget, ...], deadline: float = math.inf
    ) -> None:
        self.policy = policy
        self.budgets = budgets
        # The loop's own deadline when no scope holds it while the loop decides (the
        # `attempts()` form decides between its attempts' scopes); else inf.
        self.deadline = deadline
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

    def decide(self, error: Exception) -> float | None:
        """Return the wait before the next attempt, or None to stop with `error`.

        Withdraws from the budgets when it decides to retry; on a stop, attaches the loop's
        fields to the error's context and emits `retry.gave_up`.
        """
        policy = self.policy
        attempt = self.attempt
        hooked = enabled()  # one check, rather than building two events for no hook
        if hooked:
            emit("retry.attempt_failed", policy._name, attempt=attempt, exception=error)
        if not policy._matches(error) or NO_RETRY.get():
            self.stop(error, "not_retryable")
            return None
        if attempt >= self.limit:
            self.stop(error, "attempts")
            return None
        delay = policy._backoff.delay(attempt, self.previous, _RNG)
        self.previous = delay
        hint = retry_after(error)
        if hint is not None and hint > delay:
            delay = max(delay, min(hint, policy._hint_cap))
        if self.no_wait:
            delay = 0.0
        deadline = effective_deadline()
        deadline = min(deadline, self.deadline)
        now = _backend.current_time() if deadline != math.inf or self.budgets else 0.0
        if now + delay >= deadline:
            self.stop(error, "deadline")
            return None
        owed: tuple[RetryBudget, ...] = ()
        for budget in self.budgets:
            if budget._shared is not None:
                owed += (budget,)
            elif not budget._try_withdraw(now):
                self.stop(error, "budget")
                return None
        self.owed = owed
        if hooked:
            emit("retry.scheduled", policy._name, attempt=attempt, delay=delay, exception=error)
        return delay

    async def settle(self, error: Exception) -> bool:
        """Withdraw from the shared budgets `decide` left owed; False (a stop) if one refuses."""
        owed, self.owed = self.owed, ()
        now = _backend.current_time()
        for budget in owed:
            if not await budget._withdraw(now):
                self.stop(error, "budget")
                return False
        return True

    async def wait(self, delay: float) -> None:
        """Wait `delay` seconds (a zero wait still lets other tasks run), then count on."""
        if delay > 0.0:
            await _backend.sleep(delay)
        else:
            await _backend.yield_now()
        self.attempt += 1

    def stop(self, error: Exception, reason: str) -> None:
        """Record that the loop stops with `error`: context fields and `retry.gave_up`."""
        attempt = self.attempt
        name = self.policy._name
        fields = {"attempt": attempt, "policy": name or "Retry", "stop_reason": reason}
        attach_context(error, fields)
        emit("retry.gave_up", name, attempt=attempt, stop_reason=reason, exception=error)


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
