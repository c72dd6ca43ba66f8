"""The sync twins of Bulkhead.adaptive and the CoDel queue with real threads (the shared
behaviour is tested once for both flavours, in tests/_async).

No test asserts a wall-clock duration from above: a holder keeps its slot until the test
releases it, so the waiters' fate does not depend on how fast the machine is.
"""

from __future__ import annotations

import threading
import time

import pytest

import resilient_async.sync as ras
from resilient_async._sync.bulkhead import Bulkhead

from .threads import JOIN, join, start


def check_ledger(bulkhead: Bulkhead) -> None:
    m = bulkhead.metrics()
    assert 0 <= m.running <= bulkhead.max_concurrent, m
    assert m.submitted == (
        m.running + m.queued + m.rejected + m.completed + m.failed + m.cancelled
    ), m


def test_sync_codel_sheds_waiters_of_a_standing_queue() -> None:
    bulkhead = Bulkhead(1, max_queue=5, queue="codel", codel_target=0.001, codel_interval=0.05)
    release = threading.Event()
    holding = threading.Event()
    outcomes: list[str] = []
    lock = threading.Lock()

    def hold() -> None:
        holding.set()
        assert release.wait(JOIN)

    def waiter() -> None:
        try:
            bulkhead.call(lambda: None)
            outcome = "ran"
        except ras.BulkheadFullError as exc:
            outcome = "shed" if "standing queue" in str(exc) else str(exc)
        with lock:
            outcomes.append(outcome)

    holder = start(bulkhead.call, hold)
    assert holding.wait(JOIN)
    join(*[start(waiter) for _ in range(3)])
    release.set()
    join(holder)
    assert outcomes == ["shed"] * 3
    assert (bulkhead.in_use, bulkhead.queued) == (0, 0)
    assert bulkhead.call(lambda: "next") == "next"
    check_ledger(bulkhead)


def test_sync_codel_serves_waiters_when_slots_free_up() -> None:
    bulkhead = Bulkhead(2, max_queue=50, queue="codel")
    done: list[int] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        with lock:
            done.append(index)

    join(*[start(bulkhead.call, work, index) for index in range(40)])
    assert sorted(done) == list(range(40))
    assert (bulkhead.in_use, bulkhead.queued) == (0, 0)
    check_ledger(bulkhead)


def test_a_call_that_starts_after_the_deadline_is_refused_like_a_bulkheads() -> None:
    """Admission checks the effective deadline, as the plain sync bulkhead's does."""
    ran: list[int] = []
    adaptive = Bulkhead.adaptive(initial=2)
    with ras.deadline(0.001):
        time.sleep(0.01)
        with pytest.raises(ras.DeadlineExceeded):
            adaptive.call(ran.append, 1)
        with pytest.raises(ras.DeadlineExceeded), adaptive:
            ran.append(2)
    assert ran == []
    m = adaptive.metrics()
    assert (m.submitted, m.running) == (0, 0)
    adaptive.call(ran.append, 3)  # outside the deadline, nothing is refused
    assert ran == [3]
