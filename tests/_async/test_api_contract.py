"""API clauses on both flavours: a retry never waits for an open breaker, on_result, metrics,
the bare decorator, consecutive failures, per-policy hooks."""

import contextlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from resilient_async import backoff
from resilient_async.context import context_of
from resilient_async.instrumentation import hooks

from ..helpers import Recorder
from ._backend import flavour as rs
from ._backend import now, sleep
from .scripted import Flaky


def stop_reason(exc: BaseException) -> object:
    return (context_of(exc) or {}).get("stop_reason")


async def test_retry_never_waits_for_an_open_breaker() -> None:
    breaker = rs.CircuitBreaker("dep", consecutive_failures=1, open_for=30)
    guarded = rs.pipeline(rs.Fallback(value="cached"), rs.Retry(attempts=5), breaker)
    down = Flaky(ConnectionError)
    start = now()
    assert await guarded.call(down) == "cached"
    assert down.calls == 1
    assert now() - start < 1.0
    with pytest.raises(rs.CircuitOpenError) as info:
        await rs.Retry(attempts=5).call(breaker.call, down)
    assert stop_reason(info.value) == "circuit_open"
    # Named in on=, the loop waits for the probe instead.
    assert await rs.Retry(on=rs.CircuitOpenError).call(breaker.call, Flaky("ok")) == "ok"
    assert now() - start == pytest.approx(30, abs=1.0)


async def test_on_result_metrics_elapsed_and_bare_decorator() -> None:
    recorder = Recorder()
    retry = rs.Retry(
        attempts=3, backoff=backoff.constant(1), on_result=lambda r: r is None, hooks=[recorder]
    )
    assert await retry.call(Flaky(None, "ok")) == "ok"
    assert await retry.call(Flaky(None)) is None
    metrics = retry.metrics()
    assert (metrics.calls, metrics.attempts, metrics.retries) == (2, 5, 3)
    assert metrics.gave_up == {"attempts": 1}
    assert [e.elapsed for e in recorder.of("retry.gave_up")] == [pytest.approx(2.0)]
    script = Flaky(ConnectionError, "ok")

    @rs.retry
    async def fetch() -> object:
        return await script()

    assert await fetch() == "ok"
    assert script.calls == 2


async def test_consecutive_failures_and_hooks() -> None:
    mine = Recorder()
    breaker = rs.CircuitBreaker(
        "fail-max", consecutive_failures=2, open_for=timedelta(seconds=10), hooks=[mine]
    )
    for step in (ConnectionError, "ok", ConnectionError):
        with contextlib.suppress(ConnectionError):
            await breaker.call(Flaky(step))
    assert breaker.state is rs.BreakerState.CLOSED
    with pytest.raises(ConnectionError):
        await breaker.call(Flaky(ConnectionError))
    assert breaker.state is rs.BreakerState.OPEN
    assert mine.kinds() == ["breaker.state_changed"]
    await sleep(10)
    assert await breaker.call(Flaky("ok")) == "ok"
    with pytest.raises(ValueError, match="cannot be combined with window"):
        rs.CircuitBreaker(consecutive_failures=2, window=5)


@pytest.mark.parametrize(
    "build",
    [
        lambda hook: rs.Retry(attempts=1, hooks=[hook]),
        lambda hook: rs.Fallback(value=1, hooks=[hook]),
        lambda hook: rs.RateLimiter(1, burst=1, hooks=[hook]),
    ],
)
async def test_policies_send_their_events_to_their_hooks(build: Callable[[Any], Any]) -> None:
    mine, others = Recorder(), Recorder()
    policy = build(mine)
    bystander = rs.Retry(attempts=1, hooks=[others])
    for _ in range(2):
        with contextlib.suppress(Exception):
            await policy.call(Flaky(ConnectionError))
    with hooks(), pytest.raises(ConnectionError):
        await bystander.call(Flaky(ConnectionError))
    assert mine.events
    assert all(e.kind.split(".")[0] in {"retry", "fallback", "limiter"} for e in mine.events)
    assert others.kinds() == ["retry.attempt_failed", "retry.gave_up"]
