"""Acceptance pass over API.md's core sections, clause by clause, as an outside user writes it.

Only the public names API.md spells are used (`import resilient_async as ra`,
`resilient_async.sync`). Async tests run on asyncio and trio in virtual time; each test is
named after the clause it checks.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import random
import time
from collections.abc import Mapping
from dataclasses import FrozenInstanceError
from datetime import timedelta
from itertools import islice
from typing import Any

import anyio
import pytest

import resilient_async as ra
from resilient_async import sync as rs

pytestmark = pytest.mark.anyio


class Script:
    """An async callable that follows a script of exceptions (types or instances) and values."""

    def __init__(self, *steps: object) -> None:
        self.steps = list(steps)
        self.calls = 0

    async def __call__(self, *args: object, **kwargs: object) -> object:
        step = self.steps[min(self.calls, len(self.steps) - 1)]
        self.calls += 1
        await anyio.sleep(0)
        if isinstance(step, type) and issubclass(step, BaseException):
            raise step("scripted")
        if isinstance(step, BaseException):
            raise step
        return step


class SyncScript:
    """The sync twin of Script."""

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


async def ok() -> str:
    await anyio.sleep(0)
    return "ok"


def sync_ok() -> str:
    return "ok"


def no_wait() -> ra.backoff.Backoff:  # type: ignore[name-defined]
    return ra.backoff.constant(0)


def async_policies() -> list[Any]:
    return [
        ra.Retry(),
        ra.CircuitBreaker(),
        ra.Bulkhead(2),
        ra.RateLimiter(10),
        ra.Timeout(5),
        ra.Fallback(value=1),
        ra.Hedge(1.0),
        ra.pipeline(ra.Retry(), ra.Timeout(5)),
    ]


def sync_policies() -> list[Any]:
    return [
        rs.Retry(),
        rs.CircuitBreaker(),
        rs.Bulkhead(2),
        rs.RateLimiter(10),
        rs.Timeout(5),
        rs.Fallback(value=1),
        rs.pipeline(rs.Retry(), rs.Timeout(5)),
    ]


# --- Every policy object ---------------------------------------------------------------------


async def test_every_policy_call_runs_fn_with_args_and_kwargs() -> None:
    async def add(a: int, b: int, *, c: int) -> int:
        await anyio.sleep(0)
        return a + b + c

    for policy in async_policies():
        assert await policy.call(add, 1, 2, c=3) == 6, policy


async def test_every_policy_rejects_a_sync_callable_with_typeerror_naming_the_twin() -> None:
    for policy in async_policies():
        with pytest.raises(TypeError, match="sync"):
            await policy.call(sync_ok)


def test_every_sync_policy_rejects_an_async_callable_with_typeerror() -> None:
    for policy in sync_policies():
        coro_fn = ok
        with pytest.raises(TypeError, match=r"async|sync"):
            policy.call(coro_fn)


async def test_every_policy_hooks_keyword_receives_this_policys_events() -> None:
    seen: list[Any] = []
    retry = ra.Retry(attempts=2, backoff=ra.backoff.constant(0), hooks=[seen.append])
    other: list[Any] = []
    ra.Retry(attempts=2, hooks=[other.append])
    await retry.call(Script(ConnectionError, "ok"))
    assert seen
    assert not other
    for factory in (
        lambda h: ra.CircuitBreaker(hooks=h),
        lambda h: ra.Bulkhead(1, hooks=h),
        lambda h: ra.RateLimiter(1, hooks=h),
        lambda h: ra.Timeout(1, hooks=h),
        lambda h: ra.Fallback(value=1, hooks=h),
        lambda h: ra.Hedge(1, hooks=h),
        lambda h: ra.pipeline(ra.Retry(), hooks=h),
    ):
        assert factory([seen.append]) is not None


def test_every_policy_accepts_timedelta_wherever_seconds_are_accepted() -> None:
    td = timedelta(seconds=2)
    assert ra.Retry(timeout=td, max_retry_after=td) is not None
    assert ra.CircuitBreaker(open_for=td, slow_call_duration=td) is not None
    assert ra.CircuitBreaker(window=td, window_type="time") is not None
    assert ra.Bulkhead(1, max_queue=1, max_wait=td) is not None
    assert ra.Bulkhead(1, queue="codel", codel_target=td, codel_interval=td) is not None
    assert ra.RateLimiter(1, per=td, max_wait=td) is not None
    assert ra.Timeout(td) is not None
    assert ra.Hedge(td) is not None
    assert ra.Fallback.last_good(td) is not None
    assert ra.RetryBudget(ttl=td) is not None
    assert list(islice(ra.backoff.constant(td).delays(), 1)) == [2.0]
    b = ra.backoff.exponential(td, max=timedelta(seconds=3), jitter="none")
    assert list(islice(b.delays(), 3)) == [2.0, 3.0, 3.0]
    lin = ra.backoff.linear(td, timedelta(seconds=1), max=timedelta(seconds=10))
    assert list(islice(lin.delays(), 3)) == [2.0, 3.0, 4.0]
    assert ra.Bulkhead.adaptive(max_queue=1, max_wait=td) is not None


async def test_every_policy_timedelta_durations_behave_as_seconds() -> None:
    start = anyio.current_time()
    with pytest.raises(ra.DeadlineExceeded):
        await ra.Timeout(timedelta(seconds=2)).call(anyio.sleep, 10)
    assert anyio.current_time() - start == pytest.approx(2)
    with pytest.raises(ra.DeadlineExceeded), ra.deadline(timedelta(seconds=3)):
        await anyio.sleep(10)
    assert anyio.current_time() - start == pytest.approx(5)


async def test_every_policy_decorator_keeps_signature_and_wraps_metadata() -> None:
    for policy in async_policies():

        async def fetch(user_id: int, *, verbose: bool = False) -> str:
            """Fetch a user."""
            await anyio.sleep(0)
            return f"user{user_id}"

        wrapped = policy(fetch)
        assert wrapped.__name__ == "fetch"
        assert wrapped.__doc__ == "Fetch a user."
        assert wrapped.__wrapped__ is fetch
        assert inspect.signature(wrapped) == inspect.signature(fetch)
        assert await wrapped(7) == "user7"


def test_every_sync_policy_decorator_keeps_wraps_metadata() -> None:
    for policy in sync_policies():

        def fetch(user_id: int) -> str:
            """Fetch a user."""
            return f"user{user_id}"

        wrapped = policy(fetch)
        assert wrapped.__name__ == "fetch"
        assert wrapped.__doc__ == "Fetch a user."
        assert wrapped(7) == "user7"


@pytest.mark.parametrize("mod", [ra, rs], ids=["async", "sync"])
def test_every_policy_invalid_configuration_names_parameter_and_range(mod: Any) -> None:
    cases: list[tuple[Any, str]] = [
        (lambda: mod.Retry(attempts=0), "attempts must be >= 1, got 0"),
        (lambda: mod.Retry(max_retry_after=-1), "max_retry_after"),
        (lambda: mod.Retry(timeout=-1), "timeout"),
        (lambda: mod.CircuitBreaker(failure_rate=0), "failure_rate"),
        (lambda: mod.CircuitBreaker(failure_rate=1.5), "failure_rate"),
        (lambda: mod.CircuitBreaker(slow_call_rate=0), "slow_call_rate"),
        (lambda: mod.CircuitBreaker(window=0), "window"),
        (lambda: mod.CircuitBreaker(min_calls=-1), "min_calls"),
        (lambda: mod.CircuitBreaker(open_for=-1), "open_for"),
        (lambda: mod.CircuitBreaker(half_open_calls=0), "half_open_calls"),
        (lambda: mod.CircuitBreaker(window_type="sliding"), "window_type"),
        (lambda: mod.Bulkhead(0), "max_concurrent"),
        (lambda: mod.Bulkhead(1, max_queue=-1), "max_queue"),
        (lambda: mod.Bulkhead(1, max_wait=-1), "max_wait"),
        (lambda: mod.RateLimiter(0), "rate"),
        (lambda: mod.RateLimiter(1, per=0), "per"),
        (lambda: mod.RateLimiter(1, max_wait=-1), "max_wait"),
        (lambda: mod.Timeout(-1), "seconds"),
        (lambda: mod.Fallback.last_good(-1), "ttl"),
        (lambda: mod.Fallback.last_good(1, max_entries=0), "max_entries"),
    ]
    for build, needle in cases:
        with pytest.raises((ValueError, TypeError)) as info:
            build()
        assert needle in str(info.value), (needle, str(info.value))
        assert "must" in str(info.value), str(info.value)  # states the accepted range
    with pytest.raises(ValueError, match="jitter"):
        ra.backoff.exponential(jitter="bogus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ratio"):
        ra.RetryBudget(ratio=-0.1)


def test_every_policy_consecutive_failures_cannot_combine_with_window_options() -> None:
    for kwargs in (
        {"failure_rate": 0.3},
        {"window": 5},
        {"window_type": "time"},
        {"min_calls": 2},
    ):
        with pytest.raises((ValueError, TypeError), match="consecutive_failures"):
            ra.CircuitBreaker(consecutive_failures=3, **kwargs)


async def test_guard_policies_are_async_context_managers() -> None:
    breaker = ra.CircuitBreaker(consecutive_failures=1)
    async with breaker:
        await anyio.sleep(0)
    bulkhead = ra.Bulkhead(1)
    async with bulkhead:
        assert bulkhead.in_use == 1
    assert bulkhead.in_use == 0
    limiter = ra.RateLimiter(1)
    async with limiter:
        pass
    with pytest.raises(ra.RateLimitedError):
        async with limiter:
            pass
    start = anyio.current_time()
    with pytest.raises(ra.DeadlineExceeded):
        async with ra.Timeout(1):
            await anyio.sleep(5)
    assert anyio.current_time() - start == pytest.approx(1)
    with pytest.raises(ConnectionError):
        async with breaker:
            raise ConnectionError("down")
    assert breaker.state is ra.BreakerState.OPEN


def test_sync_guard_policies_are_context_managers() -> None:
    breaker = rs.CircuitBreaker(consecutive_failures=1)
    with pytest.raises(ConnectionError):
        with breaker:
            raise ConnectionError("down")
    assert breaker.state is ra.BreakerState.OPEN
    bulkhead = rs.Bulkhead(1)
    with bulkhead:
        assert bulkhead.in_use == 1
    limiter = rs.RateLimiter(1)
    with limiter:
        pass
    with pytest.raises(ra.RateLimitedError), limiter:
        pass
    with rs.Timeout(60):
        pass


# --- Errors ----------------------------------------------------------------------------------


def test_errors_table_bases() -> None:
    assert issubclass(ra.ResilienceError, Exception)
    for cls in (
        ra.CircuitOpenError,
        ra.BulkheadFullError,
        ra.RateLimitedError,
        ra.DeadlineExceeded,
        ra.CompensationError,
        ra.SupervisorGaveUp,
    ):
        assert issubclass(cls, ra.ResilienceError)
    assert issubclass(ra.DeadlineExceeded, TimeoutError)
    assert issubclass(ra.CompensationError, ExceptionGroup)
    assert issubclass(ra.SupervisorGaveUp, ExceptionGroup)
    assert ra.errors.CircuitOpenError is ra.CircuitOpenError
    assert ra.errors.ResilienceError is ra.ResilienceError


async def test_errors_circuit_open_has_breaker_name_and_retry_after() -> None:
    breaker = ra.CircuitBreaker("payments", consecutive_failures=1, open_for=30)
    with pytest.raises(ConnectionError):
        await breaker.call(Script(ConnectionError))
    await anyio.sleep(10)
    with pytest.raises(ra.CircuitOpenError) as info:
        await breaker.call(ok)
    assert info.value.breaker == "payments"
    assert info.value.retry_after == pytest.approx(20)
    assert isinstance(info.value.context, Mapping)


async def test_errors_bulkhead_full_has_bulkhead_name() -> None:
    bulkhead = ra.Bulkhead(1, name="db")
    release = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(bulkhead.call, release.wait)
        await anyio.sleep(0.1)
        with pytest.raises(ra.BulkheadFullError) as info:
            await bulkhead.call(ok)
        release.set()
    assert info.value.bulkhead == "db"
    assert isinstance(info.value.context, Mapping)


async def test_errors_rate_limited_has_limiter_name_and_retry_after() -> None:
    limiter = ra.RateLimiter(1, per=4.0, name="api")
    await limiter.acquire()
    with pytest.raises(ra.RateLimitedError) as info:
        await limiter.acquire()
    assert info.value.limiter == "api"
    assert info.value.retry_after == pytest.approx(4.0)


async def test_errors_deadline_exceeded_has_timeout() -> None:
    with pytest.raises(ra.DeadlineExceeded) as info:
        await ra.Timeout(1.5).call(anyio.sleep, 10)
    assert info.value.timeout == pytest.approx(1.5)
    with pytest.raises(ra.DeadlineExceeded) as info, ra.deadline(2):
        await anyio.sleep(10)
    assert info.value.timeout == pytest.approx(2)


async def test_errors_after_last_retry_the_last_real_exception_propagates_unwrapped() -> None:
    first, last = ConnectionError("first"), ConnectionError("last")
    with pytest.raises(ConnectionError) as info:
        await ra.Retry(attempts=2, backoff=ra.backoff.constant(0)).call(Script(first, last))
    assert info.value is last


async def test_errors_cancellation_is_never_retried_counted_or_replaced() -> None:
    calls = 0

    async def slow() -> None:
        nonlocal calls
        calls += 1
        await anyio.sleep(100)

    breaker = ra.CircuitBreaker(consecutive_failures=1)
    guarded = ra.pipeline(ra.Fallback(value="fb"), ra.Retry(attempts=5), breaker)
    with anyio.move_on_after(1) as scope:
        await guarded.call(slow)
    assert scope.cancelled_caught
    assert calls == 1
    assert breaker.state is ra.BreakerState.CLOSED
    assert breaker.metrics().failures == 0


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, GeneratorExit])
async def test_errors_base_exceptions_are_never_caught_or_replaced(exc_type: type) -> None:
    breaker = ra.CircuitBreaker(consecutive_failures=1)
    guarded = ra.pipeline(ra.Fallback(value="fb"), ra.Retry(attempts=5), breaker)
    script = Script(exc_type)
    with pytest.raises(exc_type):
        await guarded.call(script)
    assert script.calls == 1
    assert breaker.state is ra.BreakerState.CLOSED


# --- Classification --------------------------------------------------------------------------


def test_classification_error_class_members() -> None:
    names = {m.name for m in ra.ErrorClass}
    assert {"TRANSIENT", "THROTTLED", "TIMEOUT", "PERMANENT", "CANCELLED", "UNKNOWN"} <= names


class HTTPish(Exception):
    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status_code = status
        self.headers = headers or {}


class Resp:
    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        self.headers = headers or {}


class RespError(Exception):
    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.response = Resp(status, headers)


class StatusError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def test_classification_defaults() -> None:
    import asyncio
    import errno

    import trio

    E = ra.ErrorClass
    assert ra.classify(asyncio.CancelledError()) is E.CANCELLED
    assert ra.classify(trio.Cancelled._create()) is E.CANCELLED  # type: ignore[attr-defined]
    assert ra.classify(TimeoutError()) is E.TIMEOUT
    assert ra.classify(ra.DeadlineExceeded(1.0)) is E.TIMEOUT
    assert ra.classify(ConnectionError()) is E.TRANSIENT
    assert ra.classify(ConnectionResetError()) is E.TRANSIENT
    assert ra.classify(OSError(errno.ECONNREFUSED, "refused")) is E.TRANSIENT
    assert ra.classify(OSError(errno.ETIMEDOUT, "timed out")) in (E.TRANSIENT, E.TIMEOUT)
    for exc in (
        ValueError(),
        TypeError(),
        KeyError(),
        LookupError(),
        AttributeError(),
        NotImplementedError(),
        PermissionError(),
    ):
        assert ra.classify(exc) is E.PERMANENT, exc
    assert ra.classify(RuntimeError()) is E.UNKNOWN
    assert ra.classify(Exception()) is E.UNKNOWN


def test_classification_throttled_library_errors() -> None:
    E = ra.ErrorClass
    assert ra.classify(ra.CircuitOpenError("b", 1.0)) is E.THROTTLED
    assert ra.classify(ra.BulkheadFullError("b")) is E.THROTTLED
    assert ra.classify(ra.RateLimitedError("l", 1.0)) is E.THROTTLED


def test_classification_http_status_codes() -> None:
    E = ra.ErrorClass
    for make in (HTTPish, RespError):
        assert ra.classify(make(429)) is E.THROTTLED
        assert ra.classify(make(503, {"Retry-After": "5"})) is E.THROTTLED
        assert ra.classify(make(503)) is E.TRANSIENT
        assert ra.classify(make(408)) is E.TRANSIENT
        assert ra.classify(make(500)) is E.TRANSIENT
        assert ra.classify(make(502)) is E.TRANSIENT
        assert ra.classify(make(404)) is E.PERMANENT
        assert ra.classify(make(400)) is E.PERMANENT
    assert ra.classify(StatusError(429)) is E.THROTTLED
    assert ra.classify(StatusError(500)) is E.TRANSIENT
    assert ra.classify(StatusError(403)) is E.PERMANENT


def test_classification_custom_classifier_register_later_wins() -> None:
    E = ra.ErrorClass
    c = ra.Classifier()
    assert c.classify(ConnectionError()) is E.TRANSIENT  # starts with the default rules
    c.register(RuntimeError, E.TRANSIENT)
    assert c.classify(RuntimeError()) is E.TRANSIENT
    c.register((RuntimeError, OSError), E.PERMANENT)
    assert c.classify(RuntimeError()) is E.PERMANENT
    c.register(lambda e: "retry me" in str(e), E.TRANSIENT)
    assert c.classify(RuntimeError("retry me")) is E.TRANSIENT
    assert c.classify(RuntimeError("no")) is E.PERMANENT
    assert ra.classify(RuntimeError()) is E.UNKNOWN  # not the process default


def test_classification_use_classifier_scopes_and_set_classifier_sets_default() -> None:
    E = ra.ErrorClass
    c = ra.Classifier()
    c.register(RuntimeError, E.TRANSIENT)
    with ra.use_classifier(c):
        assert ra.classify(RuntimeError()) is E.TRANSIENT
    assert ra.classify(RuntimeError()) is E.UNKNOWN
    try:
        ra.set_classifier(c)
        assert ra.classify(RuntimeError()) is E.TRANSIENT
    finally:
        ra.set_classifier(ra.Classifier())
    assert ra.classify(RuntimeError()) is E.UNKNOWN


async def test_classification_use_classifier_drives_retry() -> None:
    c = ra.Classifier()
    c.register(RuntimeError, ra.ErrorClass.TRANSIENT)
    with ra.use_classifier(c):
        assert await ra.Retry(backoff=ra.backoff.constant(0)).call(Script(RuntimeError, 1)) == 1
    with pytest.raises(RuntimeError):
        await ra.Retry(backoff=ra.backoff.constant(0)).call(Script(RuntimeError, 1))


def test_classification_exception_groups() -> None:
    import asyncio

    E = ra.ErrorClass
    assert ra.classify(ExceptionGroup("g", [ConnectionError(), ConnectionResetError()])) is (
        E.TRANSIENT
    )
    nested = ExceptionGroup("g", [ValueError(), ExceptionGroup("h", [KeyError()])])
    assert ra.classify(nested) is E.PERMANENT
    with_cancel = BaseExceptionGroup("g", [ConnectionError(), asyncio.CancelledError()])
    assert ra.classify(with_cancel) is E.CANCELLED
    assert ra.classify(ExceptionGroup("g", [ConnectionError(), ValueError()])) is E.UNKNOWN


def test_classification_retry_after_hint() -> None:
    import email.utils

    class Hinted(Exception):
        retry_after = 7.5

    assert ra.retry_after(Hinted()) == 7.5
    assert ra.retry_after(RespError(429, {"Retry-After": "12"})) == 12.0
    future = time.time() + 120
    date = email.utils.formatdate(future, usegmt=True)
    hint = ra.retry_after(RespError(503, {"Retry-After": date}))
    assert hint is not None
    assert 100 <= hint <= 121
    assert ra.retry_after(ValueError()) is None
    assert ra.retry_after(RespError(503)) is None


async def test_classification_every_on_parameter_accepts_all_forms() -> None:
    forms: list[Any] = [
        RuntimeError,
        (KeyError, RuntimeError),
        ra.ErrorClass.UNKNOWN,
        {ra.ErrorClass.UNKNOWN, ra.ErrorClass.TRANSIENT},
        lambda e: isinstance(e, RuntimeError),
    ]
    for on in forms:
        retry = ra.Retry(attempts=2, on=on, backoff=ra.backoff.constant(0))
        assert await retry.call(Script(RuntimeError, "ok")) == "ok"
        fallback = ra.Fallback(value="fb", on=on)
        assert await fallback.call(Script(RuntimeError)) == "fb"
        breaker = ra.CircuitBreaker(consecutive_failures=1, on=on)
        with pytest.raises(RuntimeError):
            await breaker.call(Script(RuntimeError))
        assert breaker.state is ra.BreakerState.OPEN
        hedge = ra.Hedge(10, on=on)
        assert await hedge.call(Script(RuntimeError, "ok")) == "ok"
    # A non-matching error is not retried.
    with pytest.raises(OSError):
        await ra.Retry(attempts=3, on=RuntimeError).call(Script(OSError, "ok"))


# --- Context ---------------------------------------------------------------------------------


def test_context_error_context_nests_and_merges_inner_wins() -> None:
    assert dict(ra.current_context()) == {}
    with ra.error_context(user="u1", op="read"):
        assert dict(ra.current_context()) == {"user": "u1", "op": "read"}
        with ra.error_context(op="write", shard=3):
            assert dict(ra.current_context()) == {"user": "u1", "op": "write", "shard": 3}
        assert dict(ra.current_context()) == {"user": "u1", "op": "read"}
    assert dict(ra.current_context()) == {}
    assert isinstance(ra.current_context(), Mapping)


async def test_context_error_context_is_plain_with_in_async_code() -> None:
    with ra.error_context(req="r1"):
        await anyio.sleep(0)
        assert ra.current_context()["req"] == "r1"


def test_context_exception_leaving_block_gets_context_and_one_note() -> None:
    with pytest.raises(RuntimeError) as info:
        with ra.error_context(user="u1"):
            with ra.error_context(op="read"):
                raise RuntimeError("boom")
    exc = info.value
    ctx = ra.context_of(exc)
    assert ctx is not None
    assert ctx["user"] == "u1"
    assert ctx["op"] == "read"
    notes = [n for n in getattr(exc, "__notes__", []) if n.startswith("resilient_async context:")]
    assert len(notes) == 1
    # `key=value`: the values are rendered with repr() (so strings show their quotes).
    assert "user='u1'" in notes[0]
    assert "op='read'" in notes[0]


def test_context_of_is_none_when_nothing_captured() -> None:
    assert ra.context_of(RuntimeError("plain")) is None


def test_context_inner_field_is_never_overwritten_by_outer() -> None:
    with pytest.raises(RuntimeError) as info:
        with ra.error_context(op="outer"):
            try:
                with ra.error_context(op="inner"):
                    raise RuntimeError("boom")
            finally:
                pass
    ctx = ra.context_of(info.value)
    assert ctx is not None
    assert ctx["op"] == "inner"


async def test_context_policies_merge_their_fields_and_note_is_kept_up_to_date() -> None:
    with pytest.raises(ConnectionError) as info:
        with ra.error_context(user="u1"):
            await ra.Retry(attempts=2, backoff=ra.backoff.constant(0), name="r").call(
                Script(ConnectionError)
            )
    exc = info.value
    ctx = ra.context_of(exc)
    assert ctx is not None
    assert ctx["user"] == "u1"
    assert ctx["attempt"] == 2
    assert "policy" in ctx
    notes = [n for n in getattr(exc, "__notes__", []) if n.startswith("resilient_async context:")]
    assert len(notes) == 1
    assert "attempt=2" in notes[0]
    assert "user='u1'" in notes[0]


async def test_context_breaker_state_and_deadline_remaining_fields() -> None:
    breaker = ra.CircuitBreaker(consecutive_failures=1)
    with pytest.raises(ConnectionError) as info:
        await breaker.call(Script(ConnectionError))
    ctx = ra.context_of(info.value)
    assert ctx is not None
    assert "breaker_state" in ctx
    with pytest.raises(ra.DeadlineExceeded) as info:
        await ra.Timeout(1).call(anyio.sleep, 5)
    ctx = ra.context_of(info.value)
    assert ctx is not None
    assert "deadline_remaining" in ctx


async def test_context_resilience_error_context_attribute() -> None:
    breaker = ra.CircuitBreaker("b", consecutive_failures=1)
    breaker.force_open()
    with pytest.raises(ra.CircuitOpenError) as info:
        with ra.error_context(user="u1"):
            await breaker.call(ok)
    assert info.value.context["user"] == "u1"
    assert ra.context_of(info.value) == info.value.context


async def test_context_crosses_task_boundaries_like_contextvars() -> None:
    seen: dict[str, object] = {}

    async def child() -> None:
        seen.update(ra.current_context())
        with ra.error_context(child_only=True):
            await anyio.sleep(0)
        ctx_child_set.append(ra.current_context())

    ctx_child_set: list[Any] = []
    with ra.error_context(parent="p"):
        async with anyio.create_task_group() as tg:
            tg.start_soon(child)
        assert "child_only" not in ra.current_context()
    assert seen == {"parent": "p"}


# --- Deadlines and timeouts ------------------------------------------------------------------


async def test_deadline_cancels_block_and_raises_deadline_exceeded() -> None:
    start = anyio.current_time()
    with pytest.raises(ra.DeadlineExceeded), ra.deadline(3):
        await anyio.sleep(100)
    assert anyio.current_time() - start == pytest.approx(3)


async def test_deadline_at_uses_the_loop_clock() -> None:
    when = anyio.current_time() + 4
    with pytest.raises(ra.DeadlineExceeded), ra.deadline_at(when):
        assert ra.current_deadline() == pytest.approx(when)
        await anyio.sleep(100)
    assert anyio.current_time() == pytest.approx(when)


async def test_deadline_nested_effective_is_minimum_inner_never_extends() -> None:
    start = anyio.current_time()
    with pytest.raises(ra.DeadlineExceeded), ra.deadline(2):
        with ra.deadline(10):
            assert ra.remaining() == pytest.approx(2)
            assert ra.current_deadline() == pytest.approx(start + 2)
            await anyio.sleep(100)
    assert anyio.current_time() - start == pytest.approx(2)
    with pytest.raises(ra.DeadlineExceeded), ra.deadline(10):
        with ra.deadline(1):
            assert ra.remaining() == pytest.approx(1)
            await anyio.sleep(100)
    assert anyio.current_time() - start == pytest.approx(3)


async def test_remaining_is_inf_without_a_deadline() -> None:
    assert ra.remaining() == math.inf
    with ra.deadline(5):
        await anyio.sleep(2)
        assert ra.remaining() == pytest.approx(3)
    assert ra.remaining() == math.inf


async def test_timeout_policy_is_per_attempt_inside_a_retry() -> None:
    calls = 0

    async def slow_then_fast() -> str:
        nonlocal calls
        calls += 1
        await anyio.sleep(10 if calls == 1 else 0.5)
        return "ok"

    guarded = ra.pipeline(ra.Retry(attempts=2, backoff=ra.backoff.constant(0)), ra.Timeout(1))
    start = anyio.current_time()
    assert await guarded.call(slow_then_fast) == "ok"
    assert anyio.current_time() - start == pytest.approx(1.5)


async def test_deadline_propagates_into_child_tasks_retries_hedges_fallbacks() -> None:
    seen: list[float] = []

    async def look() -> None:
        seen.append(ra.remaining())
        await anyio.sleep(0)

    with ra.deadline(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(look)
        await ra.Retry().call(look)
        await ra.Hedge(1).call(look)

        async def handler(exc: BaseException) -> None:
            await look()

        await ra.Fallback(handler=handler).call(Script(ConnectionError))
    assert len(seen) == 4
    assert all(s == pytest.approx(5) for s in seen)


def test_sync_deadline_and_remaining() -> None:
    assert rs.remaining() == math.inf
    with rs.deadline(100):
        assert 0 < rs.remaining() <= 100


# --- Retry -----------------------------------------------------------------------------------


def test_retry_signature_and_defaults() -> None:
    for mod in (ra, rs):
        params = inspect.signature(mod.Retry).parameters
        assert params["attempts"].default == 3
        assert params["backoff"].default is None
        assert params["timeout"].default is None
        assert params["budget"].default is None
        assert params["name"].default is None
        assert params["max_retry_after"].default == 60.0
        assert params["on_result"].default is None
        assert tuple(params["hooks"].default) == ()
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())


async def test_retry_attempts_counts_calls_one_means_no_retry() -> None:
    script = Script(ConnectionError, "ok")
    with pytest.raises(ConnectionError):
        await ra.Retry(attempts=1).call(script)
    assert script.calls == 1
    script = Script(ConnectionError)
    with pytest.raises(ConnectionError):
        await ra.Retry(attempts=4, backoff=ra.backoff.constant(0)).call(script)
    assert script.calls == 4


async def test_retry_default_attempts_is_three() -> None:
    script = Script(ConnectionError)
    with pytest.raises(ConnectionError):
        await ra.Retry().call(script)
    assert script.calls == 3


async def test_retry_default_on_is_transient_throttled_timeout() -> None:
    for exc in (ConnectionError, TimeoutError, HTTPish(429)):
        script = Script(exc, "ok")
        assert await ra.Retry().call(script) == "ok"
    for exc in (ValueError, RuntimeError):  # PERMANENT and UNKNOWN
        script = Script(exc, "ok")
        with pytest.raises(exc):
            await ra.Retry().call(script)
        assert script.calls == 1


async def test_retry_default_backoff_is_exponential() -> None:
    # Default exponential(initial=0.1, max=10, jitter="full"): the waits are bounded by
    # 0.1 then 0.2 (full jitter is uniform in [0, cap]).
    start = anyio.current_time()
    assert await ra.Retry().call(Script(ConnectionError, ConnectionError, "ok")) == "ok"
    assert 0 <= anyio.current_time() - start <= 0.3 + 1e-9


async def test_retry_timeout_bounds_the_whole_loop() -> None:
    start = anyio.current_time()

    async def slow() -> None:
        await anyio.sleep(100)

    with pytest.raises(ra.DeadlineExceeded):
        await ra.Retry(attempts=5, timeout=3).call(slow)
    assert anyio.current_time() - start == pytest.approx(3)


async def test_retry_timeout_wait_that_would_cross_reraises_last_error_at_once() -> None:
    start = anyio.current_time()
    retry = ra.Retry(attempts=5, timeout=3, backoff=ra.backoff.constant(5))
    script = Script(ConnectionError)
    with pytest.raises(ConnectionError):
        await retry.call(script)
    assert script.calls == 1
    assert anyio.current_time() == start


async def test_retry_never_sleeps_past_the_effective_deadline() -> None:
    start = anyio.current_time()
    script = Script(ConnectionError)
    with pytest.raises(ConnectionError), ra.deadline(3):
        await ra.Retry(attempts=5, backoff=ra.backoff.constant(2)).call(script)
    assert script.calls == 2
    assert anyio.current_time() - start == pytest.approx(2)


async def test_retry_decorator_factory_and_bare_decorator() -> None:
    calls = 0

    @ra.retry
    async def bare(x: int) -> int:
        nonlocal calls
        calls += 1
        await anyio.sleep(0)
        if calls < 3:
            raise ConnectionError("again")
        return x

    assert await bare(5) == 5
    assert calls == 3
    assert bare.__name__ == "bare"

    calls = 0

    @ra.retry(attempts=2, backoff=ra.backoff.constant(0))
    async def factory() -> None:
        nonlocal calls
        calls += 1
        await anyio.sleep(0)
        raise ConnectionError("again")

    with pytest.raises(ConnectionError):
        await factory()
    assert calls == 2


def test_sync_retry_decorator_bare_and_with_arguments() -> None:
    calls = 0

    @rs.retry
    def bare() -> str:
        nonlocal calls
        calls += 1
        if calls < 2:
            raise ConnectionError("again")
        return "ok"

    assert bare() == "ok"
    script = SyncScript(ConnectionError)
    decorated = rs.retry(attempts=2, backoff=ra.backoff.constant(0))(script)
    with pytest.raises(ConnectionError):
        decorated()
    assert script.calls == 2


async def test_retry_attempts_loop_over_a_block() -> None:
    tries = 0
    async for attempt in ra.Retry(attempts=3, backoff=ra.backoff.constant(1)).attempts():
        with attempt:
            tries += 1
            if tries < 3:
                raise ConnectionError("again")
    assert tries == 3
    tries = 0
    with pytest.raises(ConnectionError):
        async for attempt in ra.Retry(attempts=2, backoff=ra.backoff.constant(0)).attempts():
            with attempt:
                tries += 1
                raise ConnectionError("again")
    assert tries == 2
    tries = 0
    with pytest.raises(ValueError):
        async for attempt in ra.Retry(attempts=3).attempts():
            with attempt:
                tries += 1
                raise ValueError("permanent")
    assert tries == 1


def test_sync_retry_attempts_loop() -> None:
    tries = 0
    for attempt in rs.Retry(attempts=3, backoff=ra.backoff.constant(0)).attempts():
        with attempt:
            tries += 1
            if tries < 2:
                raise ConnectionError("again")
    assert tries == 2


class Throttled(Exception):
    status_code = 429

    def __init__(self, hint: float) -> None:
        super().__init__(f"slow down {hint}")
        self.retry_after = hint


async def test_retry_after_hint_raises_wait_in_full_beyond_backoff_max() -> None:
    start = anyio.current_time()
    retry = ra.Retry(backoff=ra.backoff.exponential(max=1.0))
    assert await retry.call(Script(Throttled(20), "ok")) == "ok"
    assert anyio.current_time() - start == pytest.approx(20)


async def test_retry_after_hint_longer_than_max_retry_after_gives_up_at_once() -> None:
    start = anyio.current_time()
    script = Script(Throttled(61), "ok")
    with pytest.raises(Throttled) as info:
        await ra.Retry().call(script)  # default max_retry_after=60.0
    assert script.calls == 1
    assert anyio.current_time() == start
    assert (ra.context_of(info.value) or {}).get("stop_reason") == "retry_after"
    script = Script(Throttled(5), "ok")
    with pytest.raises(Throttled) as info, ra.deadline(4):
        await ra.Retry().call(script)
    assert (ra.context_of(info.value) or {}).get("stop_reason") == "retry_after"
    assert anyio.current_time() == start


async def test_retry_never_waits_for_a_circuit_breaker() -> None:
    breaker = ra.CircuitBreaker(consecutive_failures=1, open_for=30)
    breaker.force_open()
    retry = ra.Retry(attempts=5, on={ra.ErrorClass.THROTTLED})
    start = anyio.current_time()
    with pytest.raises(ra.CircuitOpenError) as info:
        await retry.call(breaker.call, ok)
    assert anyio.current_time() == start
    assert (ra.context_of(info.value) or {}).get("stop_reason") == "circuit_open"


async def test_retry_on_naming_circuit_open_error_waits_for_the_probe() -> None:
    breaker = ra.CircuitBreaker(consecutive_failures=1, open_for=5)
    with pytest.raises(ConnectionError):
        await breaker.call(Script(ConnectionError))
    start = anyio.current_time()
    retry = ra.Retry(attempts=3, on=ra.CircuitOpenError, backoff=ra.backoff.constant(0))
    assert await retry.call(breaker.call, ok) == "ok"
    assert anyio.current_time() - start == pytest.approx(5)


async def test_retry_on_result_retries_and_returns_last_result() -> None:
    retry = ra.Retry(attempts=3, backoff=ra.backoff.constant(1), on_result=lambda r: r is None)
    script = Script(None, None, "ok")
    assert await retry.call(script) == "ok"
    script = Script(None)
    assert await retry.call(script) is None
    assert script.calls == 3


async def test_retry_metrics_is_a_frozen_snapshot() -> None:
    retry = ra.Retry(attempts=2, backoff=ra.backoff.constant(0))
    await retry.call(Script(ConnectionError, "ok"))
    with pytest.raises(ConnectionError):
        await retry.call(Script(ConnectionError))
    snap = retry.metrics()
    assert snap.calls == 2
    assert snap.attempts == 4
    assert snap.retries == 2
    assert snap.gave_up == {"attempts": 1}
    assert hasattr(snap, "budget_refusals")
    with pytest.raises((FrozenInstanceError, AttributeError, TypeError)):
        snap.calls = 99  # type: ignore[misc]
    await retry.call(ok)
    assert snap.calls == 2  # a snapshot, not a live view
    assert retry.metrics().calls == 3


def test_backoff_defaults_and_jitter_modes() -> None:
    b = ra.backoff.exponential(jitter="none")
    assert list(islice(b.delays(), 4)) == pytest.approx([0.1, 0.2, 0.4, 0.8])
    capped = ra.backoff.exponential(1, multiplier=3, max=5, jitter="none")
    assert list(islice(capped.delays(), 4)) == [1, 3, 5, 5]
    for jitter in ("none", "full", "equal", "decorrelated"):
        b = ra.backoff.exponential(jitter=jitter)  # type: ignore[arg-type]
        first = list(islice(b.delays(rng=random.Random(7)), 20))
        again = list(islice(b.delays(rng=random.Random(7)), 20))
        assert first == again, jitter
        assert all(0 <= d <= 10.0 for d in first), jitter
    full = list(islice(ra.backoff.exponential(jitter="full").delays(rng=random.Random(1)), 5))
    caps = [0.1, 0.2, 0.4, 0.8, 1.6]
    assert all(0 <= d <= c for d, c in zip(full, caps, strict=True))
    equal = list(islice(ra.backoff.exponential(jitter="equal").delays(rng=random.Random(1)), 5))
    assert all(c / 2 <= d <= c for d, c in zip(equal, caps, strict=True))


def test_backoff_constant_and_linear() -> None:
    assert list(islice(ra.backoff.constant(2).delays(), 3)) == [2, 2, 2]
    assert list(islice(ra.backoff.linear().delays(), 3)) == pytest.approx([0.1, 0.2, 0.3])
    lin = ra.backoff.linear(1, 2, max=4)
    assert list(islice(lin.delays(), 4)) == [1, 3, 4, 4]
    assert list(islice(ra.backoff.linear(1, 1).delays(rng=random.Random(0)), 2)) == [1, 2]


async def test_retry_budget_refuses_and_last_error_propagates() -> None:
    budget = ra.RetryBudget(ratio=0.5, min_per_second=0.1, ttl=10)
    # Allowance: ratio * calls + min_per_second * ttl = 0.5 * calls + 1.
    retry = ra.Retry(attempts=10, budget=budget, backoff=ra.backoff.constant(0))
    script = Script(ConnectionError)
    with pytest.raises(ConnectionError):
        await retry.call(script)
    # One call: allowance 1.5, so one retry, then the second is refused.
    assert script.calls == 2
    assert retry.metrics().budget_refusals == 1


async def test_retry_budget_is_shared_between_retry_policies_and_expires_with_ttl() -> None:
    budget = ra.RetryBudget(ratio=0.0, min_per_second=0.2, ttl=10)  # 2 retries per 10 s
    a = ra.Retry(attempts=10, budget=budget, backoff=ra.backoff.constant(0))
    b = ra.Retry(attempts=10, budget=budget, backoff=ra.backoff.constant(0))
    s1, s2 = Script(ConnectionError), Script(ConnectionError)
    with pytest.raises(ConnectionError):
        await a.call(s1)
    with pytest.raises(ConnectionError):
        await b.call(s2)
    assert s1.calls + s2.calls == 4  # 2 first attempts + 2 retries in all
    await anyio.sleep(11)
    s3 = Script(ConnectionError)
    with pytest.raises(ConnectionError):
        await b.call(s3)
    assert s3.calls == 3


def test_retry_budget_defaults() -> None:
    params = inspect.signature(ra.RetryBudget).parameters
    assert params["ratio"].default == 0.2
    assert params["min_per_second"].default == 10.0
    assert params["ttl"].default == 10.0


# --- CircuitBreaker --------------------------------------------------------------------------


def test_breaker_signature_and_defaults() -> None:
    for mod in (ra, rs):
        sig = inspect.signature(mod.CircuitBreaker)
        params = sig.parameters
        assert next(iter(params)) == "name"
        assert params["name"].default is None
        expected = {
            "failure_rate": 0.5,
            "window": 100,
            "window_type": "count",
            "min_calls": 10,
            "open_for": 30.0,
            "half_open_calls": 1,
            "slow_call_duration": None,
            "slow_call_rate": 1.0,
            "store": None,
        }
        for key, default in expected.items():
            assert params[key].default == default, key
            assert params[key].kind is inspect.Parameter.KEYWORD_ONLY
        assert "on" in params
        assert "consecutive_failures" in params


async def test_breaker_opens_at_failure_rate_over_count_window_with_min_calls() -> None:
    breaker = ra.CircuitBreaker(failure_rate=0.5, window=4, min_calls=4)
    for step in (ok, Script(ConnectionError), ok):
        with contextlib.suppress(ConnectionError):
            await breaker.call(step)
    assert breaker.state is ra.BreakerState.CLOSED  # 3 calls < min_calls
    with pytest.raises(ConnectionError):
        await breaker.call(Script(ConnectionError))
    assert breaker.state is ra.BreakerState.OPEN  # 2/4 >= 0.5
    with pytest.raises(ra.CircuitOpenError):
        await breaker.call(ok)


async def test_breaker_below_failure_rate_stays_closed() -> None:
    breaker = ra.CircuitBreaker(failure_rate=0.5, window=4, min_calls=4)
    for step in (ok, ok, ok, Script(ConnectionError), ok, ok):
        with contextlib.suppress(ConnectionError):
            await breaker.call(step)
    assert breaker.state is ra.BreakerState.CLOSED


async def test_breaker_default_min_calls_is_ten() -> None:
    breaker = ra.CircuitBreaker()
    for _ in range(9):
        with pytest.raises(ConnectionError):
            await breaker.call(Script(ConnectionError))
    assert breaker.state is ra.BreakerState.CLOSED
    with pytest.raises(ConnectionError):
        await breaker.call(Script(ConnectionError))
    assert breaker.state is ra.BreakerState.OPEN


async def test_breaker_time_window_counts_calls_in_the_last_seconds() -> None:
    breaker = ra.CircuitBreaker(window=10, window_type="time", min_calls=2, failure_rate=1.0)
    with pytest.raises(ConnectionError):
        await breaker.call(Script(ConnectionError))
    await anyio.sleep(11)  # the first failure leaves the window
    with pytest.raises(ConnectionError):
        await breaker.call(Script(ConnectionError))
    assert breaker.state is ra.BreakerState.CLOSED
    with pytest.raises(ConnectionError):
        await breaker.call(Script(ConnectionError))
    assert breaker.state is ra.BreakerState.OPEN


async def test_breaker_slow_call_rate_opens() -> None:
    breaker = ra.CircuitBreaker(
        window=2, min_calls=2, slow_call_duration=1.0, slow_call_rate=1.0, failure_rate=1.0
    )
    await breaker.call(anyio.sleep, 2)
    assert breaker.state is ra.BreakerState.CLOSED
    await breaker.call(anyio.sleep, 2)
    assert breaker.state is ra.BreakerState.OPEN
    assert breaker.metrics().slow_calls == 2


async def test_breaker_half_open_after_open_for_admits_exactly_half_open_calls() -> None:
    breaker = ra.CircuitBreaker(consecutive_failures=1, open_for=5, half_open_calls=2)
    with pytest.raises(ConnectionError):
        await breaker.call(Script(ConnectionError))
    await anyio.sleep(5)
    release = anyio.Event()
    results: list[object] = []

    async def probe() -> None:
        await release.wait()

    async def run(fn: Any) -> None:
        try:
            results.append(await breaker.call(fn))
        except ra.CircuitOpenError as exc:
            results.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, probe)
        tg.start_soon(run, probe)
        await anyio.sleep(0.1)
        await run(ok)  # a third caller is rejected while two probes run
        assert isinstance(results[-1], ra.CircuitOpenError)
        release.set()
    assert breaker.state is ra.BreakerState.CLOSED


async def test_breaker_failed_probe_reopens() -> None:
    breaker = ra.CircuitBreaker(consecutive_failures=1, open_for=5)
    with pytest.raises(ConnectionError):
        await breaker.call(Script(ConnectionError))
    await anyio.sleep(5)
    with pytest.raises(ConnectionError):
        await breaker.call(Script(ConnectionError))
    assert breaker.state is ra.BreakerState.OPEN


async def test_breaker_state_reads_half_open_before_any_call() -> None:
    breaker = ra.CircuitBreaker(consecutive_failures=1, open_for=5)
    with pytest.raises(ConnectionError):
        await breaker.call(Script(ConnectionError))
    assert breaker.state is ra.BreakerState.OPEN
    await anyio.sleep(4.9)
    assert breaker.state is ra.BreakerState.OPEN
    await anyio.sleep(0.1)
    assert breaker.state is ra.BreakerState.HALF_OPEN


async def test_breaker_state_members() -> None:
    names = {s.name for s in ra.BreakerState}
    assert {"CLOSED", "OPEN", "HALF_OPEN", "FORCED_OPEN", "DISABLED"} <= names


async def test_breaker_store_none_gives_each_instance_its_own_state() -> None:
    a = ra.CircuitBreaker("same", consecutive_failures=1)
    b = ra.CircuitBreaker("same", consecutive_failures=1)
    with pytest.raises(ConnectionError):
        await a.call(Script(ConnectionError))
    assert a.state is ra.BreakerState.OPEN
    assert b.state is ra.BreakerState.CLOSED


async def test_breaker_consecutive_failures_opens_after_n_in_a_row() -> None:
    breaker = ra.CircuitBreaker(consecutive_failures=3)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await breaker.call(Script(ConnectionError))
    await breaker.call(ok)  # a success resets the run
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await breaker.call(Script(ConnectionError))
    assert breaker.state is ra.BreakerState.CLOSED
    with pytest.raises(ConnectionError):
        await breaker.call(Script(ConnectionError))
    assert breaker.state is ra.BreakerState.OPEN


async def test_breaker_default_on_counts_transient_timeout_unknown_not_permanent() -> None:
    for exc in (ConnectionError, TimeoutError, RuntimeError):
        breaker = ra.CircuitBreaker(consecutive_failures=1)
        with pytest.raises(exc):
            await breaker.call(Script(exc))
        assert breaker.state is ra.BreakerState.OPEN, exc
    breaker = ra.CircuitBreaker(consecutive_failures=1)
    for exc in (ValueError, KeyError, HTTPish(429)):
        with pytest.raises(type(exc) if isinstance(exc, BaseException) else exc):
            await breaker.call(Script(exc))
    assert breaker.state is ra.BreakerState.CLOSED


async def test_breaker_error_outside_on_counts_as_success() -> None:
    breaker = ra.CircuitBreaker(window=2, min_calls=2, failure_rate=0.5)
    with pytest.raises(ConnectionError):
        await breaker.call(Script(ConnectionError))
    with pytest.raises(ValueError):
        await breaker.call(Script(ValueError))
    # One failure in two calls: 0.5 >= 0.5 opens. So PERMANENT must count as a call
    # (success), not be ignored.
    assert breaker.state is ra.BreakerState.OPEN
    m = breaker.metrics()
    assert m.calls == 2
    assert m.failures == 1


async def test_breaker_cancelled_call_counts_as_nothing() -> None:
    breaker = ra.CircuitBreaker(consecutive_failures=1)
    with anyio.move_on_after(1):
        await breaker.call(anyio.sleep, 10)
    assert breaker.state is ra.BreakerState.CLOSED
    assert breaker.metrics().calls == 0


async def test_breaker_cancelled_probe_frees_its_half_open_permit() -> None:
    breaker = ra.CircuitBreaker(consecutive_failures=1, open_for=5)
    with pytest.raises(ConnectionError):
        await breaker.call(Script(ConnectionError))
    await anyio.sleep(5)
    with anyio.move_on_after(1):
        await breaker.call(anyio.sleep, 10)
    assert await breaker.call(ok) == "ok"
    assert breaker.state is ra.BreakerState.CLOSED


async def test_breaker_force_open_disable_reset() -> None:
    breaker = ra.CircuitBreaker(consecutive_failures=1)
    breaker.force_open()
    assert breaker.state is ra.BreakerState.FORCED_OPEN
    with pytest.raises(ra.CircuitOpenError):
        await breaker.call(ok)
    breaker.disable()
    assert breaker.state is ra.BreakerState.DISABLED
    for _ in range(3):
        with pytest.raises(ConnectionError):
            await breaker.call(Script(ConnectionError))
    assert breaker.state is ra.BreakerState.DISABLED
    breaker.reset()
    assert breaker.state is ra.BreakerState.CLOSED
    assert breaker.metrics().calls == 0


async def test_breaker_reset_clears_the_window() -> None:
    breaker = ra.CircuitBreaker(window=4, min_calls=2, failure_rate=1.0)
    with pytest.raises(ConnectionError):
        await breaker.call(Script(ConnectionError))
    breaker.reset()
    with pytest.raises(ConnectionError):
        await breaker.call(Script(ConnectionError))
    assert breaker.state is ra.BreakerState.CLOSED


async def test_breaker_metrics_frozen_snapshot() -> None:
    breaker = ra.CircuitBreaker(window=10, min_calls=5)
    await breaker.call(ok)
    with pytest.raises(ConnectionError):
        await breaker.call(Script(ConnectionError))
    snap = breaker.metrics()
    assert snap.state is ra.BreakerState.CLOSED
    assert snap.calls == 2
    assert snap.failures == 1
    assert snap.slow_calls == 0
    assert snap.failure_rate == pytest.approx(0.5)
    with pytest.raises((FrozenInstanceError, AttributeError, TypeError)):
        snap.calls = 9  # type: ignore[misc]
    await breaker.call(ok)
    assert snap.calls == 2


async def test_breaker_rejection_has_retry_after() -> None:
    breaker = ra.CircuitBreaker(consecutive_failures=1, open_for=8)
    with pytest.raises(ConnectionError):
        await breaker.call(Script(ConnectionError))
    with pytest.raises(ra.CircuitOpenError) as info:
        await breaker.call(ok)
    assert info.value.retry_after == pytest.approx(8)


def test_sync_breaker_half_open_after_open_for() -> None:
    breaker = rs.CircuitBreaker(consecutive_failures=1, open_for=0.05)
    with pytest.raises(ConnectionError):
        breaker.call(SyncScript(ConnectionError))
    assert breaker.state is ra.BreakerState.OPEN
    with pytest.raises(ra.CircuitOpenError):
        breaker.call(sync_ok)
    time.sleep(0.1)
    assert breaker.state is ra.BreakerState.HALF_OPEN
    assert breaker.call(sync_ok) == "ok"
    assert breaker.state is ra.BreakerState.CLOSED


# --- Bulkhead --------------------------------------------------------------------------------


def test_bulkhead_signature_and_defaults() -> None:
    for mod in (ra, rs):
        params = inspect.signature(mod.Bulkhead).parameters
        assert next(iter(params)) == "max_concurrent"
        assert params["max_queue"].default == 0
        assert params["max_wait"].default is None
        assert params["name"].default is None
    params = inspect.signature(ra.Bulkhead.adaptive).parameters
    expected = {
        "initial": 20,
        "min_limit": 1,
        "max_limit": 1000,
        "algorithm": "gradient",
        "max_queue": 0,
        "max_wait": None,
        "name": None,
        "queue": "fifo",
        "codel_target": 0.005,
        "codel_interval": 0.1,
    }
    for key, default in expected.items():
        assert params[key].default == default, key


async def test_bulkhead_at_most_max_concurrent_run_others_rejected_at_once() -> None:
    bulkhead = ra.Bulkhead(2)
    running = 0
    peak = 0
    rejected = 0

    async def work() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(1)
        running -= 1

    async def call() -> None:
        nonlocal rejected
        try:
            await bulkhead.call(work)
        except ra.BulkheadFullError:
            rejected += 1

    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(call)
    assert peak == 2
    assert rejected == 3
    assert anyio.current_time() - start == pytest.approx(1)


async def test_bulkhead_queue_is_fifo_and_in_use_queued_are_ints() -> None:
    bulkhead = ra.Bulkhead(1, max_queue=3)
    order: list[int] = []
    gate = anyio.Event()

    async def work(i: int) -> None:
        if i == 0:
            await gate.wait()
        order.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(bulkhead.call, work, i)
            await anyio.sleep(0.01)
        assert bulkhead.in_use == 1
        assert bulkhead.queued == 3
        assert isinstance(bulkhead.in_use, int)
        assert isinstance(bulkhead.queued, int)
        with pytest.raises(ra.BulkheadFullError):
            await bulkhead.call(work, 9)
        gate.set()
    assert order == [0, 1, 2, 3]
    assert bulkhead.in_use == 0
    assert bulkhead.queued == 0


async def test_bulkhead_max_wait_then_bulkhead_full_error() -> None:
    bulkhead = ra.Bulkhead(1, max_queue=1, max_wait=2)
    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(bulkhead.call, anyio.sleep, 10)
        await anyio.sleep(0.01)
        start = anyio.current_time()
        with pytest.raises(ra.BulkheadFullError):
            await bulkhead.call(ok)
        assert anyio.current_time() - start == pytest.approx(2)
        tg.cancel_scope.cancel()


async def test_bulkhead_max_wait_none_waits_until_the_deadline() -> None:
    bulkhead = ra.Bulkhead(1, max_queue=1)
    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(bulkhead.call, anyio.sleep, 10)
        await anyio.sleep(0.01)
        start = anyio.current_time()
        with pytest.raises((ra.DeadlineExceeded, ra.BulkheadFullError)), ra.deadline(3):
            await bulkhead.call(ok)
        assert anyio.current_time() - start == pytest.approx(3)
        assert bulkhead.queued == 0
        tg.cancel_scope.cancel()


async def test_bulkhead_cancelled_waiter_never_takes_a_slot() -> None:
    bulkhead = ra.Bulkhead(1, max_queue=2)
    ran: list[str] = []

    async def work(tag: str) -> None:
        ran.append(tag)
        await anyio.sleep(1)

    async with anyio.create_task_group() as tg:
        tg.start_soon(bulkhead.call, work, "first")
        await anyio.sleep(0.01)
        with anyio.move_on_after(0.5):
            await bulkhead.call(work, "cancelled")
        assert bulkhead.queued == 0
    assert ran == ["first"]
    assert bulkhead.in_use == 0


async def test_bulkhead_adaptive_limit_reads_current_limit() -> None:
    for algorithm in ("gradient", "aimd"):
        bulkhead = ra.Bulkhead.adaptive(initial=5, algorithm=algorithm)
        assert bulkhead.limit == 5
        await bulkhead.call(ok)
        assert 1 <= bulkhead.limit <= 1000


def test_sync_bulkhead_in_use_and_rejection() -> None:
    bulkhead = rs.Bulkhead(1)
    with bulkhead:
        assert bulkhead.in_use == 1
        with pytest.raises(ra.BulkheadFullError):
            bulkhead.call(sync_ok)
    assert bulkhead.in_use == 0


# --- RateLimiter -----------------------------------------------------------------------------


def test_ratelimiter_signature_and_defaults() -> None:
    for mod in (ra, rs):
        params = inspect.signature(mod.RateLimiter).parameters
        assert list(params)[:2] == ["rate", "per"]
        assert params["per"].default == 1.0
        assert params["burst"].default is None
        assert params["max_wait"].default == 0.0
        assert params["name"].default is None


async def test_ratelimiter_rate_per_and_burst_default_rate() -> None:
    limiter = ra.RateLimiter(3, per=6.0)
    for _ in range(3):
        assert limiter.try_acquire()
    assert not limiter.try_acquire()
    await anyio.sleep(2)  # 3 per 6 s: one token every 2 s
    assert limiter.try_acquire()
    assert not limiter.try_acquire()


async def test_ratelimiter_burst() -> None:
    limiter = ra.RateLimiter(1, burst=4)
    assert sum(limiter.try_acquire() for _ in range(6)) == 4


async def test_ratelimiter_max_wait_zero_rejects_at_once() -> None:
    limiter = ra.RateLimiter(1)
    await limiter.acquire()
    start = anyio.current_time()
    with pytest.raises(ra.RateLimitedError) as info:
        await limiter.call(ok)
    assert anyio.current_time() == start
    assert info.value.retry_after == pytest.approx(1.0)


async def test_ratelimiter_waits_up_to_max_wait() -> None:
    limiter = ra.RateLimiter(1, per=2.0, max_wait=5)
    await limiter.acquire()
    start = anyio.current_time()
    await limiter.acquire()
    assert anyio.current_time() - start == pytest.approx(2)


async def test_ratelimiter_wait_beyond_max_wait_rejected_at_once() -> None:
    limiter = ra.RateLimiter(1, per=10.0, max_wait=5)
    await limiter.acquire()
    start = anyio.current_time()
    with pytest.raises(ra.RateLimitedError) as info:
        await limiter.acquire()
    assert anyio.current_time() == start
    assert info.value.retry_after == pytest.approx(10)


async def test_ratelimiter_wait_beyond_deadline_rejected_at_once() -> None:
    limiter = ra.RateLimiter(1, per=10.0, max_wait=60)
    await limiter.acquire()
    start = anyio.current_time()
    with pytest.raises(ra.RateLimitedError), ra.deadline(5):
        await limiter.acquire()
    assert anyio.current_time() == start


async def test_ratelimiter_acquire_and_try_acquire_tokens() -> None:
    limiter = ra.RateLimiter(5, max_wait=10)
    await limiter.acquire(tokens=3)
    assert limiter.try_acquire(tokens=2)
    assert not limiter.try_acquire(tokens=1)
    start = anyio.current_time()
    await limiter.acquire(tokens=2)  # waits for two tokens at 5 per second
    assert anyio.current_time() - start == pytest.approx(0.4)


def test_sync_ratelimiter_try_acquire() -> None:
    limiter = rs.RateLimiter(2, per=100.0)
    assert limiter.try_acquire()
    assert limiter.try_acquire()
    assert not limiter.try_acquire()
    with pytest.raises(ra.RateLimitedError) as info:
        limiter.acquire()
    assert info.value.retry_after == pytest.approx(50, abs=1)


# --- Fallback and degradation ----------------------------------------------------------------


async def test_fallback_value_served_on_failure() -> None:
    assert await ra.Fallback(value="cached").call(Script(ConnectionError)) == "cached"
    assert await ra.Fallback(value="cached").call(ok) == "ok"
    assert await ra.Fallback(value=None).call(Script(ConnectionError)) is None


async def test_fallback_handler_receives_exception_then_call_arguments() -> None:
    seen: list[Any] = []

    async def handler(exc: BaseException, *args: Any, **kwargs: Any) -> str:
        seen.append((exc, args, kwargs))
        await anyio.sleep(0)
        return "handled"

    boom = ConnectionError("down")
    fallback = ra.Fallback(handler=handler)
    assert await fallback.call(Script(boom), 1, 2, k="v") == "handled"
    assert seen == [(boom, (1, 2), {"k": "v"})]


async def test_fallback_default_on_every_exception_except_permanent() -> None:
    fallback = ra.Fallback(value="fb")
    for exc in (ConnectionError, RuntimeError, TimeoutError, HTTPish(503)):
        assert await fallback.call(Script(exc)) == "fb"
    for exc in (ValueError, KeyError, HTTPish(404)):
        with pytest.raises(type(exc) if isinstance(exc, BaseException) else exc):
            await fallback.call(Script(exc))


async def test_fallback_never_runs_for_cancellation() -> None:
    ran = False

    async def handler(exc: BaseException) -> str:
        nonlocal ran
        ran = True
        return "fb"

    with anyio.move_on_after(1) as scope:
        await ra.Fallback(handler=handler).call(anyio.sleep, 10)
    assert scope.cancelled_caught
    assert not ran


async def test_fallback_last_good_serves_last_success_per_key_within_ttl() -> None:
    fallback = ra.Fallback.last_good(10)
    results: dict[Any, Any] = {}

    async def fetch(x: int, *, scale: int = 1) -> int:
        await anyio.sleep(0)
        if results.get("down"):
            raise ConnectionError("down")
        return x * scale

    assert await fallback.call(fetch, 2) == 2
    assert await fallback.call(fetch, 2, scale=3) == 6
    results["down"] = True
    assert await fallback.call(fetch, 2) == 2
    assert await fallback.call(fetch, 2, scale=3) == 6  # keyed on kwargs too
    with pytest.raises(ConnectionError):
        await fallback.call(fetch, 5)  # never succeeded for this key
    await anyio.sleep(11)
    with pytest.raises(ConnectionError):
        await fallback.call(fetch, 2)  # older than ttl: the original error


async def test_fallback_last_good_custom_key_and_max_entries() -> None:
    fallback = ra.Fallback.last_good(100, key=lambda x, **kw: x % 2, max_entries=1)
    state = {"down": False}

    async def fetch(x: int) -> int:
        await anyio.sleep(0)
        if state["down"]:
            raise ConnectionError("down")
        return x

    assert await fallback.call(fetch, 2) == 2
    state["down"] = True
    assert await fallback.call(fetch, 4) == 2  # same key (even)
    state["down"] = False
    assert await fallback.call(fetch, 3) == 3  # evicts the even entry (max_entries=1)
    state["down"] = True
    with pytest.raises(ConnectionError):
        await fallback.call(fetch, 2)


def test_fallback_last_good_defaults() -> None:
    params = inspect.signature(ra.Fallback.last_good).parameters
    assert params["key"].default is None
    assert params["max_entries"].default == 1024


async def test_degraded_true_only_inside_a_fallback() -> None:
    seen: list[bool] = []

    async def handler(exc: BaseException) -> bool:
        seen.append(ra.degraded())
        await anyio.sleep(0)
        return ra.degraded()

    assert ra.degraded() is False
    assert await ra.Fallback(handler=handler).call(Script(ConnectionError)) is True
    assert seen == [True]
    assert ra.degraded() is False


def test_sync_fallback_value_handler_and_last_good() -> None:
    assert rs.Fallback(value=1).call(SyncScript(ConnectionError)) == 1

    def handler(exc: BaseException, x: int) -> int:
        assert ra.degraded()
        return -x

    assert rs.Fallback(handler=handler).call(SyncScript(ConnectionError), 4) == -4
    fb = rs.Fallback.last_good(60)
    assert fb.call(SyncScript(7), 1) == 7
    assert fb.call(SyncScript(ConnectionError), 1) == 7
    with pytest.raises(ValueError):
        rs.Fallback(value=1).call(SyncScript(ValueError))


# --- Hedge -----------------------------------------------------------------------------------


def test_hedge_signature_and_defaults() -> None:
    params = inspect.signature(ra.Hedge).parameters
    assert next(iter(params)) == "delay"
    assert params["max_attempts"].default == 2


async def test_hedge_starts_another_attempt_after_delay_first_success_wins() -> None:
    started: list[float] = []
    cancelled: list[int] = []
    durations = [10.0, 1.0]

    async def attempt() -> int:
        i = len(started)
        started.append(anyio.current_time())
        try:
            await anyio.sleep(durations[i])
        except BaseException:
            cancelled.append(i)
            raise
        return i

    start = anyio.current_time()
    assert await ra.Hedge(2).call(attempt) == 1
    assert [t - start for t in started] == pytest.approx([0, 2])
    assert anyio.current_time() - start == pytest.approx(3)
    assert cancelled == [0]  # the loser was cancelled and awaited before the call returned


async def test_hedge_fast_first_attempt_starts_no_other() -> None:
    script = Script("ok")
    assert await ra.Hedge(2, max_attempts=3).call(script) == "ok"
    assert script.calls == 1


async def test_hedge_max_attempts_bounds_attempts() -> None:
    calls = 0

    async def slow() -> None:
        nonlocal calls
        calls += 1
        await anyio.sleep(100)

    with anyio.move_on_after(50):
        await ra.Hedge(1, max_attempts=3).call(slow)
    assert calls == 3


async def test_hedge_failure_matched_by_on_starts_next_attempt_at_once() -> None:
    start = anyio.current_time()
    script = Script(ConnectionError, "ok")
    assert await ra.Hedge(5).call(script) == "ok"
    assert anyio.current_time() - start < 0.01


async def test_hedge_every_attempt_fails_last_to_fail_propagates() -> None:
    first = ConnectionError("first")
    second = ConnectionError("second")

    async def attempt(i: list[int]) -> None:
        i[0] += 1
        if i[0] == 1:
            await anyio.sleep(3)  # the first one fails last
            raise first
        await anyio.sleep(0)
        raise second

    with pytest.raises(ConnectionError) as info:
        await ra.Hedge(1).call(attempt, [0])
    assert info.value is first


async def test_hedge_each_attempt_runs_in_its_own_context_copy() -> None:
    import contextvars

    var: contextvars.ContextVar[int] = contextvars.ContextVar("var", default=0)
    seen: list[int] = []

    async def attempt() -> int:
        seen.append(var.get())
        var.set(len(seen))
        await anyio.sleep(10 if len(seen) == 1 else 1)
        return var.get()

    var.set(100)
    with ra.error_context(req="r"):
        assert await ra.Hedge(1).call(attempt) == 2
    assert seen == [100, 100]
    assert var.get() == 100


def test_hedge_is_async_only() -> None:
    assert not hasattr(rs, "Hedge")


# --- Pipeline --------------------------------------------------------------------------------


async def test_pipeline_outermost_first() -> None:
    breaker = ra.CircuitBreaker(consecutive_failures=2, open_for=30)
    guarded = ra.pipeline(
        ra.Fallback(value="fb"),
        ra.Retry(attempts=3, backoff=ra.backoff.constant(0)),
        breaker,
        ra.Bulkhead(2),
        ra.Timeout(2),
    )
    script = Script(ConnectionError)
    # Retry is inside Fallback: 2 real attempts open the breaker, the third is rejected
    # and the retry stops; the fallback then serves its value.
    assert await guarded.call(script) == "fb"
    assert script.calls == 2
    assert breaker.state is ra.BreakerState.OPEN
    start = anyio.current_time()

    async def slow() -> str:
        await anyio.sleep(10)
        return "late"

    breaker.reset()
    # Timeout is innermost: it bounds each attempt; the fallback catches the final timeout.
    assert await guarded.call(slow) == "fb"
    assert anyio.current_time() - start == pytest.approx(4)  # two 2 s attempts, then open


async def test_pipeline_order_matters_timeout_outside_retry_bounds_the_loop() -> None:
    outer = ra.pipeline(ra.Timeout(3), ra.Retry(attempts=5, backoff=ra.backoff.constant(0)))
    start = anyio.current_time()
    with pytest.raises(ra.DeadlineExceeded):
        await outer.call(anyio.sleep, 2 + 100)
    assert anyio.current_time() - start == pytest.approx(3)


async def test_pipeline_is_a_policy_decorator_and_call() -> None:
    guarded = ra.pipeline(ra.Retry(attempts=2, backoff=ra.backoff.constant(0)), ra.Timeout(1))

    @guarded
    async def fetch(x: int) -> int:
        """Doc."""
        await anyio.sleep(0)
        return x

    assert await fetch(3) == 3
    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Doc."
    assert await guarded.call(fetch, 4) == 4
    assert inspect.signature(fetch) == inspect.signature(fetch.__wrapped__)


def test_sync_pipeline_outermost_first() -> None:
    breaker = rs.CircuitBreaker(consecutive_failures=2)
    guarded = rs.pipeline(
        rs.Fallback(value="fb"), rs.Retry(attempts=3, backoff=ra.backoff.constant(0)), breaker
    )
    script = SyncScript(ConnectionError)
    assert guarded.call(script) == "fb"
    assert script.calls == 2

    @guarded
    def fetch() -> str:
        return "ok"

    assert fetch() == "fb"  # the breaker is open: the fallback answers
    breaker.reset()
    assert fetch() == "ok"


# --- Further clauses -------------------------------------------------------------------------


async def test_policy_is_reusable_and_shared_between_concurrent_tasks() -> None:
    retry = ra.Retry(attempts=3, backoff=ra.backoff.constant(1))
    results: list[object] = []

    async def run(script: Script) -> None:
        try:
            results.append(await retry.call(script))
        except ConnectionError as exc:
            results.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, Script("a"))
        tg.start_soon(run, Script(ConnectionError, "b"))
        tg.start_soon(run, Script(ConnectionError, ConnectionError, "c"))
        tg.start_soon(run, Script(ConnectionError))
    assert sorted(r for r in results if isinstance(r, str)) == ["a", "b", "c"]
    assert sum(isinstance(r, ConnectionError) for r in results) == 1
    snap = retry.metrics()
    assert snap.calls == 4
    assert snap.attempts == 1 + 2 + 3 + 3


async def test_breaker_forced_open_rejection_retry_after_is_none() -> None:
    breaker = ra.CircuitBreaker("b")
    breaker.force_open()
    with pytest.raises(ra.CircuitOpenError) as info:
        await breaker.call(ok)
    assert info.value.retry_after is None


async def test_breaker_same_shared_store_and_name_share_state() -> None:
    store = ra.stores.MemoryStore()
    a = ra.CircuitBreaker("dep", consecutive_failures=1, store=store)
    b = ra.CircuitBreaker("dep", consecutive_failures=1, store=store)
    other = ra.CircuitBreaker("other", consecutive_failures=1, store=store)
    with pytest.raises(ConnectionError):
        await a.call(Script(ConnectionError))
    assert b.state is ra.BreakerState.OPEN
    assert other.state is ra.BreakerState.CLOSED
    with pytest.raises(ra.CircuitOpenError):
        await b.call(ok)


async def test_bulkhead_adaptive_grows_while_latency_stays_at_no_load_level() -> None:
    bulkhead = ra.Bulkhead.adaptive(initial=4, algorithm="aimd", max_limit=50)

    async def steady() -> None:
        await anyio.sleep(0.01)

    for _ in range(30):
        async with anyio.create_task_group() as tg:
            for _ in range(bulkhead.limit):
                tg.start_soon(bulkhead.call, steady)
    assert bulkhead.limit > 4


async def test_bulkhead_codel_sheds_long_waiters_under_a_standing_queue() -> None:
    bulkhead = ra.Bulkhead(1, max_queue=100, queue="codel", codel_target=0.005, codel_interval=0.1)
    outcomes: list[str] = []

    async def work() -> None:
        await anyio.sleep(0.05)

    async def caller() -> None:
        try:
            await bulkhead.call(work)
            outcomes.append("ran")
        except ra.BulkheadFullError:
            outcomes.append("shed")

    async with anyio.create_task_group() as tg:
        for _ in range(40):
            tg.start_soon(caller)
    # FIFO would run all 40 (2 s of queueing); CoDel sheds those that waited past the interval.
    assert "shed" in outcomes
    assert "ran" in outcomes


def test_sync_retry_defaults_and_timeout() -> None:
    script = SyncScript(ConnectionError, "ok")
    assert rs.Retry(backoff=ra.backoff.constant(0)).call(script) == "ok"
    script = SyncScript(ValueError, "ok")
    with pytest.raises(ValueError):
        rs.Retry().call(script)
    assert script.calls == 1
    # A wait that would cross the loop's timeout re-raises the last error at once.
    script = SyncScript(ConnectionError)
    start = time.monotonic()
    with pytest.raises(ConnectionError):
        rs.Retry(attempts=5, timeout=30, backoff=ra.backoff.constant(60)).call(script)
    assert script.calls == 1
    assert time.monotonic() - start < 20
    on_result = rs.Retry(attempts=2, backoff=ra.backoff.constant(0), on_result=lambda r: r == 0)
    assert on_result.call(SyncScript(0, 1)) == 1
    assert on_result.call(SyncScript(0)) == 0


def test_sync_guarded_call_started_after_the_deadline_raises_at_once() -> None:
    with rs.deadline(0.01):
        time.sleep(0.05)  # a blocking call is never interrupted
        with pytest.raises(ra.DeadlineExceeded):
            rs.Bulkhead(1).call(sync_ok)


@pytest.mark.parametrize("mod", [ra, rs], ids=["async", "sync"])
def test_breaker_valid_ranges_edges(mod: Any) -> None:
    # Accepted edges of the documented ranges.
    mod.CircuitBreaker(failure_rate=1.0, slow_call_rate=1.0, min_calls=0, open_for=0)
    mod.CircuitBreaker(window=1)
    mod.CircuitBreaker(window=0.5, window_type="time")
    mod.CircuitBreaker(half_open_calls=1)
    # Rejected: a non-integer count window, a time window <= 0.
    with pytest.raises((ValueError, TypeError), match="window"):
        mod.CircuitBreaker(window=1.5)
    with pytest.raises((ValueError, TypeError), match="window"):
        mod.CircuitBreaker(window=0, window_type="time")
    with pytest.raises((ValueError, TypeError), match="slow_call_rate"):
        mod.CircuitBreaker(slow_call_rate=1.01)


async def test_retry_timeout_expiry_during_attempt_reports_the_timeout() -> None:
    with pytest.raises(ra.DeadlineExceeded) as info:
        await ra.Retry(attempts=5, timeout=timedelta(seconds=3)).call(anyio.sleep, 100)
    assert info.value.timeout == pytest.approx(3)


async def test_retry_budget_counts_every_retry_invocation_as_a_call() -> None:
    budget = ra.RetryBudget(ratio=0.2, min_per_second=0.0, ttl=10)
    retry = ra.Retry(attempts=10, budget=budget, backoff=ra.backoff.constant(0))
    for _ in range(10):
        await retry.call(ok)  # 10 first attempts, no retries
    script = Script(ConnectionError)
    with pytest.raises(ConnectionError):
        await retry.call(script)  # 11 calls: retries allowed <= 0.2 * 11 = 2.2
    assert script.calls == 3
    assert retry.metrics().budget_refusals == 1


async def test_breaker_half_open_closes_only_when_all_probes_succeed() -> None:
    breaker = ra.CircuitBreaker(consecutive_failures=1, open_for=5, half_open_calls=2)
    with pytest.raises(ConnectionError):
        await breaker.call(Script(ConnectionError))
    await anyio.sleep(5)
    assert await breaker.call(ok) == "ok"
    assert breaker.state is ra.BreakerState.HALF_OPEN
    with pytest.raises(ConnectionError):
        await breaker.call(Script(ConnectionError))
    assert breaker.state is ra.BreakerState.OPEN
    await anyio.sleep(5)
    await breaker.call(ok)
    await breaker.call(ok)
    assert breaker.state is ra.BreakerState.CLOSED


async def test_context_field_closer_to_raise_site_wins_over_outer_policy() -> None:
    inner = ra.Retry(attempts=2, backoff=ra.backoff.constant(0), name="inner")
    outer = ra.Retry(attempts=1, name="outer")
    with pytest.raises(ConnectionError) as info:
        with ra.error_context(policy="block"):
            await outer.call(inner.call, Script(ConnectionError))
    ctx = ra.context_of(info.value)
    assert ctx is not None
    assert ctx["policy"] == "inner"
    assert ctx["attempt"] == 2
    notes = [
        n for n in getattr(info.value, "__notes__", []) if n.startswith("resilient_async context:")
    ]
    assert len(notes) == 1


async def test_every_policy_sync_callable_is_not_retried() -> None:
    calls = 0

    def plain() -> str:
        nonlocal calls
        calls += 1
        return "x"

    with pytest.raises(TypeError, match=r"resilient_async\.sync"):
        await ra.Retry(attempts=5).call(plain)
    assert calls <= 1
    with pytest.raises(TypeError, match=r"resilient_async\.sync"):
        ra.Retry()(plain)  # decorating a sync function is refused at decoration time
