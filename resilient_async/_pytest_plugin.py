"""The pytest plugin of resilient_async (registered through the `pytest11` entry point).

Fixtures:
    ra_no_wait: retries skip their waits for the test (`set_testing(True)`).
    ra_faults: the `faults` function, to wrap a dependency with injected failures.

Both work with the anyio plugin and with pytest-asyncio, and in sync tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .testing import TestingSettings, faults, set_testing

__all__ = ["ra_faults", "ra_no_wait"]


@pytest.fixture
def ra_no_wait() -> Iterator[TestingSettings]:
    """Make every retry in the test skip its backoff waits; restore afterwards."""
    with set_testing(True) as settings:
        yield settings


@pytest.fixture
def ra_faults() -> Callable[..., Any]:
    """Return `resilient_async.testing.faults`, to wrap a dependency with injected faults."""
    return faults
