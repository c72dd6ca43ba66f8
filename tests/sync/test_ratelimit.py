"""RateLimiter's sync twin, where it differs from the async one (the shared behaviour is
tested once for both, in tests/_async): a stop signal during a thread's wait, one bucket shared
by threads (invariant 9), sync and async limiters kept apart.

Thread tests use the real clock and check only lower bounds on time (never that something was
fast).
"""

from __future__ import annotations

import threading
import time

import pytest

from resilient_async._sync import _backend as sync_backend
from resilient_async._sync.ratelimit import RateLimiter
from resilient_async.stores import MemoryStore

from .._sync._backend import VirtualClock
from ..core.test_bucket_core import window_violations
from .threads import join, start


def test_keyboard_interrupt_while_waiting_returns_the_reservation(
    clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    limiter = RateLimiter(1, burst=1, max_wait=10)
    limiter.acquire()

    def interrupted(event: threading.Event, seconds: float) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(sync_backend, "wait_event", interrupted)
    with pytest.raises(KeyboardInterrupt):
        limiter.acquire()
    assert limiter.queued == 0
    clock.now += 1.0
    assert limiter.try_acquire()  # the token that came due was given back


def test_threads_take_exactly_the_burst_with_try_acquire() -> None:
    limiter = RateLimiter(1, per=3600.0, burst=50)
    taken = []
    lock = threading.Lock()

    def worker() -> None:
        mine = sum(limiter.try_acquire() for _ in range(40))
        with lock:
            taken.append(mine)

    join(*[start(worker) for _ in range(8)])
    assert sum(taken) == 50


def test_waiting_threads_are_paced_by_the_rate() -> None:
    """40 tokens at 200/s with a burst of 5 cannot take less than (40 - 5) / 200 s."""
    rate, burst = 200.0, 5.0
    limiter = RateLimiter(rate, burst=burst, max_wait=5.0)
    admitted: list[tuple[float, float]] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            limiter.acquire()
            with lock:
                admitted.append((time.monotonic(), 1.0))

    started = time.monotonic()
    join(*[start(worker) for _ in range(8)])
    assert len(admitted) == 40
    assert max(t for t, _ in admitted) - started >= (40 - burst) / rate - 1e-3
    assert limiter.queued == 0
    # Times are recorded after `acquire` returns, and a thread can be descheduled for any
    # length of time in between (a loaded machine), so recorded times bunch. Each thread has
    # at most one admission not yet recorded at any moment, so a window can hold at most
    # one late record per thread on top of what the bucket admits: burst + 8 is a sound
    # bound, where the old "burst + 3" failed now and then under load (issue #13 item 13).
    assert not window_violations(admitted, rate, burst + 8)


def test_limiters_sharing_a_store_share_one_bucket_and_lock() -> None:
    store = MemoryStore()
    limiters = [RateLimiter(1, per=3600.0, burst=30, name="shared", store=store) for _ in range(3)]
    taken = []
    lock = threading.Lock()

    def worker(limiter: RateLimiter) -> None:
        mine = sum(limiter.try_acquire() for _ in range(20))
        with lock:
            taken.append(mine)

    join(*[start(worker, limiter) for limiter in limiters for _ in range(2)])
    assert sum(taken) == 30


def test_sync_and_async_limiters_never_share_a_bucket() -> None:
    from resilient_async._async.ratelimit import RateLimiter as AsyncRateLimiter

    store = MemoryStore()
    RateLimiter(5, name="api", store=store)
    with pytest.raises(ValueError, match="sync policies; async policies cannot share"):
        AsyncRateLimiter(5, name="api", store=store)
