"""Where the effective deadline lives: one context variable, shared by every driver.

The value is an absolute time on the running driver's clock (the event loop's clock in async
code, `time.monotonic` in sync code), `math.inf` when no deadline is set. Because it is a
context variable it reaches child tasks, retry attempts, hedges, fallbacks and compensations,
and nothing set inside a task leaks to its parent.
"""

from __future__ import annotations

import math
from contextvars import ContextVar

__all__ = ["DEADLINE", "check_seconds"]

DEADLINE: ContextVar[float] = ContextVar("resilient_async.deadline", default=math.inf)


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
