"""CircuitBreaker driver on asyncio and trio, in virtual time (RELIABILITY.md invariants 1, 5).

The pure state machine is model-checked in tests/core/test_breaker_core.py; these tests check
what the driver adds: admission before the call, outcomes after it, the clock, cancellation,
events, error context, shared state, and the half-open stampede.
"""

from __future__ import annotations

import asyncio
import dataclasses
import traceback

import anyio
import anyio.lowlevel
import pytest

import resilient_async as ra
from resilient_async._async.breaker import BreakerState, CircuitBreaker
from resilient_async.classify import ErrorClass
from resilient_async.context import context_of, error_context
from resilient_async.instrumentation import hooks
from resilient_async.stores import MemoryStore

from ..helpers import Recorder, asyncio_only

CLOSED = BreakerState.CLOSED
OPEN = BreakerState.OPEN
HALF_OPEN = BreakerState.HALF_OPEN


async def ok() -> str:
    return "ok"


async def down() -> str:
    raise ConnectionError("down")


async def trip(breaker: CircuitBreaker, *, predicate_raises: bool = False) -> None:
    expected = RuntimeError if predicate_raises else ConnectionError
    for _ in range(2):
        with pytest.raises((expected, ra.CircuitOpenError)):
            await breaker.call(down)
    assert breaker.state is OPEN


def small(**overrides: object) -> CircuitBreaker:
    config: dict[str, object] = {"window": 10, "min_calls": 2, "open_for": 5.0}
    config.update(overrides)
    return CircuitBreaker("dep", **config)  # type: ignore[arg-type]


# --- opening and rejecting --------------------------------------------------------------


@pytest.mark.anyio
async def test_opens_at_the_failure_rate_and_rejects_without_calling() -> None:
    breaker = small(min_calls=4)
    reached = 0

    async def counted() -> str:
        nonlocal reached
        reached += 1
        return await down()

    assert await breaker.call(ok) == "ok"
    assert await breaker.call(ok) == "ok"
    with pytest.raises(ConnectionError):
        await breaker.call(counted)
    assert breaker.state is CLOSED  # 1 failure in 3 calls: below min_calls
    with pytest.raises(ConnectionError):
        await breaker.call(counted)
    assert breaker.state is OPEN  # 2 of 4
    with pytest.raises(ra.CircuitOpenError) as info:
        await breaker.call(counted)
    assert reached == 2
    assert info.value.breaker == "dep"
    assert info.value.retry_after == pytest.approx(5.0)
    metrics = breaker.metrics()
    assert (metrics.calls, metrics.failures, metrics.failure_rate) == (4, 2, 0.5)


@pytest.mark.anyio
async def test_each_rejection_is_a_fresh_error_with_a_flat_traceback() -> None:
    breaker = small()
    await trip(breaker)
    errors = []
    for _ in range(100):
        try:
            await breaker.call(ok)
        except ra.CircuitOpenError as exc:
            errors.append(exc)
    assert len({id(e) for e in errors}) == 100
    depths = {len(traceback.extract_tb(e.__traceback__)) for e in errors}
    assert len(depths) == 1
    assert all(e.__context__ is None for e in errors)


@pytest.mark.anyio
async def test_errors_outside_on_count_as_successes_and_pass_unchanged() -> None:
    breaker = small(min_calls=1)
    error = ValueError("bad request")

    async def rejects() -> None:
        raise error

    for _ in range(5):
        with pytest.raises(ValueError) as info:
            await breaker.call(rejects)
        assert info.value is error
    assert breaker.state is CLOSED
    assert (breaker.metrics().calls, breaker.metrics().failures) == (5, 0)


