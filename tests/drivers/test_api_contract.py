"""Regression tests for the API clauses of issues 12 and 13, on asyncio and trio (virtual time).

Each test names the defect it pins; every one fails on the code before the fix. The clauses
both flavours share are in tests/_async/test_api_contract.py (generated for the sync twin);
the sync-only ones in tests/sync/test_api_contract.py.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import anyio
import pytest

import resilient_async as ra
from resilient_async import backoff
from resilient_async import sync as rs
from resilient_async.context import context_of
from resilient_async.instrumentation import LoggingHook, hooks

from ..helpers import Recorder

pytestmark = pytest.mark.anyio


class Script:
    """An async callable that follows a script: exception classes/instances to raise, values."""

    def __init__(self, *steps: object) -> None:
        self.steps = list(steps)
        self.calls = 0

    async def __call__(self, *args: object, **kwargs: object) -> object:
        step = self.steps[min(self.calls, len(self.steps) - 1)]
        self.calls += 1
        await anyio.lowlevel.checkpoint()
        if isinstance(step, type) and issubclass(step, BaseException):
            raise step("scripted")
        if isinstance(step, BaseException):
            raise step
        return step


def stop_reason(exc: BaseException) -> object:
    return (context_of(exc) or {}).get("stop_reason")


# --- defect 1: a retry never waits for an open breaker -------------------------------------


async def test_fallback_is_served_at_once_behind_an_open_breaker() -> None:
    breaker = ra.CircuitBreaker("dep", window=1, min_calls=1, open_for=30)
    guarded = ra.pipeline(ra.Fallback(value="cached"), ra.Retry(attempts=5), breaker)
    down = Script(ConnectionError)
    start = anyio.current_time()
    assert await guarded.call(down) == "cached"
    # One real attempt opened the breaker; the retry stopped at the rejection, not 30 s later.
    assert down.calls == 1
    assert anyio.current_time() - start < 1.0
    start = anyio.current_time()
    assert await guarded.call(down) == "cached"
    assert anyio.current_time() == start
    assert down.calls == 1


async def test_circuit_open_ends_the_loop_with_its_stop_reason() -> None:
    breaker = ra.CircuitBreaker(consecutive_failures=1, open_for=30)
    breaker.force_open()
    retry = ra.Retry(attempts=5, on=ra.ErrorClass.THROTTLED)
    with pytest.raises(ra.CircuitOpenError) as info:
        await retry.call(breaker.call, Script("ok"))
    assert stop_reason(info.value) == "circuit_open"
    assert retry.metrics().gave_up == {"circuit_open": 1}


async def test_naming_circuit_open_in_on_waits_for_the_probe() -> None:
    class Rejected(ra.CircuitOpenError):
        pass

    breaker = ra.CircuitBreaker(consecutive_failures=1, open_for=5)
    dependency = Script(ConnectionError, "ok")
    with pytest.raises(ConnectionError):
        await breaker.call(dependency)
    for on in (ra.CircuitOpenError, (ValueError, Rejected, ra.CircuitOpenError)):
        breaker.reset()
        with pytest.raises(ConnectionError):
            await breaker.call(Script(ConnectionError))
        start = anyio.current_time()
        retry = ra.Retry(attempts=3, on=on, backoff=backoff.constant(0))
        assert await retry.call(breaker.call, dependency) == "ok"
        assert anyio.current_time() - start == pytest.approx(5)  # the breaker's retry_after


# --- defect 6: Retry-After in full, max_retry_after ------------------------------------------


class Throttled(Exception):
    status_code = 429

    def __init__(self, hint: float) -> None:
        super().__init__(f"slow down for {hint}s")
        self.retry_after = hint


async def test_retry_after_is_honoured_in_full_and_capped_by_max_retry_after() -> None:
    start = anyio.current_time()
    assert await ra.Retry().call(Script(Throttled(60), "ok")) == "ok"
    assert anyio.current_time() - start == pytest.approx(60)
    with pytest.raises(Throttled) as info:
        await ra.Retry(max_retry_after=10).call(Script(Throttled(11), "ok"))
    assert stop_reason(info.value) == "retry_after"
    with pytest.raises(Throttled) as info, ra.deadline(30):
        await ra.Retry().call(Script(Throttled(40), "ok"))
    assert stop_reason(info.value) == "retry_after"
    assert anyio.current_time() - start == pytest.approx(60)  # neither waited


# --- on_result -------------------------------------------------------------------------------


async def test_on_result_retries_a_result_and_returns_the_last_one() -> None:
    recorder = Recorder()
    retry = ra.Retry(
        attempts=3, backoff=backoff.constant(1), on_result=lambda r: r == "busy", hooks=[recorder]
    )
    start = anyio.current_time()
    assert await retry.call(Script("busy", "ok")) == "ok"
    assert anyio.current_time() - start == pytest.approx(1)
    assert await retry.call(Script("busy")) == "busy"  # attempts ran out: the last result
    assert anyio.current_time() - start == pytest.approx(3)
    gave_up = recorder.of("retry.gave_up")
    assert [(e.stop_reason, e.result) for e in gave_up] == [("attempts", "busy")]
    assert [e.result for e in recorder.of("retry.scheduled")] == ["busy", "busy", "busy"]
    assert retry.metrics().gave_up == {"attempts": 1}
    # The same deadline and the same errors as a failure.
    with ra.deadline(0.5):
        assert await retry.call(Script("busy", "ok")) == "busy"
    with pytest.raises(TypeError, match="attempts\\(\\) cannot apply on_result"):
        retry.attempts()
    with pytest.raises(TypeError, match="on_result must be a predicate"):
        ra.Retry(on_result=3)  # type: ignore[arg-type]


async def test_on_result_works_on_the_decorator_and_with_errors_between() -> None:
    script = Script(None, ConnectionError, None, 42)

    @ra.retry(attempts=4, backoff=backoff.constant(0), on_result=lambda r: r is None)
    async def fetch() -> object:
        return await script()

    assert await fetch() == 42
    assert script.calls == 4


# --- metrics and elapsed -----------------------------------------------------------------------


async def test_retry_metrics_count_calls_attempts_retries_and_give_ups() -> None:
    budget = ra.RetryBudget(ratio=0.0, min_per_second=0.1, ttl=10)  # one retry in the window
    retry = ra.Retry(attempts=3, backoff=backoff.constant(0), budget=budget)
    plain = ra.Retry(attempts=2, backoff=backoff.constant(0))
    assert await retry.call(Script(ConnectionError, "ok")) == "ok"
    with pytest.raises(ConnectionError):
        await retry.call(Script(ConnectionError))
    with pytest.raises(ValueError):
        await plain.call(Script(ValueError))
    with pytest.raises(ConnectionError):
        await plain.call(Script(ConnectionError))
    assert await plain.call(Script("ok")) == "ok"
    assert retry.metrics() == ra.RetryMetrics(
        calls=2, attempts=3, retries=1, gave_up={"budget": 1}, budget_refusals=1
    )
    metrics = plain.metrics()
    assert (metrics.calls, metrics.attempts, metrics.retries) == (3, 4, 1)
    assert metrics.gave_up == {"not_retryable": 1, "attempts": 1}
    with pytest.raises(TypeError):
        metrics.gave_up["x"] = 1  # type: ignore[index]


async def test_retry_events_carry_elapsed() -> None:
    recorder = Recorder()

    async def slow_failure() -> None:
        await anyio.sleep(2)
        raise ConnectionError("reset")

    with hooks(recorder), pytest.raises(ConnectionError):
        await ra.Retry(attempts=2, backoff=backoff.constant(1)).call(slow_failure)
    assert [(e.kind, e.elapsed) for e in recorder.events] == [
        ("retry.attempt_failed", 2.0),
        ("retry.scheduled", 2.0),
        ("retry.attempt_failed", 5.0),
        ("retry.gave_up", 5.0),
    ]


# --- bare @ra.retry, timedelta ------------------------------------------------------------------


async def test_bare_retry_decorator_uses_the_defaults() -> None:
    script = Script(ConnectionError, "ok")

    @ra.retry
    async def fetch() -> object:
        return await script()

    assert fetch.__name__ == "fetch"
    assert await fetch() == "ok"
    assert script.calls == 2


async def test_timedelta_is_accepted_wherever_seconds_are() -> None:
    minute = timedelta(minutes=1)
    assert ra.Retry(timeout=minute).timeout == 60.0
    assert ra.Retry(max_retry_after=minute).max_retry_after == 60.0
    assert ra.Timeout(minute).seconds == 60.0
    assert ra.Hedge(timedelta(milliseconds=50)).delay == 0.05
    assert ra.Bulkhead(1, max_queue=1, max_wait=minute).max_wait == 60.0
    assert ra.RateLimiter(10, per=minute, max_wait=minute).per == 60.0
    assert ra.RetryBudget(ttl=minute).ttl == 60.0
    ra.Fallback.last_good(minute)
    assert ra.backoff.constant(timedelta(seconds=2)).delay(1, 0.0, None) == 2.0  # type: ignore[arg-type]
    assert ra.backoff.exponential(timedelta(seconds=1), max=minute).max == 60.0
    assert ra.backoff.linear(step=timedelta(seconds=1)).delay(3, 0.0, None) == 2.1  # type: ignore[arg-type]
    breaker = ra.CircuitBreaker(
        window=minute, window_type="time", open_for=minute, slow_call_duration=minute
    )
    assert breaker.metrics().state is ra.BreakerState.CLOSED
    start = anyio.current_time()
    with pytest.raises(ra.DeadlineExceeded), ra.deadline(timedelta(seconds=2)):
        await anyio.sleep(10)
    assert anyio.current_time() - start == pytest.approx(2)


# --- hooks= on every policy -------------------------------------------------------------------


async def test_every_policy_sends_its_own_events_to_its_hooks() -> None:
    mine, everyone = Recorder(), Recorder()

    async def fail() -> None:
        raise ConnectionError("down")

    async def slow() -> None:
        await anyio.sleep(1)

    policies: list[tuple[Any, Callable[[], Any], str]] = [
        (ra.Retry(attempts=2, backoff=backoff.constant(0), hooks=[mine]), fail, "retry.gave_up"),
        (ra.CircuitBreaker(consecutive_failures=1, hooks=[mine]), fail, "breaker.state_changed"),
        (ra.Timeout(0.5, hooks=[mine]), slow, "timeout.expired"),
        (ra.Fallback(value=1, hooks=[mine]), fail, "fallback.used"),
        (ra.Hedge(0.1, hooks=[mine]), slow, "hedge.started"),
        (ra.RateLimiter(1, burst=1, hooks=[mine]), fail, "limiter.rejected"),
    ]
    with hooks(everyone):
        for policy, fn, kind in policies:
            mine.events.clear()
            for _ in range(2):
                with contextlib.suppress(Exception):
                    await policy.call(fn)
            assert kind in mine.kinds(), policy
        bulkhead = ra.Bulkhead(1, hooks=[mine])
        mine.events.clear()
        async with bulkhead:
            with pytest.raises(ra.BulkheadFullError):
                await bulkhead.call(slow)
        assert mine.kinds() == ["bulkhead.rejected"]
        # Only this policy's events: a policy without hooks= sends none to `mine`.
        mine.events.clear()
        with pytest.raises(ConnectionError):
            await ra.Retry(attempts=2, backoff=backoff.constant(0)).call(fail)
        assert mine.events == []
    assert "retry.gave_up" in everyone.kinds()  # the scoped hooks still see everything
    pipe_hook = Recorder()
    guarded = ra.pipeline(ra.Retry(attempts=2, backoff=backoff.constant(0)), hooks=[pipe_hook])
    with pytest.raises(ConnectionError):
        await guarded.call(fail)
    assert "retry.gave_up" in pipe_hook.kinds()
    with pytest.raises(TypeError, match="hooks must hold callables"):
        ra.Bulkhead(1, hooks=[3])  # type: ignore[list-item]


# --- defect 3: flavour mistakes are a TypeError at once ---------------------------------------


async def test_a_sync_callable_given_to_an_async_policy_is_a_clear_type_error() -> None:
    calls = 0

    def sync_fn() -> str:
        nonlocal calls
        calls += 1
        return "value"

    breaker = ra.CircuitBreaker(consecutive_failures=1)
    bulkhead = ra.Bulkhead(2)
    policies = [
        ra.Retry(attempts=5),
        ra.Retry(attempts=5, timeout=10),
        breaker,
        bulkhead,
        ra.RateLimiter(100),
        ra.Timeout(5),
        ra.Fallback(value="fallback"),
        ra.Hedge(1),
        ra.pipeline(ra.Bulkhead(2), ra.Timeout(5)),
    ]
    for policy in policies:
        name = "Pipeline" if isinstance(policy, ra.Pipeline) else type(policy).__name__
        with pytest.raises(TypeError, match=rf"{name}\.call needs an async callable.*sync"):
            await policy.call(sync_fn)  # type: ignore[arg-type]
    assert calls == len(policies)  # each ran once, never retried
    assert breaker.metrics().calls == 0  # the misuse counts as nothing
    assert breaker.state is ra.BreakerState.CLOSED
    metrics = bulkhead.metrics()  # withdrawn: cancelled, not failed (as in the sync twin)
    assert (metrics.cancelled, metrics.failed, metrics.running) == (1, 0, 0)


async def test_a_sync_function_that_raises_is_refused_not_retried() -> None:
    calls = 0

    def sync_down() -> str:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    breaker = ra.CircuitBreaker(consecutive_failures=1)
    bulkhead = ra.Bulkhead(2)
    policies = [
        ra.Retry(attempts=5),
        ra.Retry(attempts=5, timeout=10),
        breaker,
        bulkhead,
        ra.RateLimiter(100),
        ra.Timeout(5),
        ra.Fallback(value="fallback"),
        ra.pipeline(ra.Bulkhead(2), ra.Timeout(5)),
    ]
    for policy in policies:
        with pytest.raises(TypeError, match=r"sync_down is a sync function") as info:
            await policy.call(sync_down)  # type: ignore[arg-type]
        assert isinstance(info.value.__cause__, ConnectionError)  # its own error, chained
    assert calls == len(policies)  # one call each: never retried
    assert breaker.state is ra.BreakerState.CLOSED  # and never counted
    metrics = bulkhead.metrics()  # withdrawn: cancelled, not failed (as in the sync twin)
    assert (metrics.cancelled, metrics.failed, metrics.running) == (1, 0, 0)

    # Callables that build an awaitable are not mistaken for sync ones.
    script = Script(ConnectionError, "ok")

    def build() -> Any:  # a plain function returning a coroutine: legitimate
        return script()

    assert await ra.Retry(backoff=backoff.constant(0)).call(build) == "ok"
    assert script.calls == 2


# --- defect 4: a plain handler in async code ---------------------------------------------------


async def test_a_plain_function_handler_works_in_async_code() -> None:
    def handler(exc: Exception, user: str) -> str:
        assert ra.degraded()
        return f"default for {user} after {type(exc).__name__}"

    fallback = ra.Fallback(handler=handler)
    assert await fallback.call(Script(ConnectionError), "ann") == (
        "default for ann after ConnectionError"
    )


# --- consecutive_failures ----------------------------------------------------------------------


async def test_consecutive_failures_opens_after_n_in_a_row() -> None:
    breaker = ra.CircuitBreaker("fail-max", consecutive_failures=3, open_for=10)
    for _ in range(5):  # a success between failures starts the count again
        for step in (ConnectionError, ConnectionError, "ok"):
            with contextlib.suppress(ConnectionError):
                await breaker.call(Script(step))
    assert breaker.state is ra.BreakerState.CLOSED
    for _ in range(3):
        with pytest.raises(ConnectionError):
            await breaker.call(Script(ConnectionError))
    assert breaker.state is ra.BreakerState.OPEN
    with pytest.raises(ra.CircuitOpenError):
        await breaker.call(Script("ok"))
    await anyio.sleep(10)
    assert await breaker.call(Script("ok")) == "ok"
    assert breaker.state is ra.BreakerState.CLOSED


@pytest.mark.parametrize(
    "kwargs",
    [{"failure_rate": 0.2}, {"window": 20}, {"window_type": "time"}, {"min_calls": 3}],
)
def test_consecutive_failures_cannot_be_combined_with_a_rate_window(kwargs: dict[str, Any]) -> None:
    (param,) = kwargs
    with pytest.raises(ValueError, match=rf"consecutive_failures cannot be combined with {param}"):
        ra.CircuitBreaker(consecutive_failures=3, **kwargs)
    with pytest.raises(ValueError, match="consecutive_failures must be >= 1"):
        ra.CircuitBreaker(consecutive_failures=0)


# --- issue 13, item 10: exception groups ------------------------------------------------------


async def test_groups_are_classified_by_their_leaves_in_every_policy() -> None:
    def group(*errors: Exception) -> ExceptionGroup[Exception]:
        return ExceptionGroup("children failed", list(errors))

    transient = Script(group(ConnectionError("a"), ConnectionResetError("b")), "ok")
    assert await ra.Retry(backoff=backoff.constant(0)).call(transient) == "ok"
    permanent = group(ValueError("x"), ValueError("y"))
    breaker = ra.CircuitBreaker(consecutive_failures=1)
    with pytest.raises(ExceptionGroup):
        await breaker.call(Script(permanent))
    assert breaker.state is ra.BreakerState.CLOSED  # the callers' bug, not the dependency's
    with pytest.raises(ExceptionGroup):
        await ra.Fallback(value="x").call(Script(permanent))
    mixed = Script(group(ConnectionError("a"), ValueError("b")), "ok")
    with pytest.raises(ExceptionGroup) as info:
        await ra.Retry().call(mixed)
    assert stop_reason(info.value) == "not_retryable"
    await breaker.call(Script("ok"))
    with pytest.raises(ExceptionGroup):
        await breaker.call(Script(group(ConnectionError("a"), ValueError("b"))))
    assert breaker.state is ra.BreakerState.OPEN  # UNKNOWN counts as a failure


async def test_a_task_group_failure_is_retried() -> None:
    attempts = 0

    async def fan_out() -> str:
        nonlocal attempts
        attempts += 1

        async def child() -> None:
            if attempts < 2:
                raise ConnectionError("reset")

        async with anyio.create_task_group() as tg:
            tg.start_soon(child)
            tg.start_soon(child)
        return "ok"

    assert await ra.Retry(backoff=backoff.constant(0)).call(fan_out) == "ok"
    assert attempts == 2


# --- issue 13, items 7 and 9: tokens, huge and tiny numbers, names ---------------------------


async def test_a_wrongly_typed_tokens_argument_changes_nothing() -> None:
    limiter = ra.RateLimiter(10, burst=10)
    for _ in range(10):
        await limiter.acquire()
    await anyio.sleep(1)  # refilled
    with pytest.raises(TypeError, match="tokens must be a number"):
        await limiter.acquire("1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tokens must be a number"):
        await limiter.acquire(True)
    with pytest.raises(TypeError, match="tokens must be a number"):
        limiter.try_acquire(True)
    with pytest.raises(ValueError, match=r"tokens must be > 0, got 0$"):
        await limiter.acquire(0)
    with pytest.raises(ValueError, match="tokens must be <= burst"):
        await limiter.acquire(11)
    assert limiter.try_acquire(10)  # the refill is intact


@pytest.mark.parametrize(
    "build",
    [
        lambda: ra.Retry(timeout=10**400),
        lambda: ra.Retry(max_retry_after=10**400),
        lambda: ra.Timeout(10**400),
        lambda: ra.Hedge(10**400),
        lambda: ra.Bulkhead(1, max_queue=1, max_wait=10**400),
        lambda: ra.RateLimiter(10**400),
        lambda: ra.RateLimiter(1, per=10**400),
        lambda: ra.RateLimiter(1, burst=10**400),
        lambda: ra.CircuitBreaker(open_for=10**400),
        lambda: ra.CircuitBreaker(window=10**400, window_type="time"),
        lambda: ra.RetryBudget(ttl=10**400),
        lambda: ra.RetryBudget(ratio=10**400),
        lambda: ra.Fallback.last_good(10**400),
        lambda: ra.RateLimiter(1, per=1e-320),
        lambda: ra.RateLimiter(1e308, per=1e-5),
        lambda: ra.CircuitBreaker(window=1e-320, window_type="time"),
        lambda: ra.RetryBudget(ttl=1e-320),
        lambda: ra.Fallback.last_good(1e-320),
    ],
)
def test_out_of_range_numbers_are_a_clear_value_error(build: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match=r"must be|too large"):
        build()


@pytest.mark.parametrize(
    "build",
    [
        lambda name: ra.Retry(name=name),
        ra.CircuitBreaker,
        lambda name: ra.Bulkhead(1, name=name),
        lambda name: ra.RateLimiter(1, name=name),
        lambda name: ra.Timeout(1, name=name),
        lambda name: ra.Hedge(1, name=name),
        lambda name: ra.Fallback(value=1, name=name),
        lambda name: ra.RetryBudget(name=name),
    ],
)
def test_name_is_checked_on_every_policy(build: Callable[[object], object]) -> None:
    with pytest.raises(TypeError, match="name must be a str or None, got 42"):
        build(42)
    with pytest.raises(ValueError, match="name must be a non-empty str"):
        build("")


# --- defect 10: messages and read-only configuration ----------------------------------------


def test_a_sync_policy_in_an_async_pipeline_is_named_as_such() -> None:
    with pytest.raises(TypeError, match=r"a sync policy, in a async pipeline|sync policy"):
        ra.pipeline(rs.Retry())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"an? async policy, in a sync pipeline"):
        rs.pipeline(ra.Retry())  # type: ignore[arg-type]


def test_quiet_acceptance_is_gone() -> None:
    with pytest.raises(ValueError, match="CANCELLED"):
        ra.Classifier().register(KeyError, ra.ErrorClass.CANCELLED)
    with pytest.raises(ValueError, match="max_wait=1 has no effect with max_queue=0"):
        ra.Bulkhead(1, max_wait=1)
    with pytest.raises(ValueError, match=r"^seconds must be >= 0, got -1$"):
        ra.Timeout(-1)
    store = ra.stores.MemoryStore()
    ra.CircuitBreaker("shared", store=store)
    with pytest.raises(ValueError, match=r"configuration \(window_type='count', window=100,"):
        ra.CircuitBreaker("shared", store=store, open_for=5)


@pytest.mark.parametrize(
    ("policy", "attribute"),
    [
        (ra.Bulkhead(1, max_queue=1), "max_wait"),
        (ra.Bulkhead(1), "max_concurrent"),
        (ra.RateLimiter(1), "rate"),
        (ra.RateLimiter(1), "max_wait"),
        (ra.Timeout(1), "seconds"),
        (ra.Hedge(1), "delay"),
        (ra.Fallback(value=1), "name"),
        (ra.CircuitBreaker("x"), "name"),
        (ra.Retry(), "timeout"),
        (ra.pipeline(ra.Retry()), "policies"),
    ],
)
def test_configuration_is_read_only(policy: object, attribute: str) -> None:
    with pytest.raises(AttributeError):
        setattr(policy, attribute, 5)


# --- defect 8: LoggingHook ---------------------------------------------------------------------


async def test_logging_hook_logs_one_line_per_event_and_one_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def times_out() -> None:
        with ra.deadline(1):
            await anyio.sleep(5)

    caplog.set_level(logging.INFO, logger="resilient_async")
    retry = ra.Retry(attempts=3, backoff=backoff.constant(0))
    with hooks(LoggingHook()), pytest.raises(ra.DeadlineExceeded):
        await retry.call(times_out)
    records = caplog.records
    assert [r.kind for r in records] == [  # type: ignore[attr-defined]
        "retry.attempt_failed",
        "retry.scheduled",
        "retry.attempt_failed",
        "retry.scheduled",
        "retry.attempt_failed",
        "retry.gave_up",
    ]
    for record in records:
        assert "\n" not in record.getMessage()
        assert "policy=None" not in record.getMessage()
        assert "exception=DeadlineExceeded" in record.getMessage()
    assert [r.exc_info is not None for r in records] == [False] * 5 + [True]
    caplog.clear()
    breaker = ra.CircuitBreaker("db", consecutive_failures=1)
    breaker.force_open()
    with hooks(LoggingHook()), pytest.raises(ra.CircuitOpenError):
        await breaker.call(Script("ok"))
    (rejected,) = [r for r in caplog.records if r.kind == "breaker.rejected"]  # type: ignore[attr-defined]
    assert rejected.exc_info is None
    assert "policy=db" in rejected.getMessage()
