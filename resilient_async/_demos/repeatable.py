"""What makes a demo repeat for a seed: seeded retry jitter, and a run in virtual time."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from .. import backoff

__all__ = ["SeededBackoff", "run_scenario"]

T = TypeVar("T")


class SeededBackoff(backoff.Backoff):
    """A schedule whose jitter comes from the demo's seeded generator, so runs repeat.

    `Retry` draws jitter from a process-wide generator; the demo wants the same figures for
    the same `--seed`, so it hands its own.
    """

    __slots__ = ("_inner", "_rng")

    def __init__(self, inner: backoff.Backoff, rng: random.Random) -> None:
        self._inner = inner
        self._rng = rng

    @property
    def max(self) -> float | None:
        """The wrapped schedule's cap."""
        return self._inner.max

    def delay(self, attempt: int, previous: float, rng: random.Random) -> float:
        """Return the wrapped schedule's delay, drawn from the seeded generator."""
        return self._inner.delay(attempt, previous, self._rng)


def run_scenario(scenario: Callable[[], Awaitable[T]], *, backend: str, virtual_time: bool) -> T:
    """Run `scenario()` to its end on a new event loop and return what it returns.

    Args:
        scenario: The demo's story, run on the new loop.
        backend: "asyncio" or "trio".
        virtual_time: Run on a simulated clock that skips idle time (the same run, faster).
    """
    options: dict[str, Any] = {}
    if virtual_time and backend == "asyncio":
        from ..testing import virtual_time_loop

        options["loop_factory"] = virtual_time_loop
    elif virtual_time:
        import trio.testing

        options["clock"] = trio.testing.MockClock(autojump_threshold=0)
    return anyio.run(scenario, backend=backend, backend_options=options)