@pytest.mark.anyio
async def test_on_chooses_what_counts_as_failure() -> None:
    breaker = small(min_calls=1, on=KeyError)
    with pytest.raises(ConnectionError):
        await breaker.call(down)
    assert breaker.state is CLOSED

    async def missing() -> None:
        raise KeyError("k")

    with pytest.raises(KeyError):
        await breaker.call(missing)
    assert breaker.state is OPEN
    by_class = small(min_calls=1, on=ErrorClass.PERMANENT)
    with pytest.raises(KeyError):
        await by_class.call(missing)
    assert by_class.state is OPEN


@pytest.mark.anyio
async def test_a_failing_on_predicate_still_frees_the_probe_permit() -> None:
    def broken(exc: BaseException) -> bool:
        raise RuntimeError("bug in the predicate")

    breaker = small(on=broken)
    await trip(breaker, predicate_raises=True)
    await anyio.sleep(5)
    with pytest.raises(RuntimeError, match="bug in the predicate") as info:
        await breaker.call(down)
    assert isinstance(info.value.__context__, ConnectionError)
    assert breaker.state is OPEN  # the probe counted, as a failure
    assert breaker.metrics().probes_in_flight == 0


@pytest.mark.anyio
async def test_cancelled_calls_count_as_nothing() -> None:
    breaker = small(min_calls=1)
    for _ in range(3):
        with anyio.move_on_after(1) as scope:
            await breaker.call(anyio.sleep, 10)
        assert scope.cancelled_caught
    assert breaker.metrics().calls == 0
    assert breaker.state is CLOSED


def test_keyboard_interrupt_passes_through_and_counts_nothing() -> None:
    # Driven by hand, without a loop: the closed path of a count window reads no clock.
    breaker = small(min_calls=1)
    interrupt = KeyboardInterrupt()

    async def interrupted() -> None:
        raise interrupt

    for _ in range(3):
        coroutine = breaker.call(interrupted)
        with pytest.raises(KeyboardInterrupt) as info:
            coroutine.send(None)
        assert info.value is interrupt
    assert breaker.metrics().calls == 0
    assert breaker.state is CLOSED


@pytest.mark.anyio
async def test_a_success_that_reaches_min_calls_opens() -> None:
    breaker = small(min_calls=3)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await breaker.call(down)
    assert breaker.state is CLOSED
    await anyio.sleep(1.5)
    assert await breaker.call(ok) == "ok"  # 2 failures in 3 calls
    assert breaker.state is OPEN
    assert breaker.metrics().retry_after == pytest.approx(5.0)


# --- half-open ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_state_reads_half_open_as_soon_as_open_for_passed() -> None:
    breaker = small()
    recorder = Recorder()
    with hooks(recorder):
        await trip(breaker)
        await anyio.sleep(4.5)
        assert breaker.state is OPEN
        await anyio.sleep(0.5)
        assert breaker.state is HALF_OPEN
        assert breaker.metrics().retry_after is None
        assert await breaker.call(ok) == "ok"
    assert breaker.state is CLOSED
    changes = [(e.old_state, e.new_state) for e in recorder.of("breaker.state_changed")]
    assert changes == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    assert breaker.metrics().calls == 0  # closing clears the window


@pytest.mark.anyio
async def test_a_failed_probe_reopens_for_another_open_for() -> None:
    breaker = small()
    await trip(breaker)
    await anyio.sleep(5)
    with pytest.raises(ConnectionError):
        await breaker.call(down)
    assert breaker.state is OPEN
    with pytest.raises(ra.CircuitOpenError) as info:
        await breaker.call(ok)
    assert info.value.retry_after == pytest.approx(5.0)


