"""The generated sync deadline and Timeout: bounds, not interrupts."""

from __future__ import annotations

import contextvars
import math
import time

import pytest

from resilient_async import backoff as sync_backoff
from resilient_async import sync
from resilient_async.context import context_of
from resilient_async.instrumentation import hooks

from .._sync._backend import VirtualClock
from ..helpers import Recorder
from .threads import join, start


def test_block_returning_after_its_deadline_keeps_its_result(clock: VirtualClock) -> None:
    # Regression (issue 12, defect 7): the completed block raised DeadlineExceeded.
    recorder = Recorder()
    with hooks(recorder), sync.deadline(1.0) as scope:
        clock.advance(2.0)
        charged = "done"
    assert charged == "done"
    assert scope.overrun == pytest.approx(1.0)
    (event,) = recorder.of("timeout.overrun")
    assert event.policy is None
    assert event.timeout == 1.0
    assert event.overrun == pytest.approx(1.0)


def test_what_starts_after_the_deadline_is_refused(clock: VirtualClock) -> None:
    calls = 0

    def work() -> str:
        nonlocal calls
        calls += 1
        return "ok"

    bulkhead = sync.Bulkhead(1, max_queue=1)
    with bulkhead, sync.deadline(1.0):  # the bulkhead's only slot is taken
        clock.advance(1.5)
        with pytest.raises(sync.DeadlineExceeded):
            sync.Timeout(5).call(work)
        with pytest.raises(sync.DeadlineExceeded), sync.deadline(5):
            work()
        with pytest.raises(sync.DeadlineExceeded):
            sync.Retry(timeout=5).call(work)
        with pytest.raises(sync.DeadlineExceeded):
            bulkhead.call(work)  # a wait for the slot, started after the deadline
        late_starters = [
            sync.Retry(),
            sync.CircuitBreaker(),
            sync.Bulkhead(2),
            sync.RateLimiter(10),
            sync.Fallback(value="fallback"),
            sync.pipeline(sync.CircuitBreaker(), sync.Bulkhead(2)),
        ]
        for policy in late_starters:
            with pytest.raises(sync.DeadlineExceeded):
                policy.call(work)
        with pytest.raises(sync.DeadlineExceeded):
            sync.RateLimiter(10).acquire()
        with pytest.raises(sync.DeadlineExceeded):
            sync.retry(work)()
    assert calls == 0
    assert sync.Retry().call(work) == "ok"  # outside the deadline, nothing is refused


def test_a_retry_under_an_expired_sync_deadline_reraises_its_last_error(
    clock: VirtualClock,
) -> None:
    calls = 0

    def flaky() -> str:
        nonlocal calls
        calls += 1
        clock.advance(2.0)  # the attempt ends past the deadline
        raise ConnectionError("reset")

    with pytest.raises(ConnectionError) as info, sync.deadline(1.0):
        sync.Retry(attempts=5).call(flaky)
    assert calls == 1
    assert (context_of(info.value) or {})["stop_reason"] == "deadline"


def test_an_error_from_the_block_is_never_replaced(clock: VirtualClock) -> None:
    with pytest.raises(KeyError), sync.deadline(1.0):
        clock.advance(2.0)
        raise KeyError("real")


def test_nesting_the_earliest_rules_and_only_it_reports(clock: VirtualClock) -> None:
    recorder = Recorder()
    with hooks(recorder), sync.deadline(10.0) as outer:
        with sync.deadline(1.0):
            with sync.deadline(5.0):
                assert sync.current_deadline() == pytest.approx(clock.now + 1.0)
            clock.advance(2.0)
        assert sync.remaining() == pytest.approx(8.0)
    assert not outer.expired
    assert [e.overrun for e in recorder.of("timeout.overrun")] == [pytest.approx(1.0)]


def test_sync_timeout_policy(clock: VirtualClock) -> None:
    recorder = Recorder()
    timeout = sync.Timeout(1.0, name="io", hooks=[recorder])

    @timeout
    def slow() -> str:
        clock.advance(3.0)
        return "late"

    @timeout
    def quick() -> str:
        return "ok"

    assert quick() == "ok"
    assert slow() == "late"  # the work is done: its result stands
    with timeout:
        clock.advance(2.0)
    assert [(e.kind, e.policy, e.overrun) for e in recorder.events] == [
        ("timeout.overrun", "io", pytest.approx(2.0)),
        ("timeout.overrun", "io", pytest.approx(1.0)),
    ]


def test_deadlines_are_per_thread() -> None:
    seen: dict[str, float] = {}

    def worker() -> None:
        seen["thread"] = sync.remaining()

    with sync.deadline(60):
        join(start(worker))
        assert sync.remaining() <= 60
    assert seen["thread"] == math.inf


def test_real_clock_smoke() -> None:
    with sync.deadline(0.001) as scope:
        time.sleep(0.01)
    assert scope.overrun is not None
    assert scope.overrun > 0.0


def test_code_outliving_its_deadline_block_no_longer_sees_it() -> None:
    # Issue #13 item 1, sync twin: work handed to a thread with a copy of the context (as
    # executors do) can outlive the block; its deadline then no longer applies.
    with sync.deadline(60):
        outlives = contextvars.copy_context()
        assert outlives.run(sync.remaining) <= 60
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("down")
        return "ok"

    def later() -> tuple[float, str]:
        retry = sync.Retry(attempts=3, backoff=sync_backoff.constant(0.001))
        with sync.deadline(30):  # armed: the closed outer block does not count
            return sync.remaining(), retry.call(flaky)

    left, result = outlives.run(later)
    assert 0 < left <= 30
    assert result == "ok"
    assert outlives.run(sync.remaining) == math.inf


def test_a_closed_block_does_not_stop_a_retry_in_a_copied_context() -> None:
    with sync.deadline(0.001):
        outlives = contextvars.copy_context()
    time.sleep(0.01)  # past the closed block's deadline
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 2:
            raise ConnectionError("down")
        return "ok"

    retry = sync.Retry(attempts=2, backoff=sync_backoff.constant(0.001))
    assert outlives.run(retry.call, flaky) == "ok"
