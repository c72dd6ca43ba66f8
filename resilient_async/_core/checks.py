"""Validation of constructor arguments, shared by every policy.

Each check raises at construction with a message naming the parameter and the accepted
values, and returns the value normalised (floats as float).
"""

from __future__ import annotations

import math

__all__ = ["check_int", "check_positive", "check_seconds"]


def check_seconds(value: float, name: str) -> float:
    """Return `value` as a float if it is a valid duration, else raise.

    Raises:
        TypeError: `value` is not a real number.
        ValueError: `value` is negative or NaN.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    value = float(value)
    if not value >= 0.0:  # also rejects NaN
        raise ValueError(f"{name} must be >= 0 seconds, got {value}")
    return value


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
        ValueError: `value` is not > 0, or is infinite or NaN.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number > 0, got {value!r}")
    if not 0 < value < math.inf:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)
