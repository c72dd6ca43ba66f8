"""The simulated dependency: a remote service whose behaviour follows the phase of the run."""

from __future__ import annotations

import math
import random
from collections import Counter
from contextvars import ContextVar

import anyio

__all__ = [
    "PHASES",
    "PHASE_TEXT",
    "REQUEST_RNG",
    "Dependency",
    "RequestRandom",
    "phase_at",
    "phase_bounds",
]

# (name, share of the run, what the dependency does then)
PHASES = (
    ("healthy", 0.2, "answers in 10-30 ms"),
    ("flaky", 0.15, "25% of calls fail at once (connection reset)"),
    ("slow", 0.2, "20% of calls take 1-3 s"),
    ("down", 0.25, "every call is refused or hangs"),
    ("recovered", 0.2, "answers in 10-30 ms again"),
)
PHASE_TEXT = {name: what for name, _, what in PHASES}


class RequestRandom(random.Random):
    """Random draws from the current request's own generator, so that a seed gives one run.

    Concurrent requests finish in an order the event loop chooses (trio shuffles it on
    purpose; asyncio cancels a task group's tasks in set order); one generator shared by
    all of them would hand each call a draw that depends on that order. Each request
    instead gets a generator seeded by its client and its number (see `scenario`), and every
    draw made for it (its attempts' fates, its retries' jitter) comes from that one.
    """

    def __init__(self, fallback_seed: int) -> None:
        super().__init__(fallback_seed)

    def random(self) -> float:
        """Draw from the current request's generator (this one outside a request)."""
        current = REQUEST_RNG.get()
        return super().random() if current is None else current.random()


REQUEST_RNG: ContextVar[random.Random | None] = ContextVar("demo_request_rng", default=None)


class Dependency:
    """A simulated remote service whose behaviour follows the phase of the run."""

    def __init__(self, seed: int, started: float, seconds: float) -> None:
        self._rng = RequestRandom(seed)
        self._started = started
        self._seconds = seconds
        self.calls: Counter[str] = Counter()

    def phase(self, now: float | None = None) -> str:
        """Name the phase the run is in at `now` (default: the loop's time now)."""
        if now is None:
            now = anyio.current_time()
        return phase_at((now - self._started) / self._seconds)

    async def fetch(self, item: int) -> str:
        """Answer for `item`, or fail, or hang, as the phase dictates."""
        phase = self.phase()
        self.calls[phase] += 1
        draw = self._rng.random()
        latency = self._rng.uniform(0.01, 0.03)
        if phase == "flaky" and draw < 0.25:
            await anyio.sleep(0.005)
            raise ConnectionResetError("connection reset by peer")
        if phase == "slow" and draw < 0.2:
            latency = self._rng.uniform(1.0, 3.0)
        if phase == "down":
            if draw < 0.8:
                await anyio.sleep(0.002)
                raise ConnectionRefusedError("connection refused")
            latency = math.inf  # hangs until the caller gives up
        await anyio.sleep(latency)
        return f"item-{item}"


def phase_at(share: float) -> str:
    """Name the phase at `share` (0 to 1) of the run."""
    edge = 0.0
    for name, length, _ in PHASES:
        edge += length
        if share < edge:
            return name
    return PHASES[-1][0]


def phase_bounds(seconds: float) -> dict[str, tuple[float, float]]:
    """Map each phase to its (start, end) in seconds from the start of the run."""
    bounds, edge = {}, 0.0
    for name, length, _ in PHASES:
        bounds[name] = (edge * seconds, (edge + length) * seconds)
        edge += length
    return bounds
