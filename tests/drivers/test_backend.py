"""The backend layer: the small surface the drivers stand on, on asyncio, trio and sync."""

from __future__ import annotations

import asyncio
import math

import anyio
import pytest

from resilient_async._async import _backend
from resilient_async._sync import _backend as _sync_backend

pytestmark = pytest.mark.anyio


async def test_clock_sleep_and_checkpoints_follow_the_loop() -> None:
    start = _backend.current_time()
    assert start == pytest.approx(anyio.current_time())
    await _backend.sleep(5)
    await _backend.yield_now()
    assert _backend.current_time() - start == pytest.approx(5)
    assert _backend.remaining_until(math.inf) == math.inf
    assert _backend.remaining_until(_backend.current_time() + 3) == pytest.approx(3)
    assert _backend.remaining_until(0.0) == 0.0


async def test_yield_now_delivers_a_pending_cancellation() -> None:
    with anyio.CancelScope() as scope:
        scope.cancel()
        await _backend.yield_now()
        pytest.fail("a cancelled scope went on past yield_now")


async def test_wait_event_returns_on_set_or_limit() -> None:
    event = _backend.Event()
    assert not await _backend.wait_event(event, 2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_set_after, event, 1)
        assert await _backend.wait_event(event, math.inf)


async def _set_after(event: anyio.Event, seconds: float) -> None:
    await anyio.sleep(seconds)
    event.set()


def test_no_running_loop_is_a_clear_runtime_error() -> None:
    with pytest.raises(RuntimeError, match="event loop"):
        _backend.current_time()


def test_async_callables_are_checked_at_decoration() -> None:
    def sync_fn() -> None:
        return None

    async def async_fn() -> None:
        return None

    with pytest.raises(TypeError, match="async function"):
        _backend.check_guarded_callable(sync_fn)
    with pytest.raises(TypeError, match="callable"):
        _backend.check_guarded_callable(42)
    with pytest.raises(TypeError, match="sync callable"):
        _sync_backend.check_guarded_callable(async_fn)
    _backend.check_guarded_callable(async_fn)
    _sync_backend.check_guarded_callable(sync_fn)
    assert asyncio.iscoroutinefunction(async_fn)


def test_sync_backend_basics() -> None:
    _sync_backend.yield_now()
    event = _sync_backend.Event()
    assert not _sync_backend.wait_event(event, 0.001)
    event.set()
    assert _sync_backend.wait_event(event, math.inf)
    with _sync_backend.Lock():
        pass


def test_a_deadline_scope_entered_outside_any_loop_is_a_runtime_error() -> None:
    # Made outside asyncio: a trio scope (trio is imported here), which needs a trio task.
    with pytest.raises(RuntimeError, match="async context"):
        with _backend.DeadlineScope(1e12, None):
            pass
