"""`ErrorClass`, and the shapes that rules, checks and matchers take."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TypeAlias

__all__ = ["Check", "ErrorClass", "Predicate", "Rule", "exception_types"]


class ErrorClass(enum.Enum):
    """The kind of failure an exception stands for.

    Policies match on these rather than on exception types, so one classifier decides for
    every policy what is worth a retry, what counts against a breaker and what a fallback may
    hide. The values are lowercase strings (`ErrorClass("timeout") is ErrorClass.TIMEOUT`).

    Attributes:
        TRANSIENT: A failure that may well go away on its own (a reset connection, a 502).
        THROTTLED: The callee or a local guard asks for less load (a 429, an open breaker, a
            full bulkhead, a rate limit).
        TIMEOUT: A deadline or timeout expired.
        PERMANENT: Retrying the same call cannot help (a bad argument, a 404, a 403).
        CANCELLED: A stop signal: cancellation, `KeyboardInterrupt`, `SystemExit`,
            `GeneratorExit`. No policy ever catches these.
        UNKNOWN: Nothing is known about the failure.
    """

    TRANSIENT = "transient"
    THROTTLED = "throttled"
    TIMEOUT = "timeout"
    PERMANENT = "permanent"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


Predicate: TypeAlias = Callable[[BaseException], bool]
# A check runs on an instance and returns None when it has no opinion.
Check: TypeAlias = Callable[[BaseException], ErrorClass | None]
# A rule looks at an exception type once (the result is cached per type) and answers: cannot
# match (None), always matches (an ErrorClass), or ask this check for each instance.
Rule: TypeAlias = Callable[[type[BaseException]], ErrorClass | Check | None]


def exception_types(
    value: type | tuple[object, ...], param: str, accepted: str
) -> tuple[type[BaseException], ...]:
    """Validate an exception type or a non-empty tuple of them, for a user's rule or `on=`."""
    items: tuple[object, ...] = value if isinstance(value, tuple) else (value,)
    if not items:
        raise ValueError(f"{param} must not be an empty tuple; pass {accepted}")
    types: list[type[BaseException]] = []
    for item in items:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            where = " in the tuple" if isinstance(value, tuple) else ""
            raise TypeError(f"{param} must be {accepted}; {item!r}{where} is not an exception type")
        types.append(item)
    return tuple(types)
