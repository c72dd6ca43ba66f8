"""Shared policies keep the plain ones' checks: flavours, sync deadlines, settings, types.

Several `RedisStore`s on one prefix stand for several processes (each store keeps its own
view of the server's state, as a process does); the subprocess tests live in
test_redis_processes.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import warnings
from collections.abc import AsyncIterator, Iterator

import pytest

import resilient_async as ra
import resilient_async.sync as ra_sync
from resilient_async.context import context_of
from resilient_async.instrumentation import hooks
from resilient_async.stores import RedisStore

from ..helpers import Recorder, asyncio_only
from ..redis_helpers import URL, prefix_on

BreakerState = ra.BreakerState
SAFE = 2.0  # generous: a loaded machine must not degrade a store these tests keep shared


@pytest.fixture
def prefix() -> Iterator[str]:
    with prefix_on() as fresh:
        yield fresh


@contextlib.asynccontextmanager
async def open_stores(prefix: str, count: int) -> AsyncIterator[list[RedisStore]]:
    made = [RedisStore(URL, prefix=prefix, timeout=SAFE) for _ in range(count)]
    try:
        yield made
    finally:
        for store in made:
            await store.close()


@contextlib.contextmanager
def open_sync_stores(prefix: str, count: int) -> Iterator[list[ra_sync.RedisStore]]:
    made = [ra_sync.RedisStore(URL, prefix=prefix, timeout=SAFE) for _ in range(count)]
    try:
        yield made
    finally:
        for store in made:
            store.close()


async def ok() -> str:
    return "ok"


async def down() -> None:
    raise ConnectionError("down")


def sync_ok() -> str:
    return "ok"


def sync_down() -> None:
    raise ConnectionError("down")


# --- a shared breaker is a CircuitBreaker ---------------------------------------------------


@asyncio_only
@pytest.mark.redis
@pytest.mark.anyio
async def test_shared_policies_are_the_plain_classes(prefix: str) -> None:
    # Regression: the class of the instance was swapped for a private subclass.
    async with open_stores(prefix, 1) as (store,):
        breaker = ra.CircuitBreaker("svc", store=store)
        assert type(breaker) is ra.CircuitBreaker
        assert await breaker.call(ok) == "ok"
        limiter = ra.RateLimiter(10, name="api", store=store)
        assert type(limiter) is ra.RateLimiter
        assert await limiter.call(ok) == "ok"
        with pytest.raises(TypeError, match="cannot take tokens from a RateLimiter with a shared"):
            limiter.try_acquire()
    with open_sync_stores(prefix, 1) as (sync_store,):
        sync_breaker = ra_sync.CircuitBreaker("svc", store=sync_store)
        assert type(sync_breaker) is ra_sync.CircuitBreaker
        assert sync_breaker.call(sync_ok) == "ok"


# --- the wrong flavour of callable ----------------------------------------------------------


@asyncio_only
@pytest.mark.redis
@pytest.mark.anyio
async def test_a_shared_breaker_refuses_a_sync_callable_naming_the_twin(prefix: str) -> None:
    # Regression: the interpreter's bare "can't be used in 'await' expression", recorded as
    # a failure of the dependency; a sync function that raised counted as one too.
    async with open_stores(prefix, 1) as (store,):
        breaker = ra.CircuitBreaker("svc", store=store, min_calls=1, window=2)
        with pytest.raises(TypeError, match=r"CircuitBreaker\.call needs an async callable"
                           r".*sync_ok.*resilient_async\.sync\.CircuitBreaker"):  # fmt: skip
            await breaker.call(sync_ok)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"sync_down is a sync function"):
            await breaker.call(sync_down)  # type: ignore[arg-type]
        assert breaker.metrics().calls == 0  # a misuse counts as nothing
        assert breaker.state is BreakerState.CLOSED


@pytest.mark.redis
def test_a_sync_shared_breaker_refuses_an_async_callable_naming_the_twin(prefix: str) -> None:
    # Regression: the coroutine was returned unawaited and recorded as a success.
    with open_sync_stores(prefix, 1) as (store,):
        breaker = ra_sync.CircuitBreaker("svc", store=store, min_calls=1, window=2)
        with warnings.catch_warnings(record=True) as warned, pytest.raises(
            TypeError, match=r"CircuitBreaker\.call needs a sync callable.*\bok\b.*"
            r"resilient_async\.CircuitBreaker"
        ):  # fmt: skip
            warnings.simplefilter("always")
            breaker.call(ok)  # type: ignore[arg-type]
        gc.collect()
        assert not [w for w in warned if "never awaited" in str(w.message)]  # it was closed
        assert breaker.metrics().calls == 0


# --- sync deadlines -------------------------------------------------------------------------


class FakeClock:
    """Stands in for the sync backend's monotonic clock (the server keeps its own time)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    from resilient_async._sync import _backend

    monkeypatch.setattr(_backend, "current_time", fake.monotonic)
    monkeypatch.setattr(_backend.time, "monotonic", fake.monotonic)
    return fake


