"""The driver of a circuit breaker whose state lives behind a remote port (a RedisStore).

`CircuitBreaker(..., store=RedisStore(...))` becomes this class at construction. Admission,
outcomes and cancellations are awaited steps of the port (each one atomic on the server, or
on the local fallback while the server is unreachable); everything else, the rules, events,
error context and what counts as a failure, is the plain breaker's. `state` and `metrics()`
cannot await: they read the server with a blocking, read-only step bounded by the store's
`timeout` (and show what this process last saw when that read cannot be made). `force_open`,
`disable` and `reset` apply at once to this process's view and reach the server with its
next step through the breaker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ClassVar, ParamSpec, TypeVar

from .._core.breaker import BreakerMetrics, BreakerState
from ..context import attach_context
from ..instrumentation import emit_to
from . import _backend
from .breaker import CircuitBreaker, _now
from .policy import MUST_WAIT
from .ports import BreakerPort, Control

__all__ = ["SharedCircuitBreaker"]

P = ParamSpec("P")
T = TypeVar("T")


class SharedCircuitBreaker(CircuitBreaker):
    """A `CircuitBreaker` that shares its state with other processes through a store."""

    __slots__ = ()

    _guard_folds: ClassVar[bool] = False  # its exit awaits the store: run through `call`

    @property
    def _port(self) -> BreakerPort:
        port = self._shared
        assert port is not None  # set by CircuitBreaker.__init__ before the class changes
        return port

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(*args, **kwargs)` if the shared breaker admits it, and record its outcome.

        Raises:
            CircuitOpenError: The breaker is open, forced open, or half-open with every
                probe permit taken across all processes.
        """
        ticket = await self._enter()
        start = _backend.current_time()
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            await self._exit(ticket, start, exc)
            raise
        except BaseException:
            await self._port.cancel(ticket, _backend.current_time())
            raise
        await self._exit(ticket, start, None)
        return result

    async def __aenter__(self) -> SharedCircuitBreaker:
        """Admit the block as one call, or raise `CircuitOpenError`."""
        ticket = await self._enter()
        self._push_block(ticket, _backend.current_time())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Record the block's outcome like that of a call; never suppress its error."""
        ticket, start = self._pop_block()
        if exc is None or isinstance(exc, Exception):
            await self._exit(ticket, start, exc)
        else:
            await self._port.cancel(ticket, _backend.current_time())

    def _guard_enter(self) -> Any:
        return MUST_WAIT  # admission is a step of the store: a pipeline awaits `_guard_wait`

    async def _guard_wait(self) -> tuple[int, float]:
        return await self._enter(), _backend.current_time()

    # --- state and control: this process's view, no I/O -----------------------------------

    @property
    def state(self) -> BreakerState:
        """The state on the server (a blocking read), or as of this process's last step."""
        return self._port.peek(_now())

    def metrics(self) -> BreakerMetrics:
        """A snapshot of the server's state (a blocking read), or as of the last step."""
        return self._port.metrics(_now())

    def force_open(self) -> None:
        """Reject every call until `reset()`; other processes see it after the next step."""
        self._control("force_open")

    def disable(self) -> None:
        """Let every call pass until `reset()`; other processes see it after the next step."""
        self._control("disable")

    def reset(self) -> None:
        """Go back to CLOSED with an empty window; other processes see it after the next step."""
        self._control("reset")

    # --- the steps -------------------------------------------------------------------------

    def _control(self, command: Control) -> None:
        self._report(self._port.control(command, _now()))

    async def _enter(self) -> int:
        admission = await self._port.acquire(_backend.current_time())
        return self._ticket_of(admission)  # raises CircuitOpenError for a rejection

    async def _exit(self, ticket: int, start: float, error: Exception | None) -> None:
        """Record a finished call: a failure if `on` matches its error, else a success."""
        failed = False
        if error is not None:
            failed = True  # if an `on` predicate raises, the call still counts
            try:
                failed = self._is_failure(error)
            finally:
                await self._record(ticket, start, error, failed)
            return
        await self._record(ticket, start, None, failed)

    async def _record(
        self, ticket: int, start: float, error: Exception | None, failed: bool
    ) -> None:
        end = _backend.current_time()
        duration = end - start
        slow = duration >= self._slow_after
        transitions = await self._port.record(ticket, end, failed, slow)
        if slow:
            emit_to(self._hooks, "breaker.slow_call", self._name, duration=duration, failed=failed)
        if transitions:
            self._report(transitions)
        if error is not None:
            attach_context(error, self._context_fields[self._port.peek(end)])
