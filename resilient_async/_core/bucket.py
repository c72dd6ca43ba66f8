"""A token bucket with FIFO reservations: pure bookkeeping, time passed in.

The bucket holds up to `burst` tokens and refills at `rate` tokens per second. A caller that
finds enough tokens takes them at once (`try_take`). A caller that must wait *reserves* its
tokens: the level goes below zero (a debt owed to the queue) and the reservation records the
time at which the refill will have paid for it. Later reservations queue behind earlier ones,
so waiters are served in FIFO order and a newcomer can never overtake a waiter.

A reservation given up before it is used (its waiter was cancelled) returns its tokens: the
level rises by that many tokens and every later reservation becomes ready that much earlier,
exactly as if the cancelled one had never been made. Without that shift a returned token
could be handed out twice in the same instant.

Time only moves forward: a `now` earlier than one already seen refills nothing, so a clock
that steps back cannot mint tokens, and idle time accumulates at most `burst` tokens.

Every step costs O(1) however many wait, except `cancel`, which returns every reservation
behind the cancelled one. The queue is a doubly linked list of the reservations, so one
leaves from anywhere at once. `withdraw` gives a reservation up without touching the ones
behind it: their shift is left as a credit on the next one and applied, one step at a time,
as each reaches the head. Only the head's `ready_at` then needs to be exact, which is all a
driver that times only its head waiter reads.
"""

from __future__ import annotations

import math

__all__ = ["Reservation", "TokenBucket"]

# Refill arithmetic on float clocks leaves crumbs (10 tokens/s for 0.2 s gives 1.9999999999999996
# tokens): a shortfall this small counts as none, so a caller that waited exactly the
# `retry_after` it was given is served. It can never add up: the level keeps the crumb.
_SLACK = 1e-9


class Reservation:
    """Tokens promised to one waiter, and the time at which they are paid for.

    Attributes:
        tokens: How many tokens the waiter asked for.
        ready_at: When the refill has covered this reservation (on the caller's clock).
            Exact at the head of the queue; behind it, after a `withdraw` ahead, a bound
            that is only ever earlier in truth (see `TokenBucket.queue`).
        handle: Free for the driver (it keeps the waiter's wake-up event there).
    """

    __slots__ = ("_credit", "_next", "_owner", "_prev", "handle", "ready_at", "tokens")

    def __init__(self, tokens: float, ready_at: float) -> None:
        self.tokens = tokens
        self.ready_at = ready_at
        self.handle: object = None
        # The queue's links, and the bucket whose queue holds it (None: not queued).
        self._owner: TokenBucket | None = None
        self._prev: Reservation | None = None
        self._next: Reservation | None = None
        # Seconds by which this reservation and every one behind it are ready earlier than
        # their `ready_at` says: the shift of withdrawals ahead, not yet applied.
        self._credit = 0.0

    def __repr__(self) -> str:
        return f"Reservation(tokens={self.tokens!r}, ready_at={self.ready_at!r})"


