"""Shared state on Redis: the cost of one call with a RedisStore, beside the memory store.

Every breaker or limiter case with Redis makes one round trip per call to the server on
127.0.0.1:6379 (a closed breaker: its outcome; a limiter: its take), so a bare PING through
the same client is the reference for "one round trip". A successful `Retry` with a shared
budget makes none (its deposit is sent in a batch). pybreaker's `CircuitRedisStorage` is
measured side by side in the sync group (pybreaker is sync only). The groups are skipped
when no Redis server answers. Ratios are to the memory store's case.
"""

from __future__ import annotations

import os
import socket

import pybreaker
import redis
import redis.asyncio

from resilient_async._async.breaker import CircuitBreaker
from resilient_async._async.ratelimit import RateLimiter
from resilient_async._async.redis_store import RedisStore
from resilient_async._async.retry import Retry, RetryBudget
from resilient_async._sync.breaker import CircuitBreaker as SyncCircuitBreaker
from resilient_async._sync.redis_store import RedisStore as SyncRedisStore

from .harness import Group

ASYNCIO_ONLY = ("asyncio",)
URL = "redis://127.0.0.1:6379/0"
PREFIX = f"ra-bench-{os.getpid()}"  # its keys expire on their own (TTL)


def _redis_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


async def _work() -> int:
    return 1


def _sync_work() -> int:
    return 1


# --- async ----------------------------------------------------------------------------


def _breaker_memory() -> object:
    breaker = CircuitBreaker("bench")

    async def op() -> int:
        return await breaker.call(_work)

    return op


def _breaker_redis() -> object:
    breaker = CircuitBreaker("bench", store=RedisStore(URL, prefix=PREFIX, timeout=1.0))

    async def op() -> int:
        return await breaker.call(_work)

    return op


def _limiter_memory() -> object:
    limiter = RateLimiter(1e9, burst=1e9, name="bench")

    async def op() -> int:
        await limiter.acquire()
        return 1

    return op


def _limiter_redis() -> object:
    store = RedisStore(URL, prefix=PREFIX, timeout=1.0)
    limiter = RateLimiter(1e9, burst=1e9, name="bench", store=store)

    async def op() -> int:
        await limiter.acquire()
        return 1

    return op


def _retry_budget_memory() -> object:
    policy = Retry(budget=RetryBudget())

    async def op() -> int:
        return await policy.call(_work)

    return op


def _retry_budget_redis() -> object:
    store = RedisStore(URL, prefix=PREFIX, timeout=1.0)
    policy = Retry(budget=RetryBudget(name="bench", store=store))

    async def op() -> int:
        return await policy.call(_work)

    return op


def _ping() -> object:
    client = redis.asyncio.Redis.from_url(URL)

    async def op() -> int:
        await client.ping()
        return 1

    return op


async_group = Group(
    "redis store: one call, shared state on Redis vs the memory store",
    baseline="ra.CircuitBreaker.call, memory",
    note="asyncio client (redis-py's asyncio client runs only on asyncio)",
)
for _name, _factory in (
    ("ra.CircuitBreaker.call, memory", _breaker_memory),
    ("ra.CircuitBreaker.call, RedisStore", _breaker_redis),
    ("ra.RateLimiter.acquire, memory", _limiter_memory),
    ("ra.RateLimiter.acquire, RedisStore", _limiter_redis),
    ("ra.Retry.call with a RetryBudget, memory", _retry_budget_memory),
    ("ra.Retry.call with a RetryBudget, RedisStore", _retry_budget_redis),
    ("redis PING (one round trip)", _ping),
):
    async_group.add(_name, _factory, backends=ASYNCIO_ONLY)


# --- sync, beside pybreaker's Redis storage ---------------------------------------------


def _sync_breaker_memory() -> object:
    breaker = SyncCircuitBreaker("bench")

    def op() -> int:
        return breaker.call(_sync_work)

    return op


def _sync_breaker_redis() -> object:
    store = SyncRedisStore(URL, prefix=PREFIX, timeout=1.0)
    breaker = SyncCircuitBreaker("bench-sync", store=store)

    def op() -> int:
        return breaker.call(_sync_work)

    return op


def _pybreaker_memory() -> object:
    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)

    def op() -> int:
        return int(breaker.call(_sync_work))

    return op


def _pybreaker_redis() -> object:
    storage = pybreaker.CircuitRedisStorage(
        pybreaker.STATE_CLOSED, redis.Redis.from_url(URL), namespace=f"{PREFIX}-pybreaker"
    )
    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30, state_storage=storage)

    def op() -> int:
        return int(breaker.call(_sync_work))

    return op


def _sync_ping() -> object:
    client = redis.Redis.from_url(URL)

    def op() -> int:
        client.ping()
        return 1

    return op


sync_group = Group(
    "redis store (sync): one breaker call, shared state on Redis",
    baseline="ra.sync.CircuitBreaker.call, memory",
    note="ratio > 1: slower than our memory store",
)
for _name, _factory in (
    ("ra.sync.CircuitBreaker.call, memory", _sync_breaker_memory),
    ("ra.sync.CircuitBreaker.call, RedisStore", _sync_breaker_redis),
    ("pybreaker.call, memory", _pybreaker_memory),
    ("pybreaker.call, CircuitRedisStorage", _pybreaker_redis),
    ("redis PING (one round trip)", _sync_ping),
):
    sync_group.add(_name, _factory, backends=ASYNCIO_ONLY, is_async=False)

GROUPS = [async_group, sync_group] if _redis_answers() else []
