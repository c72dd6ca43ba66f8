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
"""

from __future__ import annotations

import itertools
import math
from collections import deque

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
        handle: Free for the driver (it keeps the waiter's wake-up event there).
    """

    __slots__ = ("handle", "ready_at", "tokens")

    def __init__(self, tokens: float, ready_at: float) -> None:
        self.tokens = tokens
        self.ready_at = ready_at
        self.handle: object = None

    def __repr__(self) -> str:
        return f"Reservation(tokens={self.tokens!r}, ready_at={self.ready_at!r})"


class TokenBucket:
    """Hand out tokens at `rate` per second with bursts of up to `burst`, FIFO for waiters.

    Every method takes `now`, a reading of one monotonic clock. The bucket starts full.

    Args:
        rate: Tokens added per second, > 0.
        burst: The bucket's size (most tokens ever held), > 0.
    """

    __slots__ = ("_level", "_queue", "_updated", "burst", "rate")

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
        self._queue: deque[Reservation] = deque()

    def __repr__(self) -> str:
        return (
            f"TokenBucket(rate={self.rate!r}, burst={self.burst!r}, level={self._level!r}, "
            f"waiting={len(self._queue)})"
        )

    # --- reading ------------------------------------------------------------------------

    def level(self, now: float) -> float:
        """Return the tokens free at `now`: negative while waiters still owe tokens."""
        self._refill(now)
        return self._level

    @property
    def waiting(self) -> int:
        """How many reservations are outstanding (waiters not yet admitted)."""
        return len(self._queue)

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
        return not self._queue and self._level + _SLACK >= self.burst

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
        self._queue.append(reservation)
        return reservation

    def admit(self, reservation: Reservation) -> None:
        """Close `reservation`: its waiter has waited and now uses the tokens."""
        self._remove(reservation)

    def cancel(self, reservation: Reservation, now: float) -> list[Reservation]:
        """Give back the tokens of a reservation its waiter no longer wants.

        Every reservation behind it becomes ready `tokens / rate` seconds earlier, as if
        this one had never been made.

        Returns:
            The reservations whose ready time moved (their waiters should look again).
        """
        queue = self._queue
        try:
            index = queue.index(reservation)
        except ValueError:
            return []  # already admitted or cancelled
        del queue[index]
        self._refill(now)
        level = self._level + reservation.tokens
        self._level = level if level < self.burst else self.burst
        shift = reservation.tokens / self.rate
        moved = list(itertools.islice(queue, index, None))
        for other in moved:
            other.ready_at -= shift
        return moved

    def give_back(self, tokens: float, now: float) -> None:
        """Return `tokens` taken earlier and not used (never beyond `burst`).

        Unlike `cancel`, no queued reservation moves: for callers that settled their
        reservation at once (`admit` right after `reserve`) and sleep out the wait themselves.
        """
        self._refill(now)
        level = self._level + tokens
        self._level = level if level < self.burst else self.burst

    # --- internals ----------------------------------------------------------------------

    def _refill(self, now: float) -> None:
        if now > self._updated:
            level = self._level + (now - self._updated) * self.rate
            self._level = level if level < self.burst else self.burst
            self._updated = now

    def _remove(self, reservation: Reservation) -> bool:
        queue = self._queue
        if queue and queue[0] is reservation:
            queue.popleft()
            return True
        try:
            queue.remove(reservation)
        except ValueError:
            return False
        return True
