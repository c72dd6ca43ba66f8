"""The driver of a rate limiter whose bucket lives behind a remote port (a RedisStore).

`RateLimiter(..., store=RedisStore(...))` becomes this class at construction. Each take is
one awaited step of the port: it takes the tokens at once, or reserves them (the bucket goes
into debt, so nobody can take them meanwhile) when the wait fits in `max_wait` and before
the effective deadline, or refuses. A caller sleeps out its own reservation; one cancelled
while it sleeps gives its tokens back. Waiters of other processes keep the wait they were
given (a returned token goes to whoever asks next), so the FIFO order of an unshared
limiter holds within a step, not across processes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from .._core.deadlines import DEADLINE
from ..context import attach_context
from . import _backend
from .policy import MUST_WAIT
from .ports import LimiterPort
from .ratelimit import RateLimiter

__all__ = ["SharedRateLimiter"]

P = ParamSpec("P")
T = TypeVar("T")


class SharedRateLimiter(RateLimiter):
    """A `RateLimiter` whose bucket other processes share through a store."""

    __slots__ = ()

    @property
    def _port(self) -> LimiterPort:
        port = self._shared
        assert port is not None  # set by RateLimiter.__init__ before the class changes
        return port

    @property
    def queued(self) -> int:
        """Always 0: callers of a shared bucket sleep out their reservation, not in a queue."""
        return 0

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Take one token from the shared bucket (waiting if allowed), then run the call.

        Raises:
            RateLimitedError: No token within `max_wait` or before the effective deadline.
        """
        await self._take(1)
        try:
            return await fn(*args, **kwargs)
        except Exception as exc:
            attach_context(exc, self._context)
            raise

    async def acquire(self, tokens: float = 1) -> None:
        """Take `tokens` from the shared bucket, waiting for them if `max_wait` allows.

        Raises:
            RateLimitedError: The tokens cannot be had within `max_wait` or before the
                deadline; `retry_after` says when they could.
            ValueError: `tokens` is not > 0, or exceeds `burst`.
            TypeError: `tokens` is not a number.
        """
        await self._take(tokens)

    def try_acquire(self, tokens: float = 1) -> bool:
        """Refused: a shared bucket cannot be read without I/O.

        Raises:
            TypeError: Always; use `acquire` with `max_wait=0`.
        """
        raise TypeError(
            "try_acquire never waits and does no I/O, so it cannot take tokens from a "
            "RateLimiter with a shared store; use `acquire` on a limiter with max_wait=0"
        )

    def _guard_enter(self) -> object:
        return MUST_WAIT  # every take is a step of the store

    async def _guard_wait(self) -> None:
        await self._take(1)

    async def _take(self, tokens: float) -> None:
        self._check_tokens(tokens)
        now = _backend.current_time()
        # Waiting up to the deadline itself is useless: the call would start expired.
        before_deadline = DEADLINE.get() - now
        port = self._port
        granted, wait = await port.take(tokens, now, min(self._wait_limit, before_deadline))
        if granted and wait > 0.0 and wait >= before_deadline:
            await port.give_back(tokens, _backend.current_time())
            granted = False
        if not granted:
            self._reject(tokens, wait)
        if wait <= 0.0:
            return
        try:
            await _backend.sleep(wait)
        except BaseException:
            await self._port.give_back(tokens, _backend.current_time())
            raise
