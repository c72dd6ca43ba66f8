"""The sync flavour of the tests written once (hand-written; `tests/_async/_backend.py` is
the async one, with the same names).

Every test runs on a virtual clock patched into the sync drivers' backend (the only place they
read time or wait): `sleep` and the drivers' waits move it at once, so no test blocks. Tests
marked `real_time` keep the real clock.
"""

import math
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from resilient_async import sync as flavour
from resilient_async._core.deadlines import effective_deadline
from resilient_async._sync import _backend
from resilient_async.errors import DeadlineExceeded

__all__ = ["VirtualClock", "clock", "flavour", "mark_module", "now", "sleep", "virtual_clock"]


class VirtualClock:
    """A monotonic clock that moves only when slept on, waited on or advanced.

    `sleeps` keeps the drivers' sleeps as (start, seconds); the tests' own `sleep` and
    `advance` are not recorded.
    """

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[tuple[float, float]] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append((self.now, seconds))
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def wait_event(self, event: threading.Event, seconds: float) -> bool:
        """The backend's `wait_event`, where nobody else can set the event meanwhile."""
        if event.is_set():
            return True
        limit = min(seconds, _backend.remaining_until(effective_deadline()))
        assert limit != math.inf, "a wait without a limit would block forever"
        self.now += limit
        if limit < seconds:
            raise DeadlineExceeded(None)
        return False


_clock: VirtualClock | None = None


def now() -> float:
    """Return the current time on the clock the sync drivers read."""
    return time.monotonic() if _clock is None else _clock.now


def sleep(seconds: float) -> None:
    """Let `seconds` pass (at once on the virtual clock)."""
    if _clock is None:
        time.sleep(seconds)
    else:
        _clock.advance(seconds)


def _install(monkeypatch: pytest.MonkeyPatch) -> Iterator[VirtualClock]:
    global _clock
    fake = _clock = VirtualClock()
    patched_time = SimpleNamespace(monotonic=fake.monotonic, sleep=fake.sleep)
    monkeypatch.setattr(_backend, "time", patched_time)
    monkeypatch.setattr(_backend, "current_time", fake.monotonic)
    monkeypatch.setattr(_backend, "wait_event", fake.wait_event)
    try:
        yield fake
    finally:
        _clock = None


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[VirtualClock]:
    """Patch a virtual clock into the sync backend for the test; yield it."""
    yield from _install(monkeypatch)


@pytest.fixture(autouse=True)
def virtual_clock(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Run the test on a virtual clock (as `clock`), unless it is marked `real_time`."""
    if request.node.get_closest_marker("real_time"):
        yield
    else:
        for _ in _install(monkeypatch):
            yield


def mark_module(module: pytest.Module) -> None:
    """Nothing to mark: the sync twin's tests are plain functions."""
