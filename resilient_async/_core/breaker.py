"""The circuit breaker's state machine, pure: time and outcomes in, decisions out.

States: CLOSED (calls pass and are recorded in a sliding window), OPEN (calls are rejected
until `open_for` has passed), HALF_OPEN (exactly `half_open_calls` probes may pass), plus the
manual FORCED_OPEN (reject everything until reset) and DISABLED (let everything pass, keep
recording, never transition).

Every admitted call gets a ticket, and its outcome is reported with that ticket. Tickets make
stale outcomes harmless: each transition starts a new generation, and a call admitted in an
earlier generation (before the breaker opened, or a probe whose permit expired) changes
nothing when it finishes. A probe's ticket is its half-open permit: reporting its success,
failure or cancellation gives the permit back, and a permit held longer than `probe_timeout`
expires, which re-opens the breaker, so a hung probe cannot keep it half-open.

Time-driven transitions (OPEN -> HALF_OPEN after `open_for`, a probe's permit expiring) are
applied lazily, at their own time, the next time the machine is asked with a later `now`;
`peek(now)` shows the state at `now` without applying anything. Methods that may transition
return the transitions as values; the driver emits the events.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple, overload

from .window import CountWindow, Window

__all__ = [
    "NEEDS_TIME",
    "REJECTED",
    "Admission",
    "BreakerCore",
    "BreakerMetrics",
    "BreakerState",
    "NeedsTime",
    "Transition",
]


class BreakerState(enum.Enum):
    """The state of a circuit breaker.

    Attributes:
        CLOSED: Calls pass; outcomes are recorded in the sliding window.
        OPEN: Calls are rejected until `open_for` has passed since the breaker opened.
        HALF_OPEN: Exactly `half_open_calls` probes may pass; the rest are rejected.
        FORCED_OPEN: Every call is rejected until `reset()` (set by `force_open()`).
        DISABLED: Every call passes and is recorded; the breaker never opens (`disable()`).
    """

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"

    def __repr__(self) -> str:
        return f"BreakerState.{self.name}"


CLOSED: Final = BreakerState.CLOSED
OPEN: Final = BreakerState.OPEN
HALF_OPEN: Final = BreakerState.HALF_OPEN
FORCED_OPEN: Final = BreakerState.FORCED_OPEN
DISABLED: Final = BreakerState.DISABLED


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change, for the `breaker.state_changed` event."""

    old: BreakerState
    new: BreakerState


@dataclass(frozen=True, slots=True)
class BreakerMetrics:
    """A frozen snapshot of a breaker, from `CircuitBreaker.metrics()`.

    The window figures are those of the closed-state window: while the breaker is open they
    still show the window that opened it; closing clears it.

    Attributes:
        state: The state at the time of the snapshot.
        calls: Calls in the sliding window.
        failures: Failed calls in the window.
        slow_calls: Slow calls in the window (a slow call that failed counts in both).
        failure_rate: failures / calls (0.0 with no calls).
        slow_call_rate: slow_calls / calls (0.0 with no calls).
        probes_in_flight: Half-open probes holding a permit now.
        retry_after: Seconds until a probe may pass, or None when calls pass now or the
            breaker is forced open.
    """

    state: BreakerState
    calls: int
    failures: int
    slow_calls: int
    failure_rate: float
    slow_call_rate: float
    probes_in_flight: int
    retry_after: float | None


class NeedsTime(enum.Enum):
    """The type of `NEEDS_TIME`."""

    NEEDS_TIME = "needs_time"


NEEDS_TIME: Final = NeedsTime.NEEDS_TIME
"""Returned by `BreakerCore.on_success(ticket, None)` when the outcome needs the time."""

REJECTED: Final = -1
"""The ticket of a call that was not admitted (tickets of admitted calls are >= 0)."""


