"""RateLimiter with tokens to spare, against aiolimiter (asyncio only).

Every case takes one token and runs one `await`; the buckets are large enough never to run
dry, so this measures the bookkeeping a limiter adds to each call. Target (issue #6): faster
than aiolimiter side by side.
"""

from __future__ import annotations

from aiolimiter import AsyncLimiter

import resilient_async as ra
from resilient_async._async.ratelimit import RateLimiter

from .harness import Group, Op

# Prefer the public name once it is exported; the driver module otherwise.
_RateLimiter = getattr(ra, "RateLimiter", RateLimiter)

# Far more tokens than any run takes: no case ever waits.
_RATE = 1e12


async def _work() -> int:
    return 1


def _bare() -> Op:
    return _work


def _aiolimiter() -> Op:
    limiter = AsyncLimiter(_RATE, 1.0)

    async def op() -> int:
        async with limiter:
            return await _work()

    return op


def _ra_with() -> Op:
    limiter = _RateLimiter(_RATE)

    async def op() -> int:
        async with limiter:
            return await _work()

    return op


def _ra_acquire() -> Op:
    limiter = _RateLimiter(_RATE)

    async def op() -> int:
        await limiter.acquire()
        return await _work()

    return op


def _ra_call() -> Op:
    limiter = _RateLimiter(_RATE)

    async def op() -> int:
        return await limiter.call(_work)

    return op


def _ra_try_acquire() -> Op:
    limiter = _RateLimiter(_RATE)

    async def op() -> int:
        if limiter.try_acquire():
            return await _work()
        return 0

    return op


def _ra_decorated() -> Op:
    return _RateLimiter(_RATE)(_work)


limiters = Group(
    "ratelimit: one call, tokens to spare",
    baseline=("aiolimiter", "bare await"),
    note="target < 1.0x aiolimiter (asyncio); trio has no peer, ratio to a bare await",
)
limiters.add("bare await", _bare)
limiters.add("aiolimiter", _aiolimiter, backends=["asyncio"])
limiters.add("async with ra.RateLimiter", _ra_with)
limiters.add("ra.RateLimiter.acquire", _ra_acquire)
limiters.add("ra.RateLimiter.try_acquire", _ra_try_acquire)
limiters.add("ra.RateLimiter.call", _ra_call)
limiters.add("@ra.RateLimiter", _ra_decorated)

GROUPS = [limiters]
