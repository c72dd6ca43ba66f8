"""The generated sync CircuitBreaker: same rules, plain calls, thread-safe.

Time is a fake clock patched into the sync backend (the driver reads time only there), so no
test sleeps; the thread tests use real threads with a tiny switch interval to provoke races.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest

import resilient_async as ra
from resilient_async._sync import _backend
from resilient_async._sync.breaker import BreakerState, CircuitBreaker
from resilient_async.context import context_of
from resilient_async.instrumentation import hooks

from .helpers import Recorder

CLOSED = BreakerState.CLOSED
OPEN = BreakerState.OPEN
HALF_OPEN = BreakerState.HALF_OPEN


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(_backend, "current_time", fake)
    return fake


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Switch threads very often, so that a missing lock shows as lost counts."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def ok() -> str:
    return "ok"


def down() -> str:
    raise ConnectionError("down")


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(2):
        with pytest.raises((ConnectionError, ra.CircuitOpenError)):
            breaker.call(down)
    assert breaker.state is OPEN


def test_opens_rejects_probes_and_closes(clock: FakeClock) -> None:
    breaker = CircuitBreaker("dep", window=10, min_calls=2, open_for=5.0)
    recorder = Recorder()
    with hooks(recorder):
        assert breaker.call(ok) == "ok"
        trip(breaker)
        with pytest.raises(ra.CircuitOpenError) as info:
            breaker.call(ok)
        assert info.value.retry_after == pytest.approx(5.0)
        assert context_of(info.value) == {"policy": "dep", "breaker_state": "open"}
        clock.now += 5
        assert breaker.state is HALF_OPEN
        assert breaker.call(ok) == "ok"
    assert breaker.state is CLOSED
    changes = [(e.old_state, e.new_state) for e in recorder.of("breaker.state_changed")]
    assert changes == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    # One rejection in trip() (the breaker opened at its first failure), one after it.
    assert [e.kind for e in recorder.events].count("breaker.rejected") == 2


def test_errors_outside_on_are_successes(clock: FakeClock) -> None:
    breaker = CircuitBreaker(min_calls=1)

    def invalid() -> None:
        raise ValueError("bad input")

    for _ in range(3):
        with pytest.raises(ValueError):
            breaker.call(invalid)
    assert breaker.state is CLOSED
    assert breaker.metrics().calls == 3


def test_keyboard_interrupt_in_a_probe_frees_its_permit(clock: FakeClock) -> None:
    breaker = CircuitBreaker(window=10, min_calls=2, open_for=5.0)
    trip(breaker)
    clock.now += 5

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        breaker.call(interrupted)
    assert breaker.state is HALF_OPEN
    assert breaker.metrics().probes_in_flight == 0
    assert breaker.call(ok) == "ok"
    assert breaker.state is CLOSED


def test_slow_calls_on_the_sync_clock(clock: FakeClock) -> None:
    breaker = CircuitBreaker(slow_call_duration=2.0, min_calls=1, slow_call_rate=1.0)

    def slow() -> str:
        clock.now += 2.5
        return "ok"

    recorder = Recorder()
    with hooks(recorder):
        assert breaker.call(slow) == "ok"
    assert breaker.state is OPEN
    assert [e.duration for e in recorder.of("breaker.slow_call")] == [pytest.approx(2.5)]


def test_a_hung_probe_is_given_up(clock: FakeClock) -> None:
    breaker = CircuitBreaker(window=10, min_calls=2, open_for=5.0)
    trip(breaker)
    clock.now += 5
    late: list[str] = []

    def hangs() -> str:
        # While this probe "hangs", the permit expires and another probe closes the breaker.
        clock.now += 6
        assert breaker.state is OPEN
        clock.now += 5
        late.append(breaker.call(ok))
        return "late"

    assert breaker.call(hangs) == "late"
    assert late == ["ok"]
    assert breaker.state is CLOSED  # the late probe's success changed nothing


def test_decorator_and_with_block(clock: FakeClock) -> None:
    breaker = CircuitBreaker(window=10, min_calls=2, open_for=5.0)

    @breaker
    def double(x: int) -> int:
        return 2 * x

    assert double(21) == 42
    assert double.__name__ == "double"
    with breaker:
        pass
    with pytest.raises(ConnectionError), breaker:
        raise ConnectionError("down")
    with pytest.raises(ConnectionError), breaker:
        raise ConnectionError("down")
    assert breaker.state is OPEN
    with pytest.raises(ra.CircuitOpenError), breaker:
        pytest.fail("admitted while open")

    async def coroutine_function() -> None:
        return None

    with pytest.raises(TypeError, match="sync"):
        breaker(coroutine_function)  # type: ignore[arg-type]


def test_eight_threads_lose_no_counts(busy_switching: None) -> None:
    threads, per_thread = 8, 3000
    # Never opens: the failure rate stays below 1.0 once min_calls (all calls) are in.
    breaker = CircuitBreaker(
        window=threads * per_thread, min_calls=threads * per_thread, failure_rate=1.0
    )
    timed = CircuitBreaker(
        window=3600.0,
        window_type="time",
        min_calls=threads * per_thread,
        failure_rate=1.0,
        slow_call_duration=3600.0,
    )
    start = threading.Barrier(threads)

    def worker() -> None:
        start.wait()
        for i in range(per_thread):
            for guarded in (breaker, timed):
                if i % 3 == 0:
                    with pytest.raises(ConnectionError):
                        guarded.call(down)
                else:
                    guarded.call(ok)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    for guarded in (breaker, timed):
        metrics = guarded.metrics()
        assert metrics.state is CLOSED
        assert metrics.calls == threads * per_thread
        assert metrics.failures == threads * len(range(0, per_thread, 3))


@pytest.mark.parametrize("half_open_calls", [1, 3])
def test_eight_threads_at_half_open_let_exactly_the_permits_through(
    clock: FakeClock, busy_switching: None, half_open_calls: int
) -> None:
    threads = 8
    for _ in range(20):
        breaker = CircuitBreaker(
            window=10, min_calls=2, open_for=5.0, half_open_calls=half_open_calls
        )
        trip(breaker)
        clock.now += 5
        start = threading.Barrier(threads)
        release = threading.Event()
        decided = threading.Semaphore(0)  # one release per caller: admitted or rejected
        lock = threading.Lock()
        reached = rejected = 0

        def dependency() -> str:
            nonlocal reached
            with lock:
                reached += 1
            decided.release()
            release.wait(10)
            return "ok"

        def caller() -> None:
            nonlocal rejected
            start.wait()
            try:
                breaker.call(dependency)
            except ra.CircuitOpenError:
                with lock:
                    rejected += 1
                decided.release()

        pool = [threading.Thread(target=caller) for _ in range(threads)]
        for thread in pool:
            thread.start()
        try:
            for _ in range(threads):
                assert decided.acquire(timeout=10)
            assert reached == half_open_calls
            assert breaker.metrics().probes_in_flight == half_open_calls
        finally:
            release.set()
            for thread in pool:
                thread.join()
        assert breaker.state is CLOSED
