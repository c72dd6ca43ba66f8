"""RateLimiter on both flavours, one caller at a time, in virtual time: configuration, the
bucket's waits and rejections, the deadline, a stop signal while waiting."""

import pytest

from resilient_async._async.ratelimit import RateLimiter
from resilient_async._async.timeout import deadline
from resilient_async.errors import RateLimitedError

from ._backend import now, sleep


async def test_bad_configuration_and_tokens() -> None:
    with pytest.raises(ValueError, match="rate must be"):
        RateLimiter(0)
    with pytest.raises(ValueError, match="burst must be"):
        RateLimiter(1, burst=0.5)
    limiter = RateLimiter(5, burst=2)
    with pytest.raises(ValueError, match=r"tokens must be (> 0|<= burst)"):
        await limiter.acquire(3)
    with pytest.raises(ValueError, match="tokens must be"):
        limiter.try_acquire(0)


async def test_bucket_in_virtual_time() -> None:
    limiter = RateLimiter(2, per=1.0, burst=2, max_wait=0.75, name="bucket")
    await limiter.acquire()
    async with limiter:
        pass
    start = now()
    await limiter.acquire()  # waits 0.5 s
    assert now() - start == pytest.approx(0.5)
    with pytest.raises(RateLimitedError) as info:
        await limiter.acquire(2)  # would wait 1 s > max_wait
    assert info.value.retry_after == pytest.approx(1.0)
    assert info.value.limiter == "bucket"
    assert now() - start == pytest.approx(0.5)
    await sleep(3600)
    assert limiter.try_acquire(2)
    assert not limiter.try_acquire()

    async def triple(x: int) -> int:
        return x * 3

    assert await limiter.call(triple, 2) == 6  # waited 0.5 s for it

    @limiter
    async def fetch() -> str:
        return "ok"

    await sleep(1)
    assert await fetch() == "ok"


async def test_rejects_at_once_when_the_wait_reaches_the_deadline() -> None:
    limiter = RateLimiter(1, burst=1, max_wait=None)
    await limiter.acquire()
    before = now()
    with pytest.raises(RateLimitedError), deadline(0.5):
        await limiter.acquire()
    assert now() == before
    with deadline(1.5):
        await limiter.acquire()
    assert now() - before == pytest.approx(1.0)
