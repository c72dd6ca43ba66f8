"""Backoff schedules: how long a retry loop waits before each new attempt.

A backoff is a pure schedule. It keeps no state between calls, so one instance can serve any
number of concurrent retry loops; the loop passes in what a schedule needs (the attempt
number, the previous delay and a random generator). `exponential` (with the jitter kinds of
the AWS Architecture Blog's "Exponential Backoff and Jitter"), `constant` and `linear` cover
the usual needs; subclass `Backoff` for anything else.

Every delay is finite, >= 0 and never above the schedule's `max`, for any attempt number: the
growth is computed only until the cap is reached, so attempt 2**31 costs the same as attempt 3
and never overflows.

Example:
    >>> import random
    >>> from itertools import islice
    >>> from resilient_async import backoff
    >>> list(islice(backoff.exponential(0.5, jitter="none").delays(), 4))
    [0.5, 1.0, 2.0, 4.0]
    >>> delays = backoff.exponential().delays(rng=random.Random(7))  # reproducible jitter
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import timedelta
from typing import Final, Literal, TypeAlias

from ._core.checks import seconds_of

__all__ = [
    "JITTERS",
    "Backoff",
    "Constant",
    "Exponential",
    "Jitter",
    "Linear",
    "constant",
    "exponential",
    "linear",
]

Jitter: TypeAlias = Literal["none", "full", "equal", "decorrelated"]
"""The jitter kinds of `exponential`."""

JITTERS: Final[tuple[Jitter, ...]] = ("none", "full", "equal", "decorrelated")
"""Every accepted value of `exponential(jitter=...)`."""

# Used when no generator is passed. `random.Random.random` is safe to call from several
# threads at once, which the sync retry loops do.
_RNG: Final = random.Random()

# A number of attempts no loop reaches: the point where a schedule "saturates" when the
# arithmetic says it never does within the range of a float.
_NEVER: Final = 2**63


class Backoff:
    """Base of every backoff schedule: a pure map from attempt number to delay.

    A subclass implements `delay`; `delays` and the retry loop build on it. It must keep no
    per-loop state (one schedule is shared by concurrent loops) and return a finite delay
    >= 0, at most `max` when `max` is not None, for every attempt number >= 1.
    """

    __slots__ = ()

    @property
    def max(self) -> float | None:
        """The longest delay the schedule gives, or None when it has no explicit cap.

        A server's Retry-After hint is not capped by it: a `Retry` waits for the hint in full.
        """
        return None

    def delay(self, attempt: int, previous: float, rng: random.Random) -> float:
        """Return the wait after failed attempt number `attempt` (from 1).

        Args:
            attempt: The number of the attempt that just failed, >= 1.
            previous: The delay this schedule gave for the attempt before (0.0 for the
                first one); only schedules that depend on it, such as decorrelated jitter,
                read it.
            rng: The random generator to draw jitter from.
        """
        raise NotImplementedError

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """Return an endless iterator over the delays after attempts 1, 2, 3, ...

        Each call starts a new, independent schedule. With a seeded `random.Random` as
        `rng` the sequence is reproducible.

        Raises:
            TypeError: `rng` has no `random()` method.

        Example:
            >>> from itertools import islice
            >>> list(islice(constant(2).delays(), 3))
            [2.0, 2.0, 2.0]
        """
        if rng is None:
            rng = _RNG
        elif not callable(getattr(rng, "random", None)):
            raise TypeError(f"rng must be a random.Random (or have a random() method), got {rng!r}")
        return _schedule(self, rng)


def _schedule(backoff: Backoff, rng: random.Random) -> Iterator[float]:
    previous = 0.0
    attempt = 1
    while True:
        previous = backoff.delay(attempt, previous, rng)
        yield previous
        attempt += 1


def exponential(
    initial: float | timedelta = 0.1,
    *,
    multiplier: float = 2.0,
    max: float | timedelta = 10.0,
    jitter: Jitter = "full",
) -> Exponential:
    """Return a schedule that grows by `multiplier` per attempt up to `max`, with jitter.

    The ceiling after attempt n is `min(max, initial * multiplier ** (n - 1))`; `jitter`
    says how the delay is drawn from it (the formulas of the AWS Architecture Blog's
    "Exponential Backoff and Jitter"):

    - `"none"`: the ceiling itself;
    - `"full"` (the default): uniform in [0, ceiling], which spreads retrying clients best;
    - `"equal"`: ceiling / 2 plus uniform in [0, ceiling / 2], never shorter than half;
    - `"decorrelated"`: uniform in [initial, 3 * previous delay], capped at `max`; it grows
      from the previous delay rather than the attempt number, so `multiplier` plays no part.

    Args:
        initial: The first ceiling in seconds, >= 0.
        multiplier: The growth factor per attempt, >= 1.
        max: The cap in seconds, >= `initial` and finite (never applied to Retry-After hints).
        jitter: One of `"none"`, `"full"`, `"equal"`, `"decorrelated"`.

    Raises:
        ValueError: A duration is negative, NaN or infinite, `multiplier` < 1, `max` <
            `initial`, or `jitter` is not one of the accepted names.
        TypeError: A number is not a number.

    Example:
        >>> from itertools import islice
        >>> list(islice(exponential(1, multiplier=3, max=20, jitter="none").delays(), 4))
        [1.0, 3.0, 9.0, 20.0]
    """
    return Exponential(initial, multiplier=multiplier, max=max, jitter=jitter)


def constant(delay: float | timedelta) -> Constant:
    """Return a schedule that waits `delay` seconds before every retry.

    It has no explicit `max`; `delay` may be seconds or a `datetime.timedelta`.

    Raises:
        ValueError: `delay` is negative, NaN or infinite.
        TypeError: `delay` is not a number.
    """
    return Constant(delay)


def linear(
    initial: float | timedelta = 0.1,
    step: float | timedelta = 0.1,
    *,
    max: float | timedelta = 10.0,
) -> Linear:
    """Return a schedule that grows by `step` per attempt up to `max`, without jitter.

    The delay after attempt n is `min(max, initial + step * (n - 1))`.

    Raises:
        ValueError: A value is negative, NaN or infinite, or `max` < `initial`.
        TypeError: A value is not a number.
    """
    return Linear(initial, step, max=max)


class Exponential(Backoff):
    """Exponential growth with jitter; build it with `exponential()`, which documents it."""

    __slots__ = ("_initial", "_jitter", "_max", "_multiplier", "_saturated", "_saturated_at")

    def __init__(
        self,
        initial: float | timedelta = 0.1,
        *,
        multiplier: float = 2.0,
        max: float | timedelta = 10.0,
        jitter: Jitter = "full",
    ) -> None:
        self._initial = _seconds(initial, "initial")
        self._multiplier = _number(multiplier, "multiplier", minimum=1.0)
        self._max = _cap(max, self._initial)
        if jitter not in JITTERS:
            accepted = ", ".join(repr(name) for name in JITTERS)
            raise ValueError(f"jitter must be one of {accepted}, got {jitter!r}")
        self._jitter: Jitter = jitter
        # From attempt `_saturated_at` on, the ceiling stays at `_saturated`: computing that
        # once here keeps `delay` from raising a float to a huge power (which overflows) for
        # large attempt numbers.
        if self._initial == 0.0 or self._multiplier == 1.0 or self._initial >= self._max:
            self._saturated = self._initial  # it never grows
            self._saturated_at = 1
        else:
            self._saturated = self._max
            growth = (math.log(self._max) - math.log(self._initial)) / math.log(self._multiplier)
            self._saturated_at = 1 + math.ceil(growth) if math.isfinite(growth) else _NEVER

    @property
    def initial(self) -> float:
        """The first ceiling in seconds."""
        return self._initial

    @property
    def multiplier(self) -> float:
        """The growth factor per attempt."""
        return self._multiplier

    @property
    def max(self) -> float:
        """The cap in seconds (Retry-After hints are not capped by it)."""
        return self._max

    @property
    def jitter(self) -> Jitter:
        """How each delay is drawn from its ceiling."""
        return self._jitter

    def delay(self, attempt: int, previous: float, rng: random.Random) -> float:
        """Return the wait after failed attempt `attempt`; see `exponential`."""
        jitter = self._jitter
        cap = self._max
        if jitter == "decorrelated":
            low = self._initial
            # Written so that a NaN or infinite `previous` still gives a delay in bounds.
            high = previous * 3.0 if previous > low else low * 3.0
            high = min(high, cap)
            return low + (high - low) * rng.random()
        if attempt >= self._saturated_at:
            ceiling = self._saturated
        else:
            try:
                ceiling = self._initial * self._multiplier ** (attempt - 1)
            except OverflowError:
                ceiling = cap
            ceiling = min(ceiling, cap)
        if jitter == "full":
            return ceiling * rng.random()
        if jitter == "equal":
            half = ceiling / 2.0
            return half + half * rng.random()
        return ceiling

    def __repr__(self) -> str:
        return (
            f"exponential(initial={self._initial!r}, multiplier={self._multiplier!r}, "
            f"max={self._max!r}, jitter={self._jitter!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Exponential):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[object, ...]:
        return (self._initial, self._multiplier, self._max, self._jitter)


class Constant(Backoff):
    """The same delay before every retry; build it with `constant()`, which documents it."""

    __slots__ = ("_delay",)

    def __init__(self, delay: float | timedelta) -> None:
        self._delay = _seconds(delay, "delay")

    @property
    def seconds(self) -> float:
        """The delay before every retry."""
        return self._delay

    def delay(self, attempt: int, previous: float, rng: random.Random) -> float:
        """Return the constant delay, whatever the attempt."""
        return self._delay

    def __repr__(self) -> str:
        return f"constant({self._delay!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Constant):
            return NotImplemented
        return self._delay == other._delay

    def __hash__(self) -> int:
        return hash((Constant, self._delay))


class Linear(Backoff):
    """A delay growing by a fixed step; build it with `linear()`, which documents it."""

    __slots__ = ("_initial", "_max", "_saturated_at", "_step")

    def __init__(
        self,
        initial: float | timedelta = 0.1,
        step: float | timedelta = 0.1,
        *,
        max: float | timedelta = 10.0,
    ) -> None:
        self._initial = _seconds(initial, "initial")
        self._step = _seconds(step, "step")
        self._max = _cap(max, self._initial)
        if self._step == 0.0 or self._initial >= self._max:
            self._saturated_at = 1
        else:
            steps = (self._max - self._initial) / self._step
            self._saturated_at = 1 + math.ceil(steps) if math.isfinite(steps) else _NEVER

    @property
    def initial(self) -> float:
        """The first delay in seconds."""
        return self._initial

    @property
    def step(self) -> float:
        """What each attempt adds, in seconds."""
        return self._step

    @property
    def max(self) -> float:
        """The cap in seconds (Retry-After hints are not capped by it)."""
        return self._max

    def delay(self, attempt: int, previous: float, rng: random.Random) -> float:
        """Return `min(max, initial + step * (attempt - 1))`."""
        if attempt >= self._saturated_at:
            return self._max if self._step else self._initial
        value = self._initial + self._step * (attempt - 1)
        return value if value < self._max else self._max

    def __repr__(self) -> str:
        return f"linear(initial={self._initial!r}, step={self._step!r}, max={self._max!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Linear):
            return NotImplemented
        return (self._initial, self._step, self._max) == (other._initial, other._step, other._max)

    def __hash__(self) -> int:
        return hash((Linear, self._initial, self._step, self._max))


def _number(value: object, name: str, *, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    result = float(value)
    if not minimum <= result < math.inf:  # also rejects NaN
        raise ValueError(f"{name} must be a finite number >= {minimum:g}, got {result}")
    return result


def _seconds(value: object, name: str) -> float:
    result = seconds_of(value, name)  # a number or a datetime.timedelta
    if not 0.0 <= result < math.inf:  # also rejects NaN
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {result}")
    return result


def _cap(value: object, initial: float) -> float:
    cap = _seconds(value, "max")
    if cap < initial:
        raise ValueError(f"max must be >= initial ({initial}), got {cap}")
    return cap
