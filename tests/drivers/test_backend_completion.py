"""`_backend.run_to_completion`: cleanup that a cancellation cannot cut short, on both backends."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from resilient_async._async import _backend
from resilient_async._sync import _backend as _sync_backend

from ..helpers import asyncio_only

pytestmark = pytest.mark.anyio


async def test_returns_the_result_and_raises_the_error() -> None:
    async def work() -> int:
        await anyio.sleep(1)
        return 7

    async def broken() -> None:
        await anyio.sleep(1)
        raise OSError("no")

    assert await _backend.run_to_completion(work) == 7
    with pytest.raises(OSError, match="no"):
        await _backend.run_to_completion(broken)
    assert _sync_backend.run_to_completion(lambda: 8) == 8


async def test_a_cancel_waits_for_the_end_then_propagates() -> None:
    finished: list[float] = []

    async def cleanup() -> None:
        await anyio.sleep(5)
        finished.append(anyio.current_time())

    start = anyio.current_time()
    with anyio.move_on_after(1) as scope:
        await _backend.run_to_completion(cleanup)
        pytest.fail("the cancellation was swallowed")  # pragma: no cover
    assert scope.cancelled_caught
    assert finished == [pytest.approx(start + 5)]


@asyncio_only
async def test_native_cancels_are_held_and_cancelling_stays_balanced() -> None:
    finished: list[bool] = []

    async def cleanup() -> None:
        await asyncio.sleep(5)
        finished.append(True)

    task = asyncio.create_task(_backend.run_to_completion(cleanup))
    await asyncio.sleep(1)
    task.cancel()
    await asyncio.sleep(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished == [True]
    current = asyncio.current_task()
    assert current is not None
    assert current.cancelling() == 0
