"""`Retry.attempts()`: a retry loop over a block of code, one `Attempt` per try.

`async for attempt in policy.attempts(): with attempt: ...` runs the block until it succeeds
or the loop stops. Each `Attempt` is a context manager: it swallows a failure that will be
retried (the iterator then waits and yields the next attempt) and lets the last one
propagate. The loop's state (`RetryLoop`) is made at the first failure, as for `call`.
"""

from __future__ import annotations

import math
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING

from ..errors import DeadlineExceeded
from . import _backend
from .budget import ACTIVE_BUDGETS, RetryBudget, join_budget
from .retry_loop import RetryLoop

if TYPE_CHECKING:
    from .retry import Retry

__all__ = ["Attempt", "Attempts"]


class Attempt:
    """One try of a `Retry.attempts()` loop: a context manager around the block to retry.

    Attributes:
        number: The attempt's number, from 1.
    """

    __slots__ = ("_entered", "_loop", "_scope", "_token", "number")

    def __init__(self, loop: Attempts, number: int) -> None:
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
            self._token = ACTIVE_BUDGETS.set(loop.own_budgets)
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
                ACTIVE_BUDGETS.reset(token)
        if not isinstance(exc, Exception):  # `is_catchable`, inlined (None: a success)
            return False  # a success, or a stop signal that must propagate untouched
        state = loop.state()
        loop.delay = state.decide(exc)
        if loop.delay is not None and state.owed:
            loop.failed = exc  # re-raised by the next step if a shared budget refuses
        return loop.delay is not None


class Attempts:
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
        self._state: RetryLoop | None = None
        self.deadline: float | None = None  # the loop's own deadline, from `timeout`
        self.own_budgets: tuple[RetryBudget, ...] | None = None  # set while attempts run
        self.delay: float | None = None  # the wait before the next attempt, if it goes on
        self.failed: Exception | None = None  # the error of an attempt owing a withdrawal
        self.start: float | None = None  # when the first attempt started

    def __aiter__(self) -> Attempts:
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
            # The wait, inlined (as in `run_loop`): one coroutine less per retry.
            if delay > 0.0:
                await _backend.sleep(delay)
            else:
                await _backend.yield_now()  # a zero wait still lets other tasks run
            state.next_attempt()
        self._current = current = Attempt(self, 1 if self._state is None else self._state.attempt)
        return current

    def _start(self) -> None:
        policy = self.policy
        with policy._lock:
            policy._calls += 1
        self.start = now = _backend.current_time()
        if policy._budget is not None:
            self.own_budgets = join_budget(policy._budget)
        timeout = policy._timeout
        if timeout is not None:
            self.deadline = now + timeout

    def state(self) -> RetryLoop:
        """Return the loop's state, made on first use (the first failure)."""
        state = self._state
        if state is None:
            budgets = self.own_budgets
            if budgets is None:
                budgets = ACTIVE_BUDGETS.get()
            deadline = math.inf if self.deadline is None else self.deadline
            state = self._state = RetryLoop(self.policy, budgets, self.start, deadline)
        return state
