"""CircuitBreaker: the closed path against peer breakers, and the cost of a rejection.

Peers measured side by side: aiobreaker, purgatory, circuitbreaker (fabfuel) and pybreaker
(sync only: its async support needs Tornado). hyx is not installed in the dev environment,
so it is not measured. Peers run on asyncio only (none supports trio); ours on both.

Ratios are to our own breaker, so a peer's ratio says how many times slower it is. The
rejection group compares one rejected call with raising and catching one fresh exception:
a rejection builds a fresh `CircuitOpenError` each time (with `retry_after` and its error
context), so its cost stays flat however many calls are rejected.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import aiobreaker
import circuitbreaker
import pybreaker
from purgatory import AsyncCircuitBreakerFactory, SyncCircuitBreakerFactory

from resilient_async._async.breaker import CircuitBreaker
from resilient_async._sync.breaker import CircuitBreaker as SyncCircuitBreaker
from resilient_async.errors import CircuitOpenError

from .harness import Group

ASYNCIO_ONLY = ("asyncio",)


async def _work() -> int:
    return 1


def _sync_work() -> int:
    return 1


# --- closed path, async ---------------------------------------------------------------


def _bare() -> object:
    return _work


def _ra_call() -> object:
    breaker = CircuitBreaker("bench")

    async def op() -> int:
        return await breaker.call(_work)

    return op


def _ra_decorated() -> object:
    return CircuitBreaker("bench")(_work)


def _ra_async_with() -> object:
    breaker = CircuitBreaker("bench")

    async def op() -> int:
        async with breaker:
            return await _work()

    return op


def _ra_time_window_slow_calls() -> object:
    breaker = CircuitBreaker("bench", window=60.0, window_type="time", slow_call_duration=1.0)

    async def op() -> int:
        return await breaker.call(_work)

    return op


def _aiobreaker() -> object:
    breaker = aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=timedelta(seconds=30))

    async def op() -> int:
        return await breaker.call_async(_work)

    return op


def _purgatory_decorator() -> object:
    factory = AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=30)
    return factory("bench")(_work)


def _purgatory_reused() -> object:
    factory = AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=30)
    breaker: Any = None

    async def op() -> int:
        nonlocal breaker
        if breaker is None:
            breaker = await factory.get_breaker("bench")
        async with breaker:
            return await _work()

    return op


def _circuitbreaker() -> object:
    return circuitbreaker.circuit(failure_threshold=5, recovery_timeout=30)(_work)


closed = Group(
    "breaker: closed path, one successful call",
    baseline="ra.CircuitBreaker.call",
    note="target (asyncio): ours <= 3x the floor; ratio > 1: slower than ours",
)
closed.add("bare await", _bare)
closed.add("ra.CircuitBreaker.call", _ra_call)
closed.add("@ra.CircuitBreaker", _ra_decorated)
closed.add("async with ra.CircuitBreaker", _ra_async_with)
closed.add("ra.CircuitBreaker time window + slow", _ra_time_window_slow_calls)
closed.add("aiobreaker.call_async", _aiobreaker, backends=ASYNCIO_ONLY)
closed.add("purgatory decorator", _purgatory_decorator, backends=ASYNCIO_ONLY)
closed.add("purgatory async with (reused)", _purgatory_reused, backends=ASYNCIO_ONLY)
closed.add("circuitbreaker @circuit", _circuitbreaker, backends=ASYNCIO_ONLY)


# --- closed path, sync ----------------------------------------------------------------


def _sync_bare() -> object:
    return _sync_work


def _ra_sync_call() -> object:
    breaker = SyncCircuitBreaker("bench")

    def op() -> int:
        return breaker.call(_sync_work)

    return op


def _ra_sync_decorated() -> object:
    return SyncCircuitBreaker("bench")(_sync_work)


def _pybreaker() -> object:
    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)

    def op() -> int:
        return breaker.call(_sync_work)

    return op


def _aiobreaker_sync() -> object:
    breaker = aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=timedelta(seconds=30))

    def op() -> int:
        return breaker.call(_sync_work)

    return op


def _purgatory_sync() -> object:
    factory = SyncCircuitBreakerFactory(default_threshold=5, default_ttl=30)
    return factory("bench")(_sync_work)


def _circuitbreaker_sync() -> object:
    return circuitbreaker.circuit(failure_threshold=5, recovery_timeout=30)(_sync_work)


closed_sync = Group(
    "breaker (sync): closed path, one successful call",
    baseline="ra.sync.CircuitBreaker.call",
    note="thread-safe twin; ratio > 1: slower than ours",
)
for _name, _factory in (
    ("bare call", _sync_bare),
    ("ra.sync.CircuitBreaker.call", _ra_sync_call),
    ("@ra.sync.CircuitBreaker", _ra_sync_decorated),
    ("pybreaker.call", _pybreaker),
    ("aiobreaker.call (sync)", _aiobreaker_sync),
    ("purgatory sync decorator", _purgatory_sync),
    ("circuitbreaker @circuit (sync)", _circuitbreaker_sync),
):
    closed_sync.add(_name, _factory, backends=ASYNCIO_ONLY, is_async=False)


# --- open path ------------------------------------------------------------------------


def _raise_fresh() -> object:
    async def op() -> None:
        try:
            raise CircuitOpenError("bench", 30.0)
        except CircuitOpenError:
            pass

    return op


def _raise_fresh_runtime_error() -> object:
    async def op() -> None:
        try:
            raise RuntimeError("open")
        except RuntimeError:
            pass

    return op


async def _failing() -> int:
    raise ConnectionError("down")


def _ra_rejected() -> object:
    breaker = CircuitBreaker("bench", min_calls=1, open_for=1e9)
    opened = False

    async def op() -> None:
        nonlocal opened
        if not opened:
            opened = True
            try:  # noqa: SIM105 (suppress() would add its own cost to the measure)
                await breaker.call(_failing)
            except ConnectionError:
                pass
        try:  # noqa: SIM105 (suppress() would add its own cost to the measure)
            await breaker.call(_work)
        except CircuitOpenError:
            pass

    return op


def _ra_rejected_forced() -> object:
    breaker = CircuitBreaker("bench")
    breaker.force_open()

    async def op() -> None:
        try:  # noqa: SIM105 (suppress() would add its own cost to the measure)
            await breaker.call(_work)
        except CircuitOpenError:
            pass

    return op


def _aiobreaker_rejected() -> object:
    breaker = aiobreaker.CircuitBreaker(fail_max=1, timeout_duration=timedelta(days=1))
    breaker.open()

    async def op() -> None:
        try:  # noqa: SIM105 (suppress() would add its own cost to the measure)
            await breaker.call_async(_work)
        except aiobreaker.CircuitBreakerError:
            pass

    return op


rejected = Group(
    "breaker: open path, one rejected call",
    baseline="raise + catch a fresh CircuitOpenError",
    note="target: a rejection <= 1.2x raising and catching a fresh CircuitOpenError",
)
rejected.add("raise + catch a fresh CircuitOpenError", _raise_fresh)
rejected.add("raise + catch a fresh RuntimeError", _raise_fresh_runtime_error)
rejected.add("ra.CircuitBreaker rejects (open)", _ra_rejected)
rejected.add("ra.CircuitBreaker rejects (forced open)", _ra_rejected_forced)
rejected.add("aiobreaker rejects", _aiobreaker_rejected, backends=ASYNCIO_ONLY)

GROUPS = [closed, closed_sync, rejected]
