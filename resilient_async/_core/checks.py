"""Validation of constructor arguments, shared by every policy.

Each check raises at construction with a message naming the parameter and the accepted
values, and returns the value normalised (floats as float). Durations accept a number of
seconds or a `datetime.timedelta` (as aiobreaker users pass them); a number too large for a
float (`10**400`) is a `ValueError` like any other out-of-range value, never an
`OverflowError` at the first call.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import timedelta
from typing import Any, Final

__all__ = [
    "MIN_PERIOD",
    "check_hooks",
    "check_int",
    "check_name",
    "check_period",
    "check_positive",
    "check_seconds",
    "seconds_of",
]

MIN_PERIOD: Final = 1e-6
"""The shortest time window accepted, in seconds: shorter ones only overflow the rates."""


def seconds_of(value: object, name: str) -> float:
    """Return `value` (a real number or a `datetime.timedelta`) as float seconds.

    Raises:
        TypeError: `value` is neither (a bool is not accepted).
        ValueError: `value` is too large for a float.
    """
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"{name} must be a number of seconds or a datetime.timedelta, "
            f"got {type(value).__name__}"
        )
    try:
        result = float(value)
    except OverflowError:
        raise ValueError(f"{name} is too large: {name} must be a finite number") from None
    return result  # NaN is left to the caller's range check, which rejects it


def check_seconds(value: float | timedelta, name: str) -> float:
    """Return `value` as float seconds if it is a valid duration >= 0, else raise.

    Raises:
        TypeError: `value` is not a real number or a `timedelta`.
        ValueError: `value` is negative, NaN or too large for a float.
    """
    result = seconds_of(value, name)
    if not result >= 0.0:
        raise ValueError(f"{name} must be >= 0, got {result:g}")
    return result


def check_period(value: float | timedelta, name: str) -> float:
    """Return `value` as float seconds if it is a finite time window >= `MIN_PERIOD`.

    Raises:
        TypeError: `value` is not a real number or a `timedelta`.
        ValueError: `value` is shorter than `MIN_PERIOD`, infinite, NaN or too large.
    """
    result = seconds_of(value, name)
    if not MIN_PERIOD <= result < math.inf:
        raise ValueError(
            f"{name} must be a finite number of seconds >= {MIN_PERIOD:g}, got {result:g}"
        )
    return result


def check_int(value: int, name: str, minimum: int) -> int:
    """Return `value` if it is an int >= `minimum`, else raise.

    Raises:
        TypeError: `value` is not an int (a bool is not accepted).
        ValueError: `value` is less than `minimum`.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return value


def check_positive(value: float, name: str) -> float:
    """Return `value` as a float if it is a finite number > 0, else raise.

    Raises:
        TypeError: `value` is not a real number.
        ValueError: `value` is not > 0, or is infinite, NaN or too large for a float.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number > 0, got {value!r}")
    try:
        result = float(value)
    except OverflowError:
        raise ValueError(f"{name} is too large: {name} must be a finite number > 0") from None
    if not 0 < result < math.inf:
        raise ValueError(f"{name} must be a finite number > 0, got {result:g}")
    return result


def check_name(value: str | None, name: str = "name") -> str | None:
    """Return `value` if it is a non-empty str or None, else raise.

    Raises:
        TypeError: `value` is neither a str nor None.
        ValueError: `value` is empty or only whitespace.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str or None, got {value!r}")
    if not value.strip():
        raise ValueError(f"{name} must be a non-empty str or None, got {value!r}")
    return value


def check_hooks(value: Iterable[Any], name: str = "hooks") -> tuple[Any, ...]:
    """Return `value` as a tuple of callables, else raise.

    Raises:
        TypeError: `value` is not an iterable (a single callable is accepted as one hook),
            or holds something that is not callable.
    """
    if callable(value):
        return (value,)
    if isinstance(value, str | bytes):
        raise TypeError(f"{name} must be an iterable of callables taking one event")
    try:
        hooks = tuple(value)
    except TypeError:
        raise TypeError(
            f"{name} must be an iterable of callables taking one event, got {value!r}"
        ) from None
    for hook in hooks:
        if not callable(hook):
            raise TypeError(f"{name} must hold callables taking one event, got {hook!r}")
    return hooks
