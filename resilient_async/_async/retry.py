"""Retrying: `Retry` and the `retry` decorator factory.

A `Retry` runs a call again when it fails with an error its `on` matches, waiting between
attempts as its backoff says, until it succeeds or a stop condition holds: no attempts left,
the next wait would cross the effective deadline, the shared `RetryBudget` refuses, or the
error is not retryable. Then the last real exception propagates, unwrapped, with the retry's
fields (`attempt`, `policy`, `stop_reason`) added to its error context.

Two paths run attempts: the fast path (`call`, and its copy in the decorator) is one `try`
around the first attempt; every other attempt runs in the general loop (`run_loop`). The
decisions between attempts are the pure `RetryPlan`'s (`_core/retry.py`), driven by a
`RetryLoop` made for the call (`retry_loop.py`), never kept on the policy: without a
`timeout` or a `budget` it is made only once the call has failed. `attempts()` is in
`attempts.py`, `RetryBudget` in `budget.py`; both are re-exported here.
Cancellation, `KeyboardInterrupt` and `SystemExit` are never caught.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar, overload

from .._core.checks import check_hooks, check_name, check_seconds
from .._core.retry_metrics import RetryMetrics
from ..backoff import Backoff, exponential
from ..classify import DEFAULT, DefaultType, ErrorClass, OnSpec, compile_on
from ..errors import CircuitOpenError
from ..instrumentation import Hook, enabled
from . import _backend
from .attempts import Attempt, Attempts
from .budget import ACTIVE_BUDGETS as _ACTIVE_BUDGETS
from .budget import RetryBudget
from .policy import NamedPolicy
from .retry_loop import RetryLoop, guarded_call, run_loop

if TYPE_CHECKING:
    # unasync: sync-only: from collections.abc import Callable, Iterator
    from collections.abc import AsyncIterator, Callable  # unasync: remove

__all__ = ["DEFAULT_ON", "Attempt", "Retry", "RetryBudget", "RetryMetrics", "retry"]

P = ParamSpec("P")
T = TypeVar("T")

# Bound once: `ACTIVE_BUDGETS.get()` would make a bound method on every call.
_active_budgets: Final = _ACTIVE_BUDGETS.get

DEFAULT_ON: Final = frozenset({ErrorClass.TRANSIENT, ErrorClass.THROTTLED, ErrorClass.TIMEOUT})
"""What a `Retry` retries when `on` is not given."""


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

    def _count_call(self) -> None:
        """Count one more loop (a call, a decorated call or an `attempts()` loop)."""
        with self._lock:
            self._calls += 1

    async def call(self, fn: _backend.Fn[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(*args, **kwargs)`, retrying it as configured; return its first success.

        Raises:
            Exception: The last attempt's exception, unchanged, when the loop stops (see the
                class documentation for the stop reasons).
            DeadlineExceeded: `timeout` expired during an attempt.
            TypeError: `fn` is a callable of the other flavour (a sync function given to the
                async policy, or an async one to the sync policy).
        """
        # The fast path: one `try` around the first attempt; all else is in `run_loop`. Its
        # sync-only lines stay markers: a no-op call costs a tenth of the async success path.
        if self._guarded:
            return await guarded_call(self, fn, args, kwargs)
        # unasync: sync-only: _backend.check_deadline()
        # unasync: sync-only: with self._lock:
        # unasync: sync-only:     self._calls += 1
        self._calls += 1  # unasync: remove
        start = _backend.current_time() if enabled() else None
        try:
            result = await (fn(*args, **kwargs) if kwargs else fn(*args))  # type: ignore[call-arg]
        except Exception as exc:
            _backend.check_awaited(exc, fn, "Retry")
            error = exc
        else:
            # unasync: sync-only: _backend.check_result(result, fn, "Retry")
            return result
        # Outside the handler: a later attempt's error is not chained onto this one.
        state = RetryLoop(self, _active_budgets(), start)
        return await run_loop(state, fn, args, kwargs, error)

    def __call__(self, fn: _backend.Fn[P, T]) -> _backend.Fn[P, T]:
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
                return await guarded_call(policy, fn, args, kwargs)

            return guarded

        # `call`'s fast path, inlined: one frame less on every call of the decorated function.
        @functools.wraps(fn)
        async def retried(*args: P.args, **kwargs: P.kwargs) -> T:
            # unasync: sync-only: _backend.check_deadline()
            # unasync: sync-only: with policy._lock:
            # unasync: sync-only:     policy._calls += 1
            policy._calls += 1  # unasync: remove
            start = _backend.current_time() if enabled() else None
            try:
                result = await (fn(*args, **kwargs) if kwargs else fn(*args))  # type: ignore[call-arg]
            except Exception as exc:
                error = exc
            else:
                # unasync: sync-only: _backend.check_result(result, fn, "Retry")
                return result
            state = RetryLoop(policy, _active_budgets(), start)
            return await run_loop(state, fn, args, kwargs, error)

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
        return Attempts(self)


@overload
def retry(fn: _backend.Fn[P, T], /) -> _backend.Fn[P, T]: ...


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
    fn: _backend.Fn[P, T] | None = None,
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
) -> Retry | _backend.Fn[P, T]:
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