@pytest.mark.parametrize("half_open_calls", [1, 3])
@pytest.mark.anyio
async def test_a_thousand_callers_at_half_open_let_exactly_the_permits_through(
    half_open_calls: int,
) -> None:
    breaker = small(half_open_calls=half_open_calls)
    await trip(breaker)
    await anyio.sleep(5)
    release = anyio.Event()
    reached = passed = 0
    rejections: list[ra.CircuitOpenError] = []

    async def dependency() -> str:
        nonlocal reached
        reached += 1
        await release.wait()
        return "ok"

    async def caller() -> None:
        nonlocal passed
        try:
            await breaker.call(dependency)
            passed += 1
        except ra.CircuitOpenError as exc:
            rejections.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(1000):
            tg.start_soon(caller)
        await anyio.sleep(1)
        assert reached == half_open_calls
        assert len(rejections) == 1000 - half_open_calls
        assert all(e.retry_after is not None for e in rejections)
        assert breaker.state is HALF_OPEN
        assert breaker.metrics().probes_in_flight == half_open_calls
        release.set()
    assert passed == half_open_calls
    assert breaker.state is CLOSED


@pytest.mark.anyio
async def test_cancel_sweep_on_probes_frees_the_permit() -> None:
    steps = 4
    for k in range(steps + 2):
        breaker = small()
        await trip(breaker)
        await anyio.sleep(5)
        progress = 0

        async def probe() -> str:
            nonlocal progress
            for _ in range(steps):
                await anyio.sleep(1)
                progress += 1
            return "ok"

        with anyio.move_on_after(k + 0.5) as scope:
            assert await breaker.call(probe) == "ok"
        if not scope.cancelled_caught:
            assert progress == steps
            assert breaker.state is CLOSED
            break
        assert progress == k
        # The permit is back: the breaker is half-open and the next probe goes through.
        assert breaker.state is HALF_OPEN
        assert breaker.metrics().probes_in_flight == 0
        assert await breaker.call(ok) == "ok"
        assert breaker.state is CLOSED
    else:
        pytest.fail("the probe never completed")


@pytest.mark.anyio
@asyncio_only
async def test_a_double_cancel_of_a_probe_task_frees_the_permit() -> None:
    breaker = small()
    await trip(breaker)
    await anyio.sleep(5)
    started = asyncio.Event()

    async def probe() -> None:
        started.set()
        await asyncio.sleep(100)

    task = asyncio.ensure_future(breaker.call(probe))
    await started.wait()
    task.cancel()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.metrics().probes_in_flight == 0
    assert await breaker.call(ok) == "ok"
    assert breaker.state is CLOSED


@pytest.mark.anyio
async def test_a_hung_probe_cannot_keep_the_breaker_half_open() -> None:
    breaker = small(open_for=5.0)
    recorder = Recorder()
    release = anyio.Event()

    async def hangs() -> str:
        await release.wait()
        return "late"

    with hooks(recorder):
        await trip(breaker)
        await anyio.sleep(5)
        async with anyio.create_task_group() as tg:
            tg.start_soon(breaker.call, hangs)
            await anyio.sleep(1)
            assert breaker.state is HALF_OPEN
            with pytest.raises(ra.CircuitOpenError) as info:
                await breaker.call(ok)
            # At the latest: the permit expires after 5 s, then 5 s open.
            assert info.value.retry_after == pytest.approx(9.0)
            await anyio.sleep(4.5)  # the permit expired 5 s after the probe started
            assert breaker.state is OPEN
            await anyio.sleep(5)
            assert breaker.state is HALF_OPEN
            assert await breaker.call(ok) == "ok"
            assert breaker.state is CLOSED
            release.set()  # the hung probe returns at last: it changes nothing
        assert breaker.state is CLOSED
    changes = [(e.old_state, e.new_state) for e in recorder.of("breaker.state_changed")]
    assert changes == [
        (CLOSED, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, CLOSED),
    ]


