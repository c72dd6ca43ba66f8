"""The Redis implementations of the state ports: one script call per step.

Each port keeps a memory port as its local fallback: while the store is degraded every step
goes there, at memory speed. Tickets tell the two apart: the server's tickets are encoded
below `REJECTED` (-2 - t), local ones are the core's own (>= 0), so an outcome always goes
back to whoever admitted the call; an outcome for the server that cannot reach it counts as
nothing.

A breaker port remembers the last state the server told it. While that is CLOSED (or
DISABLED) a call is admitted without a round trip (its ticket is the server's generation),
so a closed call costs one round trip: the outcome's. A call admitted by a view that another
process has since made stale counts as nothing on the server (its generation has passed),
exactly as a call admitted before a transition does in one process.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from .._core.breaker import (
    REJECTED,
    Admission,
    BreakerMetrics,
    BreakerState,
    Transition,
)
from .._core.budget import DEFAULT_BUCKETS
from . import _backend
from .ports import (
    BreakerConfig,
    BudgetConfig,
    Control,
    LimiterConfig,
    MemoryBreakerPort,
    MemoryBudgetPort,
    MemoryLimiterPort,
    Take,
)

if TYPE_CHECKING:
    from .redis_store import RedisStore

__all__ = ["RedisBreakerPort", "RedisBudgetPort", "RedisLimiterPort"]

_HOUR: Final = 3600.0

FLUSH_INTERVAL: Final = 0.05
"""Seconds between two background sends of a budget's batched deposits."""
_NO_TRANSITIONS: Final[tuple[Transition, ...]] = ()
_TARGET: Final = {
    "force_open": BreakerState.FORCED_OPEN,
    "disable": BreakerState.DISABLED,
    "reset": BreakerState.CLOSED,
}

TRIO_ADVICE: Final = (
    "on trio, use a MemoryStore, or the sync RedisStore (resilient_async.sync) from a worker thread"
)
"""What a trio user can do instead of the asyncio client's store."""


class _View(NamedTuple):
    """What the last step told this process, and when (on this process's clock)."""

    at: float
    state: BreakerState
    retry_after: float | None
    fast: int  # the generation whose calls are admitted without asking, or -1
    calls: int
    failures: int
    slow: int
    probes: int


