"""The HTTP transports' pure part: their arguments, and the deadline header's value."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Final

__all__ = [
    "DEADLINE_HEADER",
    "DEFAULT_METHODS",
    "DEFAULT_RETRY_STATUSES",
    "KNOWN_METHODS",
    "check_header",
    "check_methods",
    "check_statuses",
    "timeout_ms",
]

DEFAULT_RETRY_STATUSES: Final = (429, 502, 503, 504)
# The idempotent methods of RFC 9110 (section 9.2.2) but TRACE, which no client retries.
DEFAULT_METHODS: Final = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")
KNOWN_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
DEADLINE_HEADER: Final = "x-request-timeout-ms"

_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # a header name (RFC 9110 token)


def check_statuses(statuses: Iterable[int]) -> frozenset[int]:
    """Return `retry_statuses` as a set, or raise when one is not an HTTP status code.

    Raises:
        TypeError: Not a collection of ints.
        ValueError: A code outside 100-599.
    """
    if isinstance(statuses, int | str | bytes) or not isinstance(statuses, Iterable):
        raise TypeError(
            f"retry_statuses must be a collection of HTTP status codes such as (502, 503), "
            f"got {statuses!r}"
        )
    checked = set()
    for status in statuses:
        if isinstance(status, bool) or not isinstance(status, int):
            raise TypeError(f"retry_statuses must hold int status codes, got {status!r}")
        if not 100 <= status <= 599:
            raise ValueError(f"retry_statuses must be codes in 100-599, got {status}")
        checked.add(status)
    return frozenset(checked)


def check_methods(methods: Iterable[str]) -> frozenset[str]:
    """Return `methods` upper-cased as a set, or raise on a verb HTTP does not define.

    Raises:
        TypeError: Not a collection of strings (a single string included).
        ValueError: An unknown method.
    """
    if isinstance(methods, str | bytes) or not isinstance(methods, Iterable):
        raise TypeError(
            f"methods must be a collection of HTTP methods such as ('GET', 'HEAD'), got {methods!r}"
        )
    checked = set()
    for method in methods:
        if not isinstance(method, str):
            raise TypeError(f"methods must hold method names (str), got {method!r}")
        upper = method.upper()
        if upper not in KNOWN_METHODS:
            known = ", ".join(sorted(KNOWN_METHODS))
            raise ValueError(f"methods must be among {known}; got {method!r}")
        checked.add(upper)
    return frozenset(checked)


def check_header(name: str) -> str:
    """Return the deadline header's name, lower-cased, or raise if it is not a header name.

    Raises:
        TypeError: Not a string.
        ValueError: Empty, or not a valid header name.
    """
    if not isinstance(name, str):
        raise TypeError(f"deadline_header must be a header name (str), got {name!r}")
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"deadline_header must be a valid HTTP header name, got {name!r}")
    return name.lower()


def timeout_ms(remaining: float) -> int:
    """Return the time left, in whole milliseconds rounded down, never below 0.

    Rounded down so the next service never believes it has more time than there is.
    """
    if remaining <= 0.0:
        return 0
    return math.floor(remaining * 1000.0)
