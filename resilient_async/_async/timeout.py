"""Deadlines and timeouts that propagate through tasks, retries, hedges and fallbacks.

`deadline(seconds)` and `deadline_at(when)` bound a block; `Timeout(seconds)` does the same as
a policy (per attempt when placed inside a `Retry`). The effective deadline is the minimum of
the enclosing ones and lives in a context variable, so child tasks, retry loops and fallbacks
see it through `remaining()` and `current_deadline()`; an inner deadline can never extend an
outer one. Only the scope that expired raises `DeadlineExceeded` (a `TimeoutError`).

In async code the expiry cancels the block, and the cancellation is the error's `__cause__`.
Sync code cannot be interrupted: there the deadline bounds retries and waits, and what starts
after it is refused with `DeadlineExceeded`; a block that completes late keeps its result
(the overrun is reported as the event `timeout.overrun`), so finished work is never thrown
away.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import timedelta
from typing import ParamSpec, TypeVar

from .._core.checks import check_hooks, check_name, check_seconds
from .._core.deadlines import effective_deadline
from ..context import attach_context
from ..errors import DeadlineExceeded
from ..instrumentation import Hook, emit_to
from . import _backend
from .policy import Guard

__all__ = ["Timeout", "current_deadline", "deadline", "deadline_at", "remaining"]

P = ParamSpec("P")
T = TypeVar("T")


def deadline(seconds: float | timedelta) -> _backend.DeadlineScope:
    """Bound the enclosed block to `seconds` from now (a plain `with`).

    When the time is up the scope raises `DeadlineExceeded` (async code: the block is
    cancelled first). Sync code cannot be interrupted: a block that completes late keeps its
    result and the overrun is reported (event `timeout.overrun`), while waits, retries and
    guarded calls started after the deadline are refused. If an enclosing deadline comes
    first, that one rules: nesting can shorten, never extend.

    Args:
        seconds: The time allowed, >= 0, in seconds or a `timedelta` (0 expires at the
            first checkpoint).

    Raises:
        ValueError: `seconds` is negative or NaN.
        TypeError: `seconds` is not a number.
        RuntimeError: No event loop is running (async flavour).

    Example:
        >>> async def handler() -> None:
        ...     with deadline(2.0):
        ...         await fetch()  # cancelled after 2 s; DeadlineExceeded raised here
    """
    seconds = check_seconds(seconds, "seconds")
    return _backend.DeadlineScope(_backend.current_time() + seconds, seconds)


def deadline_at(when: float) -> _backend.DeadlineScope:
    """Bound the enclosed block to the absolute time `when` on the loop's clock.

    Like `deadline`, with `when` read on the same clock as `current_deadline()` (the event
    loop's clock, `anyio.current_time()`; `time.monotonic()` in sync code). A `when` already
    past expires at the first checkpoint.

    Raises:
        ValueError: `when` is NaN.
        TypeError: `when` is not a number.
    """
    if isinstance(when, bool) or not isinstance(when, int | float):
        raise TypeError(f"when must be a number (a time on the loop's clock), got {when!r}")
    if math.isnan(when):
        raise ValueError("when must be a time on the loop's clock, got nan")
    _backend.current_time()  # raises RuntimeError at once when no event loop runs
    return _backend.DeadlineScope(float(when) - _backend.clock_offset(), None)


def remaining() -> float:
    """Return the seconds left under the effective deadline (`math.inf` when there is none).

    A deadline inherited from a block that has exited (in a task that outlived it) no longer
    counts.
    """
    return _backend.remaining_until(effective_deadline())


def current_deadline() -> float:
    """Return the effective deadline on the loop's clock (`math.inf` when there is none)."""
    when = effective_deadline()
    return when if when == math.inf else when + _backend.clock_offset()


class Timeout(Guard):
    """Bound each call (or block) to `seconds`, raising `DeadlineExceeded` when it runs over.

    The policy form of `deadline`: `await timeout.call(fn)`, `@timeout`, or
    `async with timeout:`. Inside a `Retry` it bounds each attempt; outside, the whole loop.
    One instance can be shared by any number of concurrent calls.

    In sync code a call that completes after `seconds` returns its result (the overrun is
    reported as the event `timeout.overrun`); see `deadline`.

    Args:
        seconds: The time each call may take, >= 0, in seconds or a `timedelta`.
        name: A name for events and error context.
        hooks: Hooks (callables taking one event) for this policy's events only.

    Raises:
        ValueError: `seconds` is negative, NaN or too large; `name` is empty.
        TypeError: `seconds` is not a number or a `timedelta`, or `name` not a str.
    """

    _binds_token = True  # `async with timeout as scope`: the block's deadline scope
    __slots__ = ("_hooks", "_name", "_seconds")

    def __init__(
        self, seconds: float | timedelta, *, name: str | None = None, hooks: Iterable[Hook] = ()
    ) -> None:
        self._seconds = check_seconds(seconds, "seconds")
        self._name = check_name(name)
        self._hooks: tuple[Hook, ...] = check_hooks(hooks)

    @property
    def seconds(self) -> float:
        """The time each call may take, in seconds."""
        return self._seconds

    def __repr__(self) -> str:
        return f"Timeout({self._seconds!r}, name={self._name!r})"

    # --- the guard's steps: the token is the call's deadline scope -----------------------

    def enter_nowait(self) -> _backend.DeadlineScope:
        scope = _backend.DeadlineScope(None, self._seconds)
        # unasync: sync-only: scope.report_as(self._name, self._hooks)
        scope.__enter__()
        return scope

    async def enter(self) -> _backend.DeadlineScope:
        return self.enter_nowait()  # entering a timeout never has to wait

    def exit(self, scope: _backend.DeadlineScope, error: BaseException | None) -> None:
        try:
            if error is None:
                scope.__exit__(None, None, None)
            else:
                scope.__exit__(type(error), error, error.__traceback__)
        except DeadlineExceeded as expired:
            self._expired(scope, expired)
            raise

    def _expired(self, scope: _backend.DeadlineScope, exc: DeadlineExceeded) -> None:
        if scope.expired:
            attach_context(exc, {"policy": self._name or "Timeout", "deadline_remaining": 0.0})
            emit_to(
                self._hooks, "timeout.expired", self._name, timeout=self._seconds, exception=exc
            )
