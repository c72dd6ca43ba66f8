"""Default rules for HTTP: status codes on any error, and httpx, aiohttp and requests by name."""

from __future__ import annotations

import operator
from typing import Final

from ..kinds import Check, ErrorClass
from ..retry_after import class_may_carry, retry_after

__all__ = ["CLASSES", "status_rule"]

# (top-level package, class name) -> class; see `rules.library_rule`.
CLASSES: Final[dict[tuple[str, str], ErrorClass]] = {
    ("httpx", "TimeoutException"): ErrorClass.TIMEOUT,
    ("httpx", "UnsupportedProtocol"): ErrorClass.PERMANENT,
    ("httpx", "LocalProtocolError"): ErrorClass.PERMANENT,
    ("httpx", "TransportError"): ErrorClass.TRANSIENT,
    ("aiohttp", "ServerTimeoutError"): ErrorClass.TIMEOUT,
    ("aiohttp", "ClientConnectorCertificateError"): ErrorClass.PERMANENT,
    ("aiohttp", "ClientConnectionError"): ErrorClass.TRANSIENT,
    ("aiohttp", "InvalidURL"): ErrorClass.PERMANENT,
    ("requests", "ConnectTimeout"): ErrorClass.TIMEOUT,
    ("requests", "Timeout"): ErrorClass.TIMEOUT,
    ("requests", "ConnectionError"): ErrorClass.TRANSIENT,
}


def status_rule(cls: type[BaseException]) -> Check:
    """Any error may carry an HTTP status (on `.response` or itself): ask each instance.

    Most classes give their instances none of the attributes a status is read from: their
    check looks at the instance's own `__dict__` first (on a retry's failure path, for
    every failure), and reads no attribute when none of them is there.
    """
    return _status_check if class_may_carry(cls, _STATUS_ATTRIBUTES) else _own_status_check


_STATUS_ATTRIBUTES: Final = ("response", "status_code", "status")


def _own_status_check(exc: BaseException) -> ErrorClass | None:
    """`_status_check` for an error whose class gives it no attribute a status is read from."""
    attributes = exc.__dict__
    if not attributes or (
        "response" not in attributes
        and "status_code" not in attributes
        and "status" not in attributes
    ):
        return None
    return _status_check(exc)


def _status_check(exc: BaseException) -> ErrorClass | None:
    status = _status_of(exc)
    if status is None:
        return None
    if status == 429:
        return ErrorClass.THROTTLED
    if status == 503:
        return ErrorClass.TRANSIENT if retry_after(exc) is None else ErrorClass.THROTTLED
    if status == 408 or status >= 500:
        return ErrorClass.TRANSIENT
    if status >= 400:
        return ErrorClass.PERMANENT
    return None


def _status_of(exc: BaseException) -> int | None:
    try:
        response = getattr(exc, "response", None)
        if response is not None:
            status = _as_status(getattr(response, "status_code", None))
            if status is not None:
                return status
        status = _as_status(getattr(exc, "status_code", None))
        if status is not None:
            return status
        return _as_status(getattr(exc, "status", None))
    except Exception:
        # Duck-typed attributes may be properties that raise; no status then.
        return None


def _as_status(value: object) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        status = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None
    return status if 100 <= status <= 599 else None
