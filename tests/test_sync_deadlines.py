"""The generated sync deadline and Timeout: bounds, not interrupts."""

from __future__ import annotations

import contextvars
import math
import threading
import time

import pytest

from resilient_async import backoff as sync_backoff
from resilient_async import sync
from resilient_async.context import context_of


class FakeClock:
    """Stands in for time.monotonic/time.sleep in the sync backend."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    from resilient_async._sync import _backend, timeout

    monkeypatch.setattr(_backend, "current_time", fake.monotonic)
    monkeypatch.setattr(_backend.time, "monotonic", fake.monotonic)
    monkeypatch.setattr(_backend.time, "sleep", fake.sleep)
    assert timeout._backend is _backend
    return fake


def test_block_returning_after_its_deadline_raises(clock: FakeClock) -> None:
    with pytest.raises(sync.DeadlineExceeded) as info, sync.deadline(1.0):
        clock.sleep(2.0)
    assert info.value.timeout == 1.0


def test_block_within_its_deadline_is_untouched(clock: FakeClock) -> None:
    with sync.deadline(1.0):
        clock.sleep(0.5)
        assert sync.remaining() == pytest.approx(0.5)
    assert sync.remaining() == math.inf


def test_an_error_from_the_block_is_never_replaced(clock: FakeClock) -> None:
    with pytest.raises(KeyError), sync.deadline(1.0):
        clock.sleep(2.0)
        raise KeyError("real")


def test_nesting_the_earliest_rules_and_only_it_raises(clock: FakeClock) -> None:
    with sync.deadline(10.0) as outer:
        with pytest.raises(sync.DeadlineExceeded), sync.deadline(1.0):
            with sync.deadline(5.0):
                assert sync.current_deadline() == pytest.approx(clock.now + 1.0)
            clock.sleep(2.0)
        assert sync.remaining() == pytest.approx(8.0)
    assert not outer.expired


def test_sync_timeout_policy(clock: FakeClock) -> None:
    timeout = sync.Timeout(1.0, name="io")

    @timeout
    def slow() -> str:
        clock.sleep(3.0)
        return "late"

    @timeout
    def quick() -> str:
        return "ok"

    assert quick() == "ok"
    with pytest.raises(sync.DeadlineExceeded) as info:
        slow()
    assert context_of(info.value) == {"policy": "io", "deadline_remaining": 0.0}
    with pytest.raises(sync.DeadlineExceeded), timeout:
        clock.sleep(2.0)


def test_sync_timeout_rejects_async_functions() -> None:
    async def coro() -> None:
        return None

    with pytest.raises(TypeError, match="sync callable"):
        sync.Timeout(1)(coro)  # type: ignore[arg-type]


def test_deadlines_are_per_thread() -> None:
    seen: dict[str, float] = {}

    def worker() -> None:
        seen["thread"] = sync.remaining()

    with sync.deadline(60):
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        assert sync.remaining() <= 60
    assert seen["thread"] == math.inf


def test_real_clock_smoke() -> None:
    with pytest.raises(sync.DeadlineExceeded), sync.deadline(0.001):
        time.sleep(0.01)


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
