"""What a retry loop does after a failed attempt: wait and retry, or give up, and why.

Pure: no clock reads, no context variables, no I/O, no events. The driver classifies the
failed attempt, reads the time and the effective deadline, asks the budgets, and passes the
answers in; `RetryPlan` returns a `Decision` and keeps the only state a loop carries between
attempts (the attempt number and the backoff's previous delay).

The order of the checks is the contract: a failure that is not retryable stops at once;
then the attempts run out; then the backoff's delay, raised to a server's hint (a hint
longer than `max_retry_after` gives up); under testing the wait becomes zero; a wait that
would end at or past the deadline gives up; last, the budgets must allow the retry.
"""

from __future__ import annotations

import random
from typing import Final, Literal, TypeAlias, final

from ..backoff import Backoff, Constant

__all__ = [
    "GIVE_UP",
    "RETRY_NOW",
    "Decision",
    "Outcome",
    "RetryPlan",
    "StopReason",
]

StopReason: TypeAlias = Literal[
    "not_retryable", "attempts", "deadline", "budget", "retry_after", "circuit_open"
]
"""Why a retry loop stopped without a success (`stop_reason` in the error context)."""

Outcome: TypeAlias = Literal["retryable", "not_retryable", "circuit_open"]
"""How the driver classified a failed attempt (an error, or a result `on_result` rejected)."""


@final
class Decision:
    """The answer of `RetryPlan.decide`: retry after `delay` seconds, or give up.

    Attributes:
        delay: Seconds to wait before the next attempt (0.0 when the loop gives up).
        stop_reason: Why the loop gives up, or None when it retries. A loop that gives up
            on an error re-raises it; one that gives up on a rejected result returns it.
    """

    __slots__ = ("delay", "stop_reason")

    def __init__(self, delay: float, stop_reason: StopReason | None = None) -> None:
        self.delay = delay
        self.stop_reason = stop_reason

    @property
    def retries(self) -> bool:
        """True when the loop waits `delay` seconds and tries again."""
        return self.stop_reason is None

    def __repr__(self) -> str:
        if self.stop_reason is None:
            return f"Decision(retry after {self.delay!r} s)"
        return f"Decision(give up: {self.stop_reason})"


GIVE_UP: Final[dict[StopReason, Decision]] = {
    reason: Decision(0.0, reason)
    for reason in ("not_retryable", "attempts", "deadline", "budget", "retry_after", "circuit_open")
}
"""The give-up decisions, one per stop reason (decisions are never mutated)."""

RETRY_NOW: Final = Decision(0.0)
"""The decision to retry at once (testing mode, a zero backoff): made once, not per retry."""


class RetryPlan:
    """The decisions of one retry loop, from its first failed attempt on.

    Args:
        backoff: The wait schedule.
        rng: Where jitter is drawn from.
        limit: Attempts at most, >= 1 (the policy's, or fewer under testing settings).
        max_retry_after: The longest server hint the loop waits for, in seconds.
        no_wait: Make every wait zero (testing mode); deadlines still apply.

    Attributes:
        attempt: The number of the attempt that runs, or that just failed (from 1).
    """

    __slots__ = (
        "_backoff",
        "_fixed",
        "_limit",
        "_max_retry_after",
        "_no_wait",
        "_previous",
        "_rng",
        "attempt",
    )

    def __init__(
        self,
        backoff: Backoff,
        rng: random.Random,
        limit: int,
        max_retry_after: float,
        no_wait: bool = False,
    ) -> None:
        self._backoff = backoff
        self._rng = rng
        self._limit = limit
        self._max_retry_after = max_retry_after
        self._no_wait = no_wait
        self._previous = 0.0  # the backoff's previous delay (decorrelated jitter reads it)
        # A `constant()` schedule's delay, read once rather than asked for on every retry.
        self._fixed = backoff.seconds if type(backoff) is Constant else None
        self.attempt = 1

    def decide(self, outcome: Outcome, hint: float | None, now: float, deadline: float) -> Decision:
        """Decide what follows the failure of attempt `attempt`.

        A retry decision is provisional: the loop's budgets must still allow it (`settle`).

        Args:
            outcome: How the driver classified the failure.
            hint: The server's wait hint in seconds (`retry_after`), or None.
            now: The current time, on the clock `deadline` is on (any value when
                `deadline` is infinite).
            deadline: The effective deadline (`math.inf` for none).
        """
        if outcome != "retryable":
            return GIVE_UP[outcome]
        attempt = self.attempt
        if attempt >= self._limit:
            return GIVE_UP["attempts"]
        delay = self._fixed
        if delay is None:
            delay = self._backoff.delay(attempt, self._previous, self._rng)
            self._previous = delay
        hinted = False
        if hint is not None:
            if hint > self._max_retry_after:
                return GIVE_UP["retry_after"]
            if hint >= delay:
                delay = hint  # in full: the backoff's `max` never shortens a server's hint
                hinted = True
        if self._no_wait:
            delay = 0.0
        if now + delay >= deadline:
            return GIVE_UP["retry_after" if hinted and delay else "deadline"]
        return RETRY_NOW if delay == 0.0 else Decision(delay)

    @staticmethod
    def settle(decision: Decision, allowed: bool) -> Decision:
        """Return `decision`, or the give-up for `"budget"` when a budget refused the retry."""
        return decision if allowed or not decision.retries else GIVE_UP["budget"]

    def next_attempt(self) -> int:
        """Count the attempt that starts after a wait; return its number."""
        self.attempt += 1
        return self.attempt
