"""State ports: how a policy reaches state it may share with other instances.

A port is the small interface between a policy's driver and the state of one shared
primitive (a breaker, a token bucket, a retry budget). The memory ports here wrap the pure
`_core` machines and the backend lock; a distributed store (`RedisStore`) implements the
same methods with one atomic server-side step each, and keeps a memory port as its local
fallback. Every method takes the time from the caller: a memory port uses it, a remote one
uses the server's clock instead.

The drivers of unshared (or in-process shared) policies read `core`, `bucket` and `lock` of
a memory port directly on their hot paths, exactly as before the ports existed; only the
shared drivers go through the awaitable methods.
"""

from __future__ import annotations

from typing import Final, Literal, NamedTuple, Protocol

from .._core.breaker import Admission, BreakerCore, BreakerMetrics, BreakerState, Transition
from .._core.bucket import TokenBucket
from .._core.budget import RetryBudgetState
from . import _backend

__all__ = [
    "CONTROLS",
    "BreakerConfig",
    "BreakerPort",
    "BudgetConfig",
    "BudgetPort",
    "Control",
    "LimiterConfig",
    "LimiterPort",
    "MemoryBreakerPort",
    "MemoryBudgetPort",
    "MemoryLimiterPort",
    "SharedBudgetPort",
    "Take",
]

Control = Literal["force_open", "disable", "reset"]
CONTROLS: Final[tuple[Control, ...]] = ("force_open", "disable", "reset")

Take = tuple[bool, float]
"""What a limiter port answers: (granted, wait). Granted: the tokens are the caller's once it
has waited `wait` seconds (0 for at once). Refused: nothing was taken, and `wait` is how long
the caller would have had to wait."""


class BreakerConfig(NamedTuple):
    """The settings every breaker sharing one state must agree on."""

    window_type: str
    window: float
    failure_rate: float
    min_calls: int
    open_for: float
    half_open_calls: int
    slow_call_duration: float | None
    slow_call_rate: float
    probe_timeout: float


class LimiterConfig(NamedTuple):
    """The settings every limiter sharing one bucket must agree on."""

    rate_per_second: float
    burst: float


class BudgetConfig(NamedTuple):
    """The settings every retry budget sharing one state must agree on."""

    ratio: float
    min_per_second: float
    ttl: float


class BreakerPort(Protocol):
    """A breaker's state: permits, outcomes by ticket, the state, manual control."""

    async def acquire(self, now: float) -> Admission:
        """Admit or reject one call; a ticket for its outcome, or `REJECTED`."""
        ...

    async def record(
        self, ticket: int, now: float, failed: bool, slow: bool
    ) -> tuple[Transition, ...]:
        """Record the outcome of the call holding `ticket`."""
        ...

    async def cancel(self, ticket: int, now: float) -> tuple[Transition, ...]:
        """Forget the call holding `ticket` (cancelled: it counts as nothing)."""
        ...

    def peek(self, now: float) -> BreakerState:
        """The state at `now` (a remote port may make one blocking, read-only step)."""
        ...

    def seen(self, now: float) -> BreakerState:
        """The state at `now` as of this process's last step: never any I/O."""
        ...

    def metrics(self, now: float) -> BreakerMetrics:
        """A snapshot (a remote port may make one blocking, read-only step)."""
        ...

    def control(self, command: Control, now: float) -> tuple[Transition, ...]:
        """Apply `force_open`, `disable` or `reset` (a remote port sends it with its next step)."""
        ...


class LimiterPort(Protocol):
    """A token bucket's state: take tokens (maybe after a wait), give them back."""

    async def take(self, tokens: float, now: float, limit: float) -> Take:
        """Take `tokens` at once, or reserve them if the wait is at most `limit` seconds."""
        ...

    async def give_back(self, tokens: float, now: float) -> None:
        """Return tokens taken by `take` that the caller no longer uses."""
        ...