@pytest.mark.anyio
async def test_calls_started_before_opening_do_not_retrigger_transitions() -> None:
    breaker = small(min_calls=2)
    recorder = Recorder()

    async def slow_failure() -> str:
        await anyio.sleep(2)
        raise ConnectionError("late")

    async def slow_success() -> str:
        await anyio.sleep(7)
        return "late"

    async def expect_failure() -> None:
        with pytest.raises(ConnectionError):
            await breaker.call(slow_failure)

    with hooks(recorder):
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(expect_failure)
                tg.start_soon(breaker.call, slow_success)
            await anyio.sleep(0.5)
            await trip(breaker)  # opens at t=0.5
            await anyio.sleep(2)  # the early failures land while open
            assert breaker.metrics().retry_after == pytest.approx(3.0)
            await anyio.sleep(3)
            assert breaker.state is HALF_OPEN  # not pushed back by them
            await anyio.sleep(2)  # the early successes land while half-open: not probes
            assert breaker.state is HALF_OPEN
            assert breaker.metrics().probes_in_flight == 0
    changes = [(e.old_state, e.new_state) for e in recorder.of("breaker.state_changed")]
    assert changes == [(CLOSED, OPEN)]


# --- slow calls and time windows ---------------------------------------------------------


@pytest.mark.anyio
async def test_slow_calls_open_at_the_slow_call_rate() -> None:
    breaker = small(slow_call_duration=1.0, slow_call_rate=0.5, min_calls=2)
    recorder = Recorder()

    async def slow(seconds: float) -> str:
        await anyio.sleep(seconds)
        return "ok"

    with hooks(recorder):
        assert await breaker.call(slow, 0.5) == "ok"
        assert breaker.state is CLOSED
        assert await breaker.call(slow, 1.0) == "ok"  # slow from the threshold on
    assert breaker.state is OPEN
    metrics = breaker.metrics()
    assert (metrics.calls, metrics.slow_calls, metrics.failures) == (2, 1, 0)
    assert metrics.slow_call_rate == 0.5
    slow_events = recorder.of("breaker.slow_call")
    assert [e.duration for e in slow_events] == [pytest.approx(1.0)]


@pytest.mark.anyio
async def test_a_slow_failure_counts_as_both() -> None:
    breaker = small(slow_call_duration=1.0, min_calls=10, window=10)

    async def slow_down() -> None:
        await anyio.sleep(2)
        raise ConnectionError("slow and down")

    with pytest.raises(ConnectionError):
        await breaker.call(slow_down)
    metrics = breaker.metrics()
    assert (metrics.calls, metrics.failures, metrics.slow_calls) == (1, 1, 1)


@pytest.mark.anyio
async def test_time_window_forgets_old_calls() -> None:
    breaker = small(window=10.0, window_type="time", min_calls=3)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await breaker.call(down)
    assert breaker.metrics().calls == 2
    await anyio.sleep(10)
    assert breaker.metrics().calls == 0
    with pytest.raises(ConnectionError):
        await breaker.call(down)
    assert breaker.state is CLOSED  # the old failures no longer count
    await anyio.sleep(0.5)
    with pytest.raises(ConnectionError):
        await breaker.call(down)
    await anyio.sleep(0.5)
    assert await breaker.call(ok) == "ok"
    assert breaker.state is OPEN  # 2 of 3 within the window


# --- events and error context ------------------------------------------------------------


@pytest.mark.anyio
async def test_the_closed_success_path_emits_nothing() -> None:
    breaker = small()
    recorder = Recorder()
    with hooks(recorder):
        for _ in range(20):
            await breaker.call(ok)
    assert recorder.events == []


@pytest.mark.anyio
async def test_rejections_emit_and_carry_context() -> None:
    breaker = small()
    recorder = Recorder()
    await trip(breaker)
    with hooks(recorder), error_context(request_id=7):
        with pytest.raises(ra.CircuitOpenError) as info:
            await breaker.call(ok)
    (event,) = recorder.of("breaker.rejected")
    assert event.policy == "dep"
    assert event.state is OPEN
    assert event.retry_after == pytest.approx(5.0)
    assert context_of(info.value) == {"request_id": 7, "policy": "dep", "breaker_state": "open"}
    assert info.value.context["breaker_state"] == "open"