@pytest.mark.redis
def test_a_sync_shared_breaker_refuses_what_starts_after_the_deadline(
    prefix: str, clock: FakeClock
) -> None:
    # Regression: the shared breaker ran the call (and its guard the block) past the deadline.
    calls = 0

    def work() -> str:
        nonlocal calls
        calls += 1
        return "done"

    with open_sync_stores(prefix, 1) as (store,):
        breaker = ra_sync.CircuitBreaker("svc", store=store)
        with ra_sync.deadline(1.0):
            clock.now += 2.0
            with pytest.raises(ra_sync.DeadlineExceeded):
                breaker.call(work)
            with pytest.raises(ra_sync.DeadlineExceeded), breaker:
                work()
            with pytest.raises(ra_sync.DeadlineExceeded):
                ra_sync.pipeline(breaker).call(work)
        assert calls == 0
        assert breaker.metrics().calls == 0


@pytest.mark.redis
def test_a_sync_shared_breaker_keeps_a_result_completed_after_the_deadline(
    prefix: str, clock: FakeClock
) -> None:
    recorder = Recorder()

    def charge() -> str:
        clock.now += 2.0  # the call itself overruns the deadline
        return "charged"

    with open_sync_stores(prefix, 1) as (store,):
        breaker = ra_sync.CircuitBreaker("svc", store=store)
        with hooks(recorder), ra_sync.deadline(1.0):
            assert breaker.call(charge) == "charged"
        (event,) = recorder.of("timeout.overrun")
        assert event.overrun == pytest.approx(1.0)
        assert breaker.metrics().calls == 1  # recorded as the success it was


# --- consecutive_failures across processes ----------------------------------------------


@asyncio_only
@pytest.mark.redis
@pytest.mark.anyio
async def test_consecutive_failures_count_across_processes(prefix: str) -> None:
    async with open_stores(prefix, 2) as stores:
        first, second = (
            ra.CircuitBreaker("db", store=s, consecutive_failures=3, open_for=60) for s in stores
        )
        with pytest.raises(ConnectionError):
            await first.call(down)
        with pytest.raises(ConnectionError):
            await second.call(down)
        assert await first.call(ok) == "ok"  # a success breaks the run
        for breaker in (second, first, second):
            with pytest.raises(ConnectionError):
                await breaker.call(down)
        # Three failures in a row, across both: open for both (`first` reads the server).
        assert first.state is BreakerState.OPEN
        with pytest.raises(ra.CircuitOpenError):
            await first.call(ok)
        metrics = second.metrics()
        assert (metrics.state, metrics.calls, metrics.failures) == (BreakerState.OPEN, 3, 3)
        # Another count in another process is another breaker: refused at its first call.
        async with open_stores(prefix, 1) as (third_store,):
            other = ra.CircuitBreaker("db", store=third_store, consecutive_failures=4)
            with pytest.raises(
                ValueError, match=r"breaker 'db'.*other settings.*window=3.*window=4"
            ):
                await other.call(ok)