class TokenBucket:
    """Hand out tokens at `rate` per second with bursts of up to `burst`, FIFO for waiters.

    Every method takes `now`, a reading of one monotonic clock. The bucket starts full.

    Args:
        rate: Tokens added per second, > 0.
        burst: The bucket's size (most tokens ever held), > 0.
    """

    __slots__ = ("_count", "_head", "_level", "_pending", "_tail", "_updated", "burst", "rate")

    def __init__(self, rate: float, burst: float) -> None:
        if not rate > 0 or math.isinf(rate):
            raise ValueError(f"rate must be a finite number > 0, got {rate!r}")
        if not burst > 0 or math.isinf(burst):
            raise ValueError(f"burst must be a finite number > 0, got {burst!r}")
        self.rate = float(rate)
        self.burst = float(burst)
        # Tokens in the bucket minus those reserved by waiters; negative while waiters owe.
        self._level = self.burst
        # Before the first reading any elapsed time fills the bucket, which it already is.
        self._updated = -math.inf
        # The reservations, a doubly linked list from `_head` to `_tail`, `_count` long.
        self._head: Reservation | None = None
        self._tail: Reservation | None = None
        self._count = 0
        # The sum of the queued reservations' credits: a newcomer's cancels it out, as the
        # shifts owed to those ahead of it are already in the level it was reserved from.
        self._pending = 0.0

    def __repr__(self) -> str:
        return (
            f"TokenBucket(rate={self.rate!r}, burst={self.burst!r}, level={self._level!r}, "
            f"waiting={self._count})"
        )

    # --- reading ------------------------------------------------------------------------

    def level(self, now: float) -> float:
        """Return the tokens free at `now`: negative while waiters still owe tokens."""
        self._refill(now)
        return self._level

    @property
    def waiting(self) -> int:
        """How many reservations are outstanding (waiters not yet admitted)."""
        return self._count

    @property
    def head(self) -> Reservation | None:
        """The oldest outstanding reservation (its `ready_at` is exact), or None."""
        return self._head

    def queue(self) -> list[tuple[Reservation, float]]:
        """Every outstanding reservation, oldest first, with the time it is ready at.

        That time is its `ready_at` less the shifts of withdrawals ahead not yet applied to
        it. O(n): for tests and inspection, not for drivers.
        """
        out = []
        credit = 0.0
        reservation = self._head
        while reservation is not None:
            credit += reservation._credit
            out.append((reservation, reservation.ready_at - credit))
            reservation = reservation._next
        return out

    def wait_time(self, tokens: float, now: float) -> float:
        """Return the seconds from `now` until `tokens` more tokens could be handed out.

        Zero when they are free right now; otherwise the time the refill needs to pay every
        earlier reservation and then these tokens.
        """
        self._refill(now)
        missing = tokens - self._level
        return missing / self.rate if missing > _SLACK else 0.0

    def is_idle(self, now: float) -> bool:
        """Tell whether the bucket is full with no waiter: it then equals a new bucket."""
        self._refill(now)
        return self._head is None and self._level + _SLACK >= self.burst

    # --- taking -------------------------------------------------------------------------

    def try_take(self, tokens: float, now: float) -> bool:
        """Take `tokens` now if that many are free; otherwise change nothing.

        Waiters hold the free tokens first (the level is negative while any waits for its
        refill), so this never overtakes the queue. `tokens` must be > 0: anything else is
        refused (returns False) and left to the caller to report.
        """
        # The hot path of every limiter: `_refill` inlined, attributes read once.
        level = self._level
        updated = self._updated
        if now > updated:
            level += (now - updated) * self.rate
            if level > self.burst:  # noqa: PLR1730 (a branch is cheaper than a call to min)
                level = self.burst
            self._updated = now
        if level + _SLACK >= tokens > 0:
            self._level = level - tokens
            return True
        self._level = level
        return False

    def reserve(self, tokens: float, now: float) -> Reservation:
        """Promise `tokens` to a waiter at the end of the queue; it is ready at `.ready_at`.

        The tokens are taken from the level at once (which may go negative), so nobody who
        comes later can take them. The waiter either calls `admit` once its time has come,
        or `cancel` to give the tokens back.
        """
        wait = self.wait_time(tokens, now)
        self._level -= tokens
        reservation = Reservation(tokens, now + wait)
        reservation._owner = self
        pending = self._pending
        if pending:
            reservation._credit = -pending
            self._pending = 0.0
        tail = self._tail
        reservation._prev = tail
        if tail is None:
            self._head = reservation
        else:
            tail._next = reservation
        self._tail = reservation
        self._count += 1
        return reservation

    def admit(self, reservation: Reservation) -> Reservation | None:
        """Close `reservation`: its waiter has waited and now uses the tokens.

        Returns:
            The new head when `reservation` was the head (its waiter times its wait now),
            or None.
        """
        if reservation._owner is not self:
            return None  # already admitted or cancelled
        return self._unlink(reservation, 0.0)

    def withdraw(self, reservation: Reservation, now: float) -> Reservation | None:
        """Give back the tokens of a reservation its waiter no longer wants, in O(1).

        Like `cancel`, every reservation behind it becomes ready `tokens / rate` seconds
        earlier; but only the head's `ready_at` is brought up to date at once, the others'
        as they reach the head. For a driver that times only its head waiter.

        Returns:
            The new head when `reservation` was the head (it is ready earlier now: its waiter
            times its wait again), or None.
        """
        if reservation._owner is not self:
            return None  # already admitted or cancelled
        self._give_back(reservation.tokens, now)
        return self._unlink(reservation, reservation.tokens / self.rate)

    def cancel(self, reservation: Reservation, now: float) -> list[Reservation]:
        """Give back the tokens of a reservation its waiter no longer wants.

        Every reservation behind it becomes ready `tokens / rate` seconds earlier, as if
        this one had never been made: their `ready_at` moves now, so this costs O(n) in
        those behind it (O(1) for the newest). The drivers use `withdraw`; this eager form is
        the reference the tests hold `withdraw` to.

        Returns:
            The reservations whose ready time moved (their waiters should look again).
        """
        if reservation._owner is not self:
            return []  # already admitted or cancelled
        self._give_back(reservation.tokens, now)
        shift = reservation.tokens / self.rate
        moved = []
        other = reservation._next
        while other is not None:
            other.ready_at -= shift
            moved.append(other)
            other = other._next
        self._unlink(reservation, 0.0)
        return moved

    def give_back(self, tokens: float, now: float) -> None:
        """Return `tokens` taken earlier and not used (never beyond `burst`).

        Unlike `cancel`, no queued reservation moves: for callers that settled their
        reservation at once (`admit` right after `reserve`) and sleep out the wait themselves.
        """
        self._give_back(tokens, now)

    # --- internals ----------------------------------------------------------------------

    def _give_back(self, tokens: float, now: float) -> None:
        self._refill(now)
        level = self._level + tokens
        self._level = level if level < self.burst else self.burst

    def _refill(self, now: float) -> None:
        if now > self._updated:
            level = self._level + (now - self._updated) * self.rate
            self._level = level if level < self.burst else self.burst
            self._updated = now

    def _unlink(self, reservation: Reservation, shift: float) -> Reservation | None:
        """Take a queued reservation out; those behind it are ready `shift` seconds earlier.

        Returns:
            The new head when `reservation` was the head, or None.
        """
        prev, nxt = reservation._prev, reservation._next
        # The credit it carried, and its own shift, apply to every reservation behind it.
        owed = reservation._credit + shift
        self._pending += shift
        if nxt is None:
            self._tail = prev
            self._pending -= owed  # nobody behind it to owe to
        else:
            nxt._prev = prev
            nxt._credit += owed
        reservation._owner = reservation._prev = reservation._next = None
        reservation._credit = 0.0
        self._count -= 1
        if prev is not None:
            prev._next = nxt
            return None
        self._head = nxt
        if nxt is None:
            self._pending = 0.0  # empty: no rounding crumb survives it
            return None
        # The new head's `ready_at` is made exact; the rest of its credit is owed behind it.
        owed = nxt._credit
        if owed:
            nxt.ready_at -= owed
            nxt._credit = 0.0
            after = nxt._next
            if after is None:
                self._pending -= owed
            else:
                after._credit += owed
        return nxt
