"""Default rules for Python's own errors: stop signals, builtin types, OS errors by errno."""

from __future__ import annotations

import concurrent.futures
import errno
import socket
from typing import Final

from ..._core.signals import is_stop_type
from ...errors import BulkheadFullError, CircuitOpenError, RateLimitedError
from ..kinds import Check, ErrorClass

__all__ = ["errno_rule", "stop_rule", "type_rule"]


def stop_rule(cls: type[BaseException]) -> ErrorClass | None:
    """Stop signals, and a cancelled future's `concurrent.futures.CancelledError`."""
    if is_stop_type(cls) or issubclass(cls, concurrent.futures.CancelledError):
        return ErrorClass.CANCELLED
    return None


_TYPE_TABLE: Final[tuple[tuple[tuple[type[BaseException], ...], ErrorClass], ...]] = (
    ((CircuitOpenError, BulkheadFullError, RateLimitedError), ErrorClass.THROTTLED),
    ((TimeoutError,), ErrorClass.TIMEOUT),
    ((ConnectionError,), ErrorClass.TRANSIENT),
    (
        (
            ValueError,
            TypeError,
            LookupError,
            AttributeError,
            NotImplementedError,
            PermissionError,
        ),
        ErrorClass.PERMANENT,
    ),
)


def type_rule(cls: type[BaseException]) -> ErrorClass | None:
    """Builtin exception types (and this library's rejections), by subclass."""
    for types, error_class in _TYPE_TABLE:
        if issubclass(cls, types):
            return error_class
    return None


# An OSError subclass that Python did not pick from the errno (a library's own subclass, or a
# bare OSError) is classified by its errno the way Python's own subclasses are: connection
# and network errors transient, ETIMEDOUT a timeout, EACCES/EPERM permanent.
_ERRNO_NAMES: Final = {
    ErrorClass.TRANSIENT: (
        "ECONNRESET",
        "ECONNREFUSED",
        "ECONNABORTED",
        "EPIPE",
        "ESHUTDOWN",
        "EHOSTUNREACH",
        "EHOSTDOWN",
        "ENETUNREACH",
        "ENETDOWN",
        "ENETRESET",
        "EAGAIN",
        "EWOULDBLOCK",
        "EADDRNOTAVAIL",
        "ENOBUFS",
    ),
    ErrorClass.TIMEOUT: ("ETIMEDOUT",),
    ErrorClass.PERMANENT: ("EACCES", "EPERM"),
}
_ERRNO_CLASSES: Final[dict[int, ErrorClass]] = {
    code: error_class
    for error_class, names in _ERRNO_NAMES.items()
    for name in names
    if (code := getattr(errno, name, None)) is not None
}


def errno_rule(cls: type[BaseException]) -> Check | None:
    """OS errors by errno, and a resolver's temporary failure."""
    if not issubclass(cls, OSError):
        return None
    if issubclass(cls, socket.gaierror):
        return _gaierror_check
    if issubclass(cls, socket.herror):
        return None  # h_errno codes are not errno codes
    return _errno_check


def _errno_check(exc: BaseException) -> ErrorClass | None:
    code = getattr(exc, "errno", None)
    return _ERRNO_CLASSES.get(code) if isinstance(code, int) else None


_EAI_AGAIN: Final = getattr(socket, "EAI_AGAIN", None)


def _gaierror_check(exc: BaseException) -> ErrorClass | None:
    # A resolver's EAI_AGAIN is "temporary failure in name resolution"; its codes are not
    # errno codes, so the errno table does not apply.
    code = getattr(exc, "errno", None)
    return ErrorClass.TRANSIENT if code is not None and code == _EAI_AGAIN else None
