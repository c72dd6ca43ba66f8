"""CircuitBreaker on both flavours: opening, rejections, probes, slow calls, the decorator and
the `with` block, stop signals in a probe."""

import pytest

from resilient_async._async.breaker import BreakerState, CircuitBreaker
from resilient_async.context import context_of
from resilient_async.errors import CircuitOpenError
from resilient_async.instrumentation import hooks

from ..helpers import Recorder
from ._backend import sleep

CLOSED = BreakerState.CLOSED
OPEN = BreakerState.OPEN
HALF_OPEN = BreakerState.HALF_OPEN


async def ok() -> str:
    return "ok"


async def down() -> str:
    raise ConnectionError("down")


async def trip(breaker: CircuitBreaker) -> None:
    for _ in range(2):
        with pytest.raises((ConnectionError, CircuitOpenError)):
            await breaker.call(down)
    assert breaker.state is OPEN


async def test_opens_rejects_probes_and_closes() -> None:
    breaker = CircuitBreaker("dep", window=10, min_calls=2, open_for=5.0)
    recorder = Recorder()
    with hooks(recorder):
        assert await breaker.call(ok) == "ok"
        await trip(breaker)
        with pytest.raises(CircuitOpenError) as info:
            await breaker.call(ok)
        assert info.value.retry_after == pytest.approx(5.0)
        assert context_of(info.value) == {"policy": "dep", "breaker_state": "open"}
        await sleep(5)
        assert breaker.state is HALF_OPEN
        assert await breaker.call(ok) == "ok"
    assert breaker.state is CLOSED
    changes = [(e.old_state, e.new_state) for e in recorder.of("breaker.state_changed")]
    assert changes == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    # One rejection in trip() (the breaker opened at its first failure), one after it.
    assert [e.kind for e in recorder.events].count("breaker.rejected") == 2


async def test_errors_outside_on_are_successes() -> None:
    breaker = CircuitBreaker(min_calls=1)

    async def invalid() -> None:
        raise ValueError("bad input")

    for _ in range(3):
        with pytest.raises(ValueError):
            await breaker.call(invalid)
    assert breaker.state is CLOSED
    assert breaker.metrics().calls == 3


async def test_keyboard_interrupt_in_a_probe_frees_its_permit() -> None:
    breaker = CircuitBreaker(window=10, min_calls=2, open_for=5.0)
    await trip(breaker)
    await sleep(5)

    async def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await breaker.call(interrupted)
    assert breaker.state is HALF_OPEN
    assert breaker.metrics().probes_in_flight == 0
    assert await breaker.call(ok) == "ok"
    assert breaker.state is CLOSED


async def test_slow_calls_on_the_clock() -> None:
    breaker = CircuitBreaker(slow_call_duration=2.0, min_calls=1, slow_call_rate=1.0)

    async def slow() -> str:
        await sleep(2.5)
        return "ok"

    recorder = Recorder()
    with hooks(recorder):
        assert await breaker.call(slow) == "ok"
    assert breaker.state is OPEN
    assert [e.duration for e in recorder.of("breaker.slow_call")] == [pytest.approx(2.5)]


async def test_a_hung_probe_is_given_up() -> None:
    breaker = CircuitBreaker(window=10, min_calls=2, open_for=5.0)
    await trip(breaker)
    await sleep(5)
    late: list[str] = []

    async def hangs() -> str:
        # While this probe "hangs", the permit expires and another probe closes the breaker.
        await sleep(6)
        assert breaker.state is OPEN
        await sleep(5)
        late.append(await breaker.call(ok))
        return "late"

    assert await breaker.call(hangs) == "late"
    assert late == ["ok"]
    assert breaker.state is CLOSED  # the late probe's success changed nothing


async def test_decorator_and_with_block() -> None:
    breaker = CircuitBreaker(window=10, min_calls=2, open_for=5.0)

    @breaker
    async def double(x: int) -> int:
        return 2 * x

    assert await double(21) == 42
    assert double.__name__ == "double"
    async with breaker:
        pass
    with pytest.raises(ConnectionError):
        async with breaker:
            raise ConnectionError("down")
    with pytest.raises(ConnectionError):
        async with breaker:
            raise ConnectionError("down")
    assert breaker.state is OPEN
    with pytest.raises(CircuitOpenError):
        async with breaker:
            pytest.fail("admitted while open")
