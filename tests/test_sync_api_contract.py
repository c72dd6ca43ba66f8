"""The sync twin of test_api_contract.py: the same API clauses on plain functions.

Waits are zero (constant(0) backoffs) or on a fake clock, so nothing here sleeps for real.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from resilient_async import backoff
from resilient_async import sync as rs
from resilient_async._sync import _backend as sync_backend
from resilient_async.context import context_of
from resilient_async.instrumentation import hooks

from .helpers import Recorder


class Script:
    """A sync callable that follows a script: exception classes/instances to raise, values."""

    def __init__(self, *steps: object) -> None:
        self.steps = list(steps)
        self.calls = 0

    def __call__(self, *args: object, **kwargs: object) -> object:
        step = self.steps[min(self.calls, len(self.steps) - 1)]
        self.calls += 1
        if isinstance(step, type) and issubclass(step, BaseException):
            raise step("scripted")
        if isinstance(step, BaseException):
            raise step
        return step


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(
        sync_backend, "time", SimpleNamespace(monotonic=fake.monotonic, sleep=fake.sleep)
    )
    monkeypatch.setattr(sync_backend, "current_time", fake.monotonic)
    return fake


def stop_reason(exc: BaseException) -> object:
    return (context_of(exc) or {}).get("stop_reason")


def test_sync_retry_never_waits_for_an_open_breaker(clock: FakeClock) -> None:
    breaker = rs.CircuitBreaker("sync-dep", consecutive_failures=1, open_for=30)
    guarded = rs.pipeline(rs.Fallback(value="cached"), rs.Retry(attempts=5), breaker)
    down = Script(ConnectionError)
    start = clock.now
    assert guarded.call(down) == "cached"
    assert down.calls == 1
    assert clock.now - start < 1.0
    with pytest.raises(rs.CircuitOpenError) as info:
        rs.Retry(attempts=5).call(breaker.call, down)
    assert stop_reason(info.value) == "circuit_open"
    # Named in on=, the loop waits for the probe instead.
    assert rs.Retry(on=rs.CircuitOpenError).call(breaker.call, Script("ok")) == "ok"
    assert clock.now - start == pytest.approx(30, abs=1.0)


def test_sync_on_result_metrics_elapsed_and_bare_decorator(clock: FakeClock) -> None:
    recorder = Recorder()
    retry = rs.Retry(
        attempts=3, backoff=backoff.constant(1), on_result=lambda r: r is None, hooks=[recorder]
    )
    assert retry.call(Script(None, "ok")) == "ok"
    assert retry.call(Script(None)) is None
    metrics = retry.metrics()
    assert (metrics.calls, metrics.attempts, metrics.retries) == (2, 5, 3)
    assert metrics.gave_up == {"attempts": 1}
    assert [e.elapsed for e in recorder.of("retry.gave_up")] == [2.0]
    script = Script(ConnectionError, "ok")

    @rs.retry
    def fetch() -> object:
        return script()

    assert fetch() == "ok"
    assert script.calls == 2


def test_an_async_callable_given_to_a_sync_policy_is_a_clear_type_error() -> None:
    calls = 0

    async def async_fn() -> str:
        nonlocal calls
        calls += 1
        return "value"

    breaker = rs.CircuitBreaker(consecutive_failures=1)
    retry = rs.Retry(attempts=5, backoff=backoff.constant(0))
    bulkhead = rs.Bulkhead(2)
    policies = [
        retry,
        rs.Retry(attempts=5, timeout=10),
        breaker,
        rs.CircuitBreaker(slow_call_duration=1),
        bulkhead,
        rs.RateLimiter(100),
        rs.Timeout(5),
        rs.Fallback(value="fallback"),
        rs.pipeline(rs.Bulkhead(2), rs.Timeout(5)),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "coroutine was never awaited"
        for policy in policies:
            name = "Pipeline" if isinstance(policy, rs.Pipeline) else type(policy).__name__
            with pytest.raises(TypeError, match=rf"{name}\.call needs a sync callable.*async"):
                policy.call(async_fn)  # type: ignore[arg-type]
    assert calls == 0  # the coroutine never ran
    assert breaker.metrics().calls == 0  # no success recorded
    assert retry.metrics().attempts == 1  # one attempt, never retried
    metrics = bulkhead.metrics()  # withdrawn: cancelled, not failed (as in the async twin)
    assert (metrics.cancelled, metrics.failed, metrics.running) == (1, 0, 0)

    def sync_handler(exc: Exception) -> str:
        return "ok"

    async def async_handler(exc: Exception) -> str:
        return "ok"

    assert rs.Fallback(handler=sync_handler).call(Script(ConnectionError)) == "ok"
    with pytest.raises(TypeError, match="handler must be a sync callable"):
        rs.Fallback(handler=async_handler)


def test_sync_consecutive_failures_and_hooks(clock: FakeClock) -> None:
    mine = Recorder()
    breaker = rs.CircuitBreaker(
        "sync-fail-max", consecutive_failures=2, open_for=timedelta(seconds=10), hooks=[mine]
    )
    for step in (ConnectionError, "ok", ConnectionError):
        with contextlib.suppress(ConnectionError):
            breaker.call(Script(step))
    assert breaker.state is rs.BreakerState.CLOSED
    with pytest.raises(ConnectionError):
        breaker.call(Script(ConnectionError))
    assert breaker.state is rs.BreakerState.OPEN
    assert mine.kinds() == ["breaker.state_changed"]
    clock.sleep(10)
    assert breaker.call(Script("ok")) == "ok"
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
def test_sync_policies_send_their_events_to_their_hooks(build: Callable[[Any], Any]) -> None:
    mine, others = Recorder(), Recorder()
    policy = build(mine)
    bystander = rs.Retry(attempts=1, hooks=[others])
    for _ in range(2):
        with contextlib.suppress(Exception):
            policy.call(Script(ConnectionError))
    with hooks(), pytest.raises(ConnectionError):
        bystander.call(Script(ConnectionError))
    assert mine.events
    assert all(e.kind.split(".")[0] in {"retry", "fallback", "limiter"} for e in mine.events)
    assert others.kinds() == ["retry.attempt_failed", "retry.gave_up"]
