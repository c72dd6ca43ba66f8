"""Reading a server's hint of how long to wait: a `.retry_after` attribute or a header."""

from __future__ import annotations

import math
import numbers
import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Final

__all__ = ["CLASS_HINTS", "class_may_carry", "retry_after"]


def retry_after(exc: BaseException) -> float | None:
    """Return the server's hint of how long to wait before retrying, in seconds, or None.

    Looks, in order, at a `.retry_after` attribute (seconds as a number, a
    `datetime.timedelta`, or a header string), then at a `Retry-After` header on
    `exc.response.headers` (httpx, requests) or on `exc.headers` (aiohttp, urllib). Header
    names match case-insensitively, even in a plain dict. A header holds delta-seconds
    (`"120"`, `"1.5"`) or an HTTP-date, turned into the seconds from now on the wall clock (a
    past date gives 0.0).

    Never raises: a missing, malformed, negative, NaN or infinite hint gives None (an
    unusable attribute falls through to the header).

    Args:
        exc: The exception that may carry a hint.

    Returns:
        Seconds to wait (>= 0, finite), or None.
    """
    # The common case on a retry's failure path: an error that has none of the attributes
    # a hint comes from. Its class is looked at once (cached); its instance on every call.
    by_class = CLASS_HINTS.get(type(exc))
    if by_class is None:
        by_class = _learn_class(type(exc))
    if not by_class:
        attributes = exc.__dict__
        if not attributes or (
            "retry_after" not in attributes
            and "response" not in attributes
            and "headers" not in attributes
        ):
            return None
    try:
        hint = _seconds(getattr(exc, "retry_after", None))
        if hint is not None:
            return hint
        response = getattr(exc, "response", None)
        if response is not None:
            hint = _seconds(_retry_after_header(getattr(response, "headers", None)))
            if hint is not None:
                return hint
        return _seconds(_retry_after_header(getattr(exc, "headers", None)))
    except Exception:
        # The objects are duck-typed and may be anything; a hint is never worth an error.
        return None


def class_may_carry(cls: type[BaseException], names: tuple[str, ...]) -> bool:
    """Tell whether instances of `cls` may get one of `names` other than from their `__dict__`.

    True when the class (or a base) has one of them (a class attribute, a property, a slot),
    or computes attributes (`__getattr__`, its own `__getattribute__`): then only asking
    each instance can tell. False means an instance has them only in its `__dict__`.
    """
    if cls.__getattribute__ is not _PLAIN_GETATTRIBUTE or hasattr(cls, "__getattr__"):
        return True
    return any(hasattr(cls, name) for name in names)


_PLAIN_GETATTRIBUTE: Final = BaseException.__getattribute__


def _learn_class(cls: type[BaseException]) -> bool:
    """Tell whether instances of `cls` may get a hint attribute from their class; cache it."""
    by_class = class_may_carry(cls, ("retry_after", "response", "headers"))
    if len(CLASS_HINTS) < 1024:  # bounded: classes may be made at run time
        CLASS_HINTS[cls] = by_class
    return by_class


CLASS_HINTS: dict[type[BaseException], bool] = {}
"""Exception classes seen by `retry_after`: whether a hint attribute comes with the class.

False means only an instance's own attributes (`__dict__`) could hold a hint. A retry's
failure path reads it to skip the call for an error that has none.
"""


_DELTA_SECONDS: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def _retry_after_header(headers: object) -> object:
    if headers is None:
        return None
    get = getattr(headers, "get", None)
    if callable(get):
        value = get("Retry-After")
        if value is not None:
            return value
    items = getattr(headers, "items", None)
    if callable(items):
        for key, value in items():
            name = key.decode("latin-1") if isinstance(key, bytes) else key
            if isinstance(name, str) and name.lower() == "retry-after":
                return value
    return None


def _seconds(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, str):
        return _parse_retry_after(value.strip())
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, numbers.Real):
        seconds = float(value)
    else:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _parse_retry_after(text: str) -> float | None:
    if _DELTA_SECONDS.fullmatch(text):
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (ValueError, TypeError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        # HTTP-dates are always GMT; the asctime form carries no zone.
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
