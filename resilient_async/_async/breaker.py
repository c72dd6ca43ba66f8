"""Circuit breaker: stop calling a dependency that keeps failing, probe it, resume.

The rules live in `_core.breaker.BreakerCore` (a pure state machine over a sliding window);
this driver only reads the clock, runs the call, reports its outcome and emits events. The
same source is the async driver and, through tools/unasync.py, the sync one: state changes
happen under the backend lock (a real lock in the sync twin, none in async code, where no
state change spans a suspension point), so both are safe to share.

The closed path is kept as short as Python allows: while the breaker is CLOSED (or DISABLED)
a call reads one attribute to get its ticket, runs the call, and makes one core call to
record the outcome. Clock reads happen only when a time window or slow-call detection needs
them; events and error context only when something happens.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, ParamSpec, TypeVar

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
from .._core.checks import (
    check_hooks,
    check_int,
    check_name,
    check_period,
    check_seconds,
)
from .._core.signals import is_catchable
from .._core.window import CountWindow, TimeWindow, Window
from ..classify import DEFAULT, DefaultType, ErrorClass, OnSpec, compile_on
from ..context import PreparedFields, attach_context
from ..errors import CircuitOpenError
from ..instrumentation import Hook, emit_to
from ..stores.base import StateStore
from . import _backend
from .policy import MUST_WAIT, Guard
from .ports import BreakerConfig, BreakerPort, MemoryBreakerPort

if TYPE_CHECKING:
    from .shared_breaker import SharedBreaker

__all__ = ["BreakerMetrics", "BreakerState", "CircuitBreaker", "StateStore"]

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_ON: Final = frozenset({ErrorClass.TRANSIENT, ErrorClass.TIMEOUT, ErrorClass.UNKNOWN})
"""What counts as a failure unless `on=` says otherwise."""

MIN_PROBE_TIMEOUT: Final = 1.0
"""A probe holds its permit for `max(open_for, MIN_PROBE_TIMEOUT)` seconds at most."""

_WINDOW_TYPES: Final = ("count", "time")
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
        "_context_fields",
        "_core",
        "_hooks",
        "_is_failure",
        "_lock",
        "_name",
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
        if consecutive_failures is not None:
            failure_rate, window, window_type, min_calls = _consecutive(
                consecutive_failures, failure_rate, window, window_type, min_calls
            )
        failure_rate = _check_rate(failure_rate, "failure_rate")
        slow_call_rate = _check_rate(slow_call_rate, "slow_call_rate")
        window = _check_window(window, window_type)
        min_calls = check_int(min_calls, "min_calls", 0)
        half_open_calls = check_int(half_open_calls, "half_open_calls", 1)
        open_for = check_seconds(open_for, "open_for")
        if slow_call_duration is not None:
            slow_call_duration = check_seconds(slow_call_duration, "slow_call_duration")
            if slow_call_duration == 0.0:
                raise ValueError("slow_call_duration must be > 0 seconds or None, got 0.0")
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
        self._slow_after = math.inf if slow_call_duration is None else slow_call_duration
        self._timed = window_type == "time" or slow_call_duration is not None
        config = BreakerConfig(
            window_type,
            window,
            failure_rate,
            min_calls,
            open_for,
            half_open_calls,
            slow_call_duration,
            slow_call_rate,
            max(open_for, MIN_PROBE_TIMEOUT),
        )

        def new_port() -> MemoryBreakerPort:
            sliding: Window = (
                CountWindow(int(window)) if window_type == "count" else TimeWindow(window)
            )
            core = BreakerCore(
                sliding,
                failure_rate=failure_rate,
                min_calls=min_calls,
                open_for=open_for,
                half_open_calls=half_open_calls,
                slow_call_rate=slow_call_rate,
                probe_timeout=config.probe_timeout,
            )
            return MemoryBreakerPort(core)

        # A store may answer with a port of its own kind (a remote one), not the memory one.
        make: Callable[[], BreakerPort] = new_port
        if store is None:
            port = make()
        elif not isinstance(store, StateStore):
            raise TypeError(f"store must be a MemoryStore, a RedisStore or None, got {store!r}")
        elif name is None:
            raise ValueError("name is required with store=: instances share state by name")
        else:
            port = store.shared("breaker", name, config, make, flavour=_FLAVOUR)
        self._remote: SharedBreaker | None = None
        if not isinstance(port, MemoryBreakerPort):
            # State behind a server: every step is awaited, so a driver of its own takes
            # them. The breaker's own core is held forced open, so that the closed fast
            # path never admits and its slow branch hands each call over: the memory
            # breaker's hot path gains no check.
            from .shared_breaker import SharedBreaker

            self._remote = SharedBreaker(self, port, _now)
            port = new_port()
            port.core.force_open(0.0)
        assert isinstance(port, MemoryBreakerPort)
        self._core, self._lock = port.core, port.lock

    def __repr__(self) -> str:
        return f"CircuitBreaker({self._name!r}, state={self.state!r})"

    # --- guarding calls -----------------------------------------------------------------

    async def call(self, fn: _backend.Fn[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(*args, **kwargs)` if the breaker admits it, and record its outcome.

        Raises:
            CircuitOpenError: The breaker is open, forced open, or half-open with every
                probe permit taken (a fresh error each time, with `retry_after`).
        """
        # unasync: sync-only: _backend.check_deadline()
        ticket = self._core.fast_ticket
        if ticket is None:
            if self._remote is not None:
                return await self._remote.call(fn, *args, **kwargs)
            ticket = self._admit()
        if self._timed:
            return await self._call_timed(ticket, fn, *args, **kwargs)
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            self._misused(ticket, exc, fn)  # unasync: remove
            self._failed(ticket, 0.0, exc)
            raise
        except BaseException:
            self._cancelled(ticket)
            raise
        # unasync: sync-only: if type(result) is _backend.CoroutineType:
        # unasync: sync-only:     self._check_result(ticket, result, fn)
        # The hot path: one core call and no clock read. Async code takes no lock: no other
        # task runs between the call's end and this line.
        # unasync: sync-only: with self._lock:
        # unasync: sync-only:     outcome = self._core.on_success(ticket, None)
        outcome = self._core.on_success(ticket, None)  # unasync: remove
        if outcome:
            self._settle(ticket, outcome)
        return result

    async def _call_timed(
        self, ticket: int, fn: _backend.Fn[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run an admitted call on the clock (time window or slow-call detection)."""
        start = _backend.current_time()
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            self._misused(ticket, exc, fn)  # unasync: remove
            self._failed(ticket, start, exc)
            raise
        except BaseException:
            self._cancelled(ticket)
            raise
        # unasync: sync-only: if type(result) is _backend.CoroutineType:
        # unasync: sync-only:     self._check_result(ticket, result, fn)
        self._succeeded_timed(ticket, start)
        return result

    async def __aenter__(self) -> CircuitBreaker:
        """Admit the block as one call, or raise `CircuitOpenError`."""
        token = self.enter_nowait()
        if token is MUST_WAIT:
            token = await self.enter()
        self._push_block(*token)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Record the block's outcome like that of a call; never suppress its error."""
        token = self._pop_block()
        if self._remote is not None:
            await self._remote.exit(*token, exc)
            return
        self.exit(token, exc)

    def _push_block(self, ticket: int, start: float) -> None:
        _blocks.set((*_blocks.get(), (self, ticket, start)))

    def _pop_block(self) -> tuple[int, float]:
        """Take this breaker's innermost open block off the task's list."""
        blocks = _blocks.get()
        for index in range(len(blocks) - 1, -1, -1):
            if blocks[index][0] is self:
                _, ticket, start = blocks[index]
                _blocks.set(blocks[:index] + blocks[index + 1 :])
                return ticket, start
        raise RuntimeError(f"{self!r} exited without a matching enter")

    # --- the guard protocol, through which a pipeline runs it without a frame of its own ---

    def enter_nowait(self) -> Any:
        # unasync: sync-only: _backend.check_deadline()
        ticket = self._core.fast_ticket
        if ticket is None:
            if self._remote is not None:
                return MUST_WAIT  # admission is a step of the store: `enter` takes it
            ticket = self._admit()
        return ticket, (_backend.current_time() if self._timed else 0.0)

    async def enter(self) -> tuple[int, float]:
        remote = self._remote
        if remote is None:  # admission in memory never waits: it passes or is rejected
            return self.enter_nowait()  # type: ignore[no-any-return]
        return await remote.enter(), _backend.current_time()

    def exit(self, token: tuple[int, float], error: BaseException | None) -> None:
        ticket, start = token
        if error is None:
            if self._timed:
                self._succeeded_timed(ticket, start)
                return
            # unasync: sync-only: with self._lock:
            # unasync: sync-only:     outcome = self._core.on_success(ticket, None)
            outcome = self._core.on_success(ticket, None)  # unasync: remove
            if outcome:
                self._settle(ticket, outcome)
        elif is_catchable(error):
            self._failed(ticket, start, error)
        else:
            self._cancelled(ticket)

    # --- state and control --------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The state now: HALF_OPEN as soon as `open_for` has passed, before any call.

        "Now" is the backend's clock: the running loop's in async code, `time.monotonic()` in
        the sync API. Read where no loop runs (at import time, after `asyncio.run` returned,
        from another thread), async code falls back to `time.monotonic()`, which is the
        library's clock on asyncio's default loop and on trio's real clock (its offset taken
        out), so the answer is exact there; with a virtual clock only the time-driven
        transitions may be off. Reading never changes the state.
        """
        if self._remote is not None:
            return self._remote.state()
        now = _now()
        with self._lock:
            return self._core.peek(now)

    def metrics(self) -> BreakerMetrics:
        """Return a frozen snapshot: state, calls, failures, slow calls, rates, probes.

        "Now" is read as for `state`; taking a snapshot changes nothing.
        """
        if self._remote is not None:
            return self._remote.metrics()
        now = _now()
        with self._lock:
            return self._core.metrics(now)

    def force_open(self) -> None:
        """Reject every call (with `retry_after` None) until `reset()`.

        Probes in flight lose their permits; calls in flight count as nothing.
        """
        if self._remote is not None:
            self._remote.control("force_open")
            return
        now = _now()
        with self._lock:
            transitions = self._core.force_open(now)
        self._report(transitions)

    def disable(self) -> None:
        """Let every call pass until `reset()`: outcomes are still recorded, it never opens."""
        if self._remote is not None:
            self._remote.control("disable")
            return
        now = _now()
        with self._lock:
            transitions = self._core.disable(now)
        self._report(transitions)

    def reset(self) -> None:
        """Go back to CLOSED with an empty window, from any state.

        Calls in flight when it is reset count as nothing when they finish.
        """
        if self._remote is not None:
            self._remote.control("reset")
            return
        now = _now()
        with self._lock:
            transitions = self._core.reset(now)
        self._report(transitions)

    # --- the slow paths -----------------------------------------------------------------

    def _admit(self) -> int:
        """Ask the core for a ticket; raise a fresh `CircuitOpenError` on rejection."""
        now = _backend.current_time()
        with self._lock:
            admission = self._core.acquire(now)
        return self._ticket_of(admission)

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
            now = _backend.current_time()
            with self._lock:
                outcome = self._core.on_success(ticket, now)
        self._report(outcome)

    def _succeeded_timed(self, ticket: int, start: float) -> None:
        end = _backend.current_time()
        duration = end - start
        slow = duration >= self._slow_after
        with self._lock:
            transitions = self._core.on_success(ticket, end, slow)
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
        with self._lock:
            core = self._core
            if failed:
                transitions = core.on_failure(ticket, end, slow)
            else:
                transitions = core.on_success(ticket, end, slow)
            state = core.state
        if slow:
            emit_to(self._hooks, "breaker.slow_call", self._name, duration=duration, failed=failed)
        if transitions:
            self._report(transitions)
        attach_context(exc, self._context_fields[state])

    # unasync: begin-remove
    def _misused(self, ticket: int, exc: Exception, fn: object) -> None:
        """Raise the clear error for a sync callable; the call then counts as nothing."""
        try:
            _backend.check_awaited(exc, fn, "CircuitBreaker")
        except TypeError:
            self._cancelled(ticket)  # gives a probe's permit back; records nothing
            raise

    # unasync: end-remove
    # unasync: sync-only: def _check_result(self, ticket: int, result: object, fn: object) -> None:
    # unasync: sync-only:     """Refuse an async callable's coroutine: it counts as nothing."""
    # unasync: sync-only:     try:
    # unasync: sync-only:         _backend.check_result(result, fn, "CircuitBreaker")
    # unasync: sync-only:     except TypeError:
    # unasync: sync-only:         self._cancelled(ticket)  # gives a probe's permit back
    # unasync: sync-only:         raise

    def _cancelled(self, ticket: int) -> None:
        """Give a cancelled probe's permit back; a cancelled call counts as nothing."""
        if ticket == self._core.fast_ticket:
            return  # a closed-state call: nothing to give back
        now = _now()  # a coroutine closed outside its loop ends up here too
        with self._lock:
            transitions = self._core.on_cancel(ticket, now)
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


# The tickets of the guarded blocks open in this task (or thread): per-call
# state lives here, never on the breaker.
_blocks: ContextVar[tuple[tuple[CircuitBreaker, int, float], ...]] = ContextVar(
    "resilient_async.breaker_blocks", default=()
)


def _now() -> float:
    """The backend's clock, or `time.monotonic()` when no event loop runs in this thread."""
    try:
        return _backend.current_time()
    except RuntimeError:
        return time.monotonic()


def _check_rate(value: float, param: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{param} must be a number in (0, 1], got {value!r}")
    if not 0.0 < value <= 1.0:  # also rejects NaN
        raise ValueError(f"{param} must be in (0, 1], got {value!r}")
    return float(value)


def _check_window(window: float | timedelta, window_type: str) -> float:
    if window_type not in _WINDOW_TYPES:
        raise ValueError(f"window_type must be 'count' or 'time', got {window_type!r}")
    if window_type == "count":
        if isinstance(window, bool) or not isinstance(window, int):
            raise TypeError(
                f"window must be an int number of calls >= 1 with window_type='count', "
                f"got {window!r}"
            )
        if window < 1:
            raise ValueError(f"window must be >= 1 calls with window_type='count', got {window}")
        return window
    return check_period(window, "window")  # seconds or a timedelta, with window_type='time'


def _consecutive(
    count: int, failure_rate: float, window: object, window_type: str, min_calls: int
) -> tuple[float, int, Literal["count"], int]:
    """Translate `consecutive_failures=N` into its window: the last N calls all failed.

    N failures in a row are exactly a count window of N calls with a failure rate of 1.0
    and N calls at least, so the rate machinery serves unchanged (and the hot path too).
    """
    count = check_int(count, "consecutive_failures", 1)
    given = [
        param
        for param, value, default in (
            ("failure_rate", failure_rate, 0.5),
            ("window", window, 100),
            ("window_type", window_type, "count"),
            ("min_calls", min_calls, 10),
        )
        if value != default or type(value) is not type(default)
    ]
    if given:
        raise ValueError(
            f"consecutive_failures cannot be combined with {', '.join(given)}: it opens after "
            "N failures in a row, with no rate window; give one or the other"
        )
    return 1.0, count, "count", count