@pytest.mark.redis
def test_sync_consecutive_failures_count_across_processes(prefix: str) -> None:
    with open_sync_stores(prefix, 2) as stores:
        first, second = (
            ra_sync.CircuitBreaker("db", store=s, consecutive_failures=2, open_for=60)
            for s in stores
        )
        with pytest.raises(ConnectionError):
            first.call(sync_down)
        with pytest.raises(ConnectionError):
            second.call(sync_down)
        assert first.state is BreakerState.OPEN
        with pytest.raises(ra_sync.CircuitOpenError):
            first.call(sync_ok)


# --- limiters and budgets configured differently ------------------------------------------


@asyncio_only
@pytest.mark.redis
@pytest.mark.anyio
async def test_limiters_with_other_settings_on_one_name_are_refused(prefix: str) -> None:
    # Regression: each step applied the settings of whoever made it.
    async with open_stores(prefix, 2) as (first_store, second_store):
        first = ra.RateLimiter(10, per=1.0, burst=5, name="api", store=first_store)
        other = ra.RateLimiter(10, per=1.0, burst=50, name="api", store=second_store)
        await first.acquire()
        with pytest.raises(ValueError, match=r"limiter 'api'.*other settings.*burst"):
            await other.acquire()
        with pytest.raises(ValueError, match="other settings"):
            await other.call(ok)
        await first.acquire()  # the one configured first keeps working


@asyncio_only
@pytest.mark.redis
@pytest.mark.anyio
async def test_retry_budgets_with_other_settings_on_one_name_are_refused(prefix: str) -> None:
    async with open_stores(prefix, 2) as (first_store, second_store):
        first = ra.RetryBudget(0.1, 1.0, 10.0, name="api", store=first_store)
        other = ra.RetryBudget(0.5, 1.0, 10.0, name="api", store=second_store)
        retry = ra.Retry(attempts=2, backoff=ra.backoff.constant(0.0), budget=first)
        with pytest.raises(ConnectionError):
            await retry.call(down)  # its withdrawal stores the settings
        misconfigured = ra.Retry(attempts=2, backoff=ra.backoff.constant(0.0), budget=other)
        with pytest.raises(ValueError, match=r"retry budget 'api'.*other settings.*ratio"):
            await misconfigured.call(down)


@pytest.mark.redis
def test_sync_limiters_and_budgets_with_other_settings_are_refused(prefix: str) -> None:
    with open_sync_stores(prefix, 2) as (first_store, second_store):
        ra_sync.RateLimiter(10, burst=5, name="api", store=first_store).acquire()
        other = ra_sync.RateLimiter(20, burst=5, name="api", store=second_store)
        with pytest.raises(ValueError, match=r"limiter 'api'.*other settings.*rate"):
            other.acquire()
        budget = ra_sync.RetryBudget(0.1, 1.0, 10.0, name="api", store=first_store)
        retry = ra_sync.Retry(attempts=2, backoff=ra.backoff.constant(0.0), budget=budget)
        with pytest.raises(ConnectionError):
            retry.call(sync_down)
        longer = ra_sync.RetryBudget(0.1, 1.0, 20.0, name="api", store=second_store)
        misconfigured = ra_sync.Retry(attempts=2, backoff=ra.backoff.constant(0.0), budget=longer)
        with pytest.raises(ValueError, match=r"retry budget 'api'.*other settings.*ttl"):
            misconfigured.call(sync_down)


# --- the shared limiter keeps the same checks -------------------------------------------


@asyncio_only
@pytest.mark.redis
@pytest.mark.anyio
async def test_a_shared_limiter_refuses_a_sync_callable_naming_the_twin(prefix: str) -> None:
    async with open_stores(prefix, 1) as (store,):
        limiter = ra.RateLimiter(100, name="api", store=store)
        with pytest.raises(TypeError, match=r"RateLimiter\.call needs an async callable.*sync_ok"
                           r".*resilient_async\.sync\.RateLimiter"):  # fmt: skip
            await limiter.call(sync_ok)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"sync_down is a sync function"):
            await limiter.call(sync_down)  # type: ignore[arg-type]


