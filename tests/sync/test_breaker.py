"""CircuitBreaker's sync twin, where it differs from the async one (the shared rules are
tested once for both, in tests/_async): async functions refused, thread safety.

The thread tests use real threads with a tiny switch interval to provoke races; the half-open
one moves the virtual `clock` past the open period.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest

import resilient_async as ra
from resilient_async._sync.breaker import BreakerState, CircuitBreaker

from .._sync._backend import VirtualClock
from .._sync.test_breaker import down, ok, trip
from .threads import join, start

CLOSED = BreakerState.CLOSED
OPEN = BreakerState.OPEN
HALF_OPEN = BreakerState.HALF_OPEN


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Switch threads very often, so that a missing lock shows as lost counts."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


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
    barrier = threading.Barrier(threads)

    def worker() -> None:
        barrier.wait()
        for i in range(per_thread):
            for guarded in (breaker, timed):
                if i % 3 == 0:
                    with pytest.raises(ConnectionError):
                        guarded.call(down)
                else:
                    guarded.call(ok)

    join(*[start(worker) for _ in range(threads)])
    for guarded in (breaker, timed):
        metrics = guarded.metrics()
        assert metrics.state is CLOSED
        assert metrics.calls == threads * per_thread
        assert metrics.failures == threads * len(range(0, per_thread, 3))


@pytest.mark.parametrize("half_open_calls", [1, 3])
def test_eight_threads_at_half_open_let_exactly_the_permits_through(
    clock: VirtualClock, busy_switching: None, half_open_calls: int
) -> None:
    threads = 8
    for _ in range(20):
        breaker = CircuitBreaker(
            window=10, min_calls=2, open_for=5.0, half_open_calls=half_open_calls
        )
        trip(breaker)
        clock.now += 5
        barrier = threading.Barrier(threads)
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
            barrier.wait()
            try:
                breaker.call(dependency)
            except ra.CircuitOpenError:
                with lock:
                    rejected += 1
                decided.release()

        pool = [start(caller) for _ in range(threads)]
        try:
            for _ in range(threads):
                assert decided.acquire(timeout=10)
            assert reached == half_open_calls
            assert breaker.metrics().probes_in_flight == half_open_calls
        finally:
            release.set()
            join(*pool)
        assert breaker.state is CLOSED
