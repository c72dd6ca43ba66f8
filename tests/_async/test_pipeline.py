"""The pipeline on both flavours: the policies' order, a retry then a fallback."""

from resilient_async import backoff

from ._backend import flavour as ra


async def test_pipeline_retries_then_falls_back() -> None:
    calls: list[int] = []

    async def down(i: int) -> str:
        calls.append(i)
        raise ConnectionError("down")

    guarded = ra.pipeline(
        ra.Fallback("fallback"),
        ra.Retry(attempts=3, backoff=backoff.constant(0)),
        ra.CircuitBreaker("dep", window=10, min_calls=10),
        ra.Bulkhead(2),
        ra.Timeout(5),
    )
    assert await guarded.call(down, 7) == "fallback"
    assert calls == [7, 7, 7]
