"""Every event kind of the contract that belongs to a policy is emitted by it, with its fields.

One scenario per kind, run with a recording hook; async on both backends in virtual time,
and the sync twins. (`compensation.failed`, `supervisor.restarted` and `store.degraded`
belong to the transaction, supervisor and Redis store, tested with them.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import pytest

import resilient_async as ra
import resilient_async.sync as ra_sync
from resilient_async import backoff
from resilient_async.instrumentation import Event, hooks

from ..helpers import Recorder


async def fail() -> None:
    raise ConnectionError("down")


async def retry_fails() -> None:
    policy = ra.Retry(attempts=2, backoff=backoff.constant(0.5), name="the-policy")
    with pytest.raises(ConnectionError):
        await policy.call(fail)


async def breaker_opens_then_rejects() -> None:
    breaker = ra.CircuitBreaker("the-policy", window=2, min_calls=2, open_for=10)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await breaker.call(fail)
    with pytest.raises(ra.CircuitOpenError):
        await breaker.call(fail)


async def bulkhead_is_full() -> None:
    bulkhead = ra.Bulkhead(1, name="the-policy")
    async with bulkhead:
        with pytest.raises(ra.BulkheadFullError):
            async with bulkhead:
                pass


async def limiter_is_empty() -> None:
    limiter = ra.RateLimiter(1, name="the-policy")
    await limiter.acquire()
    with pytest.raises(ra.RateLimitedError):
        await limiter.acquire()


async def timeout_expires() -> None:
    with pytest.raises(ra.DeadlineExceeded):
        await ra.Timeout(1.0, name="the-policy").call(anyio.sleep, 2)


async def fallback_is_used() -> None:
    assert await ra.Fallback("cached", name="the-policy").call(fail) == "cached"


async def hedge_starts() -> None:
    async def slow() -> str:
        await anyio.sleep(1)
        return "done"

    assert await ra.Hedge(0.1, name="the-policy").call(slow) == "done"


def is_error(kind: type[BaseException]) -> Callable[[object], bool]:
    return lambda value: isinstance(value, kind)


# kind, scenario, the fields it must carry (a value, or a check of the value)
ASYNC_CASES: list[tuple[str, Callable[[], Awaitable[None]], Mapping[str, Any]]] = [
    (
        "retry.scheduled",
        retry_fails,
        {"attempt": 1, "delay": 0.5, "exception": is_error(ConnectionError)},
    ),
    (
        "retry.gave_up",
        retry_fails,
        {"attempt": 2, "stop_reason": "attempts", "exception": is_error(ConnectionError)},
    ),
    (
        "breaker.state_changed",
        breaker_opens_then_rejects,
        {"old_state": ra.BreakerState.CLOSED, "new_state": ra.BreakerState.OPEN},
    ),
    (
        "breaker.rejected",
        breaker_opens_then_rejects,
        {"state": ra.BreakerState.OPEN, "retry_after": 10.0},
    ),
    (
        "bulkhead.rejected",
        bulkhead_is_full,
        {"in_use": 1, "queued": 0, "exception": is_error(ra.BulkheadFullError)},
    ),
    (
        "limiter.rejected",
        limiter_is_empty,
        {"tokens": 1, "retry_after": 1.0, "exception": is_error(ra.RateLimitedError)},
    ),
    ("timeout.expired", timeout_expires, {"timeout": 1.0, "exception": is_error(TimeoutError)}),
    ("fallback.used", fallback_is_used, {"exception": is_error(ConnectionError)}),
    ("hedge.started", hedge_starts, {"attempt": 2}),
]


def check(recorder: Recorder, kind: str, fields: Mapping[str, Any]) -> None:
    events = recorder.of(kind)
    assert events, f"{kind} was not emitted; saw {recorder.kinds()}"
    event: Event = events[0]
    assert event.policy == "the-policy"
    assert isinstance(event.context, Mapping)
    for name, expected in fields.items():
        value = getattr(event, name)
        if callable(expected) and not isinstance(expected, ra.BreakerState):
            assert expected(value), f"{kind}.{name} = {value!r}"
        else:
            assert value == pytest.approx(expected), f"{kind}.{name} = {value!r}"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kind", "scenario", "fields"), ASYNC_CASES, ids=[c[0] for c in ASYNC_CASES]
)
async def test_each_policy_emits_its_event_kinds(
    kind: str, scenario: Callable[[], Awaitable[None]], fields: Mapping[str, Any]
) -> None:
    recorder = Recorder()
    with hooks(recorder):
        await scenario()
    check(recorder, kind, fields)


def sync_fail() -> None:
    raise ConnectionError("down")


def sync_retry_fails() -> None:
    policy = ra_sync.Retry(attempts=2, backoff=backoff.constant(0.001), name="the-policy")
    with pytest.raises(ConnectionError):
        policy.call(sync_fail)


def sync_breaker_opens_then_rejects() -> None:
    breaker = ra_sync.CircuitBreaker("the-policy", window=2, min_calls=2, open_for=10)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            breaker.call(sync_fail)
    with pytest.raises(ra.CircuitOpenError):
        breaker.call(sync_fail)


def sync_bulkhead_is_full() -> None:
    bulkhead = ra_sync.Bulkhead(1, name="the-policy")
    with bulkhead, pytest.raises(ra.BulkheadFullError), bulkhead:
        pass


def sync_limiter_is_empty() -> None:
    limiter = ra_sync.RateLimiter(1, per=3600, name="the-policy")
    limiter.acquire()
    with pytest.raises(ra.RateLimitedError):
        limiter.acquire()


def sync_fallback_is_used() -> None:
    assert ra_sync.Fallback("cached", name="the-policy").call(sync_fail) == "cached"


SYNC_CASES: list[tuple[str, Callable[[], None], Mapping[str, Any]]] = [
    ("retry.scheduled", sync_retry_fails, {"attempt": 1, "delay": 0.001}),
    ("retry.gave_up", sync_retry_fails, {"attempt": 2, "stop_reason": "attempts"}),
    (
        "breaker.state_changed",
        sync_breaker_opens_then_rejects,
        {"old_state": ra.BreakerState.CLOSED, "new_state": ra.BreakerState.OPEN},
    ),
    ("breaker.rejected", sync_breaker_opens_then_rejects, {"state": ra.BreakerState.OPEN}),
    ("bulkhead.rejected", sync_bulkhead_is_full, {"in_use": 1}),
    ("limiter.rejected", sync_limiter_is_empty, {"tokens": 1}),
    ("fallback.used", sync_fallback_is_used, {"exception": is_error(ConnectionError)}),
]


@pytest.mark.parametrize(("kind", "scenario", "fields"), SYNC_CASES, ids=[c[0] for c in SYNC_CASES])
def test_each_sync_policy_emits_its_event_kinds(
    kind: str, scenario: Callable[[], None], fields: Mapping[str, Any]
) -> None:
    recorder = Recorder()
    with hooks(recorder):
        scenario()
    check(recorder, kind, fields)