@pytest.mark.redis
def test_a_sync_shared_limiter_refuses_an_async_callable_and_late_starts(
    prefix: str, clock: FakeClock
) -> None:
    with open_sync_stores(prefix, 1) as (store,):
        limiter = ra_sync.RateLimiter(100, name="api", store=store)
        with warnings.catch_warnings(record=True) as warned, pytest.raises(
            TypeError,
            match=r"RateLimiter\.call needs a sync callable.*resilient_async\.RateLimiter\b",
        ):  # fmt: skip
            warnings.simplefilter("always")
            limiter.call(ok)  # type: ignore[arg-type]
        gc.collect()
        assert not [w for w in warned if "never awaited" in str(w.message)]
        with ra_sync.deadline(1.0):
            clock.now += 2.0
            with pytest.raises(ra_sync.DeadlineExceeded):
                limiter.call(sync_ok)
            with pytest.raises(ra_sync.DeadlineExceeded):
                limiter.acquire()
            with pytest.raises(ra_sync.DeadlineExceeded), limiter:
                pass


@asyncio_only
@pytest.mark.redis
@pytest.mark.anyio
async def test_a_misused_probe_gives_its_permit_back(prefix: str) -> None:
    async with open_stores(prefix, 1) as (store,):
        breaker = ra.CircuitBreaker("svc", store=store, min_calls=1, window=1, open_for=0.2)
        with pytest.raises(ConnectionError):
            await breaker.call(down)
        await asyncio.sleep(0.3)  # the server's clock: half-open, one probe permit
        with pytest.raises(TypeError, match="sync callable"):
            await breaker.call(sync_ok)  # type: ignore[arg-type]
        assert await breaker.call(ok) == "ok"  # the permit came back: this probe closes it
        assert breaker.state is BreakerState.CLOSED


@pytest.mark.redis
def test_a_sync_misused_probe_gives_its_permit_back(prefix: str) -> None:
    with open_sync_stores(prefix, 1) as (store,):
        breaker = ra_sync.CircuitBreaker("svc", store=store, min_calls=1, window=1, open_for=0.2)
        with pytest.raises(ConnectionError):
            breaker.call(sync_down)
        time.sleep(0.3)
        with pytest.raises(TypeError, match="async callable"):
            breaker.call(ok)  # type: ignore[arg-type]
        assert breaker.call(sync_ok) == "ok"
        assert breaker.state is BreakerState.CLOSED


@asyncio_only
@pytest.mark.redis
@pytest.mark.anyio
async def test_a_failing_call_makes_no_blocking_read(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression: the error context of every failed call was read from the server with a
    # blocking round trip, stalling the event loop.
    reads = 0
    real_read = RedisStore.read

    def counted(self: RedisStore, *args: object) -> object:
        nonlocal reads
        reads += 1
        return real_read(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(RedisStore, "read", counted)
    async with open_stores(prefix, 1) as (store,):
        breaker = ra.CircuitBreaker("svc", store=store, min_calls=2, window=2, open_for=60)
        with pytest.raises(ConnectionError) as first:
            await breaker.call(down)
        with pytest.raises(ConnectionError) as second:
            await breaker.call(down)  # opens it
        assert reads == 0
        assert context_of(first.value)["breaker_state"] == "closed"
        assert context_of(second.value)["breaker_state"] == "open"


@asyncio_only
@pytest.mark.redis
@pytest.mark.anyio
async def test_a_hedge_on_a_budget_with_other_settings_raises_the_value_error(
    prefix: str,
) -> None:
    # Regression: the budget's refusal surfaced wrapped in the hedge's ExceptionGroup.
    async def slow() -> str:
        await asyncio.sleep(0.05)
        return "done"

    async with open_stores(prefix, 2) as (first_store, second_store):
        first = ra.RetryBudget(0.0, 1.0, 10.0, name="hedges", store=first_store)
        other = ra.RetryBudget(0.5, 1.0, 10.0, name="hedges", store=second_store)
        assert await ra.Hedge(0.01, max_attempts=2, budget=first).call(slow) == "done"
        with pytest.raises(ValueError, match=r"retry budget 'hedges'.*other settings"):
            await ra.Hedge(0.01, max_attempts=2, budget=other).call(slow)
