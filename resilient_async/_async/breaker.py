"""Circuit breaker: stop calling a dependency that keeps failing, probe it, resume.

The rules live in `_core.breaker.BreakerCore` (a pure state machine over a sliding window);
this driver only reads the clock, runs the call, reports its outcome and emits events. The
same source is the async driver and, through tools/unasync.py, the sync one: state changes
happen under the backend lock (a real lock in the sync twin, none in async code, where no
state change spans a suspension point), so both are safe to share.

It is a `Guard`: admission and outcome are written once, as its steps (`enter_nowait`,
`enter`, `exit`), from which the base derives `call`, `async with` and the decorator, and
which a pipeline takes directly. The closed path is kept as short as Python allows: while
the breaker is CLOSED (or DISABLED) a call reads one attribute to get its ticket, runs the
call, and makes one core call to record the outcome. Clock reads happen only when a time
window or slow-call detection needs them; events and error context only when something
happens.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, Literal

from .._core.breaker import (
    NEEDS_TIME,
    REJECTED,
    Admission,
    BreakerCore,
    BreakerMetrics,
    BreakerState,
    NeedsTime,
    Transition,
)
from .._core.breaker_config import check_breaker_settings, new_core
from .._core.checks import check_hooks, check_name
from .._core.signals import is_catchable
from ..classify import DEFAULT, DefaultType, ErrorClass, OnSpec, compile_on
from ..context import PreparedFields, attach_context
from ..errors import CircuitOpenError
from ..instrumentation import Hook, emit_to
from ..stores.base import StateStore
from . import _backend
from .policy import MUST_WAIT, Guard
from .ports import BreakerConfig, BreakerPort, Control, MemoryBreakerPort

if TYPE_CHECKING:
    from .shared_breaker import SharedBreaker

__all__ = ["BreakerMetrics", "BreakerState", "CircuitBreaker", "StateStore"]

DEFAULT_ON: Final = frozenset({ErrorClass.TRANSIENT, ErrorClass.TIMEOUT, ErrorClass.UNKNOWN})
"""What counts as a failure unless `on=` says otherwise."""

_FLAVOUR: Final = "async" if _backend.IS_ASYNC else "sync"


class CircuitBreaker(Guard):
    """Reject calls to a dependency while it fails too often, then probe it to recover.

    CLOSED: calls pass and their outcomes fill a sliding window, the last `window` calls
    (`window_type="count"`) or the calls of the last `window` seconds (`"time"`). Once the
    window holds at least `min_calls` calls and the failure rate reaches `failure_rate` (or
    the slow-call rate reaches `slow_call_rate`), the breaker opens. OPEN: every call is
    rejected at once with a fresh `CircuitOpenError`. After `open_for` seconds it is
    HALF_OPEN: exactly `half_open_calls` probes may pass, the others are rejected; if all
    succeed it closes (with an empty window), if one fails it opens again.

    What counts: an error matched by `on` is a failure; any other error is a success (the
    dependency answered); a cancelled call, `KeyboardInterrupt` and `SystemExit` count as
    nothing and pass through, and a cancelled probe gives its permit back. A call is slow when
    it takes `slow_call_duration` seconds or more (on the loop's clock); a slow failure counts
    as a failure and as a slow call. A probe that holds its permit longer than
    `max(open_for, 1 s)` is given up: the breaker re-opens, so a hung probe can never keep it
    half-open. Calls admitted before a transition (before the breaker opened, or probes whose
    permit expired) change nothing when they finish.

    Use it through `call(fn, ...)`, as a decorator, or as a guard around a block (`async with
    breaker:` in async code, `with breaker:` in the sync API). One instance may guard any
    number of concurrent calls; with `store=` and a `name`, instances share one state.

    Args:
        name: A name for events, errors and error context; required with `store`.
        failure_rate: The failure rate that opens the breaker, in (0, 1].
        window: The window's size: a number of calls (an int >= 1) for `window_type="count"`,
            a number of seconds (> 0) for `"time"`.
        window_type: `"count"` or `"time"`. A time window is cut into 10 buckets: a call
            stays in it for between 0.9 and 1 times `window` seconds.
        min_calls: How many calls the window must hold before the breaker may open, >= 0
            (capped at the size of a count window).
        open_for: Seconds the breaker stays open before probing, >= 0.
        half_open_calls: How many probes a half-open breaker lets through, >= 1.
        slow_call_duration: Seconds from which a call counts as slow (> 0), or None to not
            detect slow calls.
        slow_call_rate: The slow-call rate that opens the breaker, in (0, 1]. Half-open, the
            breaker re-opens rather than closes when this share of its probes was slow.
        on: What counts as a failure: exception types, an `ErrorClass`, a set of them, or a
            predicate. Default {TRANSIENT, TIMEOUT, UNKNOWN}.
        store: None for state of its own, or a store through which instances given the
            same store and name share one state: `stores.MemoryStore` in this process,
            `stores.RedisStore` across processes (see "Running many replicas").
        consecutive_failures: Instead of a failure rate, open after this many failures in a
            row (an int >= 1; any success in between starts the count again), as pybreaker's
            and aiobreaker's `fail_max` do. It cannot be combined with `failure_rate`,
            `window`, `window_type` or `min_calls` (leave them at their defaults).
        hooks: Hooks (callables taking one event) for this breaker's events only, besides
            the global and scoped hooks.

    Durations (`open_for`, `slow_call_duration`, a time `window`) are seconds or
    `datetime.timedelta`.

    Raises:
        ValueError: An argument is out of range, or `store` is given without a `name`, or a
            breaker of that name exists in the store with another configuration, or
            `consecutive_failures` is combined with a rate-window setting.
        TypeError: An argument has the wrong type.

    Example:
        >>> payments = CircuitBreaker("payments", failure_rate=0.5, window=50, open_for=10)
        >>> payments.state
        BreakerState.CLOSED
        >>> # then: payments.call(gateway.charge, order), awaited in async code
    """

    __slots__ = (
        "_acquire",
        "_context_fields",
        "_core",
        "_hooks",
        "_is_failure",
        "_lock",
        "_name",
        "_on_success",
        "_port",
        "_remote",
        "_slow_after",
        "_timed",
    )

    def __init__(
        self,
        name: str | None = None,
        *,
        failure_rate: float = 0.5,
        window: float | timedelta = 100,
        window_type: Literal["count", "time"] = "count",
        min_calls: int = 10,
        open_for: float | timedelta = 30.0,
        half_open_calls: int = 1,
        slow_call_duration: float | timedelta | None = None,
        slow_call_rate: float = 1.0,
        on: OnSpec | DefaultType = DEFAULT,
        store: StateStore | None = None,
        consecutive_failures: int | None = None,
        hooks: Iterable[Hook] = (),
    ) -> None:
        name = check_name(name)
        config = BreakerConfig(
            *check_breaker_settings(
                failure_rate=failure_rate,
                window=window,
                window_type=window_type,
                min_calls=min_calls,
                open_for=open_for,
                half_open_calls=half_open_calls,
                slow_call_duration=slow_call_duration,
                slow_call_rate=slow_call_rate,
                consecutive_failures=consecutive_failures,
            )
        )
        self._is_failure = compile_on(on, default=DEFAULT_ON)
        self._hooks: tuple[Hook, ...] = check_hooks(hooks)
        self._name = name
        # The error context fields for each state, built once: the error path only looks up.
        self._context_fields = {
            state: PreparedFields(
                {"policy": name or "CircuitBreaker", "breaker_state": state.value}
            )
            for state in BreakerState
        }
        slow_after = config.slow_call_duration
        self._slow_after = math.inf if slow_after is None else slow_after
        self._port = port = _port_of(store, name, config)
        self._remote: SharedBreaker | None = None
        if not isinstance(port, MemoryBreakerPort):
            # State behind a server: admission and outcomes are awaited steps of the store,
            # which a `SharedBreaker` takes. The breaker's own core never admits (it is held
            # forced open) and every call is timed, so the memory hot paths hand each call
            # over from their slow branches and gain no check.
            from .shared_breaker import SharedBreaker

            self._remote = SharedBreaker(self, port)
            port = MemoryBreakerPort(new_core(config))
            port.core.force_open(0.0)
        timed = config.window_type == "time" or slow_after is not None
        self._timed = timed or self._remote is not None  # a shared breaker times every call
        core, lock = self._core, self._lock = port.core, port.lock
        # The two state changes of the hot paths, with the lock bound (in sync code only).
        self._acquire = _backend.locking(lock, core.acquire)
        self._on_success = _backend.locking(lock, core.on_success)

    def __repr__(self) -> str:
        return f"CircuitBreaker({self._name!r}, state={self.state!r})"

    @property
    def _kind(self) -> str:
        return "CircuitBreaker"  # what error messages call it, in a subclass too

    # --- the guard's steps: `call`, `async with` and pipelines take them ------------------

    def enter_nowait(self) -> Any:
        """Admit a call, or raise a fresh `CircuitOpenError`: its token.

        The token is the call's ticket, and the time it started when the breaker times
        calls (a time window, slow-call detection): the closed path reads no clock. With a
        remote store, admission is an awaited step: `MUST_WAIT` (see `enter`).

        Raises:
            CircuitOpenError: The breaker is open, forced open, or half-open with every
                probe permit taken (a fresh error each time, with `retry_after`).
        """
        # unasync: sync-only: _backend.check_deadline()
        ticket = self._core.fast_ticket
        if ticket is None:
            if self._remote is not None:
                return MUST_WAIT  # admission is a step of the store: `enter` takes it
            ticket = self._ticket_of(self._acquire(_backend.current_time()))
        if self._timed:
            return ticket, _backend.current_time()
        return ticket

    async def enter(self) -> Any:
        """Admit a call of a breaker on a remote store (in memory: as `enter_nowait`)."""
        if self._remote is None:
            return self.enter_nowait()
        return await self._remote.enter()

    def exit(self, token: Any, error: BaseException | None) -> Any:
        """Record how the call ended: a failure if `on` matches its error, else a success.

        A cancelled (or withdrawn) call counts as nothing and gives a probe's permit back.
        With a remote store, recording is an awaited step: `MUST_WAIT` (see `finish`).
        """
        if not self._timed:
            if error is None:  # the hot path: one core call and no clock read
                outcome = self._on_success(token, None)
                if outcome:
                    self._settle(token, outcome)
                return None
            ticket, start = token, 0.0
        elif self._remote is not None:
            return MUST_WAIT
        else:
            ticket, start = token
        if error is None:
            self._succeeded_timed(ticket, start)
        elif is_catchable(error):
            self._failed(ticket, start, error)
        else:
            self._cancelled(ticket)
        return None

    async def finish(self, token: Any, error: BaseException | None) -> None:
        """Record how a call of a breaker on a remote store ended (a step of the store)."""
        assert self._remote is not None  # `exit` says MUST_WAIT only then
        await self._remote.finish(token, error)

    @property
    def exit_may_wait(self) -> bool:
        """True with a remote store, whose steps are awaited: pipelines run it by `call`."""
        return self._remote is not None

    # --- state and control --------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The state now: HALF_OPEN as soon as `open_for` has passed, before any call.

        "Now" is the backend's clock: the running loop's in async code, `time.monotonic()` in
        the sync API. Read where no loop runs (at import time, after `asyncio.run` returned,
        from another thread), async code falls back to `time.monotonic()`, which is the
        library's clock on asyncio's default loop and on trio's real clock (its offset taken
        out), so the answer is exact there; with a virtual clock only the time-driven
        transitions may be off. Reading never changes the state. With a `RedisStore`, it is
        read from the server (a blocking read bounded by the store's `timeout`), or as this
        process last saw it when the server cannot answer.
        """
        return self._port.peek(_backend.now())

    def metrics(self) -> BreakerMetrics:
        """Return a frozen snapshot: state, calls, failures, slow calls, rates, probes.

        "Now" is read as for `state`; taking a snapshot changes nothing.
        """
        return self._port.metrics(_backend.now())

    def force_open(self) -> None:
        """Reject every call (with `retry_after` None) until `reset()`.

        Probes in flight lose their permits; calls in flight count as nothing.
        """
        self._control("force_open")

    def disable(self) -> None:
        """Let every call pass until `reset()`: outcomes are still recorded, it never opens."""
        self._control("disable")

    def reset(self) -> None:
        """Go back to CLOSED with an empty window, from any state.

        Calls in flight when it is reset count as nothing when they finish.
        """
        self._control("reset")

    def _control(self, command: Control) -> None:
        """Apply a manual command (with a store, it reaches the server with the next step)."""
        self._report(self._port.control(command, _backend.now()))

    # --- the slow paths -----------------------------------------------------------------

    def _ticket_of(self, admission: Admission) -> int:
        """Report the admission's transitions; return its ticket or raise its rejection."""
        if admission.transitions:
            self._report(admission.transitions)
        if admission.ticket != REJECTED:
            return admission.ticket
        error = CircuitOpenError(self._name, admission.retry_after)
        attach_context(error, self._context_fields[admission.state])
        emit_to(
            self._hooks,
            "breaker.rejected",
            self._name,
            state=admission.state,
            retry_after=admission.retry_after,
        )
        raise error

    def _settle(
        self, ticket: int, outcome: tuple[Transition, ...] | Literal[NeedsTime.NEEDS_TIME]
    ) -> None:
        """Finish recording a success that came back with transitions or `NEEDS_TIME`."""
        if outcome is NEEDS_TIME:
            outcome = self._on_success(ticket, _backend.current_time())
        self._report(outcome)

    def _succeeded_timed(self, ticket: int, start: float) -> None:
        end = _backend.current_time()
        duration = end - start
        slow = duration >= self._slow_after
        transitions = self._on_success(ticket, end, slow)
        if slow:
            emit_to(self._hooks, "breaker.slow_call", self._name, duration=duration, failed=False)
        if transitions:
            self._report(transitions)

    def _failed(self, ticket: int, start: float, exc: Exception) -> None:
        """Record an error outcome: a failure if `on` matches it, else a success."""
        failed = True  # if an `on` predicate raises, the call still counts (and its error wins)
        try:
            failed = self._is_failure(exc)
        finally:
            self._record_error(ticket, start, exc, failed)

    def _record_error(self, ticket: int, start: float, exc: Exception, failed: bool) -> None:
        end = _backend.current_time()
        duration = end - start
        slow = self._timed and duration >= self._slow_after
        transitions, state = _backend.locked(
            self._lock, _record, self._core, ticket, end, failed, slow
        )
        if slow:
            emit_to(self._hooks, "breaker.slow_call", self._name, duration=duration, failed=failed)
        if transitions:
            self._report(transitions)
        attach_context(exc, self._context_fields[state])

    def _cancelled(self, ticket: int) -> None:
        """Give a cancelled probe's permit back; a cancelled call counts as nothing."""
        if ticket == self._core.fast_ticket:
            return  # a closed-state call: nothing to give back
        # A coroutine closed outside its loop ends up here too: `now` needs no loop.
        transitions = _backend.locked(self._lock, self._core.on_cancel, ticket, _backend.now())
        if transitions:
            self._report(transitions)

    def _report(self, transitions: tuple[Transition, ...]) -> None:
        for transition in transitions:
            emit_to(
                self._hooks,
                "breaker.state_changed",
                self._name,
                old_state=transition.old,
                new_state=transition.new,
            )


def _port_of(store: StateStore | None, name: str | None, config: BreakerConfig) -> BreakerPort:
    """The breaker's state: its own, or the one `store` holds under `name` (maybe remote)."""
    if store is None:
        return MemoryBreakerPort(new_core(config))
    if not isinstance(store, StateStore):
        raise TypeError(f"store must be a MemoryStore, a RedisStore or None, got {store!r}")
    if name is None:
        raise ValueError("name is required with store=: instances share state by name")

    def make() -> BreakerPort:  # a store may answer with a port of its own kind (remote)
        return MemoryBreakerPort(new_core(config))

    return store.shared("breaker", name, config, make, flavour=_FLAVOUR)


def _record(
    core: BreakerCore, ticket: int, now: float, failed: bool, slow: bool
) -> tuple[tuple[Transition, ...], BreakerState]:
    """Record an error outcome in `core`: its transitions and the state it left."""
    if failed:
        transitions = core.on_failure(ticket, now, slow)
    else:
        transitions = core.on_success(ticket, now, slow)
    return transitions, core.state
