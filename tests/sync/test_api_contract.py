"""API clauses of the sync twin only (the shared ones are tested once for both flavours, in
tests/_async): an async callable given to a sync policy, or decorated by one, is a clear
TypeError."""

from __future__ import annotations

import re
import warnings
from typing import Any

import pytest

from resilient_async import backoff
from resilient_async import sync as rs

from .._sync.scripted import Flaky


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

    assert rs.Fallback(handler=sync_handler).call(Flaky(ConnectionError)) == "ok"
    with pytest.raises(TypeError, match="handler must be a sync callable"):
        rs.Fallback(handler=async_handler)


async def fetch() -> None:
    return None


@pytest.mark.parametrize(
    "policy",
    [
        rs.retry(),
        rs.Retry(),
        rs.CircuitBreaker(),
        rs.Bulkhead(1),
        rs.RateLimiter(1),
        rs.Timeout(1),
        rs.Fallback(value=None),
    ],
    ids=lambda policy: type(policy).__name__,
)
def test_a_sync_decorator_refuses_an_async_function(policy: Any) -> None:
    message = (
        "fn must be a sync callable, got the async function 'fetch'; "
        "use the policies from resilient_async"
    )
    with pytest.raises(TypeError, match=re.escape(message)):
        policy(fetch)
