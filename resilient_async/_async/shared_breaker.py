"""The awaited steps of a circuit breaker whose state lives behind a remote port (a RedisStore).

`CircuitBreaker(..., store=RedisStore(...))` stays a `CircuitBreaker` (its type, errors,
events and `repr`): it makes one `SharedBreaker` at construction and hands it the steps
that reach the state. Admission (`enter`) and the outcome (`finish`, after `exit` answered
`MUST_WAIT`) are awaited steps of the port, each one atomic on the server (or on the local
fallback while the server is unreachable); everything else, the rules, events, error
context and what counts as a failure, is the breaker's. As its outcomes are awaited, a
pipeline runs such a breaker through its `call` (see `Guard.exit_may_wait`).

`state` and `metrics()` cannot await: the port reads the server with a blocking, read-only
step bounded by the store's `timeout` (and shows what this process last saw when that read
cannot be made). `force_open`, `disable` and `reset` apply at once to this process's view
and reach the server with its next step through the breaker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._core.signals import is_catchable
from ..context import attach_context
from ..instrumentation import emit_to
from . import _backend
from .ports import BreakerPort

if TYPE_CHECKING:
    from .breaker import CircuitBreaker

__all__ = ["SharedBreaker"]

Token = tuple[int, float]  # the call's ticket, the time it started


class SharedBreaker:
    """What a `CircuitBreaker` on a remote port awaits in place of its in-memory steps."""

    __slots__ = ("_breaker", "_port")

    def __init__(self, breaker: CircuitBreaker, port: BreakerPort) -> None:
        self._breaker = breaker
        self._port = port

    async def enter(self) -> Token:
        """Admit one call (a step of the port): its token, or raise `CircuitOpenError`."""
        ticket = self._breaker._ticket_of(await self._port.acquire(_backend.current_time()))
        return ticket, _backend.current_time()

    async def finish(self, token: Token, error: BaseException | None) -> None:
        """Record a finished call or block: a failure if `on` matches its error.

        A cancellation (or `KeyboardInterrupt`, `SystemExit`, a withdrawn call) counts as
        nothing and gives a probe's permit back.
        """
        ticket, start = token
        if error is not None and not is_catchable(error):
            await self._port.cancel(ticket, _backend.now())  # maybe closed outside its loop
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