@pytest.mark.anyio
async def test_errors_passing_through_get_policy_and_state_without_overwriting() -> None:
    breaker = CircuitBreaker(min_calls=1)

    async def fails_with_context() -> None:
        with error_context(breaker_state="set at the raise site"):
            raise ConnectionError("down")

    with pytest.raises(ConnectionError) as info:
        await breaker.call(down)
    assert context_of(info.value) == {"policy": "CircuitBreaker", "breaker_state": "open"}
    breaker.reset()
    with pytest.raises(ConnectionError) as info:
        await breaker.call(fails_with_context)
    assert context_of(info.value) == {
        "breaker_state": "set at the raise site",
        "policy": "CircuitBreaker",
    }


# --- manual control, metrics, store -----------------------------------------------------


@pytest.mark.anyio
async def test_force_open_disable_reset() -> None:
    breaker = small()
    recorder = Recorder()
    with hooks(recorder):
        breaker.force_open()
        assert breaker.state is BreakerState.FORCED_OPEN
        await anyio.sleep(1000)
        with pytest.raises(ra.CircuitOpenError) as info:
            await breaker.call(ok)
        assert info.value.retry_after is None
        breaker.disable()
        for _ in range(10):
            with pytest.raises(ConnectionError):
                await breaker.call(down)
        assert breaker.state is BreakerState.DISABLED
        assert breaker.metrics().failures == 10  # still recorded, never opens
        breaker.reset()
    assert breaker.state is CLOSED
    assert breaker.metrics().calls == 0
    changes = [(e.old_state, e.new_state) for e in recorder.of("breaker.state_changed")]
    assert changes == [
        (CLOSED, BreakerState.FORCED_OPEN),
        (BreakerState.FORCED_OPEN, BreakerState.DISABLED),
        (BreakerState.DISABLED, CLOSED),
    ]


@pytest.mark.anyio
async def test_metrics_are_a_frozen_snapshot() -> None:
    breaker = small()
    await breaker.call(ok)
    snapshot = breaker.metrics()
    await breaker.call(ok)
    assert snapshot.calls == 1
    assert breaker.metrics().calls == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.calls = 5  # type: ignore[misc]


@pytest.mark.anyio
async def test_a_shared_store_shares_state_by_name() -> None:
    store = MemoryStore()
    first = CircuitBreaker("payments", min_calls=2, store=store)
    second = CircuitBreaker("payments", min_calls=2, store=store)
    other = CircuitBreaker("search", min_calls=2, store=store)
    private = CircuitBreaker("payments", min_calls=2)
    await trip(first)
    assert second.state is OPEN
    assert other.state is CLOSED
    assert private.state is CLOSED
    second.reset()
    assert first.state is CLOSED
    with pytest.raises(ValueError, match="another configuration"):
        CircuitBreaker("payments", min_calls=3, store=store)
    with pytest.raises(ValueError, match="name"):
        CircuitBreaker(store=store)


# --- the other forms: decorator, async with ---------------------------------------------


@pytest.mark.anyio
async def test_decorator_keeps_metadata_and_records() -> None:
    breaker = small(min_calls=3)

    @breaker
    async def fetch(x: int) -> int:
        """Fetch x."""
        if x < 0:
            raise ConnectionError("down")
        return x * 2

    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch x."
    assert await fetch(2) == 4
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await fetch(-1)
    assert breaker.state is OPEN
    with pytest.raises(ra.CircuitOpenError):
        await fetch(1)


def test_decorating_a_sync_function_is_refused() -> None:
    with pytest.raises(TypeError, match="async"):
        small()(lambda: None)  # type: ignore[arg-type, return-value]


