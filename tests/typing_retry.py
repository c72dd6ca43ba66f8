"""Checked by mypy (from tests/drivers/test_retry.py), never run: `@retry` and `call` keep
the types.

Each `# type: ignore[...]` must be needed (`warn_unused_ignores` is on in strict mode), so a
decorator that lost its ParamSpec typing fails the check as surely as a wrong `assert_type`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import assert_type

from resilient_async._async.retry import Attempt, Retry, retry
from resilient_async._sync.retry import Retry as SyncRetry
from resilient_async._sync.retry import retry as sync_retry


@retry(attempts=3)
async def fetch(url: str, *, timeout: float = 1.0) -> bytes:
    return url.encode()


@sync_retry(attempts=3)
def load(path: str, retries: int = 0) -> list[int]:
    return [len(path), retries]


async def use_async() -> None:
    as_callable: Callable[[str], Awaitable[bytes]] = fetch
    wrong_argument: Callable[[int], Awaitable[bytes]] = fetch  # type: ignore[assignment]
    wrong_result: Callable[[str], Awaitable[str]] = fetch  # type: ignore[assignment]
    assert_type(await as_callable("u"), bytes)
    del wrong_argument, wrong_result
    assert_type(await fetch("https://example.org"), bytes)
    assert_type(await fetch("u", timeout=2.0), bytes)
    await fetch(1)  # type: ignore[arg-type]
    await fetch("u", retries=2)  # type: ignore[call-arg]
    policy = Retry(attempts=2)
    assert_type(await policy.call(fetch, "u"), bytes)
    assert_type(await policy.call(fetch, "u", timeout=3.0), bytes)
    await policy.call(fetch, b"u")  # type: ignore[arg-type]
    decorated = policy(fetch)
    assert_type(await decorated("u", timeout=1.0), bytes)
    decorated("u", 1.0)  # type: ignore[call-arg]
    async for attempt in policy.attempts():
        assert_type(attempt, Attempt)
        with attempt:
            assert_type(attempt.number, int)


def use_sync() -> None:
    assert_type(load("p"), list[int])
    assert_type(load("p", retries=2), list[int])
    load(3)  # type: ignore[arg-type]
    assert_type(SyncRetry().call(load, "p"), list[int])
    SyncRetry().call(load, "p", 1, 2)  # type: ignore[call-arg]
    SyncRetry().call(load, 3)  # type: ignore[arg-type]
    for attempt in SyncRetry().attempts():
        with attempt:
            assert_type(attempt.number, int)
