"""Deadlines and Timeout on asyncio and trio (RELIABILITY.md invariant 8, bug class 4)."""

from __future__ import annotations

import asyncio
import math
import time

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import resilient_async as ra
from resilient_async._async.timeout import (
    Timeout,
    current_deadline,
    deadline,
    deadline_at,
    remaining,
)
from resilient_async.context import context_of
from resilient_async.instrumentation import hooks

from ..helpers import BACKENDS, Recorder, asyncio_only, run_virtual

pytestmark = pytest.mark.anyio


def _is_cancel(exc: BaseException | None) -> bool:
    return exc is not None and not isinstance(exc, Exception)


async def test_deadline_raises_deadline_exceeded_at_expiry() -> None:
    started = anyio.current_time()
    with pytest.raises(ra.DeadlineExceeded) as info:
        with deadline(2.5):
            await anyio.sleep(10)
    assert anyio.current_time() - started == pytest.approx(2.5)
    assert isinstance(info.value, TimeoutError)
    assert info.value.timeout == 2.5
    assert _is_cancel(info.value.__cause__)


async def test_block_that_finishes_in_time_is_untouched() -> None:
    with deadline(5) as scope:
        await anyio.sleep(1)
    assert not scope.expired
    assert remaining() == math.inf


async def test_remaining_and_current_deadline_follow_the_clock() -> None:
    assert remaining() == math.inf
    assert current_deadline() == math.inf
    start = anyio.current_time()
    with deadline(10):
        assert current_deadline() == pytest.approx(start + 10)
        await anyio.sleep(4)
        assert remaining() == pytest.approx(6)
    assert current_deadline() == math.inf


async def test_inner_deadline_cannot_extend_outer() -> None:
    start = anyio.current_time()
    with pytest.raises(ra.DeadlineExceeded) as info:
        with deadline(1) as outer:
            with deadline(100) as inner:
                assert current_deadline() == pytest.approx(start + 1)
                await anyio.sleep(50)
    assert anyio.current_time() - start == pytest.approx(1)
    assert outer.expired
    assert not inner.expired
    assert info.value.timeout == 1


async def test_only_the_expired_scope_raises() -> None:
    caught_inside = False
    with deadline(10) as outer:
        try:
            with deadline(1):
                await anyio.sleep(5)
        except ra.DeadlineExceeded:
            caught_inside = True
        await anyio.sleep(1)  # the outer scope is still alive and not cancelled
    assert caught_inside
    assert not outer.expired


async def test_equal_deadlines_the_outer_raises() -> None:
    when = anyio.current_time() + 1
    with pytest.raises(ra.DeadlineExceeded), deadline_at(when) as outer:
        with deadline_at(when) as inner:
            await anyio.sleep(5)
    assert outer.expired
    assert not inner.expired


async def test_a_deadline_at_infinity_never_expires_and_bounds_nothing() -> None:
    # Regression: on asyncio the timer wheel turned math.inf into an int (OverflowError).
    with deadline_at(math.inf) as scope:
        assert ra.remaining() == math.inf
        assert ra.current_deadline() == math.inf
        await anyio.sleep(0.01)
        with ra.deadline(0.5):
            assert 0 < ra.remaining() <= 0.5  # an inner deadline still rules
    assert not scope.expired


async def test_deadline_in_the_past_expires_at_first_checkpoint() -> None:
    with pytest.raises(ra.DeadlineExceeded), deadline_at(anyio.current_time() - 5):
        await anyio.lowlevel.checkpoint()


