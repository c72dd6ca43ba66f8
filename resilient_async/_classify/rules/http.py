"""Default rules for HTTP: status codes on any error, and httpx, aiohttp and requests by name."""

from __future__ import annotations

import operator
from typing import Final

from ..kinds import Check, ErrorClass
from ..retry_after import retry_after

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
    """Any error may carry an HTTP status (on `.response` or itself): ask each instance."""
    return _status_check


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
