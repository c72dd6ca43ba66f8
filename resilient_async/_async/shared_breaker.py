"""The steps of a circuit breaker whose state lives behind a remote port (a RedisStore).

`CircuitBreaker(..., store=RedisStore(...))` stays a `CircuitBreaker`: at construction it
makes one `SharedBreaker` and hands it every step that needs the state. Its own core is
then held forced open, so the closed fast path never admits a call and its slow branch
passes the call here; the memory breaker's hot path gains no check.

Admission, outcomes and cancellations are awaited steps of the port (each one atomic on
the server, or on the local fallback while the server is unreachable); everything else,
the rules, events, error context and what counts as a failure, is the breaker's. `state`
and `metrics()` cannot await: they read the server with a blocking, read-only step bounded
by the store's `timeout` (and show what this process last saw when that read cannot be
made). `force_open`, `disable` and `reset` apply at once to this process's view and reach
the server with its next step through the breaker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from .._core.breaker import BreakerMetrics, BreakerState
from .._core.signals import is_catchable
from ..context import attach_context
from ..instrumentation import emit_to
from . import _backend
from .ports import BreakerPort, Control

if TYPE_CHECKING:
    from .breaker import CircuitBreaker

__all__ = ["SharedBreaker"]

P = ParamSpec("P")
T = TypeVar("T")


class SharedBreaker:
    """What a `CircuitBreaker` on a remote port does in place of its in-memory steps."""

    __slots__ = ("_breaker", "_now", "_port")

    def __init__(
        self, breaker: CircuitBreaker, port: BreakerPort, now: Callable[[], float]
    ) -> None:
        self._breaker = breaker
        self._port = port
        self._now = now  # the backend's clock, or the monotonic one where no loop runs

    async def call(self, fn: _backend.Fn[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(*args, **kwargs)` if the shared breaker admits it, and record its outcome.

        The breaker has refused a call that starts after a sync deadline already.

        Raises:
            CircuitOpenError: The breaker is open, forced open, or half-open with every
                probe permit taken across all processes.
            TypeError: `fn` is of the other flavour (it then counts as nothing).
        """
        ticket = await self.enter()
        start = _backend.current_time()
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            await self._misused(ticket, exc, fn)  # unasync: remove
            await self.exit(ticket, start, exc)
            raise
        except BaseException:
            await self._port.cancel(ticket, _backend.current_time())
            raise
        # unasync: sync-only: if type(result) is _backend.CoroutineType:
        # unasync: sync-only:     self._check_result(ticket, result, fn)
        await self.exit(ticket, start, None)
        return result

    async def enter(self) -> int:
        """Admit one call (a step of the port): its ticket, or raise `CircuitOpenError`."""
        admission = await self._port.acquire(_backend.current_time())
        return self._breaker._ticket_of(admission)

    async def exit(self, ticket: int, start: float, error: BaseException | None) -> None:
        """Record a finished call or block: a failure if `on` matches its error.

        A cancellation (or `KeyboardInterrupt`, `SystemExit`) counts as nothing and gives a
        probe's permit back.
        """
        if error is not None and not is_catchable(error):
            await self._port.cancel(ticket, _backend.current_time())
            return
        failed = False
        if error is not None:
            failed = True  # if an `on` predicate raises, the call still counts
            try:
                failed = self._breaker._is_failure(error)
            finally:
                await self._record(ticket, start, error, failed)
            return
        await self._record(ticket, start, None, failed)

    # --- state and control -----------------------------------------------------------------

    def state(self) -> BreakerState:
        """The state on the server (a blocking read), or as of this process's last step."""
        return self._port.peek(self._now())

    def metrics(self) -> BreakerMetrics:
        """A snapshot of the server's state (a blocking read), or as of the last step."""
        return self._port.metrics(self._now())

    def control(self, command: Control) -> None:
        """Apply a manual command to this process's view; the server gets it next step."""
        self._breaker._report(self._port.control(command, self._now()))

    # --- the steps -------------------------------------------------------------------------

    async def _record(
        self, ticket: int, start: float, error: Exception | None, failed: bool
    ) -> None:
        breaker = self._breaker
        end = _backend.current_time()
        duration = end - start
        slow = duration >= breaker._slow_after
        transitions = await self._port.record(ticket, end, failed, slow)
        if slow:
            emit_to(
                breaker._hooks, "breaker.slow_call", breaker.name, duration=duration, failed=failed
            )
        if transitions:
            breaker._report(transitions)
        if error is not None:
            # The state the step just told: a failing call never waits on another read.
            attach_context(error, breaker._context_fields[self._port.seen(end)])

    # unasync: begin-remove
    async def _misused(self, ticket: int, exc: Exception, fn: object) -> None:
        """Raise the clear error for a sync callable; the call then counts as nothing."""
        try:
            _backend.check_awaited(exc, fn, "CircuitBreaker")
        except TypeError:
            await self._port.cancel(ticket, _backend.current_time())  # a probe's permit back
            raise

    # unasync: end-remove
    # unasync: sync-only: def _check_result(self, ticket: int, result: object, fn: object) -> None:
    # unasync: sync-only:     """Refuse an async callable's coroutine: it counts as nothing."""
    # unasync: sync-only:     try:
    # unasync: sync-only:         _backend.check_result(result, fn, "CircuitBreaker")
    # unasync: sync-only:     except TypeError:
    # unasync: sync-only:         self._port.cancel(ticket, _backend.current_time())
    # unasync: sync-only:         raise
