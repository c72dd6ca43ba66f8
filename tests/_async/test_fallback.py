"""Fallback on both flavours: a value, a handler, the last good result, stop signals."""

import pytest

from resilient_async._async.fallback import Fallback, degraded


async def test_value_handler_and_last_good() -> None:
    calls: list[str] = []

    async def flaky(key: str) -> str:
        calls.append(key)
        if key.startswith("bad"):
            raise ConnectionError(key)
        return key.upper()

    async def handler(exc: Exception, key: str) -> str:
        assert degraded()
        return f"fallback:{key}"

    assert await Fallback("x").call(flaky, "bad1") == "x"
    assert await Fallback(handler=handler).call(flaky, "bad2") == "fallback:bad2"
    assert not degraded()

    last_good = Fallback.last_good(ttl=60, key=lambda key: key[-1])
    assert await last_good.call(flaky, "ok1") == "OK1"
    assert await last_good.call(flaky, "bad1") == "OK1"
    with pytest.raises(ConnectionError):
        await last_good.call(flaky, "bad2")


async def test_fallback_never_catches_keyboard_interrupt() -> None:
    async def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await Fallback(None, on=BaseException).call(interrupted)
