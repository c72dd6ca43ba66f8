"""A circuit breaker's settings, checked at construction, and the core they configure.

`check_breaker_settings` validates what a user passes to `CircuitBreaker` and answers the
settings in the order of the drivers' `BreakerConfig` (what breakers sharing one state must
agree on); `new_core` builds the state machine for them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final, Literal

from .breaker import BreakerCore
from .checks import check_int, check_period, check_seconds
from .window import CountWindow, TimeWindow, Window

__all__ = ["MIN_PROBE_TIMEOUT", "Settings", "check_breaker_settings", "new_core"]

MIN_PROBE_TIMEOUT: Final = 1.0
"""A probe holds its permit for `max(open_for, MIN_PROBE_TIMEOUT)` seconds at most."""

_WINDOW_TYPES: Final = ("count", "time")

Settings = tuple[str, float, float, int, float, int, float | None, float, float]
"""window_type, window, failure_rate, min_calls, open_for, half_open_calls,
slow_call_duration, slow_call_rate, probe_timeout: the order of `BreakerConfig`."""


def check_breaker_settings(
    *,
    failure_rate: float,
    window: float | timedelta,
    window_type: str,
    min_calls: int,
    open_for: float | timedelta,
    half_open_calls: int,
    slow_call_duration: float | timedelta | None,
    slow_call_rate: float,
    consecutive_failures: int | None,
) -> Settings:
    """Check a breaker's arguments (as `CircuitBreaker` documents them); answer its settings.

    Raises:
        ValueError: An argument is out of range, or `consecutive_failures` is combined with
            a rate-window setting.
        TypeError: An argument has the wrong type.
    """
    if consecutive_failures is not None:
        failure_rate, window, window_type, min_calls = _consecutive(
            consecutive_failures, failure_rate, window, window_type, min_calls
        )
    failure_rate = _check_rate(failure_rate, "failure_rate")
    slow_call_rate = _check_rate(slow_call_rate, "slow_call_rate")
    size = _check_window(window, window_type)
    min_calls = check_int(min_calls, "min_calls", 0)
    half_open_calls = check_int(half_open_calls, "half_open_calls", 1)
    seconds = check_seconds(open_for, "open_for")
    slow_after = None
    if slow_call_duration is not None:
        slow_after = check_seconds(slow_call_duration, "slow_call_duration")
        if slow_after == 0.0:
            raise ValueError("slow_call_duration must be > 0 seconds or None, got 0.0")
    return (
        window_type,
        size,
        failure_rate,
        min_calls,
        seconds,
        half_open_calls,
        slow_after,
        slow_call_rate,
        max(seconds, MIN_PROBE_TIMEOUT),
    )


def new_core(settings: Settings) -> BreakerCore:
    """A fresh state machine (CLOSED, empty window) for checked `settings`."""
    window_type, size, failure_rate, min_calls, open_for, half_open_calls, _, slow_rate, probe = (
        settings
    )
    sliding: Window = CountWindow(int(size)) if window_type == "count" else TimeWindow(size)
    return BreakerCore(
        sliding,
        failure_rate=failure_rate,
        min_calls=min_calls,
        open_for=open_for,
        half_open_calls=half_open_calls,
        slow_call_rate=slow_rate,
        probe_timeout=probe,
    )


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