class RedisBreakerPort:
    """A breaker's state on the server; see the module docstring."""

    __slots__ = ("_args", "_keys", "_name", "_pending", "_store", "_view", "local")

    def __init__(
        self,
        store: RedisStore,
        name: str,
        base: str,
        config: BreakerConfig,
        local: MemoryBreakerPort,
    ) -> None:
        self._store = store
        self._name = name
        self.local = local
        self._keys = [f"{base}:state", f"{base}:window", f"{base}:probes"]
        fingerprint = _describe(config)
        # Abandoned state expires: an hour, or longer for breakers with long periods.
        ttl = max(_HOUR, 4.0 * config.open_for, 4.0 * config.probe_timeout)
        if config.window_type == "time":
            ttl = max(ttl, 4.0 * config.window)
        self._args: list[object] = [
            fingerprint,
            config.window_type,
            repr(config.window),
            repr(config.failure_rate),
            config.min_calls,
            repr(config.open_for),
            config.half_open_calls,
            repr(config.slow_call_rate),
            repr(config.probe_timeout),
            int(ttl * 1000),
        ]
        self._view: _View | None = None
        self._pending: Control | None = None

    def forget_view(self, now: float) -> None:
        """Drop what the server last said and the local state (after an outage).

        The next call asks the server again; a later outage starts from a fresh local state.
        """
        self._view = None
        self.local.control("reset", now)

    async def acquire(self, now: float) -> Admission:
        """See `BreakerPort.acquire`."""
        view = self._view
        if (
            view is not None
            and view.fast >= 0
            and self._pending is None
            and not self._store.degraded
        ):
            return Admission(_remote(view.fast), view.state, None, _NO_TRANSITIONS)
        reply = await self._step("acquire", now)
        if reply is None:
            return await self.local.acquire(now)
        ticket, transitions = reply
        view = self._view
        assert view is not None
        if ticket == REJECTED:
            return Admission(REJECTED, view.state, view.retry_after, transitions)
        return Admission(_remote(ticket), view.state, None, transitions)

    async def record(
        self, ticket: int, now: float, failed: bool, slow: bool
    ) -> tuple[Transition, ...]:
        """See `BreakerPort.record`."""
        if ticket > REJECTED:
            return await self.local.record(ticket, now, failed, slow)
        reply = await self._step("record", now, _remote(ticket), failed, slow)
        return _NO_TRANSITIONS if reply is None else reply[1]

    async def cancel(self, ticket: int, now: float) -> tuple[Transition, ...]:
        """See `BreakerPort.cancel`."""
        if ticket > REJECTED:
            return await self.local.cancel(ticket, now)
        view = self._view
        if view is not None and ticket == _remote(view.fast):
            return _NO_TRANSITIONS  # a closed-state call: nothing to give back, no round trip
        reply = await self._step("cancel", now, _remote(ticket))
        return _NO_TRANSITIONS if reply is None else reply[1]

    def peek(self, now: float) -> BreakerState:
        """See `BreakerPort.peek`: the server's state (one blocking read), or the last seen.

        The last state seen is advanced by the time since; it answers when the read cannot
        be made (an async store given a client, a failed read).
        """
        if self._store.degraded:
            return self.local.peek(now)
        self._read(now)
        return self._seen(now)

    def seen(self, now: float) -> BreakerState:
        """See `BreakerPort.seen`: the last state a step told, advanced by the time since."""
        if self._store.degraded:
            return self.local.peek(now)
        return self._seen(now)

    def _read(self, now: float) -> None:
        """Refresh the view with one read-only step, changing nothing on the server."""
        if self._pending is not None:
            return  # a manual command not sent yet: the view shows its state already
        args: list[object] = ["peek", -1, 0, 0, "", *self._args]
        reply = self._store.read("breaker", self._keys, args)
        if reply is not None and _text(reply[0]) != "config":
            self._remember(reply, now)

    def _seen(self, now: float) -> BreakerState:
        view = self._view
        if view is None:
            return BreakerState.CLOSED  # nothing heard yet: the first call will ask
        if (
            view.state is BreakerState.OPEN
            and view.retry_after is not None
            and now - view.at >= view.retry_after
        ):
            return BreakerState.HALF_OPEN
        return view.state

    def metrics(self, now: float) -> BreakerMetrics:
        """See `BreakerPort.metrics`: the server's window (one blocking read), or the last seen."""
        if self._store.degraded:
            return self.local.metrics(now)
        self._read(now)
        view = self._view
        if view is None:
            return BreakerMetrics(BreakerState.CLOSED, 0, 0, 0, 0.0, 0.0, 0, None)
        state = self._seen(now)
        retry_after = view.retry_after
        if retry_after is not None:
            retry_after = max(0.0, retry_after - (now - view.at))
            if state is BreakerState.HALF_OPEN:
                retry_after = None
        calls = view.calls
        return BreakerMetrics(
            state=state,
            calls=calls,
            failures=view.failures,
            slow_calls=view.slow,
            failure_rate=view.failures / calls if calls else 0.0,
            slow_call_rate=view.slow / calls if calls else 0.0,
            probes_in_flight=view.probes,
            retry_after=retry_after,
        )

    def control(self, command: Control, now: float) -> tuple[Transition, ...]:
        """See `BreakerPort.control`: sent with this process's next step.

        The view shows the command's state at once; the events come from the server's
        step that applies it (or from the local state while the store is degraded).
        """
        self._pending = command
        self._view = _View(now, _TARGET[command], None, -1, 0, 0, 0, 0)
        if self._store.degraded:
            return self.local.control(command, now)
        return _NO_TRANSITIONS

    async def _step(
        self, op: str, now: float, ticket: int = -1, failed: bool = False, slow: bool = False
    ) -> tuple[int, tuple[Transition, ...]] | None:
        pending = self._pending or ""
        args = [op, ticket, int(failed), int(slow), pending, *self._args]
        reply = await self._store.step("breaker", self._keys, args)
        if reply is None:
            return None
        if _text(reply[0]) == "config":
            if op != "acquire":
                return None  # an outcome never raises in place of the call's own result
            raise _mismatch("breaker", self._name, _text(reply[1]), self._args[0])
        if self._pending == pending:
            self._pending = None
        return self._remember(reply, now)

    def _remember(self, reply: Any, now: float) -> tuple[int, tuple[Transition, ...]]:
        """Keep the state a step told; return its ticket and transitions."""
        retry_after = float(reply[2]) if reply[2] else None
        self._view = _View(
            now,
            BreakerState(_text(reply[1])),
            retry_after,
            int(reply[3]),
            int(reply[4]),
            int(reply[5]),
            int(reply[6]),
            int(reply[7]),
        )
        raw = reply[8:]
        transitions = tuple(
            Transition(BreakerState(_text(raw[i])), BreakerState(_text(raw[i + 1])))
            for i in range(0, len(raw), 2)
        )
        return int(reply[0]), transitions


