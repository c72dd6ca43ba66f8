"""The steps of a rate limiter whose bucket lives behind a remote port (a RedisStore).

`RateLimiter(..., store=RedisStore(...))` stays a `RateLimiter`: at construction it makes
one `SharedLimiter` and holds, in place of its own bucket, one that never has a token. Its
fast path (take a free token at once) therefore always falls through to its waiting path,
which hands the take here; an unshared limiter's hot path gains no check.

Each take is one awaited step of the port: it takes the tokens at once, or reserves them
(the bucket goes into debt, so nobody can take them meanwhile) when the wait fits in
`max_wait` and before the effective deadline, or refuses. A caller sleeps out its own
reservation; one cancelled while it sleeps gives its tokens back. Waiters of other
processes keep the wait they were given (a returned token goes to whoever asks next), so
the FIFO order of an unshared limiter holds within a step, not across processes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._core.bucket import TokenBucket
from .._core.deadlines import effective_deadline
from . import _backend
from .ports import LimiterPort

if TYPE_CHECKING:
    from .ratelimit import RateLimiter

__all__ = ["NoTokens", "SharedLimiter"]


class NoTokens(TokenBucket):
    """The bucket a shared limiter holds in place of its own: it never has a free token."""

    __slots__ = ()

    def try_take(self, tokens: float, now: float) -> bool:
        """Never take: every take of a shared limiter is a step of its port."""
        return False


class SharedLimiter:
    """What a `RateLimiter` on a remote port does in place of its in-memory waiting path."""

    __slots__ = ("_limiter", "_port")

    def __init__(self, limiter: RateLimiter, port: LimiterPort) -> None:
        self._limiter = limiter
        self._port = port

    async def take(self, tokens: float) -> None:
        """Take `tokens` from the shared bucket, sleeping out a reservation if allowed.

        Raises:
            RateLimitedError: The tokens cannot be had within `max_wait` or before the
                deadline.
            ValueError: The bucket on the server was made with other settings.
        """
        limiter = self._limiter
        port = self._port
        now = _backend.current_time()
        # Waiting up to the deadline itself is useless: the call would start expired.
        before_deadline = effective_deadline() - now
        granted, wait = await port.take(tokens, now, min(limiter._wait_limit, before_deadline))
        if granted and wait > 0.0 and wait >= before_deadline:
            await port.give_back(tokens, _backend.current_time())
            granted = False
        if not granted:
            limiter._reject(tokens, wait)
        if wait <= 0.0:
            return
        try:
            await _backend.sleep(wait)
        except BaseException:
            await port.give_back(tokens, _backend.current_time())
            raise
