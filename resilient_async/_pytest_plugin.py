"""The pytest plugin of resilient_async (registered through the `pytest11` entry point).

Fixtures:
    ra_no_wait: retries skip their waits for the test (`set_testing(True)`).
    ra_virtual_time: asyncio loops created during the test run in virtual time (anyio).
    ra_faults: the `faults` function, to wrap a dependency with injected failures.

They work with the anyio plugin and with pytest-asyncio (`ra_no_wait` and `ra_faults` in sync
tests too).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .testing import TestingSettings, VirtualClock, VirtualTimePolicy, faults, set_testing

__all__ = ["ra_faults", "ra_no_wait", "ra_virtual_time"]


@pytest.fixture
def ra_no_wait() -> Iterator[TestingSettings]:
    """Make every retry in the test skip its backoff waits; restore afterwards."""
    with set_testing(True) as settings:
        yield settings


@pytest.fixture
def ra_faults() -> Callable[..., Any]:
    """Return `resilient_async.testing.faults`, to wrap a dependency with injected faults."""
    return faults


@pytest.fixture
def ra_virtual_time() -> Iterator[VirtualClock]:
    """Run the asyncio loops created during the test in virtual time; yield their clock.

    It installs `VirtualTimePolicy` for the test, so it applies to loops created after the
    fixture: anyio's asyncio backend (without a `loop_factory` option) creates its loop then.
    pytest-asyncio creates its loop before fixtures run: there, override its
    `event_loop_policy` fixture to return a `VirtualTimePolicy()`. trio's clock is chosen
    when trio starts: give anyio's trio backend a `MockClock(autojump_threshold=0)`.
    """
    previous = asyncio.get_event_loop_policy()
    policy = VirtualTimePolicy()
    asyncio.set_event_loop_policy(policy)
    try:
        yield policy.clock
    finally:
        asyncio.set_event_loop_policy(previous)
