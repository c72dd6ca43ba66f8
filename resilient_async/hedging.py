"""Hedged calls: start another attempt when the first is slow, keep the first success.

Async only (a hedge needs concurrent tasks). Each attempt runs in a task of its own, with its
own copy of the caller's context; when one succeeds, the others are cancelled and awaited
before the call returns, so no attempt outlives the call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import Any, Generic, ParamSpec, TypeVar

import anyio

from ._async import _backend
from ._async.budget import RetryBudget
from ._async.policy import NamedPolicy
from ._core.checks import check_hooks, check_int, check_name, check_seconds
from ._core.deadlines import effective_deadline
from ._core.no_retry import NO_RETRY
from .classify import DEFAULT, DefaultType, ErrorClass, OnSpec, compile_on
from .context import attach_context
from .instrumentation import Hook, emit_to

__all__ = ["Hedge"]

P = ParamSpec("P")
T = TypeVar("T")

_DEFAULT_ON = frozenset({ErrorClass.TRANSIENT, ErrorClass.THROTTLED, ErrorClass.TIMEOUT})


class Hedge(NamedPolicy):
    """Start another attempt after `delay` while earlier ones still run; first success wins.

    An attempt that fails with an error matched by `on` starts the next attempt at once
    (instead of after the delay). An error not matched by `on` is final: the other attempts
    are cancelled and that error propagates. If every attempt fails, the error of the last one
    to fail propagates. Losers are cancelled and awaited before the call returns; a caller's
    cancellation cancels every attempt. No hedge starts after the effective deadline, nor when
    the `budget` refuses one (each call deposits once, each extra attempt withdraws), nor for
    a call that must not be sent twice (an HTTP POST or streamed body sent by the httpx
    transport).

    Args:
        delay: Seconds to wait for an attempt before starting the next, >= 0 (0 starts all
            attempts at once).
        max_attempts: Attempts at most, the first included (>= 1).
        on: Failures that start the next attempt early (default: TRANSIENT, THROTTLED,
            TIMEOUT).
        budget: A `RetryBudget` that extra attempts draw on.
        name: A name for events and error context.
        hooks: Hooks (callables taking one event) for this hedge's events only.

    The configuration (`delay`, `max_attempts`, `name`) is read-only.

    Raises:
        ValueError: `delay` < 0 or NaN, `max_attempts` < 1.
        TypeError: A parameter has the wrong type.

    Example:
        >>> hedge = Hedge(0.05, max_attempts=3)
        >>> price = await hedge.call(quote_service.get, "EURUSD")
    """

    __slots__ = ("_budget", "_delay", "_hooks", "_matches", "_max_attempts", "_name")

    def __init__(
        self,
        delay: float | timedelta,
        *,
        max_attempts: int = 2,
        on: OnSpec | DefaultType = DEFAULT,
        budget: RetryBudget | None = None,
        name: str | None = None,
        hooks: Iterable[Hook] = (),
    ) -> None:
        self._delay = check_seconds(delay, "delay")
        if budget is not None and not isinstance(budget, RetryBudget):
            raise TypeError(f"budget must be a RetryBudget or None, got {budget!r}")
        self._max_attempts = check_int(max_attempts, "max_attempts", 1)
        self._matches = compile_on(on, default=_DEFAULT_ON)
        self._budget = budget
        self._name = check_name(name)
        self._hooks: tuple[Hook, ...] = check_hooks(hooks)

    @property
    def delay(self) -> float:
        """Seconds to wait for an attempt before starting the next."""
        return self._delay

    @property
    def max_attempts(self) -> int:
        """Attempts at most, the first included."""
        return self._max_attempts

    def __repr__(self) -> str:
        return f"Hedge({self.delay!r}, max_attempts={self.max_attempts}, name={self.name!r})"

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(*args, **kwargs)` hedged, and return the first successful result.

        Raises:
            Exception: The final error: one not matched by `on`, or the last to fail when
                every attempt failed.
        """
        if self._budget is not None:
            self._budget.deposit()
        run: _HedgedCall[T] = _HedgedCall(self, fn, args, kwargs)
        return await run.run()


class _HedgedCall(Generic[T]):
    """The state of one hedged call: shared by its attempts, never by two calls."""

    def __init__(
        self,
        hedge: Hedge,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self._hedge = hedge
        # The user's callable itself, not a closure over it: a misuse error names it.
        self._fn = fn
        self._args = args
        self._kwargs = kwargs
        self._result: Any = None
        self._succeeded = False
        self._final_error: Exception | None = None
        self._misconfigured: ValueError | None = None  # a shared budget's other settings
        self._last_error: Exception | None = None
        self._last_failed = 0
        self._early_starts = 0  # matched failures not yet answered by a new attempt
        self._wake = anyio.Event()

    async def run(self) -> T:
        try:
            await self._race()
        except BaseExceptionGroup as group:
            stop = _stop_signal(group)
            if stop is None:
                raise
        else:
            stop = None
        if stop is not None:
            # Raised outside the handler, so the group is not chained onto it: a
            # KeyboardInterrupt or SystemExit leaves a Hedge unchanged, as every policy's does.
            raise stop
        if self._misconfigured is not None:
            raise self._misconfigured
        if self._succeeded:
            return self._result  # type: ignore[no-any-return]
        error = self._final_error or self._last_error
        assert error is not None  # every attempt ended, none succeeded
        attach_context(error, {"policy": self._hedge.name or "Hedge", "attempt": self._last_failed})
        raise error

    async def _race(self) -> None:
        hedge = self._hedge
        async with anyio.create_task_group() as tg:
            self._cancel = tg.cancel_scope.cancel
            for number in range(1, hedge.max_attempts + 1):
                if number > 1:
                    if not await self._may_start_another():
                        break
                    emit_to(hedge._hooks, "hedge.started", hedge._name, attempt=number)
                tg.start_soon(self._attempt, number)
                if number == hedge.max_attempts:
                    break
                if not self._early_starts:
                    with anyio.move_on_after(hedge.delay):
                        await self._wake.wait()
                    self._wake = anyio.Event()
                if self._early_starts:
                    self._early_starts -= 1

    async def _may_start_another(self) -> bool:
        if NO_RETRY.get() or _backend.remaining_until(effective_deadline()) <= 0:
            return False
        budget = self._hedge._budget
        if budget is None:
            return True
        try:
            return await budget.withdraw()
        except ValueError as error:  # the shared budget on the server has other settings
            self._misconfigured = error  # raised as itself, not inside the task group's group
            self._cancel()
            return False

    async def _attempt(self, number: int) -> None:
        try:
            result = await self._fn(*self._args, **self._kwargs)
        except Exception as exc:
            try:
                _backend.check_awaited(exc, self._fn, "Hedge")
            except TypeError as misuse:  # a sync callable: final, and said clearly
                self._final_error = misuse
                self._cancel()
                return
            self._last_error = exc
            self._last_failed = number
            if self._hedge._matches(exc):
                self._early_starts += 1
                self._wake.set()
            else:
                self._final_error = exc
                self._cancel()
            return
        if not self._succeeded:
            self._result = result
            self._succeeded = True
        self._cancel()


def _stop_signal(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """Return the first KeyboardInterrupt or SystemExit in `group` (trio's nurseries wrap them)."""
    for leaf in group.exceptions:
        if isinstance(leaf, KeyboardInterrupt | SystemExit):
            return leaf
        if isinstance(leaf, BaseExceptionGroup):
            found = _stop_signal(leaf)
            if found is not None:
                return found
    return None
