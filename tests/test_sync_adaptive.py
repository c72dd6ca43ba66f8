"""The generated sync twins of Bulkhead.adaptive and the CoDel queue, with real threads.

No test asserts a wall-clock duration from above: a holder keeps its slot until the test
releases it, so the waiters' fate does not depend on how fast the machine is.
"""

from __future__ import annotations

import threading
import time

import pytest

import resilient_async.sync as ras
from resilient_async._sync.adaptive import AdaptiveBulkhead
from resilient_async._sync.bulkhead import Bulkhead
from resilient_async.instrumentation import hooks

from .helpers import Recorder

JOIN = 30.0


def check_ledger(bulkhead: Bulkhead) -> None:
    m = bulkhead.metrics()
    assert 0 <= m.running <= bulkhead.max_concurrent, m
    assert m.submitted == (
        m.running + m.queued + m.rejected + m.completed + m.failed + m.cancelled
    ), m


def test_sync_adaptive_backs_off_on_drops_and_reports_it() -> None:
    bulkhead = ras.Bulkhead.adaptive(initial=10, name="sync")
    assert isinstance(bulkhead, AdaptiveBulkhead)
    recorder = Recorder()

    def refused() -> None:
        raise ConnectionRefusedError

    with hooks(recorder):
        for _ in range(5):
            with pytest.raises(ConnectionRefusedError):
                bulkhead.call(refused)
        with pytest.raises(ConnectionRefusedError):
            with bulkhead:
                refused()
    assert bulkhead.limit < 10
    changes = recorder.of("bulkhead.limit_changed")
    assert changes[0].old_limit == 10
    assert changes[-1].new_limit == bulkhead.limit
    assert bulkhead.call(lambda: "ok") == "ok"
    check_ledger(bulkhead)


def test_sync_adaptive_checks_its_bounds() -> None:
    with pytest.raises(ValueError, match="min_limit must be <= max_limit"):
        ras.Bulkhead.adaptive(min_limit=5, max_limit=4)
    with pytest.raises(ValueError, match="queue must be 'fifo' or 'codel'"):
        ras.Bulkhead(1, queue="random")


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

    holder = threading.Thread(target=bulkhead.call, args=(hold,), daemon=True)
    holder.start()
    assert holding.wait(JOIN)
    waiters = [threading.Thread(target=waiter, daemon=True) for _ in range(3)]
    for thread in waiters:
        thread.start()
    for thread in waiters:
        thread.join(JOIN)
        assert not thread.is_alive()
    release.set()
    holder.join(JOIN)
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

    threads = [
        threading.Thread(target=bulkhead.call, args=(work, index), daemon=True)
        for index in range(40)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN)
        assert not thread.is_alive()
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