class Admission(NamedTuple):
    """What `BreakerCore.acquire` decided.

    Attributes:
        ticket: The call's ticket (>= 0), or `REJECTED`.
        state: The state the decision was taken in.
        retry_after: For a rejection, seconds until a probe may pass (None when forced open).
        transitions: The time-driven transitions applied before deciding.
    """

    ticket: int
    state: BreakerState
    retry_after: float | None
    transitions: tuple[Transition, ...]


_NO_TRANSITIONS: Final[tuple[Transition, ...]] = ()


class BreakerCore:
    """The breaker's rules over one window, with time passed in.

    The driver asks `fast_ticket` first: while the breaker is CLOSED or DISABLED it is the
    ticket every call gets without asking anything else; otherwise it is None and the driver
    calls `acquire(now)`. The driver then reports the outcome with the ticket:
    `on_success`, `on_failure` (both with whether the call was slow) or `on_cancel`.

    Args:
        window: The sliding window of the closed state.
        failure_rate: Opens when failures / calls >= this, in (0, 1].
        min_calls: No decision before the window holds this many calls (for a count window,
            capped at its size).
        open_for: Seconds from opening until probes may pass, >= 0.
        half_open_calls: How many probes a half-open breaker admits, >= 1.
        slow_call_rate: Opens when slow calls / calls >= this, in (0, 1].
        probe_timeout: Seconds a probe may hold its permit; after that the permit expires
            and the breaker re-opens, at the moment of expiry. > 0.
    """

    __slots__ = (
        "_count",
        "_failure_rate",
        "_half_open_calls",
        "_min_calls",
        "_open_for",
        "_opened_at",
        "_probe_slow",
        "_probe_successes",
        "_probe_timeout",
        "_probes",
        "_serial",
        "_slow_call_rate",
        "fast_ticket",
        "generation",
        "state",
        "window",
    )

    def __init__(
        self,
        window: Window,
        *,
        failure_rate: float,
        min_calls: int,
        open_for: float,
        half_open_calls: int,
        slow_call_rate: float,
        probe_timeout: float,
    ) -> None:
        self.window = window
        self._failure_rate = failure_rate
        if isinstance(window, CountWindow):
            min_calls = min(min_calls, window.size)
        # The closed path records successes in a count window without the time.
        self._count = window if isinstance(window, CountWindow) else None
        # At least one call: with none there is no rate to compare.
        self._min_calls = max(min_calls, 1)
        self._open_for = open_for
        self._half_open_calls = half_open_calls
        self._slow_call_rate = slow_call_rate
        self._probe_timeout = probe_timeout
        self.state = CLOSED
        # One counter for generations and probe tickets, so that no two are ever equal.
        self._serial = 0
        self.generation = 0
        self.fast_ticket: int | None = 0
        self._opened_at = 0.0
        # Outstanding probes of the current half-open period: ticket -> time admitted.
        self._probes: dict[int, float] = {}
        self._probe_successes = 0
        self._probe_slow = 0

    # --- admission ----------------------------------------------------------------------

    def acquire(self, now: float) -> Admission:
        """Admit or reject one call at `now`, applying the time-driven transitions first."""
        state = self.state
        if state is OPEN:
            ready_at = self._opened_at + self._open_for
            if now < ready_at:  # the common rejection, kept short
                return Admission(REJECTED, state, ready_at - now, _NO_TRANSITIONS)
        elif state is FORCED_OPEN:
            return Admission(REJECTED, state, None, _NO_TRANSITIONS)
        transitions = self._advance(now)
        state = self.state
        if state is HALF_OPEN:
            if len(self._probes) + self._probe_successes < self._half_open_calls:
                self._serial += 1
                ticket = self._serial
                self._probes[ticket] = now
                return Admission(ticket, state, None, transitions)
        elif state is CLOSED or state is DISABLED:
            return Admission(self.generation, state, None, transitions)
        return Admission(REJECTED, state, self._view(now)[2], transitions)

    # --- outcomes -----------------------------------------------------------------------

    @overload
    def on_success(self, ticket: int, now: float, slow: bool = False) -> tuple[Transition, ...]: ...

    @overload
    def on_success(
        self, ticket: int, now: None, slow: bool = False
    ) -> tuple[Transition, ...] | Literal[NeedsTime.NEEDS_TIME]: ...

    def on_success(
        self, ticket: int, now: float | None, slow: bool = False
    ) -> tuple[Transition, ...] | Literal[NeedsTime.NEEDS_TIME]:
        """Record that the call with `ticket` succeeded (or failed with an ignored error).

        `now` may be None when the caller has not read the clock (the closed path of a count
        window with no slow-call detection reads none). If the outcome needs the time after
        all (it may open the breaker, or it is a probe's), nothing is recorded and
        `NEEDS_TIME` is returned: call again with the time.
        """
        if ticket == self.fast_ticket:
            if now is None:
                count = self._count
                if count is None:
                    return NEEDS_TIME  # a time window needs the time to record anything
                if not (count.failures or count.slow):
                    count.total += 1  # a success in a clean count window: see CountWindow
                    return _NO_TRANSITIONS
                if self.state is CLOSED:
                    # This success may open the breaker: the call that brings the window up
                    # to `min_calls` may find enough failures there. The time is needed.
                    return NEEDS_TIME
                count.record(0.0, False, slow)
                return _NO_TRANSITIONS
            window = self.window
            window.record(now, False, slow)
            if window.failures or window.slow:
                return self._check(now)
            return _NO_TRANSITIONS
        if now is None:
            return NEEDS_TIME if ticket in self._probes else _NO_TRANSITIONS
        return self._probe_done(ticket, now, False, slow)

    def on_failure(self, ticket: int, now: float, slow: bool = False) -> tuple[Transition, ...]:
        """Record that the call with `ticket` failed with an error that counts."""
        if ticket == self.fast_ticket:
            self.window.record(now, True, slow)
            return self._check(now)
        return self._probe_done(ticket, now, True, slow)

    def on_cancel(self, ticket: int, now: float) -> tuple[Transition, ...]:
        """Record that the call with `ticket` was cancelled: it counts as nothing.

        A probe's permit is given back, so the next call may probe instead (unless the
        permits had already expired by `now`, which re-opened the breaker).
        """
        if ticket not in self._probes:
            return _NO_TRANSITIONS
        expired = self._advance(now)
        self._probes.pop(ticket, None)
        return expired

    # --- manual control -----------------------------------------------------------------

    def force_open(self, now: float) -> tuple[Transition, ...]:
        """Reject every call until `reset()`; outstanding probes lose their permits."""
        transitions = self._advance(now)
        if self.state is FORCED_OPEN:
            return transitions
        return transitions + self._to(FORCED_OPEN)

    def disable(self, now: float) -> tuple[Transition, ...]:
        """Let every call pass and keep recording, never transitioning, until `reset()`."""
        transitions = self._advance(now)
        if self.state is DISABLED:
            return transitions
        return transitions + self._to(DISABLED)

    def reset(self, now: float) -> tuple[Transition, ...]:
        """Go back to CLOSED with an empty window; calls in flight will count as nothing."""
        transitions = self._advance(now)
        self.window.clear()
        return transitions + self._to(CLOSED)

    # --- reading ------------------------------------------------------------------------

    def peek(self, now: float) -> BreakerState:
        """Return the state at `now`, with the time-driven transitions due, changing nothing."""
        return self._view(now)[0]

    def retry_after(self, now: float) -> float | None:
        """Return seconds from `now` until a probe may pass, changing nothing.

        None when a call would pass now, and when the breaker is forced open (no time is
        known). In HALF_OPEN with every permit taken this is an upper bound: the probes'
        permits expire by then (and the breaker has been open for `open_for` again), though
        their success may close it sooner.
        """
        return self._view(now)[2]

    def metrics(self, now: float) -> BreakerMetrics:
        """Return a snapshot at `now`, changing nothing."""
        state, in_flight, retry_after = self._view(now)
        calls, failures, slow = self.window.totals(now)
        return BreakerMetrics(
            state=state,
            calls=calls,
            failures=failures,
            slow_calls=slow,
            failure_rate=failures / calls if calls else 0.0,
            slow_call_rate=slow / calls if calls else 0.0,
            probes_in_flight=in_flight,
            retry_after=retry_after,
        )

    def _view(self, now: float) -> tuple[BreakerState, int, float | None]:
        """Return (state, probes holding a permit, retry_after) at `now`, changing nothing."""
        state = self.state
        if state is OPEN:
            ready_at = self._opened_at + self._open_for
        elif state is HALF_OPEN and self._probes:
            expiry = min(self._probes.values()) + self._probe_timeout
            ready_at = expiry + self._open_for
            if now <= expiry:
                full = len(self._probes) + self._probe_successes >= self._half_open_calls
                return state, len(self._probes), max(0.0, ready_at - now) if full else None
        else:
            return state, 0, None
        # Open (or re-opened by an expired permit) since ready_at - open_for.
        if now >= ready_at:
            return HALF_OPEN, 0, None
        return OPEN, 0, ready_at - now

    # --- inside -------------------------------------------------------------------------

    def _check(self, now: float) -> tuple[Transition, ...]:
        """Open if the window crossed a threshold (only CLOSED ever opens by itself)."""
        if self.state is not CLOSED:
            return _NO_TRANSITIONS
        window = self.window
        calls = window.calls
        if calls < self._min_calls:
            return _NO_TRANSITIONS
        if (
            window.failures / calls >= self._failure_rate
            or window.slow / calls >= self._slow_call_rate
        ):
            self._opened_at = now
            return self._to(OPEN)
        return _NO_TRANSITIONS

    def _probe_done(
        self, ticket: int, now: float, failed: bool, slow: bool
    ) -> tuple[Transition, ...]:
        """Judge a probe's outcome: any failure re-opens; all permits done decides."""
        if ticket not in self._probes:
            return _NO_TRANSITIONS  # stale: admitted in an earlier generation
        expired = self._advance(now)
        if expired:
            return expired  # a permit expired before this outcome: the breaker re-opened
        del self._probes[ticket]
        if failed:
            self._opened_at = now
            return self._to(OPEN)
        self._probe_successes += 1
        self._probe_slow += slow
        if self._probe_successes < self._half_open_calls:
            return _NO_TRANSITIONS
        if self._probe_slow / self._half_open_calls >= self._slow_call_rate:
            self._opened_at = now
            return self._to(OPEN)
        self.window.clear()
        return self._to(CLOSED)

    def _advance(self, now: float) -> tuple[Transition, ...]:
        """Apply the time-driven transitions due at `now`, each at its own time."""
        transitions = _NO_TRANSITIONS
        while True:
            state = self.state
            if state is OPEN:
                ready_at = self._opened_at + self._open_for
                if now < ready_at:
                    return transitions
                transitions += self._to(HALF_OPEN)
            elif state is HALF_OPEN and self._probes:
                expiry = min(self._probes.values()) + self._probe_timeout
                if now <= expiry:
                    return transitions
                self._opened_at = expiry
                transitions += self._to(OPEN)
            else:
                return transitions

    def _to(self, state: BreakerState) -> tuple[Transition, ...]:
        """Enter `state` in a new generation; say so when it differs from the old one."""
        old = self.state
        self.state = state
        self._probes.clear()
        self._probe_successes = self._probe_slow = 0
        self._new_generation()
        if old is state:
            return _NO_TRANSITIONS
        return (Transition(old, state),)

    def _new_generation(self) -> None:
        self._serial += 1
        self.generation = self._serial
        state = self.state
        self.fast_ticket = self.generation if state is CLOSED or state is DISABLED else None
