"""Retry on the success path and per retried attempt, against a hand-written loop and peers.

Peers: tenacity (`AsyncRetrying` and `@retry`), stamina, backoff (asyncio only: it sleeps
with `asyncio.sleep`). Targets (DESIGN.md): success path <= 2x the hand-written loop and
>= 30x faster than tenacity's `@retry`; failure path per retried attempt <= 2x the loop's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import backoff as backoff_peer
import sniffio
import stamina
import tenacity
import trio

from resilient_async import backoff
from resilient_async._async.retry import Retry, retry

from .harness import Group

# stamina logs every retry through structlog by default; measure its retry loop, not its logs.
stamina.instrumentation.set_on_retry_hooks([])

ATTEMPTS = 10
FAILURES = ATTEMPTS - 1  # the failure-path call fails this often, then succeeds


async def _work() -> int:
    return 1


def _zero_wait() -> Callable[[], Awaitable[None]]:
    """The zero wait a hand-written loop does between attempts, on the running loop."""
    if sniffio.current_async_library() == "trio":
        return trio.lowlevel.checkpoint

    async def sleep0() -> None:
        await asyncio.sleep(0)

    return sleep0


def _hand_written(fn: Callable[[], Awaitable[int]]) -> Callable[[], Awaitable[int]]:
    zero_wait = _zero_wait()

    async def op() -> int:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return await fn()
            except ConnectionError:
                if attempt == ATTEMPTS:
                    raise
            await zero_wait()
        raise AssertionError("unreachable")

    return op


def _ra_call(fn: Callable[[], Awaitable[int]]) -> Callable[[], Awaitable[int]]:
    policy = Retry(attempts=ATTEMPTS, on=ConnectionError, backoff=backoff.constant(0))

    async def op() -> int:
        return await policy.call(fn)

    return op


def _ra_decorated(fn: Callable[[], Awaitable[int]]) -> Callable[[], Awaitable[int]]:
    return retry(attempts=ATTEMPTS, on=ConnectionError, backoff=backoff.constant(0))(fn)


def _ra_default_on(fn: Callable[[], Awaitable[int]]) -> Callable[[], Awaitable[int]]:
    """The default `on`: each failure is classified (ConnectionError: TRANSIENT)."""
    policy = Retry(attempts=ATTEMPTS, backoff=backoff.constant(0))

    async def op() -> int:
        return await policy.call(fn)

    return op


def _ra_attempts(fn: Callable[[], Awaitable[int]]) -> Callable[[], Awaitable[int]]:
    policy = Retry(attempts=ATTEMPTS, on=ConnectionError, backoff=backoff.constant(0))

    async def op() -> int:
        async for attempt in policy.attempts():
            with attempt:
                return await fn()
        raise AssertionError("unreachable")

    return op


def _tenacity_decorated(fn: Callable[[], Awaitable[int]]) -> Callable[[], Awaitable[int]]:
    return tenacity.retry(
        stop=tenacity.stop_after_attempt(ATTEMPTS),
        retry=tenacity.retry_if_exception_type(ConnectionError),
        wait=tenacity.wait_none(),
        reraise=True,
    )(fn)


def _tenacity_async_retrying(fn: Callable[[], Awaitable[int]]) -> Callable[[], Awaitable[int]]:
    async def op() -> int:
        async for attempt in tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(ATTEMPTS),
            retry=tenacity.retry_if_exception_type(ConnectionError),
            wait=tenacity.wait_none(),
            reraise=True,
        ):
            with attempt:
                return await fn()
        raise AssertionError("unreachable")

    return op


def _stamina(fn: Callable[[], Awaitable[int]]) -> Callable[[], Awaitable[int]]:
    return stamina.retry(
        on=ConnectionError,
        attempts=ATTEMPTS,
        timeout=None,
        wait_initial=0,
        wait_max=0,
        wait_jitter=0,
    )(fn)


def _backoff(fn: Callable[[], Awaitable[int]]) -> Callable[[], Awaitable[int]]:
    decorated: Callable[[], Awaitable[int]] = backoff_peer.on_exception(
        backoff_peer.constant, ConnectionError, max_tries=ATTEMPTS, interval=0, jitter=None
    )(fn)
    return decorated


def _failing_then_ok() -> Callable[[], Awaitable[int]]:
    """A callable that fails FAILURES times, then succeeds, over and over."""
    calls = 0

    async def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls % ATTEMPTS:
            raise ConnectionError("down")
        return 1

    return flaky


Wrapper = Callable[[Callable[[], Awaitable[int]]], Callable[[], Awaitable[int]]]


def _factory(
    wrap: Wrapper, make: Callable[[], Callable[[], Awaitable[int]]]
) -> Callable[[], Callable[[], Awaitable[int]]]:
    """Build the case's operation inside the running loop (some peers need one)."""

    def factory() -> Callable[[], Awaitable[int]]:
        return wrap(make())

    return factory


WRAPPERS: list[tuple[str, Wrapper, tuple[str, ...]]] = [
    ("hand-written try/except loop", _hand_written, ("asyncio", "trio")),
    ("ra.Retry.call", _ra_call, ("asyncio", "trio")),
    ("@ra.retry", _ra_decorated, ("asyncio", "trio")),
    ("ra.Retry.call (default on)", _ra_default_on, ("asyncio", "trio")),
    ("ra.Retry.attempts()", _ra_attempts, ("asyncio", "trio")),
    ("tenacity @retry", _tenacity_decorated, ("asyncio", "trio")),
    ("tenacity AsyncRetrying", _tenacity_async_retrying, ("asyncio", "trio")),
    ("stamina @retry", _stamina, ("asyncio", "trio")),
    ("backoff.on_exception", _backoff, ("asyncio",)),
]

success = Group(
    "retry: success path",
    baseline="hand-written try/except loop",
    note="target (asyncio): <= 2x the floor",
)
success.add("bare await", lambda: _work)
for label, wrap, backends in WRAPPERS:
    success.add(label, _factory(wrap, lambda: _work), backends=backends)

failure = Group(
    "retry: failure path",
    baseline="hand-written try/except loop",
    note=(
        f"one call = {FAILURES} failures with zero wait, then a success; "
        f"per retried attempt = ns/call / {FAILURES}; target <= 1.5x the hand-written loop"
    ),
)
for label, wrap, backends in WRAPPERS:
    failure.add(label, _factory(wrap, _failing_then_ok), backends=backends)

GROUPS = [success, failure]
