"""Reading a server's hint of how long to wait: a `.retry_after` attribute or a header."""

from __future__ import annotations

import math
import numbers
import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Final

__all__ = ["retry_after"]


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
    if not _may_carry_hint(exc):
        return None  # the common case on a retry's failure path: skip three lookups
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


def _may_carry_hint(exc: BaseException) -> bool:
    """Tell cheaply whether `exc` has any attribute a hint could come from."""
    cls = type(exc)
    by_class = _classes_with_hints.get(cls)
    if by_class is None:
        by_class = any(hasattr(cls, name) for name in ("retry_after", "response", "headers"))
        if len(_classes_with_hints) < 1024:  # bounded: classes may be made at run time
            _classes_with_hints[cls] = by_class
    if by_class:
        return True
    attributes = exc.__dict__
    return bool(attributes) and (
        "retry_after" in attributes or "response" in attributes or "headers" in attributes
    )


_classes_with_hints: dict[type[BaseException], bool] = {}


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
