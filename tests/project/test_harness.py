"""The harness itself: both backends run, time is virtual, the clock reads agree."""

from __future__ import annotations

import time

import anyio
import pytest

pytestmark = pytest.mark.anyio


async def test_sleep_takes_no_real_time(anyio_backend: object) -> None:
    started_real = time.monotonic()
    started = anyio.current_time()
    await anyio.sleep(3600)
    assert anyio.current_time() - started >= 3600
    assert time.monotonic() - started_real < 60


async def test_timeouts_fire_in_virtual_time() -> None:
    with anyio.move_on_after(10) as scope:
        await anyio.sleep(100)
    assert scope.cancelled_caught


@pytest.mark.real_time
async def test_real_time_marker_uses_the_real_clock() -> None:
    started = time.monotonic()
    await anyio.sleep(0.01)
    assert time.monotonic() - started >= 0.009
