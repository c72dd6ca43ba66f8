"""Deadlines that share a tick of the timer wheel: each still fires at its own time.

On asyncio the deadlines of one tick share a loop timer (see `_core/timer_wheel.py`); these
tests pin what that must not change: every scope expires exactly at its deadline, only the
expired ones raise, finished scopes are not kept alive, and each loop has its own wheel.
"""

from __future__ import annotations

import asyncio
import gc
import weakref

import anyio
import anyio.to_thread
import pytest

import resilient_async as ra
from resilient_async._backends import asyncio_deadline
from resilient_async._core.timer_wheel import TimerWheel

from ..helpers import asyncio_only

pytestmark = pytest.mark.anyio


async def _guarded(seconds: float, sleep: float, log: list[tuple[float, str]]) -> None:
    started = anyio.current_time()
    try:
        with ra.deadline(seconds):
            await anyio.sleep(sleep)
    except ra.DeadlineExceeded:
        log.append((anyio.current_time() - started, f"expired {seconds}"))
    else:
        log.append((anyio.current_time() - started, f"finished {seconds}"))


async def test_deadlines_in_one_tick_each_expire_at_their_own_time() -> None:
    log: list[tuple[float, str]] = []
    async with anyio.create_task_group() as tg:
        # Entered later but due earlier, due later, and one that finishes first.
        tg.start_soon(_guarded, 1.004, 10, log)
        tg.start_soon(_guarded, 1.001, 10, log)
        tg.start_soon(_guarded, 1.009, 10, log)
        tg.start_soon(_guarded, 1.006, 1.002, log)

    assert [label for _, label in log] == [
        "expired 1.001",
        "finished 1.006",
        "expired 1.004",
        "expired 1.009",
    ]
    assert [t for t, _ in log] == pytest.approx([1.001, 1.002, 1.004, 1.009], abs=1e-9)


async def test_many_finished_scopes_leave_the_expiring_one_on_time() -> None:
    log: list[tuple[float, str]] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(_guarded, 5.0, 60, log)
        for _ in range(500):
            with ra.deadline(5.0):
                await anyio.sleep(0)
    assert log == [(pytest.approx(5.0), "expired 5.0")]


@asyncio_only
async def test_a_finished_scope_is_not_kept_alive_by_the_wheel() -> None:
    loop = asyncio.get_running_loop()
    keeper = ra.deadline(30)
    with keeper:
        for _ in range(200):
            with ra.deadline(30):
                await asyncio.sleep(0)
        wheel = asyncio_deadline._wheel_of(loop)
        live = [entry for bucket in wheel._buckets.values() for entry in bucket.entries]
        # The outer scope and at most the compaction slack of finished ones.
        assert keeper in live
        assert len(live) <= 2 + 64 + 1


@asyncio_only
async def test_each_loop_has_its_own_wheel_and_drops_it_with_the_loop() -> None:
    async def scoped() -> weakref.ref[TimerWheel]:
        with ra.deadline(10):
            await asyncio.sleep(0)
        # The deadline's bucket is still pending: its loop timer holds the wheel.
        return weakref.ref(asyncio_deadline._wheel_of(asyncio.get_running_loop()))

    def in_another_loop() -> tuple[weakref.ref[TimerWheel], weakref.ref[object]]:
        other_loop = asyncio.new_event_loop()
        try:
            return other_loop.run_until_complete(scoped()), weakref.ref(other_loop)
        finally:
            other_loop.close()

    mine = asyncio_deadline._wheel_of(asyncio.get_running_loop())
    # Another thread, another loop: its own wheel, gone with it.
    other_wheel, other_loop = await anyio.to_thread.run_sync(in_another_loop)
    gc.collect()
    assert other_loop() is None
    assert other_wheel() is None
    assert asyncio_deadline._wheel_of(asyncio.get_running_loop()) is mine