class BudgetPort(Protocol):
    """A retry budget's counts: deposits, and how many retries it would allow."""

    def deposit(self, now: float) -> None:
        """Count one call (a first attempt)."""
        ...

    def available(self, now: float) -> float:
        """How many retries the budget would allow now, as far as this process knows."""
        ...


class SharedBudgetPort(BudgetPort, Protocol):
    """A retry budget on a server: each withdrawal is an awaited step."""

    async def withdraw(self, now: float) -> bool:
        """Count one retry if the budget allows it; tell whether it did."""
        ...


class MemoryBreakerPort:
    """A breaker's state in this process: the pure core and the lock that serialises it.

    Attributes:
        core: The state machine; the driver's closed path reads it directly.
        lock: The backend lock (no-op in async code, a `threading.Lock` in the sync twin).
    """

    __slots__ = ("core", "lock")

    def __init__(self, core: BreakerCore) -> None:
        self.core = core
        self.lock = _backend.Lock()

    async def acquire(self, now: float) -> Admission:
        """See `BreakerPort.acquire`."""
        with self.lock:
            return self.core.acquire(now)

    async def record(
        self, ticket: int, now: float, failed: bool, slow: bool
    ) -> tuple[Transition, ...]:
        """See `BreakerPort.record`."""
        with self.lock:
            if failed:
                return self.core.on_failure(ticket, now, slow)
            return self.core.on_success(ticket, now, slow)

    async def cancel(self, ticket: int, now: float) -> tuple[Transition, ...]:
        """See `BreakerPort.cancel`."""
        with self.lock:
            return self.core.on_cancel(ticket, now)

    def peek(self, now: float) -> BreakerState:
        """See `BreakerPort.peek`."""
        with self.lock:
            return self.core.peek(now)

    def seen(self, now: float) -> BreakerState:
        """See `BreakerPort.seen`: the same as `peek` in memory."""
        return self.peek(now)

    def metrics(self, now: float) -> BreakerMetrics:
        """See `BreakerPort.metrics`."""
        with self.lock:
            return self.core.metrics(now)

    def control(self, command: Control, now: float) -> tuple[Transition, ...]:
        """See `BreakerPort.control`."""
        with self.lock:
            core = self.core
            if command == "force_open":
                return core.force_open(now)
            if command == "disable":
                return core.disable(now)
            return core.reset(now)


class MemoryLimiterPort:
    """A token bucket in this process, and the lock that guards it.

    The driver of an unshared limiter uses `bucket` directly (FIFO reservations, waiters
    woken when one ahead gives up); `take`/`give_back` serve the shared drivers' local
    fallback, where a reservation is settled at once and its caller sleeps out the wait.
    """

    __slots__ = ("bucket", "lock")

    def __init__(self, bucket: TokenBucket) -> None:
        self.bucket = bucket
        self.lock = _backend.Lock()

    async def take(self, tokens: float, now: float, limit: float) -> Take:
        """See `LimiterPort.take`."""
        with self.lock:
            bucket = self.bucket
            wait = bucket.wait_time(tokens, now)
            if wait == 0.0 and bucket.try_take(tokens, now):
                return True, 0.0
            if wait > limit:
                return False, wait
            bucket.admit(bucket.reserve(tokens, now))
            return True, wait

    async def give_back(self, tokens: float, now: float) -> None:
        """See `LimiterPort.give_back`."""
        with self.lock:
            self.bucket.give_back(tokens, now)


class MemoryBudgetPort:
    """A retry budget's counts in this process, and the lock that serialises them."""

    __slots__ = ("lock", "state")

    def __init__(self, state: RetryBudgetState) -> None:
        self.state = state
        self.lock = _backend.Lock()

    def deposit(self, now: float) -> None:
        """Count one call (a first attempt)."""
        with self.lock:
            self.state.deposit(now)

    def try_withdraw(self, now: float) -> bool:
        """Count one retry if the budget allows it; tell whether it did."""
        with self.lock:
            return self.state.try_withdraw(now)

    def available(self, now: float) -> float:
        """How many retries the budget would allow now."""
        with self.lock:
            return self.state.available(now)