async def test_deadline_reaches_child_tasks_and_never_leaks_upward() -> None:
    seen: list[float] = []

    async def child() -> None:
        seen.append(remaining())
        with deadline(1):
            seen.append(remaining())
            await anyio.sleep(0)

    with deadline(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(child)
        assert remaining() == pytest.approx(5)
    assert seen == [pytest.approx(5), pytest.approx(1)]
    assert remaining() == math.inf


async def test_parent_deadline_cancels_the_task_group() -> None:
    finished = []

    async def child() -> None:
        await anyio.sleep(10)
        finished.append(True)

    with pytest.raises(ra.DeadlineExceeded), deadline(1):
        async with anyio.create_task_group() as tg:
            tg.start_soon(child)
    assert finished == []


async def test_outer_cancel_is_never_turned_into_deadline_exceeded() -> None:
    with anyio.CancelScope() as outer:
        with deadline(5):
            outer.cancel()
            await anyio.sleep(10)
    assert outer.cancelled_caught


@pytest.mark.parametrize("outer_first", [True, False])
async def test_outer_timeout_and_expiry_on_the_same_tick(
    anyio_backend: object, outer_first: bool
) -> None:
    """Both expire on one tick, armed in either order: the outer scope wins, nothing leaks."""
    when = anyio.current_time() + 1
    escaped: list[BaseException] = []

    async def body() -> None:
        try:
            with deadline_at(when):
                await anyio.sleep(10)
        except BaseException as exc:
            escaped.append(exc)
            raise

    if anyio_backend[0] == "asyncio":  # type: ignore[index]
        with pytest.raises(TimeoutError) as info:
            if outer_first:
                async with asyncio.timeout_at(when):
                    await body()
            else:
                await _asyncio_outer_armed_second(when, body)
        assert not isinstance(info.value, ra.DeadlineExceeded)
    else:
        import trio

        with trio.move_on_at(when) as outer:
            await body()
        assert outer.cancelled_caught
    assert len(escaped) == 1
    assert not isinstance(escaped[0], ra.DeadlineExceeded)


async def _asyncio_outer_armed_second(when: float, body: object) -> None:
    """Arm an asyncio.timeout for `when` after the inner deadline has armed its own timer."""
    timeout = asyncio.timeout(None)
    async with timeout:
        loop = asyncio.get_running_loop()
        loop.call_soon(timeout.reschedule, when)
        await body()  # type: ignore[operator]


async def test_move_on_after_around_a_deadline_is_respected() -> None:
    with anyio.move_on_after(1) as outer:
        with deadline(1):
            await anyio.sleep(10)
    assert outer.cancelled_caught


async def test_expiry_inside_except_keeps_the_original_error_as_context() -> None:
    with pytest.raises(ra.DeadlineExceeded) as info, deadline(1):
        try:
            raise KeyError("boom")
        except KeyError:
            await anyio.sleep(5)
    assert isinstance(info.value.__cause__.__context__, KeyError)  # type: ignore[union-attr]


async def test_expiry_inside_finally() -> None:
    ran_finally = []
    with pytest.raises(ra.DeadlineExceeded), deadline(1):
        try:
            pass
        finally:
            ran_finally.append(True)
            await anyio.sleep(5)
    assert ran_finally == [True]


@pytest.mark.real_time
async def test_busy_loop_with_checkpoints_is_interrupted() -> None:
    iterations = 0
    started = time.monotonic()
    with pytest.raises(ra.DeadlineExceeded), deadline(0.05):
        while True:
            iterations += 1
            await anyio.lowlevel.checkpoint()
    assert iterations > 1
    assert time.monotonic() - started < 30


@asyncio_only
async def test_asyncio_cancelling_balance_after_expiry() -> None:
    task = asyncio.current_task()
    assert task is not None
    for _ in range(3):
        with pytest.raises(ra.DeadlineExceeded), deadline(1):
            await anyio.sleep(5)
        assert task.cancelling() == 0


@asyncio_only
async def test_native_task_cancel_passes_through() -> None:

    async def body() -> None:
        with deadline(5):
            await asyncio.sleep(10)

    task = asyncio.get_running_loop().create_task(body())
    await asyncio.sleep(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


@asyncio_only
async def test_double_cancel_passes_through() -> None:

    async def body() -> None:
        with deadline(1):
            await asyncio.sleep(10)

    task = asyncio.get_running_loop().create_task(body())
    await asyncio.sleep(0.5)
    task.cancel()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="seconds must be >= 0"):
        deadline(-1)
    with pytest.raises(ValueError, match="seconds"):
        deadline(math.nan)
    with pytest.raises(TypeError, match="seconds"):
        deadline("1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="when"):
        deadline_at(math.nan)
    with pytest.raises(ValueError, match="seconds"):
        Timeout(-0.5)


def test_deadline_outside_an_event_loop_is_a_runtime_error() -> None:
    with pytest.raises(RuntimeError, match="event loop"):
        deadline(1)


def test_timeout_can_be_built_without_a_loop() -> None:
    assert Timeout(1.5).seconds == 1.5


# --- the Timeout policy ----------------------------------------------------------------


async def test_timeout_call_returns_the_result() -> None:
    async def add(a: int, b: int) -> int:
        await anyio.sleep(0.5)
        return a + b

    assert await Timeout(1).call(add, 1, b=2) == 3


async def test_timeout_call_expires_with_context_and_event() -> None:
    recorder = Recorder()

    async def slow() -> None:
        await anyio.sleep(10)

    with hooks(recorder), pytest.raises(ra.DeadlineExceeded) as info:
        await Timeout(2, name="db").call(slow)
    assert recorder.kinds() == ["timeout.expired"]
    assert recorder.events[0].policy == "db"
    assert recorder.events[0].timeout == 2
    ctx = context_of(info.value)
    assert ctx is not None
    assert ctx["policy"] == "db"


async def test_timeout_decorator_keeps_metadata() -> None:
    timeout = Timeout(1)

    @timeout
    async def fetch(key: str) -> str:
        """Fetch a key."""
        await anyio.sleep(2)
        return key

    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch a key."
    with pytest.raises(ra.DeadlineExceeded):
        await fetch("k")


def test_timeout_decorator_rejects_sync_functions() -> None:
    def sync() -> None:
        return None

    with pytest.raises(TypeError, match="async function"):
        Timeout(1)(sync)  # type: ignore[arg-type]


async def test_timeout_async_with_nested_and_shared() -> None:
    timeout = Timeout(3)
    async with timeout:
        async with timeout:
            assert remaining() == pytest.approx(3)
        await anyio.sleep(1)
    with pytest.raises(ra.DeadlineExceeded):
        async with timeout:
            await anyio.sleep(5)


async def test_one_timeout_shared_by_concurrent_tasks() -> None:
    timeout = Timeout(2)
    outcomes: dict[int, str] = {}

    async def worker(i: int) -> None:
        try:
            async with timeout:
                await anyio.sleep(i)
            outcomes[i] = "ok"
        except ra.DeadlineExceeded:
            outcomes[i] = "expired"

    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(worker, i)
    assert outcomes == {0: "ok", 1: "ok", 2: "expired", 3: "expired", 4: "expired"}


async def test_timeout_inner_error_passes_unchanged() -> None:
    async def broken() -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError, match="down"):
        await Timeout(1).call(broken)


# --- a model of nested deadline trees ---------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=5),
    body=st.integers(min_value=0, max_value=25),
    backend=st.sampled_from(BACKENDS),
)
def test_nested_deadlines_match_a_model(lengths: list[int], body: int, backend: str) -> None:
    """Each nesting of deadlines: the earliest rules, the outermost of equals raises."""
    absolute = list(lengths)  # all entered at t0, so relative == absolute offset
    effective = min(absolute)
    outermost_earliest = absolute.index(effective)

    async def scenario() -> tuple[int | None, float, list[float]]:
        t0 = anyio.current_time()
        raised_by: int | None = None
        seen: list[float] = []

        async def enter(level: int) -> None:
            nonlocal raised_by
            if level == len(absolute):
                seen.append(current_deadline() - t0)
                await anyio.sleep(body)
                return
            try:
                with deadline_at(t0 + absolute[level]):
                    await enter(level + 1)
            except ra.DeadlineExceeded:
                if raised_by is None:
                    raised_by = level
                else:
                    raise AssertionError("two scopes raised") from None

        await enter(0)
        return raised_by, anyio.current_time() - t0, seen

    raised_by, elapsed, seen = run_virtual(backend, scenario)
    assert seen == [pytest.approx(effective)]
    if body < effective:
        assert raised_by is None
        assert elapsed == pytest.approx(body)
    elif body > effective:
        assert raised_by == outermost_earliest
        assert elapsed == pytest.approx(effective)
    else:  # the body ends on the deadline's tick: either may come first, never another scope
        assert raised_by in (None, outermost_earliest)
        assert elapsed == pytest.approx(effective)
