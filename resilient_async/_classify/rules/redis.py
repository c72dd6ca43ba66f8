"""Default rules for redis-py, by name: its ConnectionError and TimeoutError are its own."""

from __future__ import annotations

from typing import Final

from ..kinds import ErrorClass

__all__ = ["CLASSES"]

# (top-level package, class name) -> class; see `rules.library_rule`.
CLASSES: Final[dict[tuple[str, str], ErrorClass]] = {
    ("redis", "AuthenticationError"): ErrorClass.PERMANENT,
    ("redis", "AuthorizationError"): ErrorClass.PERMANENT,
    ("redis", "BusyLoadingError"): ErrorClass.TRANSIENT,
    ("redis", "ConnectionError"): ErrorClass.TRANSIENT,
    ("redis", "TimeoutError"): ErrorClass.TIMEOUT,
    ("redis", "ReadOnlyError"): ErrorClass.TRANSIENT,  # a replica during a failover
    ("redis", "TryAgainError"): ErrorClass.TRANSIENT,
    ("redis", "ClusterDownError"): ErrorClass.TRANSIENT,
    ("redis", "ResponseError"): ErrorClass.PERMANENT,
}
