"""Bulkhead on both flavours, one caller at a time: configuration, the call, `with` and
decorator forms, a stop signal frees the slot."""

import pytest

from resilient_async._async.bulkhead import Bulkhead


def test_bad_configuration_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="max_concurrent must be >= 1, got 0"):
        Bulkhead(0)
    with pytest.raises(ValueError, match="max_queue must be >= 0"):
        Bulkhead(1, max_queue=-1)
    with pytest.raises(ValueError, match="max_wait must be >= 0"):
        Bulkhead(1, max_wait=-1)


async def test_call_context_manager_and_decorator() -> None:
    bulkhead = Bulkhead(2)

    async def plus_one(x: int) -> int:
        return x + 1

    assert await bulkhead.call(plus_one, 1) == 2
    async with bulkhead:
        assert bulkhead.in_use == 1

    @bulkhead
    async def double(value: int) -> int:
        """Double it."""
        return value * 2

    assert await double(4) == 8
    assert double.__doc__ == "Double it."
    empty: dict[str, int] = {}

    async def missing() -> int:
        return empty["x"]

    with pytest.raises(KeyError):
        await bulkhead.call(missing)
    m = bulkhead.metrics()
    assert (m.completed, m.failed, m.running) == (3, 1, 0)


async def test_keyboard_interrupt_passes_through_and_frees_the_slot() -> None:
    bulkhead = Bulkhead(1)
    interrupt = KeyboardInterrupt()

    async def interrupted() -> None:
        raise interrupt

    with pytest.raises(KeyboardInterrupt) as info:
        await bulkhead.call(interrupted)
    assert info.value is interrupt
    assert bulkhead.metrics().cancelled == 1
    assert bulkhead.in_use == 0
