"""The steps of a rate limiter whose bucket lives behind a remote port (a RedisStore).

`RateLimiter(..., store=RedisStore(...))` stays a `RateLimiter`: at construction it makes
one `SharedLimiter` and holds, in place of its own bucket, one that never has a token. Its
`enter_nowait` (take a free token at once) therefore always says `MUST_WAIT`, and its
`enter` hands the take here: admission that awaits the store is the guard's `enter`, while
its `exit` needs no I/O (a token is spent on entry). An unshared limiter's hot path gains
no check.

Each take is one awaited step of the port: it takes the tokens at once, or reserves them
(the bucket goes into debt, so nobody can take them meanwhile) when the wait fits in
`max_wait` and before the effective deadline, or refuses. A caller sleeps out its own
reservation; one cancelled while it sleeps gives its tokens back. Waiters of other
processes keep the wait they were given (a returned token goes to whoever asks next), so
the FIFO order of an unshared limiter holds within a step, not across processes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

from .._core.bucket import TokenBucket
from .._core.deadlines import effective_deadline
from . import _backend
from .ports import LimiterPort

__all__ = ["NoTokens", "SharedLimiter"]


class NoTokens(TokenBucket):
    """The bucket a shared limiter holds in place of its own: it never has a free token."""

    __slots__ = ()

    def try_take(self, tokens: float, now: float) -> bool:
        """Never take: every take of a shared limiter is a step of its port."""
        return False


class SharedLimiter:
    """What a `RateLimiter` on a remote port does in place of its in-memory waiting path.

    Args:
        port: The store's port of the shared bucket.
        wait_limit: The limiter's `max_wait` in seconds (`math.inf` for None).
        reject: Raises the limiter's `RateLimitedError` for `(tokens, retry_after)`.
    """

    __slots__ = ("_port", "_reject", "_wait_limit")

    def __init__(
        self,
        port: LimiterPort,
        *,
        wait_limit: float,
        reject: Callable[[float, float], NoReturn],
    ) -> None:
        self._port = port
        self._wait_limit = wait_limit
        self._reject = reject

    async def take(self, tokens: float) -> None:
        """Take `tokens` from the shared bucket, sleeping out a reservation if allowed.

        Raises:
            RateLimitedError: The tokens cannot be had within `max_wait` or before the
                deadline.
            ValueError: The bucket on the server was made with other settings.
        """
        port = self._port
        now = _backend.current_time()
        # Waiting up to the deadline itself is useless: the call would start expired.
        before_deadline = effective_deadline() - now
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
            await port.give_back(tokens, _backend.current_time())
            raise