class RedisLimiterPort:
    """A token bucket on the server; see `LimiterPort` and `shared_ratelimit`."""

    __slots__ = ("_args", "_keys", "_name", "_settings", "_store", "local")

    def __init__(
        self,
        store: RedisStore,
        name: str,
        base: str,
        config: LimiterConfig,
        local: MemoryLimiterPort,
    ) -> None:
        self._store = store
        self.local = local
        self._name = name
        self._keys = [f"{base}:bucket"]
        # Long enough that a bucket in debt is never forgotten before it has paid.
        ttl = _HOUR + 2.0 * config.burst / config.rate_per_second
        self._args = (repr(config.rate_per_second), repr(config.burst), int(ttl * 1000))
        self._settings = _describe(config)

    async def take(self, tokens: float, now: float, limit: float) -> Take:
        """See `LimiterPort.take`.

        Raises:
            ValueError: The bucket on the server was made with other settings.
        """
        rate, burst, ttl = self._args
        bound = -1.0 if limit == math.inf else max(limit, 0.0)
        args: list[Any] = [
            rate, burst, repr(float(tokens)), repr(bound), "take", ttl, self._settings
        ]  # fmt: skip
        reply = await self._store.step("limiter", self._keys, args)
        if reply is None:
            return await self.local.take(tokens, now, limit)
        if _text(reply[0]) == "config":
            raise _mismatch("rate limiter", self._name, _text(reply[1]), self._settings)
        return bool(int(reply[0])), float(reply[1])

    async def give_back(self, tokens: float, now: float) -> None:
        """See `LimiterPort.give_back` (lost, as nothing, when the store cannot be reached)."""
        if self._store.degraded:
            await self.local.give_back(tokens, now)
            return
        rate, burst, ttl = self._args
        args: list[Any] = [rate, burst, repr(float(tokens)), "-1", "give", ttl, self._settings]
        await self._store.step("limiter", self._keys, args)  # other settings: nothing given


