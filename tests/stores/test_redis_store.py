"""RedisStore in one process: construction, the shared breaker and limiter, keys, flavours."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
import redis
import redis.asyncio

import resilient_async as ra
import resilient_async.sync as ra_sync
from resilient_async._async.ports import BreakerConfig, MemoryBreakerPort
from resilient_async._async.redis_ports import RedisBreakerPort
from resilient_async._core.breaker import REJECTED, BreakerCore
from resilient_async._core.window import CountWindow
from resilient_async.instrumentation import Event, hooks
from resilient_async.stores import MemoryStore, RedisStore

from ..helpers import asyncio_only
from ..redis_helpers import URL, prefix_on

BreakerState = ra.BreakerState

# Generous: a loaded machine must not degrade a store these tests mean to keep shared.
SAFE = 2.0


@pytest.fixture
def prefix() -> Iterator[str]:
    with prefix_on() as fresh:
        yield fresh


@contextlib.asynccontextmanager
async def open_stores(prefix: str, count: int) -> AsyncIterator[list[RedisStore]]:
    """`count` stores on one prefix (as `count` processes would have), closed afterwards."""
    made = [RedisStore(URL, prefix=prefix, timeout=SAFE) for _ in range(count)]
    try:
        yield made
    finally:
        for store in made:
            await store.close()


async def ok() -> str:
    return "ok"


async def down() -> None:
    raise ConnectionError("down")


# --- bad input at construction (no server needed) ---------------------------------------


@pytest.mark.parametrize(
    "url",
    ["http://localhost:6379", "localhost:6379", "redis://", "redis://host:port", "redis://h:99999",
     "redis://localhost/db1", ""],
)  # fmt: skip
def test_a_malformed_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="client_or_url"):
        RedisStore(url)
    with pytest.raises(ValueError, match="client_or_url"):
        ra_sync.RedisStore(url)


def test_a_client_of_the_wrong_type_is_refused() -> None:
    sync_client = redis.Redis()
    async_client = redis.asyncio.Redis()
    with pytest.raises(TypeError, match=r"redis\.asyncio\.Redis client"):
        RedisStore(sync_client)
    with pytest.raises(TypeError, match=r"redis\.Redis client"):
        ra_sync.RedisStore(async_client)
    with pytest.raises(TypeError, match="client_or_url"):
        RedisStore(42)
    sync_client.close()


@pytest.mark.parametrize("prefix", ["", " ", "my app", "tab\there", "a{b}", "\n"])
def test_an_empty_prefix_or_one_with_whitespace_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix must be a non-empty str"):
        RedisStore(URL, prefix=prefix, timeout=SAFE)


def test_a_prefix_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(TypeError, match="prefix"):
        RedisStore(URL, prefix=None)  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", [0, 0.0, -1, float("nan"), float("inf"), timedelta(0)])
def test_a_timeout_not_above_zero_is_refused(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout must be a finite number of seconds > 0"):
        RedisStore(URL, timeout=timeout)


def test_a_timeout_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(TypeError, match="timeout"):
        RedisStore(URL, timeout="1")  # type: ignore[arg-type]
    assert RedisStore(URL, timeout=timedelta(milliseconds=250)).timeout == 0.25


def test_policies_of_the_other_flavour_are_refused() -> None:
    with pytest.raises(TypeError, match="serves the async policies"):
        ra_sync.CircuitBreaker("svc", store=RedisStore(URL))
    with pytest.raises(TypeError, match="serves the sync policies"):
        ra.RateLimiter(5, name="api", store=ra_sync.RedisStore(URL))


def test_a_name_with_braces_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot hold braces"):
        ra.CircuitBreaker("a{b}", store=RedisStore(URL))


def test_memory_state_is_never_shared_between_flavours() -> None:
    store = MemoryStore()
    ra.CircuitBreaker("db", store=store)
    with pytest.raises(ValueError, match="async policies; sync policies cannot share"):
        ra_sync.CircuitBreaker("db", store=store)
    ra_sync.RetryBudget(name="db", store=store)
    with pytest.raises(ValueError, match="sync policies; async policies cannot share"):
        ra.RetryBudget(name="db", store=store)


# --- the shared breaker in one process ----------------------------------------------------


@asyncio_only
@pytest.mark.redis
@pytest.mark.anyio
async def test_two_stores_share_one_breaker(prefix: str) -> None:
    first_store, second_store = (
        RedisStore(URL, prefix=prefix, timeout=SAFE),
        RedisStore(URL, prefix=prefix, timeout=SAFE),
    )
    settings = {"min_calls": 2, "window": 4, "open_for": 0.3}
    first = ra.CircuitBreaker("svc", store=first_store, **settings)
    second = ra.CircuitBreaker("svc", store=second_store, **settings)
    assert await first.call(ok) == "ok"
    with pytest.raises(ConnectionError):
        await second.call(down)  # 2 calls, 1 failure: the rate reaches 0.5
    # `first` last saw CLOSED: it admits one more call on that view, which counts as nothing
    # on the server (its generation has passed) and tells it the breaker is open.
    assert await first.call(ok) == "ok"
    assert first.state is BreakerState.OPEN
    with pytest.raises(ra.CircuitOpenError) as caught:
        await first.call(ok)
    assert 0.0 < caught.value.retry_after <= 0.3
    assert first.state is BreakerState.OPEN
    snapshot = first.metrics()
    assert (snapshot.calls, snapshot.failures) == (2, 1)
    # A breaker that has made no step yet reads the server's state (a blocking read)...
    async with open_stores(prefix, 1) as (third_store,):
        third = ra.CircuitBreaker("svc", store=third_store, **settings)
        assert third.state is BreakerState.OPEN
        assert third.metrics().failures == 1
    # ...except on a store given an asyncio client, which has no blocking client to read
    # with: it shows what it last saw (nothing yet: closed).
    client = redis.asyncio.Redis.from_url(URL)
    given = RedisStore(client, prefix=prefix, timeout=SAFE)
    assert ra.CircuitBreaker("svc", store=given, **settings).state is BreakerState.CLOSED
    await client.aclose()
    await asyncio.sleep(0.35)
    assert second.state is BreakerState.HALF_OPEN  # from the view, before any call
    assert await second.call(ok) == "ok"  # the probe closes it
    assert await first.call(ok) == "ok"
    assert first.state is BreakerState.CLOSED
    await first_store.close()
    await second_store.close()


@asyncio_only
@pytest.mark.redis
@pytest.mark.anyio
async def test_manual_control_reaches_other_processes_with_the_next_step(prefix: str) -> None:
    stores = [RedisStore(URL, prefix=prefix, timeout=SAFE) for _ in range(2)]
    first, second = (ra.CircuitBreaker("svc", store=s) for s in stores)
    events: list[Event] = []
    with hooks(events.append):
        first.force_open()
        assert first.state is BreakerState.FORCED_OPEN
        with pytest.raises(ra.CircuitOpenError) as caught:
            await first.call(ok)
        assert caught.value.retry_after is None
        with pytest.raises(ra.CircuitOpenError):
            await second.call(ok)
        second.reset()
        assert await second.call(ok) == "ok"
        assert await first.call(ok) == "ok"  # its view asks again: closed
    changes = [(e.fields["old_state"], e.fields["new_state"]) for e in events
               if e.kind == "breaker.state_changed"]  # fmt: skip
    assert changes == [
        (BreakerState.CLOSED, BreakerState.FORCED_OPEN),
        (BreakerState.FORCED_OPEN, BreakerState.CLOSED),
    ]
    for store in stores:
        await store.close()


@asyncio_only
@pytest.mark.redis
@pytest.mark.anyio
async def test_a_cancelled_probe_frees_its_permit_on_the_server(prefix: str) -> None:
    store = RedisStore(URL, prefix=prefix, timeout=SAFE)
    breaker = ra.CircuitBreaker("svc", store=store, min_calls=1, open_for=0.05)
    with pytest.raises(ConnectionError):
        await breaker.call(down)
    await asyncio.sleep(0.1)
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.sleep(30)

    probe = asyncio.create_task(breaker.call(hang))
    await started.wait()
    with pytest.raises(ra.CircuitOpenError):
        await breaker.call(ok)  # the one permit is taken
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert await breaker.call(ok) == "ok"  # the permit came back: this probe closes it
    assert breaker.state is BreakerState.CLOSED
    await store.close()


@asyncio_only
@pytest.mark.redis
@pytest.mark.anyio
async def test_a_time_window_and_slow_calls_work_on_the_server(prefix: str) -> None:
    store = RedisStore(URL, prefix=prefix, timeout=SAFE)
    breaker = ra.CircuitBreaker(
        "svc", store=store, window=5.0, window_type="time", min_calls=3,
        slow_call_duration=0.02, slow_call_rate=0.5,
    )  # fmt: skip

    async def slow() -> str:
        await asyncio.sleep(0.03)
        return "slow"

    assert await breaker.call(ok) == "ok"
    assert await breaker.call(slow) == "slow"
    assert breaker.state is BreakerState.CLOSED
    assert await breaker.call(slow) == "slow"  # 2 slow of 3
    assert breaker.state is BreakerState.OPEN
    assert breaker.metrics().slow_calls == 2
    await store.close()


@asyncio_only
@pytest.mark.redis
@pytest.mark.anyio
async def test_keys_live_under_the_prefix_in_one_hash_tag_and_expire(prefix: str) -> None:
    store = RedisStore(URL, prefix=prefix, timeout=SAFE)
    breaker = ra.CircuitBreaker("svc", store=store, min_calls=1)
    limiter = ra.RateLimiter(5, name="api", store=store)
    with pytest.raises(ConnectionError):
        await breaker.call(down)
    await limiter.acquire()
    client = redis.asyncio.Redis.from_url(URL)
    keys = sorted([key.decode() async for key in client.scan_iter(f"{prefix}*")])
    assert keys == [
        f"{prefix}:{{breaker:svc}}:state",
        f"{prefix}:{{breaker:svc}}:window",
        f"{prefix}:{{limiter:api}}:bucket",
    ]
    for key in keys:
        assert 0 < await client.ttl(key) <= 3700
    await client.aclose()
    await store.close()


@asyncio_only
@pytest.mark.redis
@pytest.mark.anyio
async def test_scripts_are_loaded_again_after_the_server_lost_them(prefix: str) -> None:
    store = RedisStore(URL, prefix=prefix, timeout=SAFE)
    breaker = ra.CircuitBreaker("svc", store=store, min_calls=1)
    assert await breaker.call(ok) == "ok"
    client = redis.asyncio.Redis.from_url(URL)
    await client.script_flush()
    await client.aclose()
    with pytest.raises(ConnectionError):
        await breaker.call(down)  # NOSCRIPT: reloaded, and the step still happens
    assert breaker.state is BreakerState.OPEN
    assert not store.degraded
    await store.close()


@asyncio_only
@pytest.mark.redis
@pytest.mark.anyio
async def test_breakers_with_other_settings_on_one_key_are_refused(prefix: str) -> None:
    stores = [RedisStore(URL, prefix=prefix, timeout=SAFE) for _ in range(2)]
    assert await ra.CircuitBreaker("svc", store=stores[0]).call(ok) == "ok"
    other = ra.CircuitBreaker("svc", store=stores[1], open_for=5.0)
    with pytest.raises(ValueError, match="must configure a shared breaker the same way"):
        await other.call(ok)
    for store in stores:
        await store.close()


@asyncio_only
@pytest.mark.redis
@pytest.mark.anyio
async def test_a_pipeline_runs_a_shared_breaker_through_its_call(prefix: str) -> None:
    store = RedisStore(URL, prefix=prefix, timeout=SAFE)
    breaker = ra.CircuitBreaker("svc", store=store, min_calls=1)
    guarded = ra.pipeline(ra.Fallback("fallback"), ra.Timeout(5), breaker, ra.Bulkhead(2))
    assert await guarded.call(ok) == "ok"
    assert await guarded.call(down) == "fallback"
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(ra.CircuitOpenError):
        async with breaker:
            pass
    await store.close()


# --- the shared limiter in one process ----------------------------------------------------


@asyncio_only
@pytest.mark.redis
@pytest.mark.anyio
async def test_limiters_share_one_bucket_and_reject_or_wait(prefix: str) -> None:
    stores = [RedisStore(URL, prefix=prefix, timeout=SAFE) for _ in range(2)]
    first = ra.RateLimiter(10, burst=2, name="api", store=stores[0])
    second = ra.RateLimiter(10, burst=2, name="api", store=stores[1], max_wait=1.0)
    await first.acquire()
    await second.acquire()
    with pytest.raises(ra.RateLimitedError) as caught:
        await first.acquire()
    assert 0.0 < caught.value.retry_after <= 0.1
    with pytest.raises(TypeError, match="try_acquire"):
        first.try_acquire()
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with second:  # waits for its reservation
        pass
    assert loop.time() - start >= 0.05
    assert second.queued == 0
    with pytest.raises(ValueError, match="tokens"):
        await first.acquire(3)
    for store in stores:
        await store.close()


@asyncio_only
@pytest.mark.redis
@pytest.mark.anyio
async def test_a_cancelled_waiter_gives_its_tokens_back(prefix: str) -> None:
    store = RedisStore(URL, prefix=prefix, timeout=SAFE)
    limiter = ra.RateLimiter(1, per=10.0, burst=1, name="api", store=store, max_wait=30)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.05)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    other = ra.RateLimiter(1, per=10.0, burst=1, name="api", store=store, max_wait=0)
    with pytest.raises(ra.RateLimitedError) as caught:
        await other.acquire()
    assert caught.value.retry_after <= 10.0  # not 20 s: the cancelled reservation was returned
    await store.close()


# --- the shared retry budget in one process ------------------------------------------------


@asyncio_only
@pytest.mark.redis
@pytest.mark.anyio
async def test_retry_loops_on_two_stores_draw_on_one_budget(prefix: str) -> None:
    events: list[Event] = []
    async with open_stores(prefix, 2) as stores:
        # ratio 0, floor 2 per 10 s: two retries in all, through either store.
        budgets = [ra.RetryBudget(0.0, 0.2, 10.0, name="api", store=s) for s in stores]
        assert budgets[0].available() == 2.0  # nothing asked yet: the floor
        policies = [
            ra.Retry(attempts=3, backoff=ra.backoff.constant(0.0), budget=b) for b in budgets
        ]
        calls = 0

        async def failing() -> None:
            nonlocal calls
            calls += 1
            raise ConnectionError("down")

        with hooks(events.append):
            with pytest.raises(ConnectionError):
                await policies[0].call(failing)  # 1 call + 2 retries: the budget is spent
            with pytest.raises(ConnectionError):
                await policies[1].call(failing)  # no retry left
            attempts = 0
            with pytest.raises(ConnectionError):
                async for attempt in policies[1].attempts():
                    attempts += 1
                    with attempt:
                        await failing()
        assert calls == 5
        assert attempts == 1
        assert budgets[1].available() == 0.0
        stops = [e.fields["stop_reason"] for e in events if e.kind == "retry.gave_up"]
        assert stops == ["attempts", "budget", "budget"]


@asyncio_only
@pytest.mark.redis
@pytest.mark.anyio
async def test_a_hedge_draws_on_a_shared_budget(prefix: str) -> None:
    async with open_stores(prefix, 1) as (store,):
        budget = ra.RetryBudget(0.0, 0.1, 10.0, name="hedges", store=store)  # one extra
        hedge = ra.Hedge(0.01, max_attempts=3, budget=budget)
        started = 0

        async def slow() -> str:
            # The first attempt never ends; the hedge ends the call after a margin long
            # enough for a third attempt to start, had the budget allowed it, even when a
            # loaded machine makes each Redis step slow.
            nonlocal started
            started += 1
            if started == 1:
                await asyncio.Event().wait()
            if started == 2:
                await asyncio.sleep(1.0)
                return "done"
            return "third attempt"

        assert await hedge.call(slow) == "done"
        assert started == 2  # the budget allowed one hedge, not two


# --- trio -------------------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.anyio
async def test_on_trio_the_asyncio_store_is_a_clear_error(
    prefix: str, anyio_backend: tuple[str, object]
) -> None:
    store = RedisStore(URL, prefix=prefix, timeout=SAFE)
    breaker = ra.CircuitBreaker("svc", store=store)
    limiter = ra.RateLimiter(5, name="api", store=store)
    retry = ra.Retry(budget=ra.RetryBudget(name="api", store=store))
    if anyio_backend[0] == "asyncio":
        assert await breaker.call(ok) == "ok"
        await limiter.acquire()
        assert await retry.call(ok) == "ok"
    else:
        with pytest.raises(RuntimeError, match="runs only on asyncio, not on trio"):
            await breaker.call(ok)
        with pytest.raises(RuntimeError, match="runs only on asyncio, not on trio"):
            await limiter.acquire()
        with pytest.raises(RuntimeError, match="runs only on asyncio, not on trio"):
            await retry.call(ok)
    assert not store.degraded  # a misuse, not an outage: nothing falls back silently
    if anyio_backend[0] == "asyncio":
        await store.close()


# --- the sync twin from threads ----------------------------------------------------------


@pytest.mark.redis
def test_sync_breakers_in_threads_admit_exactly_half_open_calls(prefix: str) -> None:
    stores = [ra_sync.RedisStore(URL, prefix=prefix, timeout=2.0) for _ in range(2)]
    settings = {"min_calls": 1, "open_for": 0.2, "half_open_calls": 3}
    breakers = [ra_sync.CircuitBreaker("svc", store=s, **settings) for s in stores]

    def fail() -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        breakers[0].call(fail)
    assert breakers[1].state is BreakerState.OPEN  # read from the server, before any call
    threading.Event().wait(0.3)
    admitted: list[int] = []
    release = threading.Event()
    barrier = threading.Barrier(24)

    def probe(index: int) -> None:
        admitted.append(index)
        release.wait(10)

    def worker(index: int) -> None:
        barrier.wait()
        with contextlib.suppress(ra_sync.CircuitOpenError):
            breakers[index % 2].call(probe, index)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(24)]
    for thread in threads:
        thread.start()
    while len(admitted) < 3 and any(t.is_alive() for t in threads):
        threading.Event().wait(0.01)
    threading.Event().wait(0.2)
    release.set()
    for thread in threads:
        thread.join()
    assert len(admitted) == 3
    for store in stores:
        assert not store.degraded
        store.close()


# --- the server's breaker against the pure core ---------------------------------------------


@asyncio_only
@pytest.mark.redis
@pytest.mark.anyio
@pytest.mark.parametrize("seed", range(6))
async def test_the_breaker_script_follows_the_pure_core(prefix: str, seed: int) -> None:
    """Random admissions, outcomes and cancellations: the same decisions, tickets, states.

    `open_for=0` and a long probe timeout take the clocks out of the comparison (the script
    reads the server's, the core is given 0.0): only the rules are compared.
    """
    config = BreakerConfig("count", 6, 0.5, 3, 0.0, 2, None, 1.0, 1000.0)
    core = BreakerCore(
        CountWindow(6), failure_rate=0.5, min_calls=3, open_for=0.0, half_open_calls=2,
        slow_call_rate=1.0, probe_timeout=1000.0,
    )  # fmt: skip
    async with open_stores(prefix, 1) as (store,):
        local = MemoryBreakerPort(BreakerCore(CountWindow(6), failure_rate=0.5, min_calls=3,
                                              open_for=0.0, half_open_calls=2, slow_call_rate=1.0,
                                              probe_timeout=1000.0))  # fmt: skip
        port = RedisBreakerPort(store, "model", f"{prefix}:{{breaker:model}}", config, local)
        rng = random.Random(seed)
        held: list[int] = []
        for _ in range(80):
            roll = rng.random()
            if roll < 0.45 or not held:
                expected = core.acquire(0.0)
                got = await port.acquire(0.0)
                assert (got.ticket == REJECTED) == (expected.ticket == REJECTED)
                if expected.ticket != REJECTED:
                    assert -2 - got.ticket == expected.ticket
                    held.append(expected.ticket)
                assert got.transitions == expected.transitions
            else:
                ticket = held.pop(rng.randrange(len(held)))
                if roll < 0.9:
                    failed = rng.random() < 0.5
                    if failed:
                        expected_t = core.on_failure(ticket, 0.0)
                    else:
                        expected_t = core.on_success(ticket, 0.0)
                    got_t = await port.record(-2 - ticket, 0.0, failed, False)
                else:
                    expected_t = core.on_cancel(ticket, 0.0)
                    got_t = await port.cancel(-2 - ticket, 0.0)
                assert got_t == expected_t
            assert port.peek(0.0) is core.peek(0.0)
            calls, failures, _ = core.window.totals(0.0)
            snapshot = port.metrics(0.0)
            if core.state is BreakerState.CLOSED and port._view is not None:
                assert (snapshot.calls, snapshot.failures) == (calls, failures)
        assert not store.degraded


@pytest.mark.redis
def test_sync_limiters_and_budgets_in_threads_share_one_state(prefix: str) -> None:
    stores = [ra_sync.RedisStore(URL, prefix=prefix, timeout=2.0) for _ in range(2)]
    limiters = [ra_sync.RateLimiter(1, per=3600.0, burst=15, name="api", store=s) for s in stores]
    budgets = [ra_sync.RetryBudget(0.0, 0.4, 10.0, name="api", store=s) for s in stores]
    policies = [ra_sync.Retry(attempts=10, backoff=ra.backoff.constant(0.0), budget=b)
                for b in budgets]  # fmt: skip
    taken: list[int] = []
    attempts: list[int] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        mine = 0
        for _ in range(10):
            try:
                limiters[index % 2].acquire()
                mine += 1
            except ra_sync.RateLimitedError:
                pass
        calls = 0

        def failing() -> None:
            nonlocal calls
            calls += 1
            raise ConnectionError("down")

        with contextlib.suppress(ConnectionError):
            policies[index % 2].call(failing)
        with lock:
            taken.append(mine)
            attempts.append(calls)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(taken) == 15  # the burst, once, across both stores and all threads
    assert sum(attempts) - len(attempts) == 4  # the budget's floor: 0.4/s * 10 s
    for store in stores:
        assert not store.degraded
        store.close()
