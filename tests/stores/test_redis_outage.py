"""A Redis server killed mid-run and started again: local fallback, one event, recovery.

Each test starts a private redis-server on a free loopback port (never the shared one) and
kills it by its pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest

import resilient_async as ra
import resilient_async.sync as ra_sync
from resilient_async.instrumentation import Event, hooks
from resilient_async.stores import RedisStore

from ..helpers import asyncio_only
from ..redis_helpers import private_server, unique_prefix

pytestmark = pytest.mark.redis

SETTINGS = {"min_calls": 2, "window": 4, "open_for": 60.0}
STORE_EVENTS = ("store.degraded", "store.recovered")


async def ok() -> str:
    return "ok"


async def down() -> None:
    raise ConnectionError("down")


def store_events(events: list[Event]) -> list[str]:
    return [event.kind for event in events if event.kind in STORE_EVENTS]


@asyncio_only
@pytest.mark.anyio
async def test_a_server_killed_mid_run_and_started_again(caplog: pytest.LogCaptureFixture) -> None:
    events: list[Event] = []
    loop = asyncio.get_running_loop()
    with private_server() as server, hooks(events.append):
        prefix = unique_prefix()
        store = RedisStore(server.url, prefix=prefix, timeout=0.5)
        witness = RedisStore(server.url, prefix=prefix, timeout=0.5)
        breaker = ra.CircuitBreaker("svc", store=store, **SETTINGS)
        limiter = ra.RateLimiter(1000, name="api", store=store)
        budget = ra.RetryBudget(name="api", store=store)
        retry = ra.Retry(attempts=2, backoff=ra.backoff.constant(0.0), budget=budget)
        outcomes: list[bool] = []

        async def flaky() -> str:
            outcomes.append(True)
            if len(outcomes) % 2:
                raise ConnectionError("once")
            return "ok"

        try:
            assert await breaker.call(ok) == "ok"
            await limiter.acquire()
            assert not store.degraded

            server.kill()
            with caplog.at_level(logging.WARNING, logger="resilient_async.stores"):
                start = loop.time()
                for _ in range(50):
                    assert await breaker.call(ok) == "ok"
                    await limiter.acquire()
                elapsed = loop.time() - start
            # No hang: at most one step waited for the dead server (the rest run locally).
            assert elapsed < 5.0
            assert store.degraded
            assert store_events(events) == ["store.degraded"]
            warnings = [r for r in caplog.records if r.name == "resilient_async.stores"]
            assert len(warnings) == 1
            # The budget withdraws locally: a retry is still made.
            assert await retry.call(flaky) == "ok"
            assert len(outcomes) == 2
            # The local state is a working breaker: two failures open it.
            for _ in range(2):
                with pytest.raises(ConnectionError):
                    await breaker.call(down)
            with pytest.raises(ra.CircuitOpenError):
                await breaker.call(ok)

            server.start()  # the same port: the server comes back, empty
            for _ in range(400):
                if not store.degraded:
                    break
                await asyncio.sleep(0.025)
            assert not store.degraded
            assert store_events(events) == ["store.degraded", "store.recovered"]
            # Shared state again: the server's breaker (closed), which another store sees.
            assert await breaker.call(ok) == "ok"
            with pytest.raises(ConnectionError):
                await breaker.call(down)  # 1 failure in 2 calls: opens it on the server
            other = ra.CircuitBreaker("svc", store=witness, **SETTINGS)
            with pytest.raises(ra.CircuitOpenError):
                await other.call(ok)
            await limiter.acquire()
            assert await retry.call(flaky) == "ok"  # a retry withdrawn on the server again
            assert len(outcomes) == 4
            assert not witness.degraded
        finally:
            await store.close()
            await witness.close()


@asyncio_only
@pytest.mark.anyio
async def test_an_unreachable_server_from_the_start_never_blocks_a_call() -> None:
    events: list[Event] = []
    loop = asyncio.get_running_loop()
    with private_server() as server:
        url = server.url
    # Nothing listens on that port any more.
    store = RedisStore(url, prefix=unique_prefix(), timeout=0.1)
    breaker = ra.CircuitBreaker("svc", store=store, **SETTINGS)
    try:
        with hooks(events.append):
            start = loop.time()
            for _ in range(20):
                assert await breaker.call(ok) == "ok"
            assert loop.time() - start < 5.0
        assert store.degraded
        assert store_events(events) == ["store.degraded"]
    finally:
        await store.close()


def test_the_sync_twin_falls_back_and_recovers_from_threads() -> None:
    events: list[Event] = []
    with private_server() as server, hooks(events.append):
        store = ra_sync.RedisStore(server.url, prefix=unique_prefix(), timeout=0.5)
        breaker = ra_sync.CircuitBreaker("svc", store=store, **SETTINGS)
        try:
            assert breaker.call(lambda: "ok") == "ok"
            server.kill()
            start = time.monotonic()
            for _ in range(30):
                assert breaker.call(lambda: "ok") == "ok"
            assert time.monotonic() - start < 5.0
            assert store.degraded
            server.start()
            deadline = time.monotonic() + 10.0
            while store.degraded and time.monotonic() < deadline:
                time.sleep(0.025)
            assert not store.degraded
            assert breaker.call(lambda: "ok") == "ok"
        finally:
            store.close()
    assert store_events(events) == ["store.degraded", "store.recovered"]


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """A loopback port that accepts connections and never answers (a hung server)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    finally:
        stop.set()
        thread.join()
        for connection in accepted:
            connection.close()
        listener.close()


@asyncio_only
@pytest.mark.anyio
async def test_a_server_that_never_answers_costs_one_timeout_once() -> None:
    events: list[Event] = []
    loop = asyncio.get_running_loop()
    with silent_server() as url, hooks(events.append):
        store = RedisStore(url, prefix=unique_prefix(), timeout=0.2)
        limiter = ra.RateLimiter(100, name="api", store=store)
        try:
            start = loop.time()
            await limiter.acquire()  # waits out the timeout once, then goes on locally
            first = loop.time() - start
            start = loop.time()
            for _ in range(20):
                await limiter.acquire()
            rest = loop.time() - start
        finally:
            await store.close()
    assert 0.15 <= first < 3.0  # the timeout, give or take a loaded machine
    assert rest < 1.0  # no more waiting: the store is degraded
    assert store_events(events) == ["store.degraded"]


def test_the_sync_twin_bounds_a_hung_server_by_its_timeout() -> None:
    with silent_server() as url:
        store = ra_sync.RedisStore(url, prefix=unique_prefix(), timeout=0.2)
        breaker = ra_sync.CircuitBreaker("svc", store=store)
        start = time.monotonic()
        assert breaker.call(lambda: "ok") == "ok"
        assert time.monotonic() - start < 3.0
        assert store.degraded
        store.close()