class RedisBudgetPort:
    """A retry budget on the server: retries withdrawn atomically, deposits batched.

    A withdrawal (a retry about to be made) is one awaited step that also carries the
    deposits counted since the last step. Deposits (first attempts) cost no round trip: they
    are counted here and sent by a background step at most every `FLUSH_INTERVAL` seconds,
    so the budget the server sees grows up to that much late. That errs on the safe side:
    the fleet never retries more than the budget allows, it may allow a little less.
    """

    __slots__ = (
        "_args",
        "_available",
        "_flusher",
        "_keys",
        "_last_flush",
        "_lock",
        "_mismatch",
        "_name",
        "_pending",
        "_store",
        "local",
    )

    def __init__(
        self,
        store: RedisStore,
        name: str,
        base: str,
        config: BudgetConfig,
        local: MemoryBudgetPort,
    ) -> None:
        self._store = store
        self._name = name
        self.local = local
        self._keys = [f"{base}:budget"]
        floor = config.min_per_second * config.ttl
        ttl = _HOUR + 2.0 * config.ttl
        self._args = [
            repr(config.ratio),
            repr(floor),
            repr(config.ttl),
            DEFAULT_BUCKETS,
            int(ttl * 1000),
            _describe(config),
        ]
        self._mismatch: ValueError | None = None  # the server holds other settings
        self._available = floor  # what the last step said (nothing asked yet: the floor)
        self._pending = 0
        self._last_flush = -math.inf
        self._flusher: _backend.Background | None = None
        self._lock = _backend.Lock()

    def deposit(self, now: float) -> None:
        """Count one call; a background step sends the count (no round trip here).

        Raises:
            ValueError: A step found the budget on the server made with other settings.
        """
        if self._mismatch is not None:
            raise self._mismatch
        self.local.deposit(now)  # the local fallback stays warm for an outage
        with self._lock:
            self._pending += 1
            due = self._flusher is None and now - self._last_flush >= FLUSH_INTERVAL
            if due:
                self._last_flush = now
        if due and not self._store.degraded and not self._store.closed:
            _backend.require_asyncio("RedisStore (redis-py's asyncio client)", TRIO_ADVICE)
            self._flusher = _backend.Background(self._flush)

    async def withdraw(self, now: float) -> bool:
        """Withdraw one retry in one step on the server (with the batched deposits).

        Raises:
            ValueError: The budget on the server was made with other settings.
        """
        if self._mismatch is not None:
            raise self._mismatch
        if self._store.degraded:
            return self.local.try_withdraw(now)
        granted = await self._step(withdraw=True)
        if granted is None:
            return self.local.try_withdraw(now)
        return granted

    def available(self, now: float) -> float:
        """Retries available as of this process's last step (local while degraded)."""
        if self._store.degraded:
            return self.local.available(now)
        return self._available

    async def close(self) -> None:
        """Stop a background send in flight (its deposits are lost)."""
        flusher = self._flusher
        if flusher is not None:
            await flusher.stop()

    async def _flush(self) -> None:
        try:
            await self._step(withdraw=False)
        except ValueError:
            pass  # other settings on the server: kept, raised by the next deposit or withdrawal
        finally:
            self._flusher = None

    async def _step(self, *, withdraw: bool) -> bool | None:
        with self._lock:
            calls, self._pending = self._pending, 0
        args: list[Any] = [calls, int(withdraw), *self._args]
        reply = await self._store.step("budget", self._keys, args)
        if reply is None:
            return None  # the deposits are lost with the outage: the budget errs low
        if _text(reply[0]) == "config":
            error = _mismatch("retry budget", self._name, _text(reply[1]), self._args[-1])
            self._mismatch = error  # a background send cannot raise: the next use will
            raise error
        self._available = float(reply[1])
        return bool(int(reply[0]))


def _describe(config: BreakerConfig | LimiterConfig | BudgetConfig) -> str:
    """The settings as the server keeps them, readable in an error message."""
    return ", ".join(f"{field}={value!r}" for field, value in config._asdict().items())


def _mismatch(kind: str, name: str, stored: str, mine: object) -> ValueError:
    return ValueError(
        f"the {kind} {name!r} on the server has other settings ({stored}) than this one "
        f"({mine}): every replica must configure a shared {kind} the same way"
    )


def _text(value: Any) -> str:
    """A reply element as text, whether the client decodes responses or not."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _remote(ticket: int) -> int:
    """Encode a server ticket (>= -1) below `REJECTED`, or decode one (its own inverse)."""
    return -2 - ticket
