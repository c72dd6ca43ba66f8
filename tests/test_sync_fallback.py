"""The generated sync Fallback."""

from __future__ import annotations

import pytest

from resilient_async._sync.fallback import Fallback, degraded


def test_sync_value_handler_and_last_good() -> None:
    calls: list[str] = []

    def flaky(key: str) -> str:
        calls.append(key)
        if key.startswith("bad"):
            raise ConnectionError(key)
        return key.upper()

    def handler(exc: Exception, key: str) -> str:
        assert degraded()
        return f"fallback:{key}"

    assert Fallback("x").call(flaky, "bad1") == "x"
    assert Fallback(handler=handler).call(flaky, "bad2") == "fallback:bad2"
    assert not degraded()

    last_good = Fallback.last_good(ttl=60, key=lambda key: key[-1])
    assert last_good.call(flaky, "ok1") == "OK1"
    assert last_good.call(flaky, "bad1") == "OK1"
    with pytest.raises(ConnectionError):
        last_good.call(flaky, "bad2")


def test_sync_fallback_never_catches_keyboard_interrupt() -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Fallback(None, on=BaseException).call(interrupted)
