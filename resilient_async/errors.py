"""The error hierarchy shared by every primitive.

Every error the library raises itself derives from `ResilienceError`. Each class also
subclasses the closest builtin where one exists (`DeadlineExceeded` is a `TimeoutError`,
`CompensationError` and `SupervisorGaveUp` are `ExceptionGroup`s), so code that catches the
builtin keeps working.

Every error pickles with its message, attributes, error context and note, so it survives a
process boundary (multiprocessing, task queues).

The library never raises one instance twice: every rejection builds a fresh exception, so a
traceback can never grow across raises.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Self

__all__ = [
    "BulkheadFullError",
    "CircuitOpenError",
    "CompensationError",
    "DeadlineExceeded",
    "RateLimitedError",
    "ResilienceError",
    "SupervisorGaveUp",
]


class ResilienceError(Exception):
    """Root of every error that resilient_async raises itself.

    Catch it to handle any rejection by a policy (an open breaker, a full bulkhead, a rate
    limit, an expired deadline) in one place. User errors that pass through a policy are never
    wrapped in it: after the last retry, the last real exception propagates.
    """

    @property
    def context(self) -> Mapping[str, object]:
        """The error context captured where this error was raised (empty if none)."""
        from .context import context_of

        return context_of(self) or _EMPTY


class CircuitOpenError(ResilienceError):
    """Raised by a `CircuitBreaker` that rejects a call while open or out of half-open permits.

    Attributes:
        breaker: The breaker's name, or None.
        retry_after: Seconds until a probe may pass, or None when unknown (forced open).
    """

    def __init__(self, breaker: str | None, retry_after: float | None) -> None:
        self.breaker = breaker
        self.retry_after = retry_after
        when = "unknown" if retry_after is None else f"{retry_after:.3f}s"
        super().__init__(f"circuit {breaker or '<unnamed>'} is open (retry after {when})")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.breaker, self.retry_after), _state_of(self))


class BulkheadFullError(ResilienceError):
    """Raised by a `Bulkhead` with no free slot and no queue room, or after `max_wait`.

    Attributes:
        bulkhead: The bulkhead's name, or None.
    """

    def __init__(self, bulkhead: str | None, reason: str = "no free slot") -> None:
        self.bulkhead = bulkhead
        self.reason = reason
        super().__init__(f"bulkhead {bulkhead or '<unnamed>'} is full: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.bulkhead, self.reason), _state_of(self))


class RateLimitedError(ResilienceError):
    """Raised by a `RateLimiter` that cannot hand out a token within `max_wait`.

    Attributes:
        limiter: The limiter's name, or None.
        retry_after: Seconds until enough tokens are available, or None when never (the
            request asks for more tokens than the bucket holds).
    """

    def __init__(self, limiter: str | None, retry_after: float | None) -> None:
        self.limiter = limiter
        self.retry_after = retry_after
        when = "never" if retry_after is None else f"{retry_after:.3f}s"
        super().__init__(f"rate limit {limiter or '<unnamed>'} exceeded (retry after {when})")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.limiter, self.retry_after), _state_of(self))


class DeadlineExceeded(ResilienceError, TimeoutError):
    """Raised by the deadline or timeout scope that expired, and only by that one.

    It is a `TimeoutError`, so code written for `asyncio.timeout` or `anyio.fail_after` catches
    it. An outer cancellation is never turned into it. The cancellation that the expiry caused
    is its `__cause__`.

    Attributes:
        timeout: The scope's length in seconds, or None for an absolute deadline.
    """

    def __init__(self, timeout: float | None, message: str | None = None) -> None:
        self.timeout = timeout
        if message is None:
            message = "deadline exceeded" if timeout is None else f"deadline of {timeout}s exceeded"
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.timeout, self.args[0]), _state_of(self))


class CompensationError(ResilienceError, ExceptionGroup[Exception]):
    """Raised by a `Transaction` whose rollback had one or more failing compensations.

    `.exceptions` holds the original error first, then each failed compensation's error, in
    the order the compensations ran. Every compensation was tried before this is raised.
    """

    def __new__(cls, message: str, exceptions: Sequence[Exception]) -> Self:
        """Build the group from the original error and the compensations' errors."""
        return super().__new__(cls, message, exceptions)

    def derive(self, excs: Sequence[Exception], /) -> CompensationError:  # type: ignore[override]
        """Return a group of the same class holding `excs` (used by `split` and `subgroup`)."""
        return CompensationError(self.message, excs)


class SupervisorGaveUp(ResilienceError, ExceptionGroup[Exception]):
    """Raised by a `Supervisor` after more than `max_restarts` crashes within `within` seconds.

    Every child has been cancelled and awaited first. `.exceptions` are the crashes that fell
    within the period.
    """

    def __new__(cls, message: str, exceptions: Sequence[Exception]) -> Self:
        """Build the group from the crashes within the period."""
        return super().__new__(cls, message, exceptions)

    def derive(self, excs: Sequence[Exception], /) -> SupervisorGaveUp:  # type: ignore[override]
        """Return a group of the same class holding `excs` (used by `split` and `subgroup`)."""
        return SupervisorGaveUp(self.message, excs)


_EMPTY: Mapping[str, object] = MappingProxyType({})


def _state_of(error: BaseException) -> dict[str, Any] | None:
    """Return what pickling must carry besides the constructor's arguments.

    The instance dict holds the PEP 678 notes and the captured error context (see
    `resilient_async.context`), plus any attribute a user set; without it an error crossing a
    process boundary (multiprocessing, a task queue) would arrive without them.
    """
    return dict(error.__dict__) or None
