"""Bulkhead's sync twin, where it differs from the async one (the shared behaviour is tested
once for both, in tests/_async): async functions refused, and the same ledger guarded by a
thread lock (invariant 7) under real threads.

Real threads and short real waits; no test asserts a wall-clock duration from above.
"""

from __future__ import annotations

import functools
import random
import threading
import time

import pytest

import resilient_async as ra
from resilient_async._sync.bulkhead import Bulkhead
from resilient_async._sync.timeout import deadline

from .threads import join, start, wait_until


def check_ledger(bulkhead: Bulkhead) -> None:
    m = bulkhead.metrics()
    assert 0 <= m.running <= bulkhead.max_concurrent, m
    assert 0 <= m.queued <= bulkhead.max_queue, m
    assert m.submitted == (
        m.running + m.queued + m.rejected + m.completed + m.failed + m.cancelled
    ), m


def test_an_async_callable_counts_as_nothing_run_cancelled_not_failed() -> None:
    """The coroutine never ran: withdrawn, counted like a cancelled call (as in async)."""
    calls = 0

    async def coroutine_function() -> str:
        nonlocal calls
        calls += 1
        return "value"

    plain = Bulkhead(1)
    adaptive = Bulkhead.adaptive(initial=2, algorithm="aimd")
    for bulkhead in (plain, adaptive):
        with pytest.raises(TypeError, match=r"Bulkhead\.call needs a sync callable"):
            bulkhead.call(coroutine_function)  # type: ignore[arg-type]
        m = bulkhead.metrics()
        assert (m.cancelled, m.failed, m.completed, m.running) == (1, 0, 0, 0), m
    assert adaptive.limit == 2  # no sample: the limit did not move
    assert calls == 0


def test_threads_never_exceed_the_limit() -> None:
    bulkhead = Bulkhead(3, max_queue=100)
    lock = threading.Lock()
    running = 0
    peak = 0

    def work() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.002)
        with lock:
            running -= 1

    def worker() -> None:
        for _ in range(10):
            bulkhead.call(work)

    join(*[start(worker) for _ in range(8)])
    assert 1 < peak <= 3
    m = bulkhead.metrics()
    assert (m.completed, m.rejected, m.running, m.queued) == (80, 0, 0, 0)
    check_ledger(bulkhead)


def test_full_queue_rejects_at_once_and_waiters_are_fifo() -> None:
    bulkhead = Bulkhead(1, max_queue=4, name="pool")
    release = threading.Event()
    order: list[int] = []

    holder = start(bulkhead.call, release.wait)
    wait_until(lambda: bulkhead.in_use == 1)
    waiters = []
    for index in range(4):
        waiters.append(start(bulkhead.call, order.append, index))
        wait_until(functools.partial(lambda n: bulkhead.queued == n, index + 1))
    with pytest.raises(ra.BulkheadFullError) as info:
        bulkhead.call(order.append, 99)
    assert info.value.bulkhead == "pool"
    release.set()
    join(holder, *waiters)
    assert order == [0, 1, 2, 3]
    check_ledger(bulkhead)
    assert bulkhead.metrics().rejected == 1


def test_timed_out_waiter_is_rejected_and_never_runs() -> None:
    bulkhead = Bulkhead(1, max_queue=1, max_wait=0.05)
    release = threading.Event()
    ran: list[str] = []
    holder = start(bulkhead.call, release.wait)
    wait_until(lambda: bulkhead.in_use == 1)
    started = time.monotonic()
    with pytest.raises(ra.BulkheadFullError, match="max_wait"):
        bulkhead.call(ran.append, "late")
    assert time.monotonic() - started >= 0.04
    assert (bulkhead.in_use, bulkhead.queued) == (1, 0)
    release.set()
    join(holder)
    assert ran == []
    assert bulkhead.in_use == 0
    check_ledger(bulkhead)


def test_the_deadline_bounds_a_wait_without_max_wait() -> None:
    bulkhead = Bulkhead(1, max_queue=1)
    release = threading.Event()
    holder = start(bulkhead.call, release.wait)
    wait_until(lambda: bulkhead.in_use == 1)
    with pytest.raises(ra.DeadlineExceeded), deadline(0.05):
        bulkhead.call(lambda: None)
    assert (bulkhead.in_use, bulkhead.queued) == (1, 0)
    assert bulkhead.metrics().cancelled == 1
    release.set()
    join(holder)
    check_ledger(bulkhead)
    bulkhead.call(lambda: None)


def test_thread_storm_keeps_the_ledger() -> None:
    """8 threads, 1600 calls with random work, failures and short max_wait rejections."""
    bulkhead = Bulkhead(3, max_queue=4, max_wait=0.002)
    lock = threading.Lock()
    running = 0
    peak = 0
    outcomes = {"ok": 0, "failed": 0, "rejected": 0}

    def work(rng: random.Random) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            if rng.random() < 0.3:
                time.sleep(0.0005)
            if rng.random() < 0.1:
                raise RuntimeError("boom")
        finally:
            with lock:
                running -= 1

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(200):
            try:
                bulkhead.call(work, rng)
                outcome = "ok"
            except RuntimeError:
                outcome = "failed"
            except ra.BulkheadFullError:
                outcome = "rejected"
            with lock:
                outcomes[outcome] += 1
            check_ledger(bulkhead)

    join(*[start(worker, seed) for seed in range(8)])
    m = bulkhead.metrics()
    assert peak <= 3
    assert (m.running, m.queued) == (0, 0)
    assert (m.completed, m.failed, m.rejected) == (
        outcomes["ok"],
        outcomes["failed"],
        outcomes["rejected"],
    )
    assert m.submitted == 1600
    check_ledger(bulkhead)


def test_per_key_in_threads() -> None:
    keyed = Bulkhead.per_key(1, max_queue=10)
    lock = threading.Lock()
    running: dict[str, int] = {}
    peak: dict[str, int] = {}

    def work(key: str) -> None:
        with lock:
            running[key] = running.get(key, 0) + 1
            peak[key] = max(peak.get(key, 0), running[key])
        time.sleep(0.001)
        with lock:
            running[key] -= 1

    def worker(key: str) -> None:
        for _ in range(5):
            keyed[key].call(work, key)

    join(*[start(worker, key) for key in ("a", "b", "c") for _ in range(3)])
    assert peak == {"a": 1, "b": 1, "c": 1}
    assert len(keyed) == 3


@pytest.mark.parametrize("max_keys", [10_000, 1])
def test_per_key_limit_holds_under_16_threads_with_idle_ttl_zero(max_keys: int) -> None:
    # Issue #13 item 5: one thread dropped a key as idle between another's lookup and its
    # entry, and a third built a fresh bulkhead: 16 calls ran at once for one key. With
    # max_keys=1 every other key evicts "shared" too, busy or not.
    keyed = Bulkhead.per_key(1, max_queue=16, idle_ttl=0, max_keys=max_keys)
    lock = threading.Lock()
    running = 0
    peak = 0
    calls = 0
    barrier = threading.Barrier(16)

    def work() -> None:
        nonlocal running, peak, calls
        with lock:
            running += 1
            peak = max(peak, running)
            calls += 1
        time.sleep(0)  # let the other threads look up, drop and enter meanwhile
        with lock:
            running -= 1

    def worker(index: int) -> None:
        barrier.wait()
        for turn in range(300):
            keyed["shared"].call(work)
            if turn % 3 == 0:
                keyed[f"other-{index}-{turn}"].call(lambda: None)

    join(*[start(worker, index) for index in range(16)])
    assert calls == 16 * 300
    assert peak == 1
    assert keyed["shared"].in_use == 0
