"""The async flavour of the tests written once (hand-written; `tests/_sync/_backend.py` is
the sync one, with the same names).

Async tests run in virtual time already (`tests/conftest.py` gives asyncio a virtual-time loop
and trio a MockClock), so `now` and `sleep` are anyio's: a sleep moves the virtual clock.
`flavour` is the public namespace: `resilient_async` here, `resilient_async.sync` in the twin.
"""

import anyio
import pytest

import resilient_async as flavour

__all__ = ["flavour", "mark_module", "now", "sleep", "virtual_clock"]

now = anyio.current_time
sleep = anyio.sleep


@pytest.fixture(autouse=True)
def virtual_clock() -> None:
    """Nothing to set up: the backends' clocks are virtual (see `tests/conftest.py`)."""


def mark_module(module: pytest.Module) -> None:
    """Mark every test module here `anyio`: its coroutine tests run on asyncio and trio."""
    module.add_marker(pytest.mark.anyio)