@pytest.mark.anyio
async def test_async_with_counts_like_a_call() -> None:
    breaker = small(slow_call_duration=3.0)
    async with breaker:
        pass
    with pytest.raises(ConnectionError):
        async with breaker:
            raise ConnectionError("down")
    assert breaker.state is OPEN  # 1 failure in 2 calls
    with pytest.raises(ra.CircuitOpenError):
        async with breaker:
            pytest.fail("admitted while open")
    await anyio.sleep(5)
    async with breaker:
        await anyio.sleep(1)
    assert breaker.state is CLOSED


@pytest.mark.anyio
async def test_async_with_nested_and_cancelled() -> None:
    outer, inner = small(), small()
    async with outer:
        async with inner, outer:
            pass
    assert (outer.metrics().calls, inner.metrics().calls) == (2, 1)
    await trip(outer)
    await anyio.sleep(5)
    with anyio.move_on_after(1):
        async with outer:  # a probe, cancelled
            await anyio.sleep(10)
    assert outer.state is HALF_OPEN
    assert outer.metrics().probes_in_flight == 0
    async with outer:
        pass
    assert outer.state is CLOSED


# --- state outside a loop, validation ---------------------------------------------------


def test_state_and_metrics_work_outside_a_loop() -> None:
    breaker = CircuitBreaker("import-time", open_for=0.0, min_calls=1)
    assert breaker.state is CLOSED

    async def main() -> None:
        with pytest.raises(ConnectionError):
            await breaker.call(down)

    asyncio.run(main())  # asyncio's default loop: its clock is time.monotonic
    assert breaker.state is HALF_OPEN  # open_for=0 has passed, read without a loop
    assert breaker.metrics().failures == 1
    breaker.force_open()
    breaker.reset()
    assert breaker.state is CLOSED
    assert repr(breaker) == "CircuitBreaker('import-time', state=BreakerState.CLOSED)"


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"failure_rate": 0}, ValueError, "failure_rate must be in (0, 1]"),
        ({"failure_rate": 1.5}, ValueError, "failure_rate must be in (0, 1]"),
        ({"failure_rate": float("nan")}, ValueError, "failure_rate"),
        ({"failure_rate": "half"}, TypeError, "failure_rate"),
        ({"slow_call_rate": 0.0}, ValueError, "slow_call_rate must be in (0, 1]"),
        ({"slow_call_rate": -0.5}, ValueError, "slow_call_rate"),
        ({"window": 0}, ValueError, "window must be >= 1"),
        ({"window": -3}, ValueError, "window must be >= 1"),
        ({"window": 2.5}, TypeError, "window must be an int"),
        ({"window": 0, "window_type": "time"}, ValueError, "window must be a finite number"),
        ({"window": float("inf"), "window_type": "time"}, ValueError, "window"),
        ({"window_type": "calls"}, ValueError, "window_type must be 'count' or 'time'"),
        ({"min_calls": -1}, ValueError, "min_calls must be >= 0"),
        ({"min_calls": 1.5}, TypeError, "min_calls"),
        ({"open_for": -1}, ValueError, "open_for must be >= 0"),
        ({"half_open_calls": 0}, ValueError, "half_open_calls must be >= 1"),
        ({"half_open_calls": True}, TypeError, "half_open_calls"),
        ({"slow_call_duration": 0}, ValueError, "slow_call_duration must be > 0"),
        ({"slow_call_duration": -1}, ValueError, "slow_call_duration"),
        ({"on": "TRANSIENT"}, TypeError, "on must be"),
        ({"on": ErrorClass.CANCELLED}, ValueError, "on"),
    ],
)
def test_bad_configuration_is_refused_at_construction(
    kwargs: dict[str, object], error: type[Exception], words: str
) -> None:
    with pytest.raises(error) as info:
        CircuitBreaker("x", **kwargs)  # type: ignore[arg-type]
    assert words in str(info.value)


def test_good_configuration_is_accepted() -> None:
    CircuitBreaker(window=1, min_calls=0, open_for=0, failure_rate=1.0, slow_call_rate=1.0)
    CircuitBreaker(window=0.5, window_type="time", slow_call_duration=0.1)
