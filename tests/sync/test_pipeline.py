"""The generated sync pipeline: order, per-attempt timeouts, fallbacks, and threads."""

from __future__ import annotations

import threading
import time

import pytest

from resilient_async import backoff
from resilient_async import sync as ra
from resilient_async.instrumentation import hooks

from ..helpers import Recorder
from .threads import join, start


def test_sync_timeout_in_a_pipeline_keeps_a_late_result() -> None:
    # Regression (issue 12, defect 7): a call that succeeded after its timeout raised
    # DeadlineExceeded, and the Retry around it ran the (charged) work again.
    attempts = 0

    def slow() -> str:
        nonlocal attempts
        attempts += 1
        time.sleep(0.02)
        return "late"

    recorder = Recorder()
    guarded = ra.pipeline(ra.Retry(attempts=2, backoff=backoff.constant(0)), ra.Timeout(0.001))
    with hooks(recorder):
        assert guarded.call(slow) == "late"
    assert attempts == 1
    (overrun,) = recorder.of("timeout.overrun")
    assert overrun.timeout == 0.001
    assert overrun.overrun > 0.0


def test_sync_pipeline_under_threads_never_exceeds_the_bulkhead() -> None:
    bulkhead = ra.Bulkhead(3, max_queue=100)
    guarded = ra.pipeline(ra.CircuitBreaker("threads", window=50), bulkhead, ra.Timeout(10))
    lock = threading.Lock()
    running = peak = 0

    def work() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.001)
        with lock:
            running -= 1

    def worker() -> None:
        for _ in range(20):
            guarded.call(work)

    join(*[start(worker) for _ in range(8)])
    assert peak <= 3
    assert bulkhead.in_use == 0
    assert bulkhead.metrics().completed == 160


def test_a_folded_breaker_counts_an_async_callable_as_nothing() -> None:
    # Regression: folded into the guard run, the breaker recorded the refusal as an outcome.
    breaker = ra.CircuitBreaker("b", min_calls=1, window=1, on=Exception)
    guarded = ra.pipeline(ra.Timeout(5), breaker)

    async def coroutine_fn() -> int:
        return 1

    with pytest.raises(TypeError, match=r"Pipeline\.call needs a sync callable"):
        guarded.call(coroutine_fn)  # type: ignore[arg-type]
    assert breaker.metrics().calls == 0
    assert breaker.state is ra.BreakerState.CLOSED
