"""Shared test helpers: run a coroutine on both backends in virtual time, recording hooks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
import trio
import trio.testing

from resilient_async.instrumentation import Event
from resilient_async.testing import virtual_time_loop

T = TypeVar("T")

BACKENDS = ("asyncio", "trio")

# For tests of asyncio-only mechanics (Task.cancelling(), a native Task.cancel()).
asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True)


def run_virtual(backend: str, fn: Callable[[], Awaitable[T]]) -> T:
    """Run `fn()` to completion on `backend` in virtual time (for Hypothesis tests)."""
    if backend == "asyncio":
        with asyncio.Runner(loop_factory=virtual_time_loop) as runner:
            return runner.run(_as_coro(fn))
    return trio.run(_as_coro, fn, clock=trio.testing.MockClock(autojump_threshold=0))


async def _as_coro(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()


class Recorder:
    """A hook that keeps every event it receives."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]
