"""Processes that share policies through a RedisStore, for tests/stores/test_redis_store.py.

Run as `python -m tests.redis_workers ROLE URL PREFIX INDEX [ARGS...]`. Each worker builds its
policies, says it is ready (key `<prefix>:ready:<index>`), waits for `<prefix>:go`, does its
part, and prints one JSON line with what it saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
import time
from typing import Any

import redis

import resilient_async as ra
import resilient_async.sync as ra_sync

PROBE_BREAKER: dict[str, Any] = {
    "min_calls": 1,
    "window": 10,
    "open_for": 3.0,
    "half_open_calls": 2,
}
"""The breaker every process of the probe test builds (settings must agree)."""

STORE_TIMEOUT = 2.0  # generous: a loaded machine must not degrade the store by accident


def wait_for_go(url: str, prefix: str, index: int) -> None:
    """Announce this worker, then block until the test says go."""
    client = redis.Redis.from_url(url)
    client.set(f"{prefix}:ready:{index}", 1, ex=120)
    while not client.exists(f"{prefix}:go"):
        time.sleep(0.005)
    client.close()


async def probes_async(
    url: str, prefix: str, index: int, tasks: int, hold: float
) -> dict[str, Any]:
    """Fire `tasks` concurrent calls at a half-open breaker; count those that ran."""
    store = ra.stores.RedisStore(url, prefix=prefix, timeout=STORE_TIMEOUT)
    breaker = ra.CircuitBreaker("svc", store=store, **PROBE_BREAKER)
    admitted = 0
    rejected = 0

    async def probe() -> None:
        nonlocal admitted
        admitted += 1
        await asyncio.sleep(hold)

    async def one() -> None:
        nonlocal rejected
        try:
            await breaker.call(probe)
        except ra.CircuitOpenError:
            rejected += 1

    await asyncio.to_thread(wait_for_go, url, prefix, index)
    await asyncio.gather(*(one() for _ in range(tasks)))
    degraded = store.degraded
    await store.close()
    return {"admitted": admitted, "rejected": rejected, "degraded": degraded}


def probes_sync(url: str, prefix: str, index: int, tasks: int, hold: float) -> dict[str, Any]:
    """The same from threads, with the sync twin."""
    store = ra_sync.RedisStore(url, prefix=prefix, timeout=STORE_TIMEOUT)
    breaker = ra_sync.CircuitBreaker("svc", store=store, **PROBE_BREAKER)
    counts = {"admitted": 0, "rejected": 0}
    lock = threading.Lock()

    def probe() -> None:
        with lock:
            counts["admitted"] += 1
        time.sleep(hold)

    def one() -> None:
        try:
            breaker.call(probe)
        except ra.CircuitOpenError:
            with lock:
                counts["rejected"] += 1

    wait_for_go(url, prefix, index)
    threads = [threading.Thread(target=one) for _ in range(tasks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {**counts, "degraded": store.degraded}


async def limiter(
    url: str, prefix: str, index: int, rate: float, burst: float, seconds: float, wait: float
) -> dict[str, Any]:
    """Take tokens for `seconds`; report when each was granted (wall clock)."""
    store = ra.stores.RedisStore(url, prefix=prefix, timeout=STORE_TIMEOUT)
    shared = ra.RateLimiter(rate, burst=burst, max_wait=wait, name="api", store=store)
    stamps: list[float] = []
    await asyncio.to_thread(wait_for_go, url, prefix, index)
    end = time.time() + seconds
    while time.time() < end:
        try:
            await shared.acquire()
        except ra.RateLimitedError:
            await asyncio.sleep(0.003)
            continue
        stamps.append(time.time())
    degraded = store.degraded
    await store.close()
    return {"stamps": stamps, "degraded": degraded}


async def budget(
    url: str, prefix: str, index: int, ratio: float, floor: float, calls: int, fail: int
) -> dict[str, Any]:
    """Make `calls` calls through a Retry on a shared budget; report the attempts made.

    `fail` = 1: every attempt fails (each call wants 4 retries); 0: every call succeeds (its
    deposit funds the others' retries). A failing worker starts 0.5 s after the go, once
    the succeeding ones' deposits have reached the server.
    """
    store = ra.stores.RedisStore(url, prefix=prefix, timeout=STORE_TIMEOUT)
    shared = ra.RetryBudget(ratio, floor / 10.0, 10.0, name="api", store=store)
    policy = ra.Retry(attempts=5, backoff=ra.backoff.constant(0.001), budget=shared)
    attempts = 0

    async def attempt() -> None:
        nonlocal attempts
        attempts += 1
        if fail:
            raise ConnectionError("down")

    await asyncio.to_thread(wait_for_go, url, prefix, index)
    if fail:
        await asyncio.sleep(0.5)
    for _ in range(calls):
        with contextlib.suppress(ConnectionError):
            await policy.call(attempt)
    await asyncio.sleep(0.2)  # let the last batch of deposits reach the server
    degraded = store.degraded
    await store.close()
    return {"attempts": attempts, "calls": calls, "degraded": degraded}


def main(argv: list[str]) -> None:
    """Run the role named by argv[0] and print its JSON report."""
    role, url, prefix, index, *rest = argv
    number = int(index)
    if role == "probes":
        report = asyncio.run(probes_async(url, prefix, number, int(rest[0]), float(rest[1])))
    elif role == "probes-sync":
        report = probes_sync(url, prefix, number, int(rest[0]), float(rest[1]))
    elif role == "limiter":
        rate, burst, seconds, wait = map(float, rest)
        report = asyncio.run(limiter(url, prefix, number, rate, burst, seconds, wait))
    elif role == "budget":
        ratio, floor, calls, fail = float(rest[0]), float(rest[1]), int(rest[2]), int(rest[3])
        report = asyncio.run(budget(url, prefix, number, ratio, floor, calls, fail))
    else:
        raise SystemExit(f"unknown role {role!r}")
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
