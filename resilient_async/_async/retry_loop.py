"""The state of one retry loop: what a `Retry` call tracks between its attempts.

`RetryLoop` is the driver around the pure `RetryPlan`: it classifies each failed attempt,
reads the clock, the effective deadline, the testing settings and the no-retry flag, asks
the budgets, emits the loop's events, counts the policy's metrics and attaches the error
context when the loop stops. It is made for one call (never kept on the policy), and only
once that call needs it: at its first failure, unless a timeout or a budget needs work
before the first attempt.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Any, Final, TypeVar

from .._classify.retry_after import CLASS_HINTS, retry_after
from .._core.deadlines import DEADLINE, effective_deadline
from .._core.no_retry import NO_RETRY
from .._core.retry import Outcome, RetryPlan, StopReason
from ..context import attach_context
from ..errors import CircuitOpenError, DeadlineExceeded
from ..instrumentation import emit_to, enabled
from ..testing import testing_settings
from . import _backend
from .budget import ACTIVE_BUDGETS, enter_budget

if TYPE_CHECKING:
    from .budget import RetryBudget
    from .retry import Retry

__all__ = ["NO_RESULT", "RetryLoop", "guarded_call", "run_loop"]

T = TypeVar("T")

NO_RESULT: Final[Any] = object()
"""Stands for "the attempt failed with an error", where a rejected result could be."""

# Jitter draws; `random.Random.random` is safe to call from several threads at once.
_RNG: Final = random.Random()

# The reads of every failure, bound once. A method of an imported name (`NO_RETRY.get()`)
# compiles to an attribute load that makes a bound method on every call; these do not.
_no_retry: Final = NO_RETRY.get
_deadline_node: Final = DEADLINE.get
_class_hints: Final = CLASS_HINTS.get


class RetryLoop:
    """What one retry loop tracks between attempts.

    Args:
        policy: The `Retry` whose call this is.
        budgets: The budgets every retry withdraws from (the enclosing loops' and the
            policy's own), outermost first.
        start: When the first attempt started, for `elapsed`; None when nobody listened
            then (the success path reads the clock only for hooks).
        deadline: The loop's own deadline when no scope enforces it while the loop decides
            (the `attempts()` form decides between its attempts' scopes); else `math.inf`.

    Attributes:
        owed: Shared budgets a retry must still withdraw from (`settle`) before its wait.
    """

    __slots__ = ("budgets", "deadline", "owed", "plan", "policy", "start")

    def __init__(
        self,
        policy: Retry,
        budgets: tuple[RetryBudget, ...],
        start: float | None = None,
        deadline: float = math.inf,
    ) -> None:
        # Made once per failed call: every argument here is passed by position, which costs
        # half of a keyword call.
        self.policy = policy
        self.budgets = budgets
        self.deadline = deadline
        self.start = start
        self.owed: tuple[RetryBudget, ...] = ()
        settings = testing_settings()
        limit = policy._max_attempts
        testing = settings.active
        if testing and settings.attempts is not None:
            limit = min(limit, settings.attempts)
        self.plan = RetryPlan(policy._backoff, _RNG, limit, policy._max_retry_after, testing)

    @property
    def attempt(self) -> int:
        """The number of the attempt that runs, or that just failed (from 1)."""
        return self.plan.attempt

    def elapsed(self) -> float:
        """Seconds since the first attempt started (since now, if that was not read)."""
        now = _backend.current_time()
        if self.start is None:
            self.start = now
        return now - self.start

    def decide(self, error: Exception | None, result: Any = NO_RESULT) -> float | None:
        """Return the wait before the next attempt, or None to stop.

        `error` is the failed attempt's exception, or None (with `result`) for a result that
        `on_result` rejected: on a stop the loop re-raises the one, or returns the other.
        Withdraws from the budgets kept in this process when it decides to retry (the
        shared ones are left `owed`); on a stop, attaches the loop's fields to the error's
        context and emits `retry.gave_up`.
        """
        policy = self.policy
        plan = self.plan
        own = policy._hooks
        listening = own or enabled()  # one check, rather than events for no hook
        if listening:
            emit_to(
                own,
                "retry.attempt_failed",
                policy._name,
                attempt=plan.attempt,
                **_failure(error, result),
                elapsed=self.elapsed(),
            )
        outcome: Outcome = "retryable"
        hint = None
        if error is None:
            if _no_retry():
                outcome = "not_retryable"
        elif policy._stops_on_open and isinstance(error, CircuitOpenError):
            outcome = "circuit_open"
        elif not policy._matches(error) or _no_retry():
            outcome = "not_retryable"
        elif _class_hints(type(error)) is False and not error.__dict__:
            hint = None  # `retry_after`'s first test, inlined: most errors carry no hint
        else:
            hint = retry_after(error)
        now = 0.0
        deadline = math.inf
        if outcome == "retryable":
            deadline = self.deadline
            if _deadline_node() is not None:  # the effective deadline, read only when one is set
                enclosing = effective_deadline()
                if enclosing < deadline:  # noqa: PLR1730 (one call less than `min` per retry)
                    deadline = enclosing
            if deadline != math.inf or self.budgets:
                now = _backend.current_time()
        decision = plan.decide(outcome, hint, now, deadline)
        if self.budgets and decision.retries:
            decision = plan.settle(decision, self._withdraw_local(now))
        reason = decision.stop_reason
        if reason is not None:
            self.stop(error, reason, result)
            return None
        if listening:
            emit_to(
                own,
                "retry.scheduled",
                policy._name,
                attempt=plan.attempt,
                delay=decision.delay,
                elapsed=self.elapsed(),
                **_failure(error, result),
            )
        return decision.delay

    def _withdraw_local(self, now: float) -> bool:
        """Withdraw from the budgets kept in this process; leave the shared ones owed."""
        owed: tuple[RetryBudget, ...] = ()
        for budget in self.budgets:
            if budget.shared:
                owed += (budget,)
            elif not budget.try_withdraw(now):
                return False
        self.owed = owed
        return True

    async def settle(self, error: Exception | None, result: Any = NO_RESULT) -> bool:
        """Withdraw from the shared budgets `decide` left owed; False (a stop) if one refuses.

        `error` is the failed attempt's exception, or None (with `result`) for a result that
        `on_result` rejected.
        """
        owed, self.owed = self.owed, ()
        now = _backend.current_time()
        for budget in owed:
            if not await budget.withdraw(now):
                self.stop(error, "budget", result)
                return False
        return True

    def next_attempt(self) -> None:
        """Count the attempt that is about to start."""
        self.plan.attempt += 1  # `RetryPlan.next_attempt`, inlined: one call less per retry
        policy = self.policy
        # No lock in async code: nothing awaits between the read and the write.
        # unasync: sync-only: with policy._lock:
        # unasync: sync-only:     policy._retries += 1
        policy._retries += 1  # unasync: remove

    def stop(self, error: Exception | None, reason: StopReason, result: Any = NO_RESULT) -> None:
        """Record that the loop stops: context fields, counters and `retry.gave_up`.

        `error` is the exception the loop stops with, or None when it stops on a result
        that `on_result` rejected (which the loop then returns).
        """
        attempt = self.plan.attempt
        policy = self.policy
        name = policy._name
        with policy._lock:
            policy._gave_up[reason] = policy._gave_up.get(reason, 0) + 1
            if reason == "budget":
                policy._budget_refusals += 1
        if error is not None:
            context = {"attempt": attempt, "policy": name or "Retry", "stop_reason": reason}
            attach_context(error, context)
        own = policy._hooks
        if own or enabled():
            emit_to(
                own,
                "retry.gave_up",
                name,
                attempt=attempt,
                stop_reason=reason,
                **_failure(error, result),
                elapsed=self.elapsed(),
            )


def _failure(error: Exception | None, result: Any) -> dict[str, Any]:
    """The event field that tells what failed: the `exception`, or a rejected `result`."""
    return {"exception": error} if error is not None else {"result": result}


async def guarded_call(
    policy: Retry,
    fn: _backend.Fn[..., T],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> T:
    """Run a loop that needs work before its first attempt (a timeout, a budget, own hooks)."""
    _backend.check_deadline()
    policy._count_call()
    budgets, token = enter_budget(policy._budget)
    try:
        start = _backend.current_time()
        state = RetryLoop(policy, budgets, start)
        timeout = policy.timeout
        if timeout is None:
            return await run_loop(state, fn, args, kwargs)
        scope = _backend.DeadlineScope(start + timeout, timeout)
        _backend.report_overrun(scope, policy._name, policy._hooks)
        try:
            with scope:
                return await run_loop(state, fn, args, kwargs)
        except DeadlineExceeded as exc:
            if scope.expired:
                state.stop(exc, "deadline")
            raise
    finally:
        if token is not None:
            ACTIVE_BUDGETS.reset(token)


async def run_loop(
    state: RetryLoop,
    fn: _backend.Fn[..., T],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    error: Exception | None = None,
) -> T:
    """The general loop: run attempts until one succeeds or `state` decides to stop.

    Starts with an attempt, or, given the `error` of a first attempt that failed, with
    the decision that follows it.
    """
    # `fn(*args)` when there are no keywords: `**kwargs` copies the dict on every call, which
    # costs as much as the rest of the call.
    policy = state.policy
    plan = state.plan
    on_result = policy._on_result
    result: Any = NO_RESULT
    if error is None:  # a guarded call: its first attempt
        try:
            result = await (fn(*args, **kwargs) if kwargs else fn(*args))
        except Exception as exc:
            _backend.check_awaited(exc, fn, "Retry")
            error = exc
        else:
            # unasync: sync-only: _backend.check_result(result, fn, "Retry")
            if on_result is None or not on_result(result):
                return result  # type: ignore[no-any-return]
    try:
        while True:
            delay = state.decide(error, result)
            if delay is None or (state.owed and not await state.settle(error, result)):
                if error is not None:
                    raise error
                return result  # type: ignore[no-any-return]
            # The wait and `next_attempt`, inlined: a coroutine and a call less per retry.
            if delay > 0.0:
                await _backend.sleep(delay)
            else:
                await _backend.yield_now()  # a zero wait still lets other tasks run
            plan.attempt += 1
            # unasync: sync-only: with policy._lock:
            # unasync: sync-only:     policy._retries += 1
            policy._retries += 1  # unasync: remove
            try:
                result = await (fn(*args, **kwargs) if kwargs else fn(*args))
            except Exception as exc:
                error = exc
                continue
            error = None
            # unasync: sync-only: _backend.check_result(result, fn, "Retry")
            if on_result is None or not on_result(result):
                return result  # type: ignore[no-any-return]
    finally:
        del error  # no reference cycle between this frame and the traceback
