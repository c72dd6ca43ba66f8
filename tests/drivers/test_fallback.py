"""Fallback on asyncio and trio where only async code can go: a cancellation is never
replaced (invariant 10). The rest is tested once for both flavours, in tests/_async."""

from __future__ import annotations

import anyio
import pytest

from resilient_async._async.fallback import Fallback

pytestmark = pytest.mark.anyio


async def test_cancellation_is_never_replaced() -> None:
    fallback = Fallback("never")

    async def slow(key: str = "k") -> str:
        await anyio.sleep(10)
        return key

    with anyio.move_on_after(1) as scope:
        await fallback.call(slow)
        pytest.fail("a fallback replaced the cancellation")
    assert scope.cancelled_caught
